"""End-to-end: the product's real processes (manage.py serve, daphne, a Celery worker) started
as subprocesses and driven over HTTP and websockets, as a deployment would run them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from django.core.files.base import ContentFile
from django.db import connection, transaction
from django.test import Client
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from config.celery import app as celery_app
from orders.imports import import_job_create
from orders.models import ImportJob, Order, OrderEvent
from orders.tasks import import_orders_task
from tests.factories import ChannelFactory, UserFactory, order_payload, token_for
from tests.fakes.marketplace import FakeMarketplace

# Transactional, every one: what a test writes is committed for its subprocesses to see, and
# pytest-django then runs this module's tests together in file order, so the embedded server
# counts down to its first beat tick (60 s) while the production-shape tests run. The flush
# after each test empties the role groups a data migration made; the user factory makes them.
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
START_TIMEOUT = 30.0
DAPHNE_APP = "paidan-e2e-daphne"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # never through a proxy from the environment
    return session


class Spawned:
    def __init__(self, name: str, proc: subprocess.Popen, log: Path) -> None:
        self.name, self.proc, self.log = name, proc, log

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def running(name: str, argv: list[str], *, env: dict[str, str], logdir: Path, port: int | None = None):
    """A subprocess with its output in `logdir`, stopped on exit (SIGTERM, SIGKILL after 10 s)."""
    log = logdir / f"{name}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    spawned = Spawned(name, proc, log)
    try:
        if port is not None:
            wait_for_port(spawned, port)
        yield spawned
    finally:
        stop(proc, signal.SIGTERM)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Spawned]]:
    with ExitStack() as stack:

        def start(name: str, argv: list[str], *, env: dict[str, str], port: int | None = None) -> Spawned:
            return stack.enter_context(running(name, argv, env=env, logdir=tmp_path, port=port))

        yield start


def stop(proc: subprocess.Popen, sig: int) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def wait_for_port(spawned: Spawned, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if spawned.proc.poll() is not None:
            pytest.fail(f"{spawned.name} exited with {spawned.proc.returncode}:\n{spawned.output()}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"{spawned.name} did not listen on {port} within {START_TIMEOUT} s:\n{spawned.output()}")


def wait_until(condition: Callable[[], object], *, timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


# --- embedded default: SQLite, worker and beat in the server process -------------------

PASSWORD = "e2e-embedded-pw"  # a throwaway user of a throwaway database

EMBEDDED_SETUP = """
import json, os
from django.contrib.auth.models import Group, User
from orders.models import Channel
from tests.fakes.marketplace import CHANNEL_SETTINGS

user = User.objects.create_user("e2e-sup", password=os.environ["E2E_PASSWORD"])
user.groups.add(Group.objects.get(name="supervisor"))
Channel.objects.create(
    code="mkt", name="Market", tag_prefix="MK", poll_url=os.environ["E2E_POLL_URL"], **CHANNEL_SETTINGS
)
shop = Channel.objects.create(code="shop", name="Shop", tag_prefix="SH", kind="spreadsheet")
print(json.dumps({"shop": shop.pk}))
"""


class Embedded:
    def __init__(self, *, base: str, env: dict[str, str], logdir: Path, market: FakeMarketplace) -> None:
        self.base, self.env, self.logdir, self.market = base, env, logdir, market
        self.started_at = time.monotonic()
        self.shop_id = 0
        self.server: Spawned | None = None

    def logged_in(self) -> requests.Session:
        session = http()
        assert session.get(f"{self.base}/login/", timeout=10).status_code == 200
        response = session.post(
            f"{self.base}/login/",
            data={
                "username": "e2e-sup",
                "password": PASSWORD,
                "csrfmiddlewaretoken": session.cookies["csrftoken"],
            },
            allow_redirects=False,
            timeout=10,
        )
        assert response.status_code == 302, response.text
        return session


def manage(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> Iterator[Embedded]:
    """`manage.py serve` on a fresh SQLite file with nothing else configured, as `make run`
    starts it. Module-scoped: beat's first poll tick comes 60 s after start, and the tests in
    between run while it counts down."""
    logdir = tmp_path_factory.mktemp("embedded")
    unset = {"DATABASE_URL", "REDIS_URL", "CELERY_TASK_ALWAYS_EAGER", "DJANGO_SECRET_KEY", "SECURE_COOKIES"}
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(SQLITE_PATH=str(logdir / "paidan.sqlite3"), MEDIA_ROOT=str(logdir / "media"))
    with FakeMarketplace() as market:
        market.add_order("MK-E2E-1", update_time=1_763_600_000)
        market.add_order("MK-E2E-2", update_time=1_763_600_060)
        manage("migrate", "-v0", env=env)
        ids = json.loads(
            manage(
                "shell",
                "-c",
                EMBEDDED_SETUP,
                env={**env, "E2E_PASSWORD": PASSWORD, "E2E_POLL_URL": market.url},
            )
            .strip()
            .splitlines()[-1]
        )
        port = free_port()
        state = Embedded(base=f"http://127.0.0.1:{port}", env=env, logdir=logdir, market=market)
        state.shop_id = ids["shop"]
        argv = [sys.executable, "manage.py", "serve", "--port", str(port)]
        with running("serve", argv, env=env, logdir=logdir, port=port) as server:
            state.server = server
            yield state


IMPORT_CSV = (
    "订单号,客户姓名,手机,收货地址,商品,数量,单价,实付金额\n"
    "SH-E2E-1,张伟,13800138000,北京市朝阳区建国路88号,电饭煲,1,299.00,299.00\n"
    "SH-E2E-2,李娜,13912345678,浙江省杭州市西湖区文三路90号,空气炸锅,2,199.00,398.00\n"
).encode()


def test_embedded_server_serves_pages_and_its_worker_runs_an_uploaded_import(embedded):
    # given the embedded server and a supervisor logged in through the login page
    session = embedded.logged_in()

    # when they upload a CSV file on the import page (the page enqueues the import task)
    response = session.post(
        f"{embedded.base}/imports/",
        data={"channel": embedded.shop_id, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        files={"file": ("orders.csv", IMPORT_CSV, "text/csv")},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text
    status_url = f"{embedded.base}{response.headers['Location']}status.json"

    # then the in-process worker runs it: the job finishes with both rows stored
    def finished() -> dict | None:
        state = session.get(status_url, timeout=10).json()
        return state if state["status"] in {"done", "failed"} else None

    state = wait_until(finished, timeout=30, what="the import job to finish")
    assert (state["status"], state["created"], state["rejected"]) == ("done", 2, 0), state
    listed = session.get(f"{embedded.base}/api/orders/", params={"channel": "shop"}, timeout=10).json()
    assert sorted(o["external_id"] for o in listed["results"]) == ["SH-E2E-1", "SH-E2E-2"]


def test_embedded_server_stops_cleanly_on_ctrl_c(embedded):
    # given a second embedded server on the same database, up and listening
    port = free_port()
    argv = [sys.executable, "manage.py", "serve", "--port", str(port)]
    with running("serve-ctrl-c", argv, env=embedded.env, logdir=embedded.logdir, port=port) as server:
        # when it gets Ctrl-C
        server.proc.send_signal(signal.SIGINT)
        try:
            code = server.proc.wait(20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve did not stop within 20 s of Ctrl-C:\n{server.output()}")
    # then daphne, the worker and beat all stop and it exits successfully
    assert code == 0, server.output()
    assert "beat: Shutting down" in server.output()


def test_serve_refuses_the_production_shape(tmp_path):
    # given DATABASE_URL set (the production shape)
    env = {
        **os.environ,
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/unused",
        "DJANGO_SECRET_KEY": "x",
    }
    # when `serve` is started
    done = subprocess.run(
        [sys.executable, "manage.py", "serve", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # then it refuses and says what to run instead
    assert done.returncode == 1
    assert "make run-prod" in done.stderr


# --- production shape: PostgreSQL (pytest-django's test database) and Redis -------------


@pytest.fixture
def production_env(transactional_db) -> dict[str, str]:
    """The environment of a production process pointed at this test's database and Redis.
    transactional_db: what the test writes is committed, so the subprocess sees it."""
    if connection.vendor != "postgresql" or not os.environ.get("REDIS_URL"):
        pytest.fail(
            "the production shape needs DATABASE_URL (PostgreSQL) and REDIS_URL: run it through `make test`"
        )
    db = connection.settings_dict
    auth = quote(db["USER"] or "postgres", safe="")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"], safe="")
    url = f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {k: v for k, v in os.environ.items() if k != "CELERY_TASK_ALWAYS_EAGER"}
    env.update(DATABASE_URL=url, DJANGO_SECRET_KEY=env.get("DJANGO_SECRET_KEY") or "e2e", SECURE_COOKIES="0")
    return env


@pytest.fixture
def daphne(production_env, spawn) -> str:
    """A daphne process as the Procfile runs it; returns its base URL."""
    port = free_port()
    # Named, so that its database sessions can be told from this test process's own.
    env = {
        **production_env,
        "DATABASE_URL": production_env["DATABASE_URL"] + f"?application_name={DAPHNE_APP}",
    }
    spawn(
        "daphne",
        [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        env=env,
        port=port,
    )
    return f"127.0.0.1:{port}"


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def board_socket(host: str, *, cookie: str | None, origin: str) -> ClientConnection:
    headers = {"Cookie": cookie} if cookie else {}
    # No client keepalive pings: the idle test wants the socket truly silent.
    return connect(
        f"ws://{host}/ws/board/",
        origin=origin,
        additional_headers=headers,
        proxy=None,
        ping_interval=None,
        open_timeout=10,
    )


def receive_json(ws: ClientConnection, timeout: float) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def test_board_socket_survives_30s_idle_then_gets_an_order_pushed_within_a_second(daphne):
    # given a supervisor logged in, their token, a channel, and the board socket open
    user = UserFactory(username="e2e-sup", roles=["supervisor"])
    ChannelFactory(code="jd", name="京东", tag_prefix="JD")
    token = token_for(user)
    with board_socket(daphne, cookie=session_cookie(user), origin=f"http://{daphne}") as ws:
        assert receive_json(ws, 5) == {"type": "hello", "user": "e2e-sup"}

        # when the socket stays silent for 30 s (redis-py 8's 5 s socket_timeout trap)
        with pytest.raises(TimeoutError):
            ws.recv(timeout=30)
        # then it is still open and its consumer still answers
        ws.send(json.dumps({"type": "ping"}))
        assert receive_json(ws, 2) == {"type": "pong"}

        # when an integration posts an order over HTTP
        response = http().post(
            f"http://{daphne}/api/orders/",
            json=order_payload(external_id="JD-E2E-1"),
            headers={"Authorization": f"Token {token}"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        order_id = response.json()["id"]

        # then the board hears about it within a second
        message = receive_json(ws, 1.0)
        assert message == {"type": "orders.changed", "ids": [order_id]}
    assert Order.objects.filter(pk=order_id, external_id="JD-E2E-1").exists()


def test_board_socket_from_a_foreign_origin_is_refused(daphne):
    # given a logged-in user whose cookie a foreign page tries to use
    user = UserFactory(username="e2e-victim", roles=["supervisor"])
    # when the socket is opened with another site's Origin
    with pytest.raises(InvalidStatus) as refused:
        board_socket(daphne, cookie=session_cookie(user), origin="http://evil.example")
    # then the handshake is refused
    assert refused.value.response.status_code == 403


def test_anonymous_board_socket_is_closed(daphne):
    # when a socket without a session opens the board from our own origin
    with pytest.raises(InvalidStatus) as refused:
        board_socket(daphne, cookie=None, origin=f"http://{daphne}")
    # then the consumer closes it before accepting: the handshake is refused
    assert refused.value.response.status_code == 403


def _sessions_opened(dbname: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", [dbname])
        return cursor.fetchone()[0]


def _daphne_backends(dbname: str) -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            [dbname, DAPHNE_APP],
        )
        return {row[0] for row in cursor.fetchall()}


def test_daphne_reuses_pooled_database_connections(daphne):
    # given daphne with DATABASE_URL, warmed up by one authenticated request
    user = UserFactory(username="e2e-pool", roles=["supervisor"])
    session = http()
    session.headers["Authorization"] = f"Token {token_for(user)}"
    assert session.get(f"http://{daphne}/api/orders/", timeout=10).status_code == 200
    dbname = connection.settings_dict["NAME"]
    time.sleep(1.5)  # PostgreSQL publishes a backend's session count within a second
    opened_before = _sessions_opened(dbname)
    pooled = _daphne_backends(dbname)
    assert pooled, "daphne holds no connection open between requests"

    # when 50 requests follow one another
    for _ in range(50):
        assert session.get(f"http://{daphne}/api/orders/", timeout=10).status_code == 200
    time.sleep(1.5)

    # then they ran on the pool's connections: no new backend per request
    assert _sessions_opened(dbname) - opened_before < 10
    assert pooled & _daphne_backends(dbname), "the warm connections were closed"


# --- a real Celery worker process on Redis -------------------------------------------------


@pytest.fixture
def not_eager(settings) -> Iterator[None]:
    """Enqueue for real in this test process, whatever CELERY_TASK_ALWAYS_EAGER says."""
    # Read first: Celery loads its conf from the settings lazily, and reading it after the
    # change would "restore" the changed value and leave every later test not eager.
    before = celery_app.conf.task_always_eager
    settings.CELERY_TASK_ALWAYS_EAGER = False
    celery_app.conf.task_always_eager = False
    yield
    celery_app.conf.task_always_eager = before


def test_celery_worker_process_runs_an_import_enqueued_through_redis(
    production_env, spawn, settings, not_eager, tmp_path
):
    # given a Celery worker process as the Procfile runs it, on Redis and this test's database
    media = tmp_path / "media"
    settings.MEDIA_ROOT = media
    argv = [str(BIN / "celery"), "-A", "config", "worker", "--pool", "solo", "--concurrency", "1"]
    argv += ["--loglevel", "info", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    argv += ["--purge", "--hostname", f"e2e-{os.getpid()}@%h"]
    worker = spawn(
        "celery-worker",
        argv,
        env={**production_env, "MEDIA_ROOT": str(media)},
    )
    wait_until(
        lambda: "ready." in worker.output() or worker.proc.poll() is not None,
        timeout=START_TIMEOUT,
        what="the Celery worker to be ready",
    )
    assert worker.proc.poll() is None, worker.output()
    channel = ChannelFactory(code="shop", name="Shop", tag_prefix="SH")

    # when an uploaded file's import is enqueued after commit, as the upload page does
    sent = []
    with transaction.atomic():
        job = import_job_create(
            channel=channel, original_name="orders.csv", source="upload", file=ContentFile(IMPORT_CSV)
        )
        transaction.on_commit(lambda: sent.append(import_orders_task.delay(job.pk)))
    assert ImportJob.objects.get(pk=job.pk).status in {"queued", "running", "done"}

    # then the worker process runs it and its rows are stored, audited as the import's
    wait_until(
        lambda: ImportJob.objects.get(pk=job.pk).status in {"done", "failed"},
        timeout=30,
        what="the worker to run the import",
    )
    job.refresh_from_db()
    assert (job.status, job.created_count, job.rejected_count) == ("done", 2, 0), job.message
    assert sorted(Order.objects.filter(channel=channel).values_list("external_id", flat=True)) == [
        "SH-E2E-1",
        "SH-E2E-2",
    ]
    assert (
        OrderEvent.objects.filter(order__channel=channel, kind="ingested", actor=f"import:{job.pk}").count()
        == 2
    )
    assert f"{sent[0].id}] succeeded" in worker.output()


# --- embedded default, last: beat, whose first tick comes 60 s after the server started -----


def test_embedded_beat_fires_the_poll_tick_and_the_worker_polls_the_channel(embedded):
    # given a polling channel whose marketplace holds two new orders, and nothing polled yet
    # when beat's poll tick comes due (60 s after the server started)
    remaining = 100 - (time.monotonic() - embedded.started_at)
    wait_until(
        lambda: embedded.market.requests,
        timeout=max(remaining, 5.0),
        what="the beat poll tick to reach the marketplace",
    )

    # then the in-process worker polls the channel and stores its orders
    session = embedded.logged_in()

    def stored() -> bool:
        listed = session.get(f"{embedded.base}/api/orders/", params={"channel": "mkt"}, timeout=10).json()
        return sorted(o["external_id"] for o in listed["results"]) == ["MK-E2E-1", "MK-E2E-2"]

    wait_until(stored, timeout=20, what="the polled orders to be stored")
