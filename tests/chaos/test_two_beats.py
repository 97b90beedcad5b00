"""Two `celery beat` processes started by mistake (DatabaseScheduler, one database): every
periodic task is sent twice, and still nobody is told twice, no order climbs a rung twice and
no order is offered twice.

Both beats send the overdue scan and the pool sweep every second (their rows edited as an admin
would, once both beats are up: each beat re-writes the code's schedule into the table when it
starts), to the Procfile's worker (two pool processes). What must hold is the database's doing:
the scan claims overdue orders with SKIP LOCKED and stores the rung it reached in the same
transaction, every message and alert has a unique dedupe key, pool entries are claimed with SKIP
LOCKED, and a partial unique index allows one live assignment per order.

Side by side, for certain: when the orders fall due the test holds the backup's row, so the
first scan claims every overdue order and then waits to hand one over at L2; the scans both
beats send meanwhile run on the other pool process and must claim nothing. The same for the
sweep, with the pool orders' rows held: the first sweep claims the pool and waits to write its
offers while later sweeps run beside it. Then the beats keep sending after everything was done.

The test can fail: each beat's own log must show it sending both tasks again and again, and the
worker must have received and run every one of those sends. Checked by breaking the product in
a copy of the tree: without the scan's step filter (a stale level) it counted 12 escalations for
6 orders; without the scan's or the sweep's claim (FOR UPDATE SKIP LOCKED) the later tasks
blocked on the held rows instead of running beside, and the test timed out there.
"""

from __future__ import annotations

import io
import os
import re
import signal
import time
from collections import Counter
from datetime import timedelta

import psycopg
import pytest
from django.core.management import call_command
from django.db import transaction
from django.db.models import Count
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from agents.models import Agent, Team
from config.celery import app as celery_app
from dashboards.defaults import install_defaults
from dashboards.models import Alert, Notification, NotificationTemplate
from dispatch.models import LIVE_STATES, Assignment
from dispatch.services import order_assign
from orders.actors import system_actor
from orders.models import Order, OrderEvent
from orders.services import order_ingest_batch
from tests.chaos.test_worker_kill import beat_argv, broker, wait_ready, worker_argv  # noqa: F401
from tests.factories import AgentFactory, ChannelFactory, RegionFactory, SkillFactory, order_payload
from tests.test_dispatch_concurrency import conninfo, parse_rounds, queued
from tests.test_e2e_runtime import (  # noqa: F401 - fixtures, used by name
    Spawned,
    not_eager,  # broker's
    production_env,
    spawn,
    stop,
    wait_until,
)
from tests.test_escalation import person, robot  # noqa: F401 - robot: a fixture

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.django_db(transaction=True)]

WORKER_APP = "paidan-chaos-two-beats-worker"
SCAN = "escalate-overdue-orders"
SWEEP = "sweep-dispatch-pool"
PER_LEVEL = 2  # overdue orders about to climb to L1, to L2 and to L3
POOL = 8  # waiting orders for the sweep to offer
SENT = re.compile(r"Scheduler: Sending due task (?P<name>[\w-]+) ")
SCAN_RESULT = re.compile(r"escalate_overdue_task\[[\w-]+\] succeeded in [\d.]+s: (\d+)")
SWEEP_RESULT = re.compile(
    r"sweep_pool_task\[[\w-]+\] succeeded in [\d.]+s: \{'expired': \d+, 'offered': (\d+)"
)


def worker_waiting(db: psycopg.Connection) -> bool:
    """A task of the worker is inside its transaction, waiting for a row the test holds."""
    row = db.execute(
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s "
        "AND wait_event_type = 'Lock'",
        [WORKER_APP],
    ).fetchone()
    return row is not None


def run_beside_a_waiting_one(
    probe: psycopg.Connection, worker: Spawned, beats: list[Spawned], name: str, result: re.Pattern
) -> list[str]:
    """Once a task waits for a locked row, at least two more sends of it (each beat sent
    two meanwhile) run to the end on the worker's other process while it still waits.
    Returns what those tasks reported."""
    wait_until(lambda: worker_waiting(probe), timeout=20, what=f"a {name} task to wait for the locked rows")
    finished = len(result.findall(worker.output()))
    sent = {b.name: sends(b, name) for b in beats}
    wait_until(
        lambda: (
            len(result.findall(worker.output())) >= finished + 2
            and all(sends(b, name) >= sent[b.name] + 2 for b in beats)
        ),
        timeout=20,
        what=f"two more {name} tasks to run beside the waiting one",
    )
    assert worker_waiting(probe), f"the first {name} task stopped waiting before the others ran"
    return result.findall(worker.output())[finished:]


def sends(beat: Spawned, name: str) -> int:
    return Counter(m["name"] for m in SENT.finditer(beat.output()))[name]


def received(worker: Spawned, task: str) -> int:
    return len(re.findall(rf"Task {re.escape(task)}\[[\w-]+\] received", worker.output()))


def test_two_beats_never_tell_anyone_twice_nor_escalate_or_offer_an_order_twice(
    production_env,  # noqa: F811
    spawn,  # noqa: F811
    broker,  # noqa: F811
    robot,  # noqa: F811
    settings,
):
    started = time.monotonic()
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    install_defaults(NotificationTemplate)  # a flushed database has lost the data migration's rows
    # given South China's supervisor and robot, a team robot, an owner (offline) with a backup
    # reporting to a team lead, and two installers (offline for now)
    ChannelFactory(code="jd", name="京东", tag_prefix="JD")
    region = RegionFactory(
        code="south", name="华南", provinces=["广东省"], wecom_webhook_url=f"{robot.url}/region"
    )
    region.supervisors.add(person("rsup", "supervisor", phone="+8613800000009", email="rsup@example.com"))
    team = Team.objects.create(
        code="aftersales", name="售后", region=region, wecom_webhook_url=f"{robot.url}/team"
    )
    boss = person("boss", "supervisor", phone="+8613800000003", email="boss@example.com")
    backup = AgentFactory(
        user=person("backup", "agent", phone="+8613510002222"), supervisor=boss, capacity=10
    )
    owner = AgentFactory(
        user=person("owner", "agent", phone="+8613510001111"),
        supervisor=boss,
        backup=backup,
        status="offline",
        capacity=10,
    )
    owner.teams.add(team)
    backup.teams.add(team)
    # Pool orders ask for the installers' skill: no sweep ever needs the backup's row.
    SkillFactory(code="install", keywords=["安装"])
    installers = [AgentFactory(status="offline", capacity=10, skills={"install": 3}) for _ in range(2)]

    # and orders: six the owner holds, about to fall overdue, and eight waiting in the pool
    actor = system_actor("test")
    held = [
        r.order.pk
        for r in order_ingest_batch(
            payloads=[order_payload(external_id=f"H{n}") for n in range(3 * PER_LEVEL)], actor=actor
        )
    ]
    for order_id in held:
        order_assign(order_id=order_id, agent_id=owner.pk, actor=actor, force=True)
    climbing = {level: held[(level - 1) * PER_LEVEL : level * PER_LEVEL] for level in (1, 2, 3)}
    pool = [
        r.order.pk
        for r in order_ingest_batch(
            payloads=[order_payload(external_id=f"P{n}", note="需要上门安装") for n in range(POOL)],
            actor=actor,
        )
    ]
    Order.objects.filter(pk__in=held).update(due_at=timezone.now() + timedelta(hours=1), sla_level=0)
    # the rounds those ingests asked for are dropped: only the sweep may offer these orders
    celery_app.control.purge()
    assert not Assignment.objects.filter(order_id__in=pool).exists()

    # and the periodic schedule installed, the scan and sweep last run an hour ago, so that
    # each beat sends them as soon as its scheduler is set up
    call_command("install_schedules", stdout=io.StringIO())
    PeriodicTask.objects.filter(name__in=[SCAN, SWEEP]).update(
        last_run_at=timezone.now() - timedelta(hours=1)
    )

    # when a worker and two beats start
    worker_env = {
        **production_env,
        "DATABASE_URL": production_env["DATABASE_URL"] + f"?application_name={WORKER_APP}",
    }
    worker = spawn("worker", worker_argv(f"twobeats-{os.getpid()}@%h"), env=worker_env)
    beats = [spawn(f"beat{n}", beat_argv(), env=production_env) for n in (1, 2)]
    wait_ready(worker, "ready.")
    for beat in beats:
        wait_until(lambda b=beat: sends(b, SCAN) >= 1, timeout=30, what=f"{beat.name} to send its first scan")
    # and, both beats past start-up (each re-writes the code's schedule into the table as it
    # starts), the scan and sweep are set to every second in django-celery-beat's table
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    for task in PeriodicTask.objects.filter(name__in=[SCAN, SWEEP]):
        task.interval = every_second
        task.save()  # beats reload on PeriodicTasks.last_update
    before = {b.name: sends(b, SCAN) for b in beats}
    for beat in beats:
        wait_until(
            lambda b=beat: sends(b, SCAN) >= before[b.name] + 2,
            timeout=20,
            what=f"{beat.name} to send the scan every second",
        )

    probe = psycopg.connect(conninfo(), autocommit=True)
    try:
        # and the backup's row is locked by another transaction, so that the first scan to find
        # the orders overdue holds them all (its claim) while it waits to hand one over at L2
        with psycopg.connect(conninfo()) as blocker:
            blocker.execute("SELECT id FROM agents_agent WHERE id = %s FOR UPDATE", [backup.pk])
            # and at once the orders fall overdue, each one rung short of its level
            now = timezone.now()
            with transaction.atomic():
                for level, ids in climbing.items():
                    Order.objects.filter(pk__in=ids).update(
                        due_at=now - timedelta(minutes=1),
                        sla_level=level - 1,
                        sla_level_at=now - timedelta(minutes=10) if level > 1 else None,
                    )
            # then scans the two beats sent go on running beside the waiting one, claiming nothing
            scans_beside = run_beside_a_waiting_one(probe, worker, beats, SCAN, SCAN_RESULT)
            assert set(scans_beside) == {"0"}, scans_beside
        # and once the blocker lets go, every held order climbs its rung
        wait_until(
            lambda: (
                dict(Order.objects.filter(pk__in=held).values_list("pk", "sla_level"))
                == {i: level for level, ids in climbing.items() for i in ids}
            ),
            timeout=20,
            what="the held orders to climb",
        )

        # when the pool orders' rows are locked by another transaction (a round that offers
        # them waits there, writing the offers that point at them) and the installers come
        # online, their status event lost: only the sweeps will notice
        with psycopg.connect(conninfo()) as blocker:
            blocker.execute("SELECT id FROM orders_order WHERE id = ANY(%s) FOR UPDATE", [pool])
            Agent.objects.filter(pk__in=[a.pk for a in installers]).update(status="online")
            # then sweeps the two beats sent run beside the one holding the pool, offering nothing
            sweeps_beside = run_beside_a_waiting_one(probe, worker, beats, SWEEP, SWEEP_RESULT)
            assert set(sweeps_beside) == {"0"}, sweeps_beside
        # and once the blocker lets go, every pool order is offered
        wait_until(
            lambda: Assignment.objects.filter(order_id__in=pool, state__in=LIVE_STATES).count() == POOL,
            timeout=20,
            what="the pool orders to be offered",
        )
    finally:
        probe.close()
    # and both beats go on sending both tasks after all was done: a stale level or a pool entry
    # left claimable would be escalated or offered again
    after = {b.name: (sends(b, SCAN), sends(b, SWEEP)) for b in beats}
    for beat in beats:
        wait_until(
            lambda b=beat: all(
                sends(b, name) - after[b.name][i] >= 2 for i, name in enumerate((SCAN, SWEEP))
            ),
            timeout=20,
            what=f"{beat.name} to send the scan and the sweep twice more",
        )
    for beat in beats:
        stop(beat.proc, signal.SIGTERM)

    def drained() -> bool:
        rounds, got = parse_rounds(worker.name, worker.output())
        return not queued() and got == len(rounds)

    wait_until(
        lambda: drained() and not time.sleep(0.5) and drained(), timeout=20, what="the worker to drain"
    )
    wait_until(
        lambda: not Notification.objects.filter(order_id__in=held).exclude(status="sent").exists(),
        timeout=20,
        what="the notifications to be sent",
    )
    log = worker.output()

    # every send of each beat reached the worker and ran
    scans_sent = sum(sends(b, SCAN) for b in beats)
    sweeps_sent = sum(sends(b, SWEEP) for b in beats)
    assert received(worker, "orders.tasks.escalate_overdue_task") == scans_sent
    assert received(worker, "dispatch.tasks.sweep_pool_task") == sweeps_sent
    for sign in ("IntegrityError", "deadlock detected", "Traceback", "ERROR/"):
        assert sign not in log, f"worker: {sign}\n{log[-4000:]}"

    # and each held order was escalated once, one rung, with one audit line and one alert
    assert sum(int(n) for n in SCAN_RESULT.findall(log)) == 3 * PER_LEVEL
    for level, ids in climbing.items():
        for order_id in ids:
            events = OrderEvent.objects.filter(order_id=order_id, kind="notification", actor="sla")
            assert [e.changes["sla_level"] for e in events] == [[level - 1, level]]
            alerts = Alert.objects.filter(order_id=order_id)
            assert [a.level for a in alerts] == [level]

    # and each person or robot was told once per order and level, and sent it once
    expected = {
        1: {
            ("sla_overdue", "in_app", owner.user_id, ""),
            ("sla_overdue", "wecom", None, f"{robot.url}/team"),
        },
        2: {("sla_backup", "in_app", backup.user_id, ""), ("sla_backup", "wecom", None, f"{robot.url}/team")},
        3: {
            ("sla_supervisor", "email", boss.pk, "boss@example.com"),
            ("sla_supervisor", "sms", boss.pk, "+8613800000003"),
            ("sla_supervisor", "in_app", boss.pk, ""),
        },
    }
    for level, ids in climbing.items():
        for order_id in ids:
            rows = Notification.objects.filter(order_id=order_id)
            told = Counter(rows.values_list("template", "channel", "user_id", "target"))
            assert told == dict.fromkeys(expected[level], 1), (level, told)
            assert set(rows.values_list("status", "attempts")) == {("sent", 1)}
    tags = dict(Order.objects.filter(pk__in=held).values_list("pk", "tag"))
    posted = Counter(body["text"]["content"] for _path, body in robot.received)
    for order_id in climbing[1] + climbing[2]:
        assert sum(n for text, n in posted.items() if tags[order_id] in text) == 1, posted
    assert len(robot.received) == 2 * PER_LEVEL  # one post per L1 and L2 order
    assert log.count("To: boss@example.com") == PER_LEVEL  # the console mail backend, L3 only
    assert log.count("SMS to +86138****0003") == PER_LEVEL

    # and the L2 orders went to the backup once: the owner's assignment released, one live
    for order_id in climbing[2]:
        assert sorted(
            Assignment.objects.filter(order_id=order_id).values_list("agent_id", "state")
        ) == sorted([(owner.pk, "released"), (backup.pk, "accepted")])

    # and each pool order got one offer, from the sweeps; no order anywhere has two live ones
    per_pool_order = Counter(Assignment.objects.filter(order_id__in=pool).values_list("order_id", flat=True))
    assert per_pool_order == dict.fromkeys(pool, 1)
    assert sum(int(n) for n in SWEEP_RESULT.findall(log)) == POOL
    assert (
        not Assignment.objects.filter(state__in=LIVE_STATES)
        .values("order_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    assert {a.agent_id for a in Assignment.objects.filter(order_id__in=pool)} <= {a.pk for a in installers}

    per_beat = {b.name: {SCAN: sends(b, SCAN), SWEEP: sends(b, SWEEP)} for b in beats}
    scan_runs = [int(n) for n in SCAN_RESULT.findall(log)]
    sweep_runs = [int(n) for n in SWEEP_RESULT.findall(log)]
    print(
        f"sends per beat {per_beat}; scans run {len(scan_runs)} (escalating {[n for n in scan_runs if n]}), "
        f"sweeps run {len(sweep_runs)} (offering {[n for n in sweep_runs if n]}); {len(scans_beside)} scans and "
        f"{len(sweeps_beside)} sweeps ran beside a waiting one; "
        f"test {time.monotonic() - started:.1f} s"
    )
