"""`overdue_scan_ms_1m`: one pass of the overdue ladder (`orders.escalation.sla_scan`) over a
table of 1,000,000 orders of which 1,000 are overdue, in the database the bench command
prepared.

The orders are written server-side (`INSERT … SELECT generate_series`, indexes and constraints
built after the load, then ANALYZE): most are done or cancelled (no due time), a tenth are open
and not yet due, one in a hundred is long overdue but has finished the ladder (level 3: the
partial index leaves it out), and `overdue` are overdue at level 0, spread evenly through the
heap (the worst case: every one on its own page), each owned by one of 50 agents with a phone
and a team robot. A pass therefore does the full L1 work for every overdue order: claim and
lock the rows, load the owners, agents, teams, regions and contacts, write the levels, one
audit line, one alert and two messages (in-app and WeCom) per order, and commit. Messages are
queued for the broker, never sent inside the timed code.

Each run resets the overdue orders to level 0 and removes the messages and alerts of the run
before (their dedupe keys would otherwise make the next pass skip the inserts), then times
`sla_scan` (`overdue_scan_ms_1m`). Beside it, in the same run: the claim alone (`claim_ms`: the
index scan with its row locks, rolled back: the part of the pass that depends on the size of
the table), a read of the same rows and columns by primary key (`baseline_pk_read_ms`: the
floor for fetching them at all), and the claim with index scans switched off
(`claim_without_index_ms`: what it would cost without the partial index). The EXPLAIN plan
names the indexes the claim reads.

Measured here (2 shared cores, PostgreSQL 15, 1,000,000 orders): the claim ~60 ms against a
~55 ms primary-key read and ~430 ms without the index; the whole pass ~2 s, almost all of it the
fixed L1 work per overdue order (rendering and inserting 2,000 messages, 1,000 alerts and audit
lines), which grows with the overdue orders and not with the table."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

TARGET_MS = 100.0
AGENTS = 50
FINISHED_SHARE = 0.01  # overdue long ago, ladder finished (level 3)
OPEN_SHARE = 0.10  # open, not yet due
CANCELLED_SHARE = 0.005
ROBOT_URL = "http://127.0.0.1:9/bench-robot"  # the discard port: queued, never delivered


def measure_overdue_scan(
    *, total: int = 1_000_000, overdue: int = 1_000, runs: int = 3, log: Callable[[str], None] | None = None
) -> dict:
    """Build the orders, then time `runs` passes of `sla_scan`; figures are medians."""
    from config.celery import app as celery_app
    from dashboards.benchmarks.common import enqueue_for_real

    if runs < 1 or overdue < 1 or total < overdue * 10:
        raise ValueError("runs and overdue must be at least 1, and total at least 10 × overdue.")
    log = log or (lambda _message: None)
    now = timezone.now()
    log(f"Building {total:,} orders, {overdue:,} of them overdue …")
    clock = time.perf_counter()
    world = _world()
    with connection.cursor() as cursor:
        _insert_orders(cursor, world=world, total=total, overdue=overdue, now=now)
        build_seconds = round(time.perf_counter() - clock, 1)
        clock = time.perf_counter()
        # VACUUM cannot run inside a transaction (the test calls this inside one); ANALYZE can.
        cursor.execute(
            "ANALYZE orders_order" if connection.in_atomic_block else "VACUUM (ANALYZE) orders_order"
        )
        cursor.execute(
            "SELECT id FROM orders_order WHERE tag LIKE 'OV-%%' AND sla_level = 0 AND due_at <= %s", [now]
        )
        overdue_ids = [row[0] for row in cursor.fetchall()]
    analyze_seconds = round(time.perf_counter() - clock, 1)
    if len(overdue_ids) != overdue:
        raise RuntimeError(f"{overdue} overdue orders asked for, {len(overdue_ids)} written")
    log(f"  built in {build_seconds} s, analysed in {analyze_seconds} s")

    plan = _plan(now)
    per_run = []
    with enqueue_for_real(celery_app):
        for run in range(1, runs + 1):
            log(f"Run {run} of {runs} …")
            per_run.append(_one_run(run, now=now, overdue_ids=overdue_ids))
        if not connection.in_atomic_block:
            # The passes queued sends nobody will consume: leave the broker as found.
            celery_app.control.purge()

    def median(key: str) -> float:
        return round(statistics.median(r[key] for r in per_run), 2)

    scan = median("scan_ms")
    return {
        "benchmark": "overdue_scan",
        "date": timezone.now().isoformat(timespec="seconds"),
        "overdue_scan_ms_1m": scan,
        "target_ms": TARGET_MS,
        "meets_target": scan < TARGET_MS,
        "claim_ms": median("claim_ms"),
        "baseline_pk_read_ms": median("baseline_ms"),
        "claim_without_index_ms": median("claim_seqscan_ms"),
        "scan_ms_per_overdue_order": round(scan / overdue, 4),
        "plan_indexes": plan["indexes"],
        "plan_index": plan["indexes"][0] if plan["indexes"] else None,
        "plan": plan["text"],
        "runs": per_run,
        "parameters": {
            "total_orders": total,
            "overdue_orders": overdue,
            "finished_ladder_orders": plan["finished"],
            "open_not_due_orders": plan["open_not_due"],
            "agents": AGENTS,
            "runs": runs,
            "build_seconds": build_seconds,
            "analyze_seconds": analyze_seconds,
        },
    }


def _world() -> dict:
    """A channel and customer, a region with a supervisor, a team with a robot, and the
    agents who own the overdue orders (each with a phone, a backup and the supervisor)."""
    from django.contrib.auth.models import Group, User

    from agents.models import Agent, Region, Team, UserContact
    from dashboards.defaults import install_defaults as install_templates
    from dashboards.models import NotificationTemplate
    from orders.models import Channel, Customer

    install_templates(NotificationTemplate)  # the seed's; a no-op where they exist
    channel = Channel.objects.create(code="bench-sla", name="Bench SLA", tag_prefix="OV")
    customer = Customer.objects.create(channel=channel, account_key="bench-sla", name="压测客户")
    supervisor = User.objects.create_user("bench-sla-sup", email="sup@example.com")
    supervisor.groups.add(Group.objects.get_or_create(name="supervisor")[0])
    UserContact.objects.create(user=supervisor, phone="+8613800000000")
    region = Region.objects.create(
        code="bench-south", name="华南", provinces=["广东省"], wecom_webhook_url=ROBOT_URL
    )
    region.supervisors.add(supervisor)
    team = Team.objects.create(code="bench-sla", name="售后", region=region, wecom_webhook_url=ROBOT_URL)
    users = User.objects.bulk_create([User(username=f"bench-sla-{i:03d}") for i in range(AGENTS)])
    UserContact.objects.bulk_create(
        [UserContact(user=u, phone=f"+86135{i:08d}") for i, u in enumerate(users)]
    )
    agents = Agent.objects.bulk_create(
        [
            Agent(user=u, display_name=f"客服{i:03d}", status=Agent.Status.ONLINE, supervisor=supervisor)
            for i, u in enumerate(users)
        ]
    )
    for i, agent in enumerate(agents):
        agent.backup = agents[(i + 1) % len(agents)]
    Agent.objects.bulk_update(agents, ["backup"])
    Agent.teams.through.objects.bulk_create([Agent.teams.through(agent=a, team=team) for a in agents])
    return {"channel": channel.pk, "customer": customer.pk, "owners": [u.pk for u in users]}


_INSERT = """
INSERT INTO orders_order (
    external_id, tag, customer_name, customer_phone, customer_phone_raw, customer_phone_city, is_vip,
    is_returning, address, province, city, district, adcode, items, amount, currency, coupon_code, note,
    category, urgency, kind, device_id, card_fingerprint, source_updated_at, stale_deliveries, stage,
    held_stage, stage_entered_at, due_at, flags, is_flagged, received_at, updated_at, channel_id,
    customer_id, owner_id, risk_score, sla_level, sla_level_at)
SELECT
    'OV' || g, 'OV-' || g, '压测客户', '', '', '', false, false, '广东省深圳市南山区科技园南路' || g || '号',
    '广东省', '深圳市', '南山区', '440305', '[]'::jsonb, 100, 'CNY', '', '',
    CASE WHEN g %% 7 = 0 THEN 'fresh_food' ELSE 'apparel' END, 'normal', 'normal', '', '', at, 0,
    CASE kind WHEN 'overdue' THEN CASE WHEN g %% 2 = 0 THEN 'pending_review' ELSE 'picking' END
              WHEN 'finished' THEN 'shipping'
              WHEN 'open' THEN CASE WHEN g %% 3 = 0 THEN 'pending_review' WHEN g %% 3 = 1 THEN 'picking' ELSE 'shipping' END
              WHEN 'cancelled' THEN 'cancelled' ELSE 'done' END,
    '', at,
    CASE kind WHEN 'overdue' THEN %(now)s - (1 + g %% 120) * interval '1 minute'
              WHEN 'finished' THEN %(now)s - interval '1 day' - (g %% 86400) * interval '1 second'
              WHEN 'open' THEN %(now)s + (1 + g %% 1440) * interval '1 minute' END,
    '[]'::jsonb, false, at, at, %(channel)s, %(customer)s,
    CASE WHEN kind IN ('overdue', 'finished', 'open') THEN (%(owners)s::int[])[1 + g %% %(n_owners)s] END,
    0,
    CASE kind WHEN 'finished' THEN 3 ELSE 0 END,
    CASE kind WHEN 'finished' THEN %(now)s - interval '20 hours' END
FROM (
    SELECT g, r,
           CASE WHEN g %% %(stride)s = 0 AND g / %(stride)s <= %(overdue)s THEN 'overdue'
                WHEN r < %(finished)s THEN 'finished'
                WHEN r < %(open)s THEN 'open'
                WHEN r < %(cancelled)s THEN 'cancelled'
                ELSE 'done' END AS kind,
           CASE WHEN g %% %(stride)s = 0 AND g / %(stride)s <= %(overdue)s
                THEN %(now)s - interval '4 hours' - (g %% 60) * interval '1 minute'
                ELSE %(now)s - (%(total)s - g) * interval '20 seconds' END AS at
    FROM (SELECT g, ((g * 2654435761) %% 4294967296) / 4294967296.0 AS r
          FROM generate_series(1, %(total)s::bigint) g) numbered
) s
"""


def _insert_orders(cursor, *, world: dict, total: int, overdue: int, now: datetime) -> None:
    from dashboards.benchmarks.risk.history import _bulk_load

    if connection.in_atomic_block:
        # Inside a transaction (the test) the fixtures' deferred key checks are still pending,
        # and PostgreSQL will not alter a table that has them: run them now.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    with _bulk_load(cursor, "orders_order"):
        cursor.execute(
            "SET LOCAL work_mem = '256MB'" if connection.in_atomic_block else "SET work_mem = '256MB'"
        )
        cursor.execute(
            _INSERT,
            {
                "now": now,
                "total": total,
                "overdue": overdue,
                "stride": total // overdue,
                "finished": FINISHED_SHARE,
                "open": FINISHED_SHARE + OPEN_SHARE,
                "cancelled": FINISHED_SHARE + OPEN_SHARE + CANCELLED_SHARE,
                "channel": world["channel"],
                "customer": world["customer"],
                "owners": world["owners"],
                "n_owners": len(world["owners"]),
            },
        )
        if cursor.rowcount != total:
            raise RuntimeError(f"{total} orders asked for, {cursor.rowcount} written")
        if not connection.in_atomic_block:
            cursor.execute("RESET work_mem")


def _plan(now: datetime) -> dict:
    """The claim query's plan (FOR UPDATE SKIP LOCKED, as the pass runs it) and what the
    table holds besides the overdue orders."""
    from orders.escalation import ESCALATION_BATCH, escalation_step, overdue_claim

    qs = overdue_claim(now=now, step=escalation_step(), limit=ESCALATION_BATCH)
    with transaction.atomic(), connection.cursor() as cursor:
        sql, params = qs.query.sql_with_params()
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        tree = cursor.fetchone()[0]
        cursor.execute(f"EXPLAIN {sql}", params)
        text = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute(
            "SELECT count(*) FILTER (WHERE sla_level = 3 AND due_at IS NOT NULL), "
            "count(*) FILTER (WHERE due_at > %s) FROM orders_order WHERE tag LIKE 'OV-%%'",
            [now],
        )
        finished, open_not_due = cursor.fetchone()
    if isinstance(tree, str):
        tree = json.loads(tree)
    indexes: list[str] = []

    def walk(node: dict) -> None:
        if "Index Name" in node:
            indexes.append(node["Index Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(tree[0]["Plan"])
    return {"indexes": indexes, "text": text, "finished": finished, "open_not_due": open_not_due}


def _reset(overdue_ids: list[int]) -> None:
    """Back to level 0, without the last run's messages and alerts (the audit lines stay:
    they are append-only)."""
    from dashboards.models import Alert, Notification
    from orders.models import Order

    with transaction.atomic():
        Notification.objects.filter(order_id__in=overdue_ids).delete()
        Alert.objects.filter(order_id__in=overdue_ids).delete()
        Order.objects.filter(pk__in=overdue_ids).update(sla_level=0, sla_level_at=None)


def _one_run(run: int, *, now: datetime, overdue_ids: list[int]) -> dict:
    from orders.escalation import (
        CLAIMED_FIELDS,
        ESCALATION_BATCH,
        escalation_step,
        lock_overdue,
        overdue_orders,
        sla_scan,
    )
    from orders.models import Order

    overdue = len(overdue_ids)
    step = escalation_step()
    _reset(overdue_ids)
    # The reset left dead index entries behind; a live database's autovacuum clears them.
    if connection.vendor == "postgresql" and not connection.in_atomic_block:  # (tests run in one)
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE orders_order")

    # The claim alone: the index scan and its row locks, rolled back.
    with transaction.atomic():
        started = time.perf_counter()
        claimed = lock_overdue(now=now, step=step, limit=ESCALATION_BATCH)
        claim_ms = (time.perf_counter() - started) * 1000
        transaction.set_rollback(True)
    # The floor: the same rows by primary key.
    started = time.perf_counter()
    fetched = list(Order.objects.filter(pk__in=overdue_ids).select_related("owner").only(*CLAIMED_FIELDS))
    baseline_ms = (time.perf_counter() - started) * 1000
    # Without the partial index (nor any index scan): what the claim would read instead.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        started = time.perf_counter()
        unindexed = list(
            overdue_orders(now=now, step=step)
            .select_related("owner")
            .only(*CLAIMED_FIELDS)[:ESCALATION_BATCH]
        )
        seqscan_ms = (time.perf_counter() - started) * 1000
    if not len(claimed) == len(fetched) == len(unindexed) == overdue:
        raise RuntimeError(
            f"run {run}: {len(claimed)}/{len(fetched)}/{len(unindexed)} rows, {overdue} expected"
        )

    # The pass.
    started = time.perf_counter()
    report = sla_scan(now=now)
    scan_ms = (time.perf_counter() - started) * 1000
    if len(report.l1) != overdue or report.notifications != 2 * overdue or report.alerts != overdue:
        raise RuntimeError(
            f"run {run}: {len(report.l1)} escalated, {report.notifications} messages, {report.alerts} alerts "
            f"for {overdue} overdue orders"
        )
    return {
        "run": run,
        "scan_ms": round(scan_ms, 2),
        "claim_ms": round(claim_ms, 2),
        "baseline_ms": round(baseline_ms, 2),
        "claim_seqscan_ms": round(seqscan_ms, 2),
        "escalated": len(report.l1),
        "notifications": report.notifications,
        "alerts": report.alerts,
    }
