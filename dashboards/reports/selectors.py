"""Reads for the reports: who may see them and what of them (the scope), the date range, and
one builder per report that turns rollup rows (and a few indexed live counts) into tables
with their charts. Nothing here reads the order tables in full."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db import connection
from django.db.models import Count, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from dashboards.models import (
    BacklogSnapshot,
    ReportAgentDay,
    ReportExceptionDay,
    ReportOrderDay,
    ReportResponseDay,
    ReportRun,
    ReportSkillDay,
    ReportStageDay,
)
from dashboards.reports import buckets
from orders.actors import roles_of
from orders.models import STAGE_LABELS
from orders.states import Role, Stage

REPORT_ROLES = frozenset({Role.ADMIN, Role.SUPERVISOR})
DEFAULT_DAYS = 7
MAX_DAYS = 400  # a year and a bit: the rollups answer it; more is a data export, not a page
MAX_RISK_MONTHS = 12
WAITING_INQUIRIES_SHOWN = 100
OPEN_STAGES = (Stage.PENDING_REVIEW, Stage.PICKING, Stage.SHIPPING, Stage.QUARANTINED, Stage.EXCEPTION)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# --- Who sees what ---------------------------------------------------------------------------
def may_see_reports(user) -> bool:
    return user is not None and user.is_authenticated and bool(roles_of(user) & REPORT_ROLES)


@dataclass(frozen=True)
class ReportScope:
    """Everything, or a supervisor's regions: orders by province (their regions' provinces and
    those no region covers, as orders.selectors.order_visible_to), pool entries, agents and
    teams by region (theirs and none)."""

    sees_all: bool
    provinces: frozenset[str] = frozenset()
    covered: frozenset[str] = frozenset()
    region_ids: tuple[int, ...] = ()

    def by_province(self, name: str = "province") -> Q:
        if self.sees_all:
            return Q()
        return Q(**{f"{name}__in": self.provinces}) | ~Q(**{f"{name}__in": self.covered})

    def by_region(self, name: str = "region") -> Q:
        if self.sees_all:
            return Q()
        return Q(**{f"{name}__in": self.region_ids}) | Q(**{f"{name}__isnull": True})

    @property
    def key(self) -> str:
        return "all" if self.sees_all else ",".join(map(str, self.region_ids))


def report_scope(user) -> ReportScope:
    from agents.models import Region

    roles = roles_of(user)
    if Role.ADMIN in roles:
        return ReportScope(sees_all=True)
    mine = set(user.supervised_regions.values_list("id", flat=True))
    return scope_for_regions(mine, Region.objects.values_list("id", "provinces"))


def scope_for_regions(mine: set[int], regions) -> ReportScope:
    """The scope of a supervisor of `mine` among `regions` ((id, provinces) pairs); a
    supervisor of no region oversees them all."""
    if not mine:
        return ReportScope(sees_all=True)
    provinces: set[str] = set()
    covered: set[str] = set()
    for region_id, names in regions:
        names = {str(p).strip() for p in names or []}
        covered |= names
        if region_id in mine:
            provinces |= names
    return ReportScope(
        sees_all=False,
        provinces=frozenset(provinces),
        covered=frozenset(covered),
        region_ids=tuple(sorted(mine)),
    )


# --- The date range --------------------------------------------------------------------------
class ReportInputError(ValueError):
    """A date or parameter people typed wrong; the message says what and how to fix it."""


@dataclass(frozen=True)
class DateRange:
    first: date
    last: date

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]

    @property
    def bounds(self) -> tuple[datetime, datetime]:
        from dashboards.reports.services import day_bounds

        return day_bounds(self.first, self.last)

    def as_params(self) -> dict[str, str]:
        return {"from": self.first.isoformat(), "to": self.last.isoformat()}


def _parse_day(raw: str, name: str) -> date:
    raw = raw.strip()
    try:
        if not _DATE.match(raw):
            raise ValueError
        return date.fromisoformat(raw)
    except ValueError:
        raise ReportInputError(
            _("“%(value)s” is not a date for “%(name)s”: write it as YYYY-MM-DD, e.g. 2026-11-30.")
            % {"value": raw, "name": name}
        ) from None


def parse_range(params, *, today: date | None = None) -> DateRange:
    """?from=YYYY-MM-DD&to=YYYY-MM-DD; either may be left out (the last 7 days, to today)."""
    today = today or timezone.localdate()
    raw_from, raw_to = params.get("from", "").strip(), params.get("to", "").strip()
    last = _parse_day(raw_to, "to") if raw_to else today
    first = _parse_day(raw_from, "from") if raw_from else last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise ReportInputError(
            _("The range starts (%(first)s) after it ends (%(last)s): swap the two dates.")
            % {"first": first.isoformat(), "last": last.isoformat()}
        )
    if (last - first).days + 1 > MAX_DAYS:
        raise ReportInputError(
            _("The range covers %(days)d days; a report covers at most %(max)d.")
            % {"days": (last - first).days + 1, "max": MAX_DAYS}
        )
    return DateRange(first, last)


# --- What a report is ------------------------------------------------------------------------
@dataclass
class Table:
    """One table of a report, as shown and as exported: `rows` hold plain values (numbers,
    text, dates); `chart` is what static/js/reports.js draws, or None."""

    name: str
    title: str
    columns: list[str]
    rows: list[list]
    chart: dict | None = None
    note: str = ""
    numeric: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.numeric:
            sample = self.rows[0] if self.rows else []
            self.numeric = [isinstance(v, int | float) and not isinstance(v, bool) for v in sample]

    @property
    def header(self) -> list[tuple[str, bool]]:
        return list(zip(self.columns, self._flags(), strict=True))

    @property
    def cells(self) -> list[list[tuple[object, bool]]]:
        flags = self._flags()
        return [list(zip(row, flags, strict=True)) for row in self.rows]

    def _flags(self) -> list[bool]:
        return [*self.numeric, *[False] * (len(self.columns) - len(self.numeric))][: len(self.columns)]


def _chart(kind: str, x: list, series: list[tuple[str, list]], *, y: str = "", y2: str = "") -> dict:
    """A chart spec: one x axis, series by name; a series named with a leading "·" goes on the
    right-hand axis (rates beside counts)."""
    return {
        "kind": kind,
        "x": [str(v) for v in x],
        "y": y,
        "y2": y2,
        "series": [
            {"name": name.lstrip("·"), "data": data, "right": name.startswith("·")} for name, data in series
        ],
    }


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60, 1)


def _rate(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def _stage_label(stage: str) -> str:
    try:
        return str(STAGE_LABELS[Stage(stage)])
    except ValueError:
        return stage


def last_rollup() -> ReportRun | None:
    return ReportRun.objects.order_by("-finished_at").first()


# --- 1. First-response time --------------------------------------------------------------------
def response_report(scope: ReportScope, rng: DateRange) -> list[Table]:
    per_day: dict[date, dict] = {d: {"ready": 0, "accepted": 0, "sum": 0.0, "hist": {}} for d in rng.days}
    rows = ReportResponseDay.objects.filter(scope.by_province(), day__gte=rng.first, day__lte=rng.last)
    for day, ready, accepted, seconds, histogram in rows.values_list(
        "day", "ready", "accepted", "seconds_sum", "histogram"
    ):
        d = per_day[day]
        d["ready"] += ready
        d["accepted"] += accepted
        d["sum"] += seconds
        buckets.merge([histogram], into=d["hist"])
    table_rows = []
    for day, d in per_day.items():
        mean = d["sum"] / d["accepted"] if d["accepted"] else None
        table_rows.append(
            [
                day,
                d["ready"],
                d["accepted"],
                _minutes(mean),
                _minutes(buckets.percentile(d["hist"], 0.5)),
                _minutes(buckets.percentile(d["hist"], 0.9)),
            ]
        )
    x = [r[0] for r in table_rows]
    chart = _chart(
        "line",
        x,
        [
            (_("Mean (min)"), [r[3] for r in table_rows]),
            (_("p50 (min)"), [r[4] for r in table_rows]),
            (_("p90 (min)"), [r[5] for r in table_rows]),
            ("·" + _("Accepted"), [r[2] for r in table_rows]),
        ],
        y=_("minutes"),
        y2=_("orders"),
    )
    return [
        Table(
            name="response",
            title=_("First-response time per day"),
            columns=[_("Day"), _("Ready"), _("Accepted"), _("Mean (min)"), _("p50 (min)"), _("p90 (min)")],
            rows=table_rows,
            chart=chart,
            note=_(
                "From ready for dispatch to the first acceptance, counted on the day of the acceptance; "
                "percentiles are read from log-scale buckets (within about 12%)."
            ),
            numeric=[False, True, True, True, True, True],
        )
    ]


# --- 2. SLA breaches ------------------------------------------------------------------------------
def sla_report(scope: ReportScope, rng: DateRange, *, now: datetime | None = None) -> list[Table]:
    from orders.models import Channel, Order

    now = now or timezone.now()
    start, end = rng.bounds
    base = ReportOrderDay.objects.filter(scope.by_province(), day__gte=rng.first, day__lte=rng.last)
    # Still in a stage past its due time (no exit yet): read live, on the due_at index.
    late = Order.objects.filter(
        scope.by_province(), stage__in=OPEN_STAGES, due_at__gte=start, due_at__lt=min(end, now)
    )
    names = dict(Channel.objects.values_list("id", "name"))
    tables = []
    for key, title, label in (
        ("category", _("SLA breaches by category"), _("Category")),
        ("channel_id", _("SLA breaches by channel"), _("Channel")),
    ):
        sums = {
            r[key]: r
            for r in base.values(key).annotate(exits=Sum("exits"), breaches=Sum("breaches")).order_by()
        }
        still = dict(late.values_list(key).annotate(n=Count("id")).order_by())
        rows = []
        for k in sorted(set(sums) | set(still), key=lambda k: str(k)):
            exits = sums.get(k, {}).get("exits") or 0
            breaches = sums.get(k, {}).get("breaches") or 0
            shown = names.get(k, k) if key == "channel_id" else (k or _("(none)"))
            rows.append([shown, exits, breaches, _rate(breaches, exits), still.get(k, 0)])
        rows.sort(key=lambda r: (-(r[2] + r[4]), str(r[0])))
        tables.append(
            Table(
                name=key.removesuffix("_id"),
                title=title,
                columns=[label, _("Stage exits"), _("Left late"), _("Breach rate (%)"), _("Still overdue")],
                rows=rows,
                chart=_chart(
                    "bar",
                    [r[0] for r in rows],
                    [
                        (_("Left late"), [r[2] for r in rows]),
                        (_("Still overdue"), [r[4] for r in rows]),
                        ("·" + _("Breach rate (%)"), [r[3] for r in rows]),
                    ],
                    y=_("orders"),
                    y2="%",
                ),
                numeric=[False, True, True, True, True],
            )
        )
    by_stage = (
        ReportStageDay.objects.filter(scope.by_province(), day__gte=rng.first, day__lte=rng.last)
        .values("stage")
        .annotate(exits=Sum("exits"), breaches=Sum("breaches"))
        .order_by("stage")
    )
    rows = [
        [_stage_label(r["stage"]), r["exits"], r["breaches"], _rate(r["breaches"], r["exits"])]
        for r in by_stage
    ]
    tables.append(
        Table(
            name="stage",
            title=_("SLA breaches by stage left"),
            columns=[_("Stage"), _("Stage exits"), _("Left late"), _("Breach rate (%)")],
            rows=rows,
            numeric=[False, True, True, True],
            note=_(
                "A stay is a breach when the order left the stage after its due time; orders still in "
                "a stage past a due time inside the range are counted as still overdue."
            ),
        )
    )
    return tables


# --- 3. Backlog by stage ------------------------------------------------------------------------
SNAPSHOTS_CHARTED = 31 * 24  # beyond a month of hourly points the chart shows daily means

_BACKLOG = """
WITH per AS ({inner}),
     moments AS (SELECT DISTINCT taken_at FROM per)
SELECT 'hour', extract(hour FROM taken_at AT TIME ZONE %s)::int::text, stage, SUM(n) FROM per GROUP BY 2, 3
UNION ALL
SELECT 'hours', extract(hour FROM taken_at AT TIME ZONE %s)::int::text, '', COUNT(*) FROM moments GROUP BY 2
UNION ALL
SELECT 'point', to_char(taken_at AT TIME ZONE %s, {point}), stage, SUM(n) FROM per GROUP BY 2, 3
UNION ALL
SELECT 'points', to_char(taken_at AT TIME ZONE %s, {point}), '', COUNT(*) FROM moments GROUP BY 2
"""


def _backlog_rows(inner, *, hourly: bool) -> list[tuple[str, str, str, int]]:
    """_BACKLOG's rows, grouped in Python: for the embedded SQLite default, whose snapshots
    are a few per hour of a small demo (SQLite has no AT TIME ZONE)."""
    point = "%Y-%m-%d %H:%M" if hourly else "%Y-%m-%d"
    sums: dict[tuple[str, str, str], int] = defaultdict(int)
    moments: dict[str, dict[str, set]] = {"hours": defaultdict(set), "points": defaultdict(set)}
    for taken_at, stage, n in inner:
        local = timezone.localtime(taken_at)
        keys = {"hour": str(local.hour), "point": local.strftime(point)}
        for kind, key in keys.items():
            sums[(kind, key, stage)] += n
            moments[kind + "s"][key].add(taken_at)
    rows = [(kind, key, stage, n) for (kind, key, stage), n in sums.items()]
    rows += [(kind, key, "", len(at)) for kind, by_key in moments.items() for key, at in by_key.items()]
    return rows


def backlog_report(scope: ReportScope, rng: DateRange) -> list[Table]:
    """Aggregated in the database in one pass over the range's snapshots (in Python outside
    PostgreSQL): the mean per stage at each hour of the day (the table), and per snapshot — or
    per day beyond a month, as daily means — for the chart."""
    start, end = rng.bounds
    stages = [s.value for s in OPEN_STAGES]
    inner = (
        BacklogSnapshot.objects.filter(scope.by_province(), taken_at__gte=start, taken_at__lt=end)
        .values_list("taken_at", "stage")
        .annotate(n=Sum("count"))
        .order_by()
    )
    inner_sql, inner_params = inner.query.sql_with_params()
    hourly = (rng.last - rng.first).days + 1 <= SNAPSHOTS_CHARTED // 24
    point = "'YYYY-MM-DD HH24:MI'" if hourly else "'YYYY-MM-DD'"
    tz = timezone.get_current_timezone_name()
    sums: dict[str, dict[str, dict[str, int]]] = {"hour": defaultdict(dict), "point": defaultdict(dict)}
    moments: dict[str, dict[str, int]] = {"hours": {}, "points": {}}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                _BACKLOG.format(inner=inner_sql, point=point),
                [*inner_params, tz, tz, tz, tz],
            )
            rows = cursor.fetchall()
    else:
        rows = _backlog_rows(inner, hourly=hourly)
    for kind, key, stage, n in rows:
        if kind in moments:
            moments[kind][key] = n
        else:
            sums[kind][key][stage] = n

    def mean(kind: str, key: str, stage: str) -> float:
        return round(sums[kind][key].get(stage, 0) / moments[kind + "s"][key], 1)

    table_rows = [
        [
            f"{hour:02d}:00",
            *[mean("hour", str(hour), s) if str(hour) in moments["hours"] else None for s in stages],
        ]
        for hour in range(24)
    ]
    x = sorted(moments["points"])
    labels = [_stage_label(s) for s in stages]
    chart = _chart(
        "line",
        x,
        [(label, [mean("point", m, s) for m in x]) for s, label in zip(stages, labels, strict=True)],
        y=_("open orders"),
    )
    return [
        Table(
            name="backlog",
            title=_("Backlog by stage across the day (mean of the hourly snapshots)"),
            columns=[_("Hour"), *labels],
            rows=table_rows,
            chart=chart,
            numeric=[False, *[True] * len(stages)],
            note=_(
                "%(n)d hourly snapshots in the range; the chart shows each of them up to a month, "
                "daily means beyond."
            )
            % {"n": sum(moments["hours"].values())},
        )
    ]


# --- 4. Skill groups and waiting inquiries ------------------------------------------------------
def skills_report(scope: ReportScope, rng: DateRange, *, now: datetime | None = None) -> list[Table]:
    from agents.models import Skill
    from dispatch.models import PoolEntry

    now = now or timezone.now()
    names = dict(Skill.objects.values_list("code", "name"))
    sums = {
        r["skill"]: r
        for r in ReportSkillDay.objects.filter(scope.by_region(), day__gte=rng.first, day__lte=rng.last)
        .values("skill")
        .annotate(ready=Sum("ready"), accepted=Sum("accepted"), wait_sum=Sum("wait_sum"))
        .order_by()
    }
    waiting_entries = list(
        PoolEntry.objects.filter(scope.by_region(), state=PoolEntry.State.WAITING)
        .select_related("inquiry", "channel")
        .order_by("ready_at")
    )
    waiting: dict[str, int] = defaultdict(int)
    for entry in waiting_entries:
        for skill in entry.skills if isinstance(entry.skills, list) else []:
            waiting[str(skill)] += 1
    rows = []
    for code in sorted(set(sums) | set(waiting)):
        s = sums.get(code, {})
        accepted = s.get("accepted") or 0
        mean = (s.get("wait_sum") or 0) / accepted if accepted else None
        rows.append(
            [names.get(code, code), code, s.get("ready") or 0, accepted, _minutes(mean), waiting.get(code, 0)]
        )
    rows.sort(key=lambda r: (-r[2], -r[5], r[1]))
    inquiries = [e for e in waiting_entries if e.kind == PoolEntry.Kind.INQUIRY]
    inquiry_rows = [
        [
            e.inquiry_id,
            e.channel.name,
            e.inquiry.customer_name if e.inquiry else "",
            ", ".join(map(str, e.skills or [])),
            timezone.localtime(e.ready_at).strftime("%Y-%m-%d %H:%M"),
            _minutes((now - e.ready_at).total_seconds()),
            (e.inquiry.text if e.inquiry else "")[:80],
        ]
        for e in inquiries[:WAITING_INQUIRIES_SHOWN]
    ]
    return [
        Table(
            name="skills",
            title=_("Busiest skill groups"),
            columns=[
                _("Skill"),
                _("Code"),
                _("Items ready"),
                _("Accepted"),
                _("Mean wait (min)"),
                _("Waiting now"),
            ],
            rows=rows,
            chart=_chart(
                "bar",
                [r[0] for r in rows[:20]],
                [
                    (_("Items ready"), [r[2] for r in rows[:20]]),
                    (_("Waiting now"), [r[5] for r in rows[:20]]),
                    ("·" + _("Mean wait (min)"), [r[4] for r in rows[:20]]),
                ],
                y=pgettext("report count", "items"),
                y2=_("minutes"),
            ),
            numeric=[False, False, True, True, True, True],
            note=_("Orders and inquiries that need each skill; an item needing two skills counts for both."),
        ),
        Table(
            name="inquiries",
            title=_("Inquiries waiting now (%(n)d)") % {"n": len(inquiries)},
            columns=[
                _("Inquiry"),
                _("Channel"),
                _("Customer"),
                _("Skills"),
                _("Waiting since"),
                _("Waited (min)"),
                _("Message"),
            ],
            rows=inquiry_rows,
            numeric=[True, False, False, False, False, True, False],
        ),
    ]


# --- 5. Exception types ---------------------------------------------------------------------------
def exceptions_report(scope: ReportScope, rng: DateRange) -> list[Table]:
    from orders.models import ExceptionCase, ExceptionType

    start, end = rng.bounds
    names = dict(ExceptionType.objects.values_list("id", "name"))
    sums = {
        r["type_id"]: r
        for r in ReportExceptionDay.objects.filter(scope.by_province(), day__gte=rng.first, day__lte=rng.last)
        .values("type_id")
        .annotate(raised=Sum("raised"), resolved=Sum("resolved"), resolve_sum=Sum("resolve_sum"))
        .order_by()
    }
    # Open now, of those raised in the range: on the (status, raised_at) index.
    still_open = dict(
        ExceptionCase.objects.filter(
            scope.by_province("order__province"),
            status=ExceptionCase.Status.OPEN,
            raised_at__gte=start,
            raised_at__lt=end,
        )
        .values_list("type_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    rows = []
    for type_id in set(sums) | set(still_open):
        s = sums.get(type_id, {})
        resolved = s.get("resolved") or 0
        mean = (s.get("resolve_sum") or 0) / resolved if resolved else None
        rows.append(
            [
                names.get(type_id, type_id),
                s.get("raised") or 0,
                still_open.get(type_id, 0),
                resolved,
                _minutes(mean),
            ]
        )
    rows.sort(key=lambda r: (-r[1], str(r[0])))
    return [
        Table(
            name="exceptions",
            title=_("Top exception types"),
            columns=[
                _("Type"),
                pgettext("report count", "Raised"),
                _("Still open"),
                _("Resolved"),
                _("Mean time to resolve (min)"),
            ],
            rows=rows,
            chart=_chart(
                "bar",
                [r[0] for r in rows],
                [
                    (pgettext("report count", "Raised"), [r[1] for r in rows]),
                    (_("Still open"), [r[2] for r in rows]),
                ],
                y=_("cases"),
            ),
            numeric=[False, True, True, True, True],
            note=_(
                "Raised and still open: cases raised in the range. Resolved: cases resolved in the range."
            ),
        )
    ]


# --- 6. Agents ------------------------------------------------------------------------------------
def agents_report(scope: ReportScope, rng: DateRange) -> list[Table]:
    from agents.models import Agent
    from dispatch.models import Assignment

    agents = Agent.objects.order_by("display_name")
    if not scope.sees_all:
        agents = agents.filter(Q(regions__in=scope.region_ids) | Q(regions__isnull=True)).distinct()
    agents = list(
        agents.only(
            "id", "display_name", "capacity", "avg_handling_minutes", "good_rate_30d", "quality_weight"
        )
    )
    ids = [a.pk for a in agents]
    sums = {
        r["agent_id"]: r
        for r in ReportAgentDay.objects.filter(agent_id__in=ids, day__gte=rng.first, day__lte=rng.last)
        .values("agent_id")
        .annotate(
            offers=Sum("offers"),
            accepted=Sum("accepted"),
            rejected=Sum("rejected"),
            expired=Sum("expired"),
            completed=Sum("completed"),
            handling_sum=Sum("handling_sum"),
        )
        .order_by()
    }
    live = dict(
        Assignment.objects.filter(agent_id__in=ids, state=Assignment.State.ACCEPTED)
        .values_list("agent_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    rows = []
    for a in agents:
        s = sums.get(a.pk, {})
        offers, accepted, completed = s.get("offers") or 0, s.get("accepted") or 0, s.get("completed") or 0
        handling = (s.get("handling_sum") or 0) / completed if completed else None
        rows.append(
            [
                a.display_name,
                offers,
                accepted,
                s.get("rejected") or 0,
                s.get("expired") or 0,
                _rate(accepted, offers),
                completed,
                live.get(a.pk, 0),
                a.capacity,
                _minutes(handling),
                round(a.avg_handling_minutes, 1) if a.avg_handling_minutes is not None else None,
                round(100 * a.good_rate_30d, 1) if a.good_rate_30d is not None else None,
                round(a.quality_weight, 2),
            ]
        )
    rows.sort(key=lambda r: (-r[1], r[0]))
    shown = rows[:30]
    return [
        Table(
            name="agents",
            title=_("Per-agent load, acceptance and quality"),
            columns=[
                _("Agent"),
                pgettext("report count", "Offers"),
                _("Accepted"),
                pgettext("report count", "Rejected"),
                pgettext("report count", "Expired"),
                _("Acceptance (%)"),
                _("Completed"),
                _("Live load"),
                _("Capacity"),
                _("Handling in range (min)"),
                _("Avg handling (min)"),
                _("Good ratings 30d (%)"),
                _("Quality weight"),
            ],
            rows=rows,
            chart=_chart(
                "bar",
                [r[0] for r in shown],
                [
                    (_("Accepted"), [r[2] for r in shown]),
                    (pgettext("report count", "Rejected"), [r[3] for r in shown]),
                    (pgettext("report count", "Expired"), [r[4] for r in shown]),
                    ("·" + _("Acceptance (%)"), [r[5] for r in shown]),
                ],
                y=_("offers"),
                y2="%",
            ),
            numeric=[False] + [True] * 12,
            note=_(
                "Offers by the day they were made; completions by the day they closed. Live load and the "
                "profile columns are as of now."
            ),
        )
    ]


# --- 7. Risk rules ----------------------------------------------------------------------------------
def risk_months(rng: DateRange) -> list[date]:
    months = []
    cursor = rng.first.replace(day=1)
    while cursor <= rng.last and len(months) < MAX_RISK_MONTHS:
        months.append(cursor)
        cursor = (cursor + timedelta(days=32)).replace(day=1)
    return months


def risk_report(scope: ReportScope, rng: DateRange) -> list[Table]:
    from riskcontrol.selectors import monthly_report

    rows = []
    precision: dict[str, dict[date, float | None]] = defaultdict(dict)
    months = risk_months(rng)
    for month in months:
        for r in monthly_report(month, trail_months=1):
            p = round(100 * r.precision, 1) if r.precision is not None else None
            rows.append([f"{month:%Y-%m}", r.rule.name, r.hits, r.confirmed, r.false_positives, p])
            precision[r.rule.name][month] = p
    x = [f"{m:%Y-%m}" for m in months]
    return [
        Table(
            name="risk",
            title=_("Risk-rule precision by month"),
            columns=[
                _("Month"),
                _("Rule"),
                _("Hits"),
                _("Confirmed"),
                _("False positives"),
                _("Precision (%)"),
            ],
            rows=rows,
            chart=_chart(
                "bar" if len(months) == 1 else "line",
                x,
                [(name, [by_month.get(m) for m in months]) for name, by_month in sorted(precision.items())],
                y="%",
            ),
            numeric=[False, False, True, True, True, True],
            note=_(
                "The same figures as the monthly risk rule report, for every month the range touches "
                "(at most %(n)d), over all regions."
            )
            % {"n": MAX_RISK_MONTHS},
        )
    ]


REPORTS = {
    "response": response_report,
    "sla": sla_report,
    "backlog": backlog_report,
    "skills": skills_report,
    "exceptions": exceptions_report,
    "agents": agents_report,
    "risk": risk_report,
}


def report_titles() -> dict[str, str]:
    return {
        "response": _("First-response time"),
        "sla": _("SLA breaches"),
        "backlog": _("Backlog by stage"),
        "skills": _("Skill groups and waiting inquiries"),
        "exceptions": _("Exception types"),
        "agents": _("Agents: load, acceptance, quality"),
        "risk": _("Risk-rule precision"),
        "weekly": _("Weekly bottleneck summary"),
    }
