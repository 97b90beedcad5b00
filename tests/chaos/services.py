"""Private Redis and PostgreSQL servers for the fault tests, so that one can be stopped, killed or
restarted on purpose without touching the shared ones other tests use. Each runs on a free port
from a folder of its own and is stopped and removed when its fixture ends, however the test ended.

PostgreSQL: a throwaway cluster (initdb, trust auth, fsync off) whose database is a copy of this
test run's test database, taken with pg_dump: the schema pytest-django's `migrate` just built, and
the rows the test wrote before the copy (its users, channels, agents). Copying costs ~0.3 s where
`manage.py migrate` on an empty database costs ~6 s on an idle machine and more on a loaded one."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.db import connection

from tests.test_e2e_runtime import Spawned, free_port, wait_until

START_TIMEOUT = 30.0


def stop_all(*spawned: Spawned, timeout: float = 15) -> None:
    """SIGTERM to every process at once and wait for them all: stopping them one by one (the
    spawn fixture) costs their shutdown times added up. SIGKILL for any that lingers."""
    for p in spawned:
        if p.proc.poll() is None:
            p.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in spawned:
        try:
            p.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.proc.kill()
            p.proc.wait(10)


# --- Redis --------------------------------------------------------------------------------------
class PrivateRedis:
    """redis-server on a port of its own, without persistence: a stop loses everything queued,
    as a crashed or replaced Redis would."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start (again) on the same port."""
        assert not self.running, "already running"
        self.starts += 1
        log = (self.workdir / f"redis-{self.starts}.log").open("wb")
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.workdir)]  # fmt: skip
        with log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)

        def answers() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {self.log()}")
            try:
                return client.ping()
            except redis.ConnectionError:
                return False

        try:
            wait_until(answers, timeout=START_TIMEOUT, what=f"redis-server on {self.port}")
        finally:
            client.close()

    def stop(self) -> None:
        """SHUTDOWN NOSAVE, as an operator stops it; SIGKILL if it lingers."""
        assert self.running, "not running"
        with contextlib.suppress(redis.ConnectionError):  # it closes the connection as it goes
            redis.Redis(port=self.port, socket_connect_timeout=1).shutdown(nosave=True)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("redis-*.log")))

    def close(self) -> None:
        if self.running:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def private_redis(tmp_path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    try:
        server.start()
        yield server
    finally:
        server.close()


# --- PostgreSQL ---------------------------------------------------------------------------------
def postgres_bindir() -> Path:
    """Where initdb and pg_ctl are: PG_BINDIR, else the newest /usr/lib/postgresql/*/bin (Debian
    keeps them off PATH), else PATH."""
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    pytest.fail("initdb not found: install PostgreSQL's server binaries or set PG_BINDIR")


class PrivatePostgres:
    """A PostgreSQL cluster of its own. As root its files belong to `postgres` (PostgreSQL
    refuses to run as root) and its commands run through runuser."""

    def __init__(self) -> None:
        self.bindir = postgres_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="paidan-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, user="postgres", group="postgres")
        self.started = False

    def _run(self, tool: str, *args: str, timeout: float = 60) -> str:
        argv = [str(self.bindir / tool), *args]
        if self.as_root:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, cwd=self.root, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}\n{self.log()}")
        return done.stdout

    def init(self) -> None:
        # -N: no fsync of the new files; a throwaway cluster.
        self._run("initdb", "-D", str(self.data), "--auth=trust", "-N", "-E", "UTF8", "--locale=C.UTF-8", "-U",
                  "postgres")  # fmt: skip

    def _pg_ctl(self, *args: str) -> None:
        # fsync off: nothing here must survive a power cut, and a fast shutdown still writes
        # everything committed before the restart.
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"), "-w",
                  "-t", str(int(START_TIMEOUT)), *args)  # fmt: skip

    def start(self) -> None:
        self._pg_ctl("start")
        self.started = True

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: every session is terminated, open transactions roll back,
        and the server refuses connections until it is up again."""
        self._pg_ctl("restart", "-m", "fast")

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def psql(self, dbname: str, sql: str) -> str:
        return self._run("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port),
                         "-U", "postgres", "-d", dbname, "-A", "-t", "-c", sql)  # fmt: skip

    def copy_test_database(self, dbname: str) -> None:
        """`dbname` here becomes a copy of the test database this process is connected to."""
        db = connection.settings_dict
        self.psql("postgres", f'CREATE DATABASE "{dbname}" TEMPLATE template0 ENCODING UTF8')
        env = {**os.environ, "PGPASSWORD": db["PASSWORD"] or ""}
        dump_argv = [str(self.bindir / "pg_dump"), "--no-owner", "--no-privileges", "-h", db["HOST"] or "127.0.0.1",
                     "-p", str(db["PORT"] or 5432), "-U", db["USER"] or "postgres", db["NAME"]]  # fmt: skip
        load_argv = [str(self.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                     "-p", str(self.port), "-U", "postgres", "-d", dbname]  # fmt: skip
        dump = subprocess.Popen(dump_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        load = subprocess.run(load_argv, stdin=dump.stdout, capture_output=True, text=True, timeout=120)
        dump.stdout.close()
        dump_errors = dump.stderr.read().decode(errors="replace")
        if dump.wait(60) != 0 or load.returncode != 0:
            raise RuntimeError(f"copying {db['NAME']} failed:\n{dump_errors}\n{load.stdout}\n{load.stderr}")

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        try:
            if self.started:
                self._pg_ctl("stop", "-m", "immediate")
        except (RuntimeError, subprocess.TimeoutExpired):
            self._kill_postmaster()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        pidfile = self.data / "postmaster.pid"
        if pidfile.exists():
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGQUIT)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """An initialised, running cluster with no database of ours yet (`copy_test_database`)."""
    server = PrivatePostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.close()
