"""A Celery worker killed with SIGKILL in the middle of a dispatch tick: the orders it had claimed
are offered by the beat's database sweep within a minute, and no order ever holds two live
assignments.

How the kill lands mid-tick, deterministically and without a hook in the product: the test holds
a row lock on every agent from its own connection. The tick claims the waiting entries
(`SELECT … FOR UPDATE SKIP LOCKED`), plans the round, then re-counts the chosen agents' load
under `SELECT … FROM agents_agent … FOR UPDATE` and waits there; the test sees the worker's
backend waiting on that lock in pg_stat_activity and every entry claimed, and only then kills.

Which worker dies: the Procfile's (prefork, two children), main process and children at once,
as when a container is killed or its host lost. Killing only the child is the easy case: the
main process notices and, with `task_reject_on_worker_lost`, requeues the message at once. Here
nobody is left to requeue it; it sits in Redis's unacked set until the visibility timeout (an
hour) brings it back, so only the sweep can repair within the minute.

What PostgreSQL does with the dead worker's session: the backend is blocked on the test's lock,
not reading its socket, so by itself it notices the dead client only when the lock is granted
and it writes the answer; until then it keeps the claimed entries locked and every sweep skips
them (measured: still there after 8 s, gone 0.02 s after the blocker let go). The settings make
it poll the socket while a query runs (`client_connection_check_interval`, DB_CLIENT_CHECK_MS):
the test keeps its lock after the kill and requires the dead session, and its row locks, to be
gone within seconds anyway. Without that setting this test fails there.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from django.core.management import call_command
from django.db import connection
from django.db.models import Count

from config.celery import app as celery_app
from dispatch.models import LIVE_STATES, Assignment, PoolEntry
from orders.actors import system_actor
from orders.services import order_ingest_batch
from tests.factories import AgentFactory, ChannelFactory, order_payload
from tests.test_dispatch_concurrency import conninfo
from tests.test_e2e_runtime import (  # noqa: F401 - fixtures, used by name
    BIN,
    START_TIMEOUT,
    Spawned,
    not_eager,
    production_env,
    spawn,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.django_db(transaction=True)]

ORDERS = 12
AGENTS = 4
CAPACITY = 5  # 20 free slots for 12 orders: every one of them can be offered
REPAIR_WITHIN = 60.0  # seconds from the kill to every order offered (the promise)
DEAD_SESSION_GONE_WITHIN = 15.0  # DB_CLIENT_CHECK_MS (5 s) plus slack for a loaded machine
WORKER_APP = "paidan-chaos-killed-worker"
SWEEP_OFFERED = re.compile(
    r"sweep_pool_task\[[\w-]+\] succeeded in [\d.]+s: \{'expired': \d+, 'offered': (\d+)"
)


@pytest.fixture
def broker(not_eager) -> Iterator[redis.Redis]:  # noqa: F811
    """This test's Redis db with no task queued or unacknowledged, before and after: nothing
    else runs on it, and a killed worker's round would come back an hour later."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    celery_app.control.purge()
    client.delete("unacked", "unacked_index")
    yield client
    celery_app.control.purge()
    client.delete("unacked", "unacked_index")


def worker_argv(name: str) -> list[str]:
    """The Procfile's worker (prefork, two children), quiet on the control bus."""
    argv = [str(BIN / "celery"), "-A", "config", "worker", "--concurrency", "2", "--loglevel", "info"]
    return [*argv, "--without-gossip", "--without-mingle", "--without-heartbeat", "--hostname", name]


def beat_argv() -> list[str]:
    """The Procfile's beat."""
    argv = [str(BIN / "celery"), "-A", "config", "beat", "--loglevel", "info"]
    return [*argv, "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"]


def wait_ready(proc: Spawned, marker: str) -> Spawned:
    wait_until(
        lambda: marker in proc.output() or proc.proc.poll() is not None,
        timeout=START_TIMEOUT,
        what=f"{proc.name} to start",
    )
    assert proc.proc.poll() is None, proc.output()
    return proc


def children_of(pid: int) -> list[int]:
    return [
        int(c)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for c in (task / "children").read_text().split()
    ]


def dead(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
    except FileNotFoundError:
        return True


def kill_whole_worker(worker: Spawned) -> list[int]:
    """SIGKILL the main process first (so it cannot requeue anything), then its children."""
    main = worker.proc.pid
    children = children_of(main)
    for pid in (main, *children):
        os.kill(pid, signal.SIGKILL)
    worker.proc.wait(10)
    wait_until(lambda: all(dead(pid) for pid in children), timeout=10, what="the pool children to die")
    return [main, *children]


def blocked_tick_backend(db: psycopg.Connection) -> int | None:
    """The killed-to-be worker's session, inside the tick, waiting for the agents' row locks."""
    row = db.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s "
        "AND wait_event_type = 'Lock' AND query LIKE '%%FROM \"agents_agent\"%%FOR UPDATE%%'",
        [WORKER_APP],
    ).fetchone()
    return row[0] if row else None


def claimable(db: psycopg.Connection, entry_ids: list[int]) -> int:
    """How many of the entries no transaction holds (the probe's own locks end with its statement)."""
    rows = db.execute(
        "SELECT id FROM dispatch_poolentry WHERE id = ANY(%s) FOR UPDATE SKIP LOCKED", [entry_ids]
    ).fetchall()
    return len(rows)


def backend_alive(db: psycopg.Connection, pid: int) -> bool:
    return db.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone() is not None


def unacked_tasks(broker: redis.Redis) -> list[str]:
    """Task names of the messages Redis holds as delivered but never acknowledged."""
    return [json.loads(raw)[0]["headers"]["task"] for raw in broker.hvals("unacked")]


def test_a_worker_killed_mid_tick_leaves_no_order_unoffered_for_more_than_a_minute(
    production_env,  # noqa: F811
    spawn,  # noqa: F811
    broker,
    settings,
):
    started = time.monotonic()
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    assert celery_app.conf.broker_transport_options["visibility_timeout"] == 3600
    call_command("install_schedules", stdout=io.StringIO())  # as `make run-prod` does
    # given four free agents and twelve orders that every agent may take
    ChannelFactory(code="jd", name="京东", tag_prefix="JD")
    for _ in range(AGENTS):
        AgentFactory(capacity=CAPACITY)
    # ingested through the one write path: the commit enqueues a dispatch round on Redis
    results = order_ingest_batch(
        payloads=[order_payload(external_id=f"K{n:03d}") for n in range(ORDERS)], actor=system_actor("test")
    )
    order_ids = [r.order.pk for r in results]
    entry_ids = list(
        PoolEntry.objects.filter(order_id__in=order_ids, state="waiting").values_list("pk", flat=True)
    )
    assert len(entry_ids) == ORDERS
    assert not Assignment.objects.exists()

    with psycopg.connect(conninfo(), autocommit=True) as probe:
        # and every agent's row locked by another transaction (a blocker the tick must wait for)
        blocker = psycopg.connect(
            psycopg.conninfo.make_conninfo(conninfo(), application_name="paidan-chaos-blocker")
        )
        try:
            assert len(blocker.execute("SELECT id FROM agents_agent FOR UPDATE").fetchall()) == AGENTS

            # when a worker takes the round and is caught inside the tick: entries claimed,
            # waiting for the agents
            env = {
                **production_env,
                "DATABASE_URL": production_env["DATABASE_URL"] + f"?application_name={WORKER_APP}",
            }
            victim = wait_ready(
                spawn("worker-killed", worker_argv(f"killed-{os.getpid()}@%h"), env=env), "ready."
            )
            session = wait_until(
                lambda: blocked_tick_backend(probe), timeout=30, what="the tick to wait for the agents"
            )
            assert claimable(probe, entry_ids) == 0, "the tick had not claimed every waiting entry"
            assert "dispatch.tasks.dispatch_pool_task" in unacked_tasks(broker)

            # and the whole worker is killed there
            pids = kill_whole_worker(victim)
            killed_at = time.monotonic()

            # then PostgreSQL ends the dead worker's session and frees the entries it claimed
            # even while the agents are still locked (the blocker has not let go)
            wait_until(
                lambda: not backend_alive(probe, session),
                timeout=DEAD_SESSION_GONE_WITHIN,
                what=f"PostgreSQL to end the killed worker's session {session} while it waits on a lock",
            )
            session_gone = time.monotonic() - killed_at
            assert claimable(probe, entry_ids) == ORDERS
        finally:
            blocker.close()  # the blocker lets go

        # when the worker and beat come back (a fresh worker, as the process manager restarts it)
        fresh = spawn("worker-fresh", worker_argv(f"fresh-{os.getpid()}@%h"), env=production_env)
        beat = wait_ready(spawn("beat", beat_argv(), env=production_env), "beat: Starting...")
        wait_ready(fresh, "ready.")

        # then within a minute of the kill every order in flight is offered
        def offered() -> bool:
            live = Assignment.objects.filter(order_id__in=order_ids, state__in=LIVE_STATES)
            return live.values("order_id").distinct().count() == ORDERS

        wait_until(
            offered, timeout=REPAIR_WITHIN - (time.monotonic() - killed_at), what="every order to be offered"
        )
        repaired = time.monotonic() - killed_at

    # and the beat's sweep did it, not a redelivery: the fresh worker never got the killed round,
    # which Redis still holds as unacknowledged (its visibility timeout is an hour away)
    wait_until(
        lambda: sum(int(n) for n in SWEEP_OFFERED.findall(fresh.output())) >= ORDERS,
        timeout=10,
        what="the sweep's result in the fresh worker's log",
    )
    log = fresh.output()
    assert sum(int(n) for n in SWEEP_OFFERED.findall(log)) == ORDERS, log
    assert "dispatch_pool_task[" not in log, log  # [id]: a task line, not the banner's list
    assert "dispatch.tasks.dispatch_pool_task" in unacked_tasks(broker)
    assert "Sending due task sweep-dispatch-pool" in beat.output()
    for sign in ("IntegrityError", "Traceback", "ERROR/"):
        assert sign not in log, f"fresh worker: {sign}\n{log[-4000:]}"

    # and no order ever held two live assignments: the database refuses it (partial unique
    # indexes), and each order has exactly the one offer the sweep wrote
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'dispatch_assignment' "
            "AND indexname IN ('assignment_one_live_per_order', 'assignment_one_live_per_entry')"
        )
        indexes = dict(cursor.fetchall())
    assert set(indexes) == {"assignment_one_live_per_order", "assignment_one_live_per_entry"}
    assert all("UNIQUE" in d and "offered" in d and "accepted" in d for d in indexes.values()), indexes
    per_order = Assignment.objects.values("order_id").annotate(n=Count("id"))
    assert {row["order_id"]: row["n"] for row in per_order} == dict.fromkeys(order_ids, 1)
    assert set(PoolEntry.objects.filter(pk__in=entry_ids).values_list("state", flat=True)) == {"offered"}

    print(
        f"{ORDERS} orders in flight; killed pids {pids}; dead session {session} gone {session_gone:.1f} s "
        f"after the kill; all offered {repaired:.1f} s after the kill; test {time.monotonic() - started:.1f} s"
    )
