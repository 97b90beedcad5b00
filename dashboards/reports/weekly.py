"""The weekly bottleneck summary: where orders waited longest, which category breached most
and which group was most loaded in one Monday-to-Sunday week, each with its runner-up; and
the Monday e-mail that sends it to every supervisor, once per week and person."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db.models import Q, Sum
from django.urls import reverse
from django.utils import timezone
from django.utils.dates import WEEKDAYS
from django.utils.translation import gettext as _

from dashboards.models import ReportAgentDay, ReportOrderDay, ReportSkillDay, ReportStageDay
from dashboards.reports import buckets
from dashboards.reports.selectors import (
    DateRange,
    ReportInputError,
    ReportScope,
    _parse_day,
    _stage_label,
    scope_for_regions,
)

TEMPLATE = "weekly_summary"


@dataclass(frozen=True)
class Finding:
    """One candidate: what it is, its main figure (as text and as a number) and a detail."""

    name: str
    value: float
    figure: str
    detail: str = ""


@dataclass(frozen=True)
class WeeklySummary:
    week: date
    stage: list[Finding]  # longest mean stay first; the first two are shown
    category: list[Finding]  # most breaches first
    group: list[Finding]  # highest load per capacity slot first

    @property
    def range(self) -> DateRange:
        return DateRange(self.week, self.week + timedelta(days=6))


def parse_week(raw: str, *, today: date | None = None) -> date:
    """?week=YYYY-MM-DD, a Monday; empty means last week."""
    today = today or timezone.localdate()
    if not raw.strip():
        return last_week(today)
    day = _parse_day(raw, "week")
    if day.weekday() != 0:
        raise ReportInputError(
            _("%(day)s is a %(weekday)s: a week starts on a Monday, e.g. %(monday)s.")
            % {
                "day": day.isoformat(),
                "weekday": WEEKDAYS[day.weekday()],
                "monday": (day - timedelta(days=day.weekday())).isoformat(),
            }
        )
    return day


def last_week(today: date) -> date:
    """The Monday of the last full week before `today`."""
    return today - timedelta(days=today.weekday() + 7)


def weekly_summary(scope: ReportScope, week: date) -> WeeklySummary:
    days = {"day__gte": week, "day__lte": week + timedelta(days=6)}
    return WeeklySummary(
        week=week,
        stage=_stages(scope, days),
        category=_categories(scope, days),
        group=_groups(scope, days),
    )


def _stages(scope: ReportScope, days: dict) -> list[Finding]:
    per_stage: dict[str, dict] = {}
    for stage, stay_sum, histogram in ReportStageDay.objects.filter(scope.by_province(), **days).values_list(
        "stage", "stay_sum", "histogram"
    ):
        s = per_stage.setdefault(stage, {"sum": 0.0, "hist": {}})
        s["sum"] += stay_sum
        buckets.merge([histogram], into=s["hist"])
    out = []
    for stage, s in per_stage.items():
        n = sum(s["hist"].values())
        if not n:
            continue
        mean = s["sum"] / n / 60
        p90 = (buckets.percentile(s["hist"], 0.9) or 0) / 60
        out.append(
            Finding(
                name=_stage_label(stage),
                value=mean,
                figure=_("mean %(mean).0f min, p90 %(p90).0f min") % {"mean": mean, "p90": p90},
                detail=_("%(n)d stays") % {"n": n},
            )
        )
    return sorted(out, key=lambda f: (-f.value, f.name))


def _categories(scope: ReportScope, days: dict) -> list[Finding]:
    rows = (
        ReportOrderDay.objects.filter(scope.by_province(), **days)
        .values("category")
        .annotate(exits=Sum("exits"), breaches=Sum("breaches"))
        .order_by()
    )
    out = []
    for r in rows:
        if not r["breaches"]:
            continue
        rate = 100 * r["breaches"] / r["exits"] if r["exits"] else 0
        out.append(
            Finding(
                name=r["category"] or _("(none)"),
                value=r["breaches"],
                figure=_("%(n)d breaches, %(rate).1f%% of stage exits") % {"n": r["breaches"], "rate": rate},
                detail=_("%(exits)d stage exits") % {"exits": r["exits"]},
            )
        )
    return sorted(out, key=lambda f: (-f.value, f.name))


def _groups(scope: ReportScope, days: dict) -> list[Finding]:
    """Teams (and skill groups) by items per capacity slot per day: a team's accepted items
    over its agents' capacity; a skill's items ready over the capacity of the agents who have
    it. Both mean "how many items each free slot had to take each day"."""
    from agents.models import Agent, AgentSkill, Skill, Team

    teams = Team.objects.all()
    if not scope.sees_all:
        teams = teams.filter(Q(region__in=scope.region_ids) | Q(region__isnull=True))
    team_rows = list(teams.values_list("id", "name"))
    members: dict[int, list[tuple[int, int]]] = {}
    for team_id, agent_id, capacity in Agent.teams.through.objects.filter(
        team_id__in=[t for t, _n in team_rows]
    ).values_list("team_id", "agent_id", "agent__capacity"):
        members.setdefault(team_id, []).append((agent_id, capacity))
    agent_ids = {a for m in members.values() for a, _c in m}
    accepted = dict(
        ReportAgentDay.objects.filter(agent_id__in=agent_ids, **days)
        .values_list("agent_id")
        .annotate(n=Sum("accepted"))
        .order_by()
    )
    out = []
    for team_id, name in team_rows:
        capacity = sum(c for _a, c in members.get(team_id, []))
        items = sum(accepted.get(a, 0) for a, _c in members.get(team_id, []))
        if capacity and items:
            load = items / 7 / capacity
            out.append(
                Finding(
                    name=_("Team %(name)s") % {"name": name},
                    value=load,
                    figure=_("%(load).2f items per capacity slot per day") % {"load": load},
                    detail=_("%(items)d items accepted, capacity %(capacity)d")
                    % {"items": items, "capacity": capacity},
                )
            )
    skill_items = dict(
        ReportSkillDay.objects.filter(scope.by_region(), **days)
        .values_list("skill")
        .annotate(n=Sum("ready"))
        .order_by()
    )
    skill_capacity = dict(
        AgentSkill.objects.filter(skill__code__in=list(skill_items))
        .values_list("skill__code")
        .annotate(c=Sum("agent__capacity"))
        .order_by()
    )
    names = dict(Skill.objects.filter(code__in=list(skill_items)).values_list("code", "name"))
    for code, items in skill_items.items():
        capacity = skill_capacity.get(code) or 0
        if not items:
            continue
        load = items / 7 / capacity if capacity else float(items)
        out.append(
            Finding(
                name=_("Skill group %(name)s") % {"name": names.get(code, code)},
                value=load,
                figure=_("%(load).2f items per capacity slot per day") % {"load": load}
                if capacity
                else _("%(items)d items, no agent has this skill") % {"items": items},
                detail=_("%(items)d items ready, capacity %(capacity)d")
                % {"items": items, "capacity": capacity},
            )
        )
    return sorted(out, key=lambda f: (-f.value, f.name))


# --- The Monday e-mail -----------------------------------------------------------------------------
def _payload(summary: WeeklySummary) -> dict:
    def pair(findings: list[Finding]) -> dict:
        top = findings[0] if findings else None
        runner = findings[1] if len(findings) > 1 else None
        return {
            "name": top.name if top else "—",
            "figure": top.figure if top else "",
            "runner_up": f"{runner.name} ({runner.figure})" if runner else "—",
        }

    url = (
        settings.SITE_URL.rstrip("/") + reverse("dashboards:report_weekly") + f"?week={summary.week:%Y-%m-%d}"
    )
    return {
        "week": summary.week.isoformat(),
        "week_end": (summary.week + timedelta(days=6)).isoformat(),
        "stage": pair(summary.stage),
        "category": pair(summary.category),
        "group": pair(summary.group),
        "url": url,
    }


def weekly_summary_send(*, week: date | None = None, now: datetime | None = None) -> int:
    """E-mail last week's summary to every active supervisor with an address, each scoped to
    their regions. The dedupe key (week, person) makes a second run — two beats, a retried
    task — send nothing. Returns the messages written."""
    from django.contrib.auth.models import User
    from django.utils import translation

    from agents.models import Region
    from dashboards.notify import Channel, Message, notify
    from orders.states import Role

    now = now or timezone.now()
    week = week or last_week(timezone.localdate(now))
    regions = list(Region.objects.values_list("id", "provinces"))
    supervised: dict[int, set[int]] = {}
    for user_id, region_id in Region.supervisors.through.objects.values_list("user_id", "region_id"):
        supervised.setdefault(user_id, set()).add(region_id)
    people = (
        User.objects.filter(is_active=True, groups__name=Role.SUPERVISOR)
        .exclude(email="")
        .distinct()
        .order_by("pk")
    )
    summaries: dict[str, dict] = {}
    messages = []
    with translation.override(settings.LANGUAGE_CODE):
        for person in people:
            scope = scope_for_regions(supervised.get(person.pk, set()), regions)
            if scope.key not in summaries:
                summaries[scope.key] = _payload(weekly_summary(scope, week))
            messages.append(
                Message(
                    template=TEMPLATE,
                    channel=Channel.EMAIL,
                    payload=summaries[scope.key],
                    user=person,
                    target=person.email,
                    dedupe_key=f"weekly-summary:{week:%Y-%m-%d}:{person.pk}",
                )
            )
    return len(notify(messages, now=now))
