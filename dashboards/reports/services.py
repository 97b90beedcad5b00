"""Writes for the reports: the daily rollups (whole local days rewritten in one transaction)
and the hourly backlog snapshot. The rollup SQL is PostgreSQL's; on any other database (the
embedded SQLite default) rollup_portable computes the same rows in Python."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from dashboards.models import BacklogSnapshot, ReportRun
from dashboards.reports import buckets, rollup_portable

# Any 64-bit number of our own: two rollups at once would delete each other's fresh rows.
ROLLUP_LOCK = 0x5041_4944_414E_5250
# An offer is answered within its window (at most 15 minutes); an accepted item is completed
# within weeks. These bound the assignment reads to their offered_at index.
ANSWER_MARGIN = timedelta(days=1)
COMPLETE_MARGIN = timedelta(days=30)
RUNS_KEPT = timedelta(days=30)
OPEN_STAGES = ("pending_review", "picking", "shipping", "quarantined", "exception")


@dataclass(frozen=True)
class RollupResult:
    first_day: date
    last_day: date
    seconds: float


def uses_sql() -> bool:
    """PostgreSQL rolls up in SQL; elsewhere (small embedded data) the rows are computed in Python."""
    return connection.vendor == "postgresql"


def day_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    tz = timezone.get_current_timezone()
    start = datetime(first.year, first.month, first.day, tzinfo=tz)
    after = last + timedelta(days=1)
    return start, datetime(after.year, after.month, after.day, tzinfo=tz)


def rollup_bounds(first: date, last: date) -> dict[str, datetime]:
    """The instants that bound the reads of a rollup of `first`…`last`, for either path."""
    start, end = day_bounds(first, last)
    return {
        "start": start,
        "end": end,
        "answer_from": start - ANSWER_MARGIN,
        "complete_from": start - COMPLETE_MARGIN,
    }


def _day(column: str) -> str:
    return f"(({column}) AT TIME ZONE %(tz)s)::date"


# The first acceptance of each pool entry: no earlier accepted (or completed) assignment.
_FIRST_ACCEPTED = f"""
    SELECT a.entry_id, a.agent_id, a.responded_at, pe.ready_at, pe.kind, pe.order_id, pe.region_id,
           pe.skills, {_day("a.responded_at")} AS day,
           GREATEST(0, EXTRACT(EPOCH FROM a.responded_at - pe.ready_at)) AS secs
    FROM dispatch_assignment a
    JOIN dispatch_poolentry pe ON pe.id = a.entry_id
    WHERE a.state IN ('accepted', 'completed')
      AND a.responded_at >= %(start)s AND a.responded_at < %(end)s
      AND a.offered_at >= %(answer_from)s AND a.offered_at < %(end)s
      AND NOT EXISTS (
        SELECT 1 FROM dispatch_assignment b
        WHERE b.entry_id = a.entry_id AND b.state IN ('accepted', 'completed')
          AND b.responded_at < a.responded_at
      )
"""  # noqa: S608 - our own SQL; values are bound parameters

_ORDER_DAY = f"""
INSERT INTO dashboards_reportorderday (day, province, channel_id, category, ready, accepted, exits, breaches)
SELECT day, province, channel_id, category, SUM(ready), SUM(accepted), SUM(exits), SUM(breaches)
FROM (
    SELECT {_day("pe.ready_at")} AS day, o.province, o.channel_id, o.category,
           COUNT(*) AS ready, 0 AS accepted, 0 AS exits, 0 AS breaches
    FROM dispatch_poolentry pe JOIN orders_order o ON o.id = pe.order_id
    WHERE pe.kind = 'order' AND pe.ready_at >= %(start)s AND pe.ready_at < %(end)s
    GROUP BY 1, 2, 3, 4
    UNION ALL
    SELECT f.day, o.province, o.channel_id, o.category, 0, COUNT(*), 0, 0
    FROM first_accepted f JOIN orders_order o ON o.id = f.order_id
    WHERE f.kind = 'order'
    GROUP BY 1, 2, 3, 4
    UNION ALL
    SELECT {_day("e.at")}, o.province, o.channel_id, o.category, 0, 0, COUNT(*),
           COUNT(*) FILTER (WHERE (e.changes -> 'left' ->> 'overdue')::boolean)
    FROM orders_orderevent e JOIN orders_order o ON o.id = e.order_id
    WHERE e.kind = 'transition' AND e.from_stage <> '' AND e.at >= %(start)s AND e.at < %(end)s
    GROUP BY 1, 2, 3, 4
) parts
GROUP BY day, province, channel_id, category
"""  # noqa: S608 - our own SQL; values are bound parameters

_RESPONSE_DAY = f"""
INSERT INTO dashboards_reportresponseday (day, province, ready, accepted, seconds_sum, histogram)
SELECT day, province, SUM(ready), SUM(accepted), SUM(secs),
       COALESCE(jsonb_object_agg(bucket::text, accepted) FILTER (WHERE bucket IS NOT NULL), '{{}}')
FROM (
    SELECT {_day("pe.ready_at")} AS day, o.province, COUNT(*) AS ready, 0 AS accepted, 0 AS secs,
           NULL::int AS bucket
    FROM dispatch_poolentry pe JOIN orders_order o ON o.id = pe.order_id
    WHERE pe.kind = 'order' AND pe.ready_at >= %(start)s AND pe.ready_at < %(end)s
    GROUP BY 1, 2
    UNION ALL
    SELECT f.day, o.province, 0, COUNT(*), SUM(f.secs), {buckets.sql("f.secs")}
    FROM first_accepted f JOIN orders_order o ON o.id = f.order_id
    WHERE f.kind = 'order'
    GROUP BY 1, 2, 6
) parts
GROUP BY day, province
"""  # noqa: S608 - our own SQL; values are bound parameters

_STAY = "EXTRACT(EPOCH FROM e.at - (e.changes -> 'left' ->> 'entered_at')::timestamptz)"
_STAGE_DAY = f"""
INSERT INTO dashboards_reportstageday (day, province, stage, exits, breaches, stay_sum, histogram)
SELECT day, province, stage, SUM(exits), SUM(breaches), SUM(stay_sum),
       COALESCE(jsonb_object_agg(bucket::text, timed) FILTER (WHERE bucket IS NOT NULL), '{{}}')
FROM (
    SELECT {_day("e.at")} AS day, o.province, e.from_stage AS stage, COUNT(*) AS exits,
           COUNT(*) FILTER (WHERE (e.changes -> 'left' ->> 'overdue')::boolean) AS breaches,
           COALESCE(SUM(GREATEST(0, {_STAY})), 0) AS stay_sum,
           COUNT({_STAY}) AS timed,
           CASE WHEN e.changes ? 'left' THEN {buckets.sql("GREATEST(0, " + _STAY + ")")} END AS bucket
    FROM orders_orderevent e JOIN orders_order o ON o.id = e.order_id
    WHERE e.kind = 'transition' AND e.from_stage <> '' AND e.at >= %(start)s AND e.at < %(end)s
    GROUP BY 1, 2, 3, 8
) parts
GROUP BY day, province, stage
"""  # noqa: S608 - our own SQL; values are bound parameters

_AGENT_DAY = f"""
INSERT INTO dashboards_reportagentday
    (day, agent_id, offers, accepted, rejected, expired, completed, handling_sum)
SELECT day, agent_id, SUM(offers), SUM(accepted), SUM(rejected), SUM(expired), SUM(completed),
       SUM(handling_sum)
FROM (
    SELECT {_day("a.offered_at")} AS day, a.agent_id, COUNT(*) AS offers,
           COUNT(*) FILTER (WHERE a.state IN ('accepted', 'completed')) AS accepted,
           COUNT(*) FILTER (WHERE a.state = 'rejected') AS rejected,
           COUNT(*) FILTER (WHERE a.state = 'expired') AS expired,
           0 AS completed, 0 AS handling_sum
    FROM dispatch_assignment a
    WHERE a.offered_at >= %(start)s AND a.offered_at < %(end)s
    GROUP BY 1, 2
    UNION ALL
    SELECT {_day("a.closed_at")}, a.agent_id, 0, 0, 0, 0, COUNT(*),
           COALESCE(SUM(GREATEST(0, EXTRACT(EPOCH FROM a.closed_at - a.responded_at))), 0)
    FROM dispatch_assignment a
    WHERE a.state = 'completed' AND a.closed_at >= %(start)s AND a.closed_at < %(end)s
      AND a.offered_at >= %(complete_from)s AND a.offered_at < %(end)s
    GROUP BY 1, 2
) parts
GROUP BY day, agent_id
"""  # noqa: S608 - our own SQL; values are bound parameters

_SKILL_DAY = f"""
INSERT INTO dashboards_reportskillday (day, region_id, skill, ready, accepted, wait_sum)
SELECT day, region_id, skill, SUM(ready), SUM(accepted), SUM(wait_sum)
FROM (
    SELECT {_day("pe.ready_at")} AS day, pe.region_id, s.skill, COUNT(*) AS ready, 0 AS accepted,
           0 AS wait_sum
    FROM dispatch_poolentry pe
    CROSS JOIN LATERAL jsonb_array_elements_text(
        CASE WHEN jsonb_typeof(pe.skills) = 'array' THEN pe.skills ELSE '[]'::jsonb END
    ) AS s(skill)
    WHERE pe.kind IN ('order', 'inquiry') AND pe.ready_at >= %(start)s AND pe.ready_at < %(end)s
    GROUP BY 1, 2, 3
    UNION ALL
    SELECT f.day, f.region_id, s.skill, 0, COUNT(*), SUM(f.secs)
    FROM first_accepted f
    CROSS JOIN LATERAL jsonb_array_elements_text(
        CASE WHEN jsonb_typeof(f.skills) = 'array' THEN f.skills ELSE '[]'::jsonb END
    ) AS s(skill)
    WHERE f.kind IN ('order', 'inquiry')
    GROUP BY 1, 2, 3
) parts
GROUP BY day, region_id, skill
"""  # noqa: S608 - our own SQL; values are bound parameters

_EXCEPTION_DAY = f"""
INSERT INTO dashboards_reportexceptionday (day, province, type_id, raised, resolved, resolve_sum)
SELECT day, province, type_id, SUM(raised), SUM(resolved), SUM(resolve_sum)
FROM (
    SELECT {_day("c.raised_at")} AS day, o.province, c.type_id, COUNT(*) AS raised, 0 AS resolved,
           0 AS resolve_sum
    FROM orders_exceptioncase c JOIN orders_order o ON o.id = c.order_id
    WHERE c.raised_at >= %(start)s AND c.raised_at < %(end)s
    GROUP BY 1, 2, 3
    UNION ALL
    SELECT {_day("c.resolved_at")}, o.province, c.type_id, 0, COUNT(*),
           COALESCE(SUM(GREATEST(0, EXTRACT(EPOCH FROM c.resolved_at - c.raised_at))), 0)
    FROM orders_exceptioncase c JOIN orders_order o ON o.id = c.order_id
    WHERE c.status = 'resolved' AND c.resolved_at >= %(start)s AND c.resolved_at < %(end)s
    GROUP BY 1, 2, 3
) parts
GROUP BY day, province, type_id
"""  # noqa: S608 - our own SQL; values are bound parameters

ROLLUP_TABLES = (
    "dashboards_reportorderday",
    "dashboards_reportresponseday",
    "dashboards_reportstageday",
    "dashboards_reportagentday",
    "dashboards_reportskillday",
    "dashboards_reportexceptionday",
)


@transaction.atomic
def reports_rollup(*, first: date, last: date, now: datetime | None = None) -> RollupResult:
    """Rewrite the rollups of the local days `first`…`last` from the order, pool, assignment,
    event and exception tables. Idempotent; on PostgreSQL concurrent runs take turns on an
    advisory lock; SQLite's IMMEDIATE transactions (config.settings) already let one in at a time."""
    if last < first:
        raise ValueError("last day before first day")
    now = now or timezone.now()
    clock = time.perf_counter()
    bounds = rollup_bounds(first, last)
    if uses_sql():
        _rollup_sql(first=first, last=last, bounds=bounds)
    else:
        rollup_portable.rollup_days(first=first, last=last, **bounds)
    seconds = time.perf_counter() - clock
    ReportRun.objects.create(finished_at=now, first_day=first, last_day=last, seconds=round(seconds, 3))
    ReportRun.objects.filter(finished_at__lt=now - RUNS_KEPT).delete()  # one row per 5 minutes
    return RollupResult(first, last, seconds)


def _rollup_sql(*, first: date, last: date, bounds: dict[str, datetime]) -> None:
    """The rollups in PostgreSQL: one INSERT … SELECT per table over a temp table of first
    acceptances."""
    params = {**bounds, "tz": settings.TIME_ZONE}
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ROLLUP_LOCK])
        for table in ROLLUP_TABLES:
            cursor.execute(f"DELETE FROM {table} WHERE day >= %s AND day <= %s", [first, last])  # noqa: S608
        cursor.execute(f"CREATE TEMP TABLE first_accepted ON COMMIT DROP AS {_FIRST_ACCEPTED}", params)
        for statement in (_ORDER_DAY, _RESPONSE_DAY, _STAGE_DAY, _AGENT_DAY, _SKILL_DAY, _EXCEPTION_DAY):
            cursor.execute(statement, params)
        cursor.execute("DROP TABLE first_accepted")


def reports_rollup_recent(*, days: int, now: datetime | None = None) -> RollupResult:
    """The last `days` local days, today included: the beat's refresh (2) and nightly run."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    return reports_rollup(first=today - timedelta(days=max(1, days) - 1), last=today, now=now)


@transaction.atomic
def backlog_snapshot_take(*, now: datetime | None = None) -> int:
    """Count open orders per stage and province at the top of this hour. A second run in the
    same hour changes nothing (the unique key). Reads the open stages through the (stage,
    received_at) index: the cost grows with the backlog, not with all orders."""
    from orders.models import Order

    now = now or timezone.now()
    taken_at = now.replace(minute=0, second=0, microsecond=0)
    rows = (
        Order.objects.filter(stage__in=OPEN_STAGES)
        .values("stage", "province")
        .annotate(n=Count("id"))
        .order_by()
    )
    snapshots = [
        BacklogSnapshot(taken_at=taken_at, stage=r["stage"], province=r["province"], count=r["n"])
        for r in rows
    ]
    BacklogSnapshot.objects.bulk_create(snapshots, ignore_conflicts=True)
    return len(snapshots)
