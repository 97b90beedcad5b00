"""The daily report rollups computed with the ORM and Python, for databases other than
PostgreSQL: the embedded SQLite default (`make run`) and its demo. It writes the same rows
as the SQL in services.py, but reads every row of the days into memory — fine for a few
thousand rows, not for production volumes, which run on PostgreSQL."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Exists, OuterRef

from dashboards.models import (
    ReportAgentDay,
    ReportExceptionDay,
    ReportOrderDay,
    ReportResponseDay,
    ReportSkillDay,
    ReportStageDay,
)
from dashboards.reports import buckets

ROLLUP_MODELS = (
    ReportOrderDay,
    ReportResponseDay,
    ReportStageDay,
    ReportAgentDay,
    ReportSkillDay,
    ReportExceptionDay,
)
_MICROSECOND = timedelta(microseconds=1)
ACCEPTED = ("accepted", "completed")  # the SQL's `state IN ('accepted', 'completed')`


def rollup_days(
    *, first: date, last: date, start: datetime, end: datetime, answer_from: datetime, complete_from: datetime
) -> None:
    """Rewrite the rollup rows of the local days `first`…`last` ([start, end)); the caller
    holds the transaction, and passes the same bounds as the SQL's parameters. Durations are
    summed as whole microseconds and turned into seconds once, so the floats equal
    PostgreSQL's exact numeric sums cast to double precision."""
    day_of = _local_day(ZoneInfo(settings.TIME_ZONE))
    firsts = list(_first_accepted(start=start, end=end, answer_from=answer_from, day_of=day_of))
    ready = list(_ready_entries(start=start, end=end))
    exits = list(_stage_exits(start=start, end=end))

    for model in ROLLUP_MODELS:
        model.objects.filter(day__gte=first, day__lte=last).delete()
    ReportOrderDay.objects.bulk_create(_order_days(ready, firsts, exits, day_of))
    ReportResponseDay.objects.bulk_create(_response_days(ready, firsts, day_of))
    ReportStageDay.objects.bulk_create(_stage_days(exits, day_of))
    ReportAgentDay.objects.bulk_create(
        _agent_days(start=start, end=end, complete_from=complete_from, day_of=day_of)
    )
    ReportSkillDay.objects.bulk_create(_skill_days(ready, firsts, day_of))
    ReportExceptionDay.objects.bulk_create(_exception_days(start=start, end=end, day_of=day_of))


# --- Reads ----------------------------------------------------------------------------------
def _local_day(tz: ZoneInfo):
    return lambda at: at.astimezone(tz).date()


def _micros(later: datetime | None, earlier: datetime | None) -> int:
    """GREATEST(0, EXTRACT(EPOCH FROM later - earlier)) in microseconds; NULL counts as 0
    (PostgreSQL's GREATEST ignores NULLs)."""
    if later is None or earlier is None:
        return 0
    return max(0, (later - earlier) // _MICROSECOND)


def _seconds(micros: int) -> float:
    return micros / 1_000_000  # correctly rounded, as numeric → double precision


def _first_accepted(*, start, end, answer_from, day_of) -> Iterable[dict]:
    """The first acceptance of each pool entry: no earlier accepted (or completed) one."""
    from dispatch.models import Assignment

    earlier = Assignment.objects.filter(
        entry_id=OuterRef("entry_id"), state__in=ACCEPTED, responded_at__lt=OuterRef("responded_at")
    )
    rows = (
        Assignment.objects.filter(
            state__in=ACCEPTED,
            responded_at__gte=start,
            responded_at__lt=end,
            offered_at__gte=answer_from,
            offered_at__lt=end,
        )
        .filter(~Exists(earlier))
        .values(
            "responded_at",
            "entry__ready_at",
            "entry__kind",
            "entry__order_id",
            "entry__region_id",
            "entry__skills",
            "entry__order__province",
            "entry__order__channel_id",
            "entry__order__category",
        )
    )
    for r in rows.iterator(chunk_size=2000):
        yield {
            "day": day_of(r["responded_at"]),
            "micros": _micros(r["responded_at"], r["entry__ready_at"]),
            "kind": r["entry__kind"],
            "order_id": r["entry__order_id"],
            "region_id": r["entry__region_id"],
            "skills": r["entry__skills"],
            "province": r["entry__order__province"],
            "channel_id": r["entry__order__channel_id"],
            "category": r["entry__order__category"],
        }


def _ready_entries(*, start, end) -> Iterable[dict]:
    from dispatch.models import PoolEntry

    rows = PoolEntry.objects.filter(
        kind__in=("order", "inquiry"), ready_at__gte=start, ready_at__lt=end
    ).values(
        "ready_at",
        "kind",
        "order_id",
        "region_id",
        "skills",
        "order__province",
        "order__channel_id",
        "order__category",
    )
    yield from rows.iterator(chunk_size=2000)


def _stage_exits(*, start, end) -> Iterable[dict]:
    from orders.models import OrderEvent

    rows = (
        OrderEvent.objects.filter(kind="transition", at__gte=start, at__lt=end)
        .exclude(from_stage="")
        .values("at", "from_stage", "changes", "order__province", "order__channel_id", "order__category")
    )
    yield from rows.iterator(chunk_size=2000)


# --- The stage-left facts, read as the SQL reads them ---------------------------------------
def _has_key(changes: object, key: str) -> bool:
    """jsonb `?`: a top-level key, or a string element of an array, or the string itself."""
    if isinstance(changes, dict):
        return key in changes
    if isinstance(changes, list):
        return key in [x for x in changes if isinstance(x, str)]
    return changes == key


def _left(changes: object) -> dict:
    left = changes.get("left") if isinstance(changes, dict) else None
    return left if isinstance(left, dict) else {}


def _overdue(changes: object) -> bool:
    """`(changes -> 'left' ->> 'overdue')::boolean`: NULL counts as not late; a value
    PostgreSQL would refuse is refused here too."""
    value = _left(changes).get("overdue")
    if value is None:
        return False
    text = (value if isinstance(value, str) else json.dumps(value)).strip().lower()
    if text == "1" or text == "on" or (text and ("true".startswith(text) or "yes".startswith(text))):
        return True
    if text == "0" or text in ("of", "off") or (text and ("false".startswith(text) or "no".startswith(text))):
        return False
    raise ValueError(f"invalid input syntax for type boolean: {text!r}")


def _stay_micros(at: datetime, changes: object) -> int | None:
    """Seconds in the stage left (as microseconds, not below 0), or None when not recorded."""
    entered = _left(changes).get("entered_at")
    if entered is None:
        return None
    entered_at = datetime.fromisoformat(json.dumps(entered) if not isinstance(entered, str) else entered)
    if entered_at.tzinfo is None:
        entered_at = entered_at.replace(tzinfo=UTC)  # the connection's zone is UTC
    return _micros(at, entered_at)


def _bucket(micros: int) -> int:
    return buckets.bucket_as_sql(micros)


# --- The rows ---------------------------------------------------------------------------------
def _order_days(ready, firsts, exits, day_of) -> list[ReportOrderDay]:
    sums: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for e in ready:
        if e["kind"] == "order" and e["order_id"] is not None:
            key = (day_of(e["ready_at"]), e["order__province"], e["order__channel_id"], e["order__category"])
            sums[key][0] += 1
    for f in firsts:
        if f["kind"] == "order" and f["order_id"] is not None:
            sums[(f["day"], f["province"], f["channel_id"], f["category"])][1] += 1
    for x in exits:
        key = (day_of(x["at"]), x["order__province"], x["order__channel_id"], x["order__category"])
        sums[key][2] += 1
        sums[key][3] += _overdue(x["changes"])
    return [
        ReportOrderDay(
            day=d,
            province=p,
            channel_id=c,
            category=cat,
            ready=n[0],
            accepted=n[1],
            exits=n[2],
            breaches=n[3],
        )
        for (d, p, c, cat), n in sorted(sums.items(), key=_sort_key)
    ]


def _response_days(ready, firsts, day_of) -> list[ReportResponseDay]:
    sums: dict[tuple, dict] = defaultdict(lambda: {"ready": 0, "accepted": 0, "micros": 0, "histogram": {}})
    for e in ready:
        if e["kind"] == "order" and e["order_id"] is not None:
            sums[(day_of(e["ready_at"]), e["order__province"])]["ready"] += 1
    for f in firsts:
        if f["kind"] == "order" and f["order_id"] is not None:
            row = sums[(f["day"], f["province"])]
            row["accepted"] += 1
            row["micros"] += f["micros"]
            b = str(_bucket(f["micros"]))
            row["histogram"][b] = row["histogram"].get(b, 0) + 1
    return [
        ReportResponseDay(
            day=d,
            province=p,
            ready=r["ready"],
            accepted=r["accepted"],
            seconds_sum=_seconds(r["micros"]),
            histogram=r["histogram"],
        )
        for (d, p), r in sorted(sums.items(), key=_sort_key)
    ]


def _stage_days(exits, day_of) -> list[ReportStageDay]:
    sums: dict[tuple, dict] = defaultdict(lambda: {"exits": 0, "breaches": 0, "micros": 0, "histogram": {}})
    for x in exits:
        row = sums[(day_of(x["at"]), x["order__province"], x["from_stage"])]
        row["exits"] += 1
        row["breaches"] += _overdue(x["changes"])
        stay = _stay_micros(x["at"], x["changes"])
        row["micros"] += stay or 0
        if _has_key(x["changes"], "left"):
            # An exit with "left" but no entered_at lands in bucket 0 and counts 0, as in SQL.
            b = str(_bucket(stay or 0))
            row["histogram"][b] = row["histogram"].get(b, 0) + (stay is not None)
    return [
        ReportStageDay(
            day=d,
            province=p,
            stage=s,
            exits=r["exits"],
            breaches=r["breaches"],
            stay_sum=_seconds(r["micros"]),
            histogram=r["histogram"],
        )
        for (d, p, s), r in sorted(sums.items(), key=_sort_key)
    ]


def _agent_days(*, start, end, complete_from, day_of) -> list[ReportAgentDay]:
    from dispatch.models import Assignment

    sums: dict[tuple, dict] = defaultdict(lambda: defaultdict(int))
    offers = Assignment.objects.filter(offered_at__gte=start, offered_at__lt=end).values_list(
        "offered_at", "agent_id", "state"
    )
    for offered_at, agent_id, state in offers.iterator(chunk_size=2000):
        row = sums[(day_of(offered_at), agent_id)]
        row["offers"] += 1
        row["accepted"] += state in ACCEPTED
        row["rejected"] += state == "rejected"
        row["expired"] += state == "expired"
    done = Assignment.objects.filter(
        state="completed",
        closed_at__gte=start,
        closed_at__lt=end,
        offered_at__gte=complete_from,
        offered_at__lt=end,
    ).values_list("closed_at", "responded_at", "agent_id")
    for closed_at, responded_at, agent_id in done.iterator(chunk_size=2000):
        row = sums[(day_of(closed_at), agent_id)]
        row["completed"] += 1
        row["micros"] += _micros(closed_at, responded_at)
    return [
        ReportAgentDay(
            day=d,
            agent_id=a,
            offers=r["offers"],
            accepted=r["accepted"],
            rejected=r["rejected"],
            expired=r["expired"],
            completed=r["completed"],
            handling_sum=_seconds(r["micros"]),
        )
        for (d, a), r in sorted(sums.items(), key=_sort_key)
    ]


def _skill_texts(skills: object) -> list[str]:
    """jsonb_array_elements_text of the skills when they are an array, else none."""
    if not isinstance(skills, list):
        return []
    return [s if isinstance(s, str) else json.dumps(s, ensure_ascii=False) for s in skills]


def _skill_days(ready, firsts, day_of) -> list[ReportSkillDay]:
    sums: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
    for e in ready:
        for skill in _skill_texts(e["skills"]):
            sums[(day_of(e["ready_at"]), e["region_id"], skill)][0] += 1
    for f in firsts:
        if f["kind"] in ("order", "inquiry"):
            for skill in _skill_texts(f["skills"]):
                row = sums[(f["day"], f["region_id"], skill)]
                row[1] += 1
                row[2] += f["micros"]
    return [
        ReportSkillDay(day=d, region_id=r, skill=s, ready=n[0], accepted=n[1], wait_sum=_seconds(n[2]))
        for (d, r, s), n in sorted(sums.items(), key=_sort_key)
    ]


def _exception_days(*, start, end, day_of) -> list[ReportExceptionDay]:
    from orders.models import ExceptionCase

    sums: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
    raised = ExceptionCase.objects.filter(raised_at__gte=start, raised_at__lt=end).values_list(
        "raised_at", "order__province", "type_id"
    )
    for raised_at, province, type_id in raised.iterator(chunk_size=2000):
        sums[(day_of(raised_at), province, type_id)][0] += 1
    resolved = ExceptionCase.objects.filter(
        status="resolved", resolved_at__gte=start, resolved_at__lt=end
    ).values_list("resolved_at", "raised_at", "order__province", "type_id")
    for resolved_at, raised_at, province, type_id in resolved.iterator(chunk_size=2000):
        row = sums[(day_of(resolved_at), province, type_id)]
        row[1] += 1
        row[2] += _micros(resolved_at, raised_at)
    return [
        ReportExceptionDay(
            day=d, province=p, type_id=t, raised=n[0], resolved=n[1], resolve_sum=_seconds(n[2])
        )
        for (d, p, t), n in sorted(sums.items(), key=_sort_key)
    ]


def _sort_key(item: tuple) -> tuple:
    return tuple((v is None, v if v is not None else 0) for v in item[0])
