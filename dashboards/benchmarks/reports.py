"""`manage.py bench reports`: every report page on a year of orders (1,000,000 by default),
read from the rollups, beside a same-run baseline (a bare `SELECT count(*)` over the orders).

In the bench database (`<name>_bench`, re-created and migrated by the command) it writes,
server-side with `INSERT … SELECT generate_series` and the indexes rebuilt after the load:
the orders of the last 365 days with their pool entries, assignments (accepted, completed,
and one in five orders with an earlier rejected or expired offer), three stage changes per
finished order carrying the stage-left facts, exception cases, hourly backlog snapshots and
waiting inquiries; then it runs the rollup over the year (`reports_rollup`, a month at a time
as `rollup_reports` does), times the beat's 2-day refresh, and times each page through
Django's test Client, logged in as a supervisor of one region: the default 7 days and a
whole year. Figures are medians over `--runs`."""

from __future__ import annotations

import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.db import connection, reset_queries
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dashboards.benchmarks.common import git_commit, machine

TARGET_MS = 1000.0
CUSTOMERS = 50_000
AGENTS = 300
TEAMS = 12
INQUIRIES_WAITING = 200
CATEGORIES = ("apparel", "appliance", "fresh", "cold_chain", "home_service", "repair", "books", "electronics")
SKILLS = ("presale", "aftersale", "install", "repair", "cold_chain", "vip", "returns", "billing")
CHANNELS = (("jd", "京东", "JD"), ("taobao", "淘宝", "TB"), ("pdd", "拼多多", "PDD"), ("wx", "微信", "WX"),
            ("api", "API", "API"))  # fmt: skip
# Four regions cover twelve provinces; orders of the other three (of the 15 in bench.PLACES) are
# seen by every supervisor.
REGIONS = (
    ("south", "华南", ["广东省", "福建省", "湖南省"]),
    ("east", "华东", ["上海市", "浙江省", "江苏省"]),
    ("north", "华北", ["北京市", "天津市", "山东省"]),
    ("west", "西部", ["四川省", "重庆市", "陕西省"]),
)
PAGES = ("response", "sla", "backlog", "skills", "exceptions", "agents", "risk")


def run(*, runs: int, history: int, bench_db: str, log: Callable[[str], None]) -> dict:
    from django.db import connection as conn

    result: dict = {
        "benchmark": "reports",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": shlex.join(sys.argv),
        "git_commit": git_commit(),
    }
    clock = time.perf_counter()
    viewer, counts, build = _build(history=history, log=log)
    result["build_seconds"] = build
    result["build_total_seconds"] = round(time.perf_counter() - clock, 1)
    result["rows"] = counts
    result.update(_rollup(log=log))
    result["pages"] = _time_pages(viewer, runs=runs, log=log)
    result["baseline_count_orders_ms"] = _baseline(runs)
    worst = max(max(p["ms_7d"], p["ms_365d"]) for p in result["pages"].values())
    result["worst_page_ms"] = worst
    result["target_ms"] = TARGET_MS
    result["meets_target"] = worst < TARGET_MS
    with conn.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    result["parameters"] = {"runs": runs, "history": history, "bench_db": bench_db, "agents": AGENTS,
                            "customers": CUSTOMERS, "viewer": "supervisor of one region: its 3 provinces and the 3 no region covers, of 15"}  # fmt: skip
    result["machine"] = machine(pg_version)
    return result


# --- The year ------------------------------------------------------------------------------------
def _build(*, history: int, log: Callable[[str], None]):
    from django.contrib.auth.models import Group, User

    from agents.models import Agent, AgentSkill, Region, Skill, Team
    from dashboards.management.commands.bench import PLACES
    from orders.models import Channel, ExceptionType

    seconds: dict[str, float] = {}
    now = timezone.now()
    channels = [Channel.objects.create(code=c, name=n, tag_prefix=p) for c, n, p in CHANNELS]
    regions = []
    for code, name, provinces in REGIONS:
        regions.append(Region.objects.create(code=code, name=name, provinces=provinces))
    supervisor = User.objects.create_user("bench-sup", password=None, email="sup@example.com")
    supervisor.groups.add(Group.objects.get_or_create(name="supervisor")[0])
    regions[0].supervisors.add(supervisor)
    skills = [Skill.objects.get_or_create(code=c, defaults={"name": c})[0] for c in SKILLS]
    teams = [
        Team.objects.create(code=f"t{i}", name=f"组{i}", region=regions[i % len(regions)])
        for i in range(TEAMS)
    ]
    agent_group = Group.objects.get_or_create(name="agent")[0]
    agents = []
    for i in range(AGENTS):
        user = User.objects.create_user(f"bench-agent-{i}", password=None)
        user.groups.add(agent_group)
        agent = Agent.objects.create(user=user, display_name=f"坐席{i:03d}", capacity=3 + i % 6,
                                     status="online", good_rate_30d=0.8 + (i % 20) / 100, quality_weight=0.5)  # fmt: skip
        agent.teams.add(teams[i % TEAMS])
        agent.regions.add(regions[i % len(regions)])
        AgentSkill.objects.create(agent=agent, skill=skills[i % len(skills)], level=1 + i % 5)
        agents.append(agent.pk)
    types = list(ExceptionType.objects.values_list("id", flat=True)) or [
        ExceptionType.objects.create(code="stock", name="缺货").pk
    ]
    provinces = sorted({p[0] for p in PLACES})
    params = {
        "n": history, "now": now, "c": CUSTOMERS, "channels": [c.pk for c in channels],
        "provinces": provinces, "cats": list(CATEGORIES), "skills": list(SKILLS), "agents": agents,
        "types": types, "regions": [r.pk for r in regions],
        "region_of": [next((r.pk for r, (_c, _n, ps) in zip(regions, REGIONS, strict=True) if p in ps), None)
                      for p in provinces],
    }  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("SELECT setseed(0.20261203)")
        step = time.perf_counter()
        cursor.execute(
            """
            INSERT INTO orders_customer (channel_id, account_key, account_id, name, phone, phone_home_city,
                                         is_vip, order_count)
            SELECT (%(channels)s::bigint[])[1 + ci %% 5], 'acct:' || ci, 'u' || ci, '顾客' || ci, '', '', false, 0
            FROM generate_series(1, %(c)s::bigint) ci
            """,
            params,
        )
        cursor.execute("SELECT min(id) FROM orders_customer")
        params["base"] = cursor.fetchone()[0]
        with _bulk_load(cursor, "orders_order"):
            cursor.execute(_ORDERS, params)
        seconds["orders"] = _lap(step, log, f"{history:,} orders")
        step = time.perf_counter()
        with _bulk_load(cursor, "dispatch_poolentry"):
            cursor.execute(_ENTRIES, params)
            cursor.execute(_INQUIRIES, {**params, "waiting": INQUIRIES_WAITING})
        seconds["pool_entries"] = _lap(step, log, "pool entries")
        step = time.perf_counter()
        with _bulk_load(cursor, "dispatch_assignment"):
            cursor.execute(_ASSIGNMENTS, params)
        seconds["assignments"] = _lap(step, log, "assignments")
        step = time.perf_counter()
        with _bulk_load(cursor, "orders_orderevent"):
            cursor.execute(_EVENTS, params)
        seconds["events"] = _lap(step, log, "stage-change events")
        step = time.perf_counter()
        cursor.execute(_EXCEPTIONS, params)
        cursor.execute(_SNAPSHOTS, params)
        seconds["exceptions_and_snapshots"] = _lap(step, log, "exception cases and backlog snapshots")
        step = time.perf_counter()
        cursor.execute("SET synchronous_commit = on")
        for table in ("orders_order", "dispatch_poolentry", "dispatch_assignment", "orders_orderevent",
                      "orders_exceptioncase", "dashboards_backlogsnapshot", "dispatch_inquiry"):  # fmt: skip
            cursor.execute(f"VACUUM (ANALYZE) {table}")
        seconds["vacuum_analyze"] = _lap(step, log, "VACUUM ANALYZE")
        counts = {}
        for table in ("orders_order", "dispatch_poolentry", "dispatch_assignment", "orders_orderevent",
                      "orders_exceptioncase", "dashboards_backlogsnapshot"):  # fmt: skip
            cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - our table names
            counts[table] = cursor.fetchone()[0]
    return supervisor, counts, seconds


@contextmanager
def _bulk_load(cursor, table: str) -> Iterator[None]:
    """Drop the table's plain indexes and foreign keys, load, then build them again from their
    own definitions: one sort per index instead of a million B-tree inserts (as the risk
    bench's loader, which also drops unique constraints)."""
    cursor.execute(
        """
        SELECT i.relname, pg_get_indexdef(x.indexrelid)
        FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
        WHERE x.indrelid = %s::regclass AND NOT x.indisprimary
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
        """,
        [table],
    )
    indexes = cursor.fetchall()
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass "
        "AND contype = 'f'",
        [table],
    )
    foreign_keys = cursor.fetchall()
    for name, _definition in foreign_keys:
        cursor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
    for name, _definition in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    yield
    cursor.execute("SET maintenance_work_mem = '256MB'")
    for _name, definition in indexes:
        cursor.execute(definition)
    for name, definition in foreign_keys:
        cursor.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
    cursor.execute("RESET maintenance_work_mem")


def _lap(step: float, log: Callable[[str], None], what: str) -> float:
    took = round(time.perf_counter() - step, 1)
    log(f"  {what} in {took} s")
    return took


# Orders over the last 365 days; older than 3 days: done (95%) or cancelled, else open.
_ORDERS = """
INSERT INTO orders_order (
    external_id, tag, customer_name, customer_phone, customer_phone_raw, customer_phone_city, is_vip,
    is_returning, address, province, city, district, adcode, items, amount, currency, coupon_code, note,
    category, urgency, kind, device_id, card_fingerprint, source_updated_at, stale_deliveries, stage,
    held_stage, stage_entered_at, due_at, sla_level, flags, is_flagged, risk_score, received_at,
    updated_at, channel_id, customer_id)
SELECT 'R' || g, 'RP-' || g, '顾客', '', '', '', false, false, '', p, '', '', '', '[]'::jsonb, 100, 'CNY',
       '', '', c, 'normal', 'normal', '', '', at, 0, stage, '', entered,
       CASE WHEN stage IN ('done', 'cancelled') THEN NULL ELSE entered + interval '4 hours' END,
       0, '[]'::jsonb, false, 0, at, at, ch, %(base)s + (g %% %(c)s)
FROM (
    SELECT g, at, (%(provinces)s::text[])[1 + floor(random() * array_length(%(provinces)s::text[], 1))::int] AS p,
           (%(cats)s::text[])[1 + floor(random() * array_length(%(cats)s::text[], 1))::int] AS c,
           (%(channels)s::bigint[])[1 + floor(random() * 5)::int] AS ch,
           CASE WHEN at < %(now)s - interval '3 days'
                THEN CASE WHEN g %% 20 = 0 THEN 'cancelled' ELSE 'done' END
                ELSE (ARRAY['pending_review', 'picking', 'shipping', 'exception', 'done'])[1 + g %% 5] END AS stage,
           at + interval '20 hours' AS entered
    FROM (SELECT g, %(now)s - random() * interval '365 days' AS at FROM generate_series(1, %(n)s::bigint) g) s
) o
"""

# One pool entry per order, ready a minute or two after it came in.
_ENTRIES = """
INSERT INTO dispatch_poolentry (
    kind, order_id, state, channel_id, region_id, category, skills, expedited, repeat_repair, is_vip, urgent,
    ready_at, waiting_since, rounds, wait_reason, wait_detail, escalation_level, updated_at)
SELECT 'order', o.id,
       CASE WHEN o.stage IN ('done', 'cancelled') THEN 'closed' WHEN o.stage = 'pending_review' THEN 'waiting'
            ELSE 'assigned' END,
       o.channel_id,
       (%(region_of)s::bigint[])[array_position(%(provinces)s::text[], o.province)],
       o.category, jsonb_build_array((%(skills)s::text[])[1 + o.id %% 8]), false, false, false, false,
       o.received_at + interval '1 minute' + random() * interval '1 minute',
       o.received_at + interval '1 minute', 0, '', '', 0, o.received_at
FROM orders_order o
"""

_INQUIRIES = """
WITH made AS (
    INSERT INTO dispatch_inquiry (channel_id, account_key, customer_name, is_vip, text, skills, state, created_at)
    SELECT (%(channels)s::bigint[])[1 + g %% 5], 'acct:' || g, '顾客' || g, false, '空调不制冷，想咨询维修',
           jsonb_build_array((%(skills)s::text[])[1 + g %% 8]), 'open', %(now)s - g * interval '20 seconds'
    FROM generate_series(1, %(waiting)s) g
    RETURNING id, channel_id, skills, created_at
)
INSERT INTO dispatch_poolentry (
    kind, inquiry_id, state, channel_id, category, skills, expedited, repeat_repair, is_vip, urgent,
    ready_at, waiting_since, rounds, wait_reason, wait_detail, escalation_level, updated_at)
SELECT 'inquiry', id, 'waiting', channel_id, '', skills, false, false, false, false, created_at, created_at,
       0, 'queued', '', 0, created_at
FROM made
"""

# Every order that left pending review was accepted; one in five had an earlier offer that was
# rejected or expired. Finished orders' assignments are completed hours later.
_ASSIGNMENTS = """
INSERT INTO dispatch_assignment (
    entry_id, order_id, agent_id, state, round, policy_kind, breakdown, skill_match, manual, offered_at,
    responded_at, closed_at, reason)
SELECT pe.id, pe.order_id, (%(agents)s::bigint[])[1 + (pe.id * 31 + k) %% array_length(%(agents)s::bigint[], 1)],
       CASE WHEN k = 0 THEN CASE WHEN pe.id %% 10 = 0 THEN 'rejected' ELSE 'expired' END
            WHEN o.stage = 'done' THEN 'completed' WHEN o.stage = 'cancelled' THEN 'cancelled' ELSE 'accepted' END,
       1 + k, 'smart', '{}'::jsonb, true, false, t.offered, t.offered + t.answer,
       CASE WHEN k = 1 AND o.stage IN ('done', 'cancelled') THEN t.offered + t.answer + interval '30 minutes'
                                                              + random() * interval '8 hours' END,
       ''
FROM dispatch_poolentry pe
JOIN orders_order o ON o.id = pe.order_id
CROSS JOIN LATERAL generate_series(CASE WHEN pe.id %% 5 = 0 THEN 0 ELSE 1 END, 1) k
CROSS JOIN LATERAL (
    SELECT pe.ready_at + k * interval '10 minutes' + random() * interval '3 minutes' AS offered,
           CASE WHEN k = 0 THEN interval '10 minutes' ELSE random() * interval '8 minutes' END AS answer
) t
WHERE pe.kind = 'order' AND o.stage <> 'pending_review'
"""

# Finished orders: pending review → picking → shipping → done, each stay timed and due.
_EVENTS = """
INSERT INTO orders_orderevent (order_id, at, kind, actor, from_stage, to_stage, reason, changes)
SELECT o.id, s.left_at, 'transition', 'bench', s.from_stage, s.to_stage, '',
       jsonb_build_object('left', jsonb_build_object(
           'entered_at', to_char(s.entered AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
           'due_at', to_char(s.due AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
           'overdue', s.left_at > s.due))
FROM orders_order o
CROSS JOIN LATERAL (SELECT o.received_at AS t0,
                           o.received_at + random() * interval '3 hours' AS t1) a
CROSS JOIN LATERAL (SELECT a.t1 + random() * interval '8 hours' AS t2) b
CROSS JOIN LATERAL (SELECT b.t2 + random() * interval '30 hours' AS t3) c
CROSS JOIN LATERAL (VALUES
    ('pending_review', 'picking', a.t0, a.t0 + interval '2 hours', a.t1),
    ('picking', 'shipping', a.t1, a.t1 + interval '6 hours', b.t2),
    ('shipping', 'done', b.t2, b.t2 + interval '24 hours', c.t3)
) s(from_stage, to_stage, entered, due, left_at)
WHERE o.stage = 'done'
"""

_EXCEPTIONS = """
INSERT INTO orders_exceptioncase (order_id, type_id, status, held_stage, note, raised_by_name, raised_at,
                                  resolved_by_name, resolved_at, resolution)
SELECT o.id, (%(types)s::bigint[])[1 + o.id %% array_length(%(types)s::bigint[], 1)],
       CASE WHEN o.stage = 'exception' THEN 'open' ELSE 'resolved' END, 'picking', '', 'bench',
       o.received_at + interval '1 hour', CASE WHEN o.stage = 'exception' THEN '' ELSE 'bench' END,
       CASE WHEN o.stage = 'exception' THEN NULL
            ELSE o.received_at + interval '1 hour' + random() * interval '12 hours' END, ''
FROM orders_order o
WHERE o.id %% 33 = 0 OR o.stage = 'exception'
"""

# Hourly snapshots for the year: open orders per stage and province, busier in the day.
_SNAPSHOTS = """
INSERT INTO dashboards_backlogsnapshot (taken_at, stage, province, count)
SELECT h, s, p, (5 + 10 * (1 + sin(extract(hour FROM h) / 24.0 * 2 * pi())) + random() * 5)::int
FROM generate_series(date_trunc('hour', %(now)s - interval '365 days'), %(now)s, interval '1 hour') h
CROSS JOIN unnest(ARRAY['pending_review', 'picking', 'shipping', 'quarantined', 'exception']) s
CROSS JOIN unnest(%(provinces)s::text[]) p
"""


# --- The rollup and the pages ------------------------------------------------------------------
def _rollup(*, log: Callable[[str], None]) -> dict:
    from dashboards.reports.services import reports_rollup, reports_rollup_recent

    today = timezone.localdate()
    first = today - timedelta(days=365)
    clock = time.perf_counter()
    while first <= today:
        last = min(today, first + timedelta(days=30))
        reports_rollup(first=first, last=last)
        first = last + timedelta(days=1)
    full = round(time.perf_counter() - clock, 1)
    log(f"  rollup of 366 days in {full} s")
    with connection.cursor() as cursor:
        for table in ("dashboards_reportorderday", "dashboards_reportresponseday", "dashboards_reportstageday",
                      "dashboards_reportagentday", "dashboards_reportskillday", "dashboards_reportexceptionday"):  # fmt: skip
            cursor.execute(f"VACUUM (ANALYZE) {table}")
    refresh = []
    for _ in range(3):
        clock = time.perf_counter()
        reports_rollup_recent(days=2)
        refresh.append(time.perf_counter() - clock)
    rows = {}
    with connection.cursor() as cursor:
        for table in ("dashboards_reportorderday", "dashboards_reportresponseday", "dashboards_reportstageday",
                      "dashboards_reportagentday", "dashboards_reportskillday", "dashboards_reportexceptionday"):  # fmt: skip
            cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - our table names
            rows[table] = cursor.fetchone()[0]
    log(f"  2-day refresh in {statistics.median(refresh):.2f} s")
    return {
        "rollup_year_s": full,
        "rollup_refresh_2d_s": round(statistics.median(refresh), 2),
        "rollup_rows": rows,
    }


def _time_pages(viewer, *, runs: int, log: Callable[[str], None]) -> dict:
    from django.test import Client

    client = Client(HTTP_ACCEPT_LANGUAGE="zh-hans")
    client.force_login(viewer)
    today = timezone.localdate()
    year = f"?from={today - timedelta(days=364):%Y-%m-%d}&to={today:%Y-%m-%d}"
    monday = today - timedelta(days=today.weekday() + 7)
    paths = {name: (f"/reports/{name}/", f"/reports/{name}/{year}") for name in PAGES}
    paths["weekly"] = ("/reports/weekly/", f"/reports/weekly/?week={monday:%Y-%m-%d}")
    pages = {}
    for name, (default, long) in paths.items():
        entry = {}
        for key, path in (("7d", default), ("365d", long)):
            timings, queries, size = [], 0, 0
            for attempt in range(runs + 1):  # the first request warms the caches
                reset_queries()
                with CaptureQueriesContext(connection) as captured:
                    clock = time.perf_counter()
                    response = client.get(path)
                    took = (time.perf_counter() - clock) * 1000
                if response.status_code != 200:
                    raise RuntimeError(f"{path} answered {response.status_code}")
                if attempt:
                    timings.append(took)
                queries, size = len(captured.captured_queries), len(response.content)
            entry[f"ms_{key}"] = round(statistics.median(timings), 1)
            entry[f"queries_{key}"] = queries
            entry[f"bytes_{key}"] = size
        if name == "weekly":
            entry["note"] = "7d: last week; 365d: the same week again (a week is its range)"
        pages[name] = entry
        log(f"  /reports/{name}/: {entry['ms_7d']} ms (7 days), {entry['ms_365d']} ms (365 days)")
    return pages


def _baseline(runs: int) -> float:
    timings = []
    with connection.cursor() as cursor:
        for _ in range(runs + 1):
            clock = time.perf_counter()
            cursor.execute("SELECT count(*) FROM orders_order")
            cursor.fetchone()
            timings.append((time.perf_counter() - clock) * 1000)
    return round(statistics.median(timings[1:]), 1)


def table(result: dict) -> str:
    lines = [f"{'page':<14}{'7 days ms':>11}{'queries':>9}{'365 days ms':>13}{'queries':>9}"]
    for name, p in result["pages"].items():
        lines.append(
            f"{name:<14}{p['ms_7d']:>11.1f}{p['queries_7d']:>9}{p['ms_365d']:>13.1f}{p['queries_365d']:>9}"
        )
    lines += [
        f"{'baseline: count(*) over orders_order':<46}{result['baseline_count_orders_ms']:>9.1f} ms",
        f"{'worst page':<46}{result['worst_page_ms']:>9.1f} ms   (target < {result['target_ms']:.0f})",
        f"{'rollup, a year (month by month)':<46}{result['rollup_year_s']:>9.1f} s",
        f"{'rollup, the beat refresh of 2 days':<46}{result['rollup_refresh_2d_s']:>9.2f} s",
        f"{'rows':<14}{result['rows']}",
        f"{'rollup rows':<14}{result['rollup_rows']}",
        f"{'build (s)':<14}{result['build_seconds']}",
    ]
    return "\n".join(lines) + "\n"
