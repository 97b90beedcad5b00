"""Reads for the simulator pages: who may use it, the runs, a run's state for polling, and a
finished run's comparison as table rows and chart series."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from dispatch.models import DispatchPolicy, SimulationRun
from dispatch.selectors import MANAGER_ROLES
from orders.actors import roles_of


def may_simulate(user) -> bool:
    """Supervisors and admins try policies; the people dispatched to do not."""
    return bool(roles_of(user) & MANAGER_ROLES)


def simulation_runs() -> QuerySet[SimulationRun]:
    return SimulationRun.objects.select_related("policy", "requested_by")


def draft_choices() -> QuerySet[DispatchPolicy]:
    """Every policy may be tried: drafts (inactive) first, as that is what one usually tries."""
    return DispatchPolicy.objects.order_by("is_active", "name")


def last_seven_days(today: date | None = None) -> date:
    """The first of the last seven whole days: the default range to replay (it ends today, exclusive)."""
    today = today or timezone.localdate()
    return today - timedelta(days=7)


def run_status(run: SimulationRun) -> dict:
    """What the run page polls for."""
    return {
        "id": run.pk,
        "status": run.status,
        "status_display": run.get_status_display(),
        "progress": round(run.progress, 4),
        "error": run.error,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "done": run.status == SimulationRun.Status.DONE,
        "finished": run.status in (SimulationRun.Status.DONE, SimulationRun.Status.FAILED),
        "url": reverse("dashboards:simulation_detail", args=[run.pk]),
    }


# --- The comparison ------------------------------------------------------------------------
HIGHER, LOWER, NEUTRAL = "higher", "lower", "neutral"


@dataclass(frozen=True)
class Figure:
    key: str  # a metrics key, or "group.key" for a nested one
    label: object  # lazy translation
    better: str  # HIGHER, LOWER or NEUTRAL
    kind: str = "count"  # count | rate (a share shown in %) | minutes | km | share


FIGURES = (
    Figure("orders", _("Orders"), NEUTRAL),
    Figure("accepted", _("Accepted"), HIGHER),
    Figure("finished", _("Finished"), HIGHER),
    Figure("abandoned", _("Abandoned by the customer"), LOWER),
    Figure("escalated", _("Escalated to the supervisor"), LOWER),
    Figure("accept_minutes.mean", _("Time to accept, mean"), LOWER, "minutes"),
    Figure("accept_minutes.p50", _("Time to accept, median"), LOWER, "minutes"),
    Figure("accept_minutes.p90", _("Time to accept, 90th percentile"), LOWER, "minutes"),
    Figure("accept_minutes.p99", _("Time to accept, 99th percentile"), LOWER, "minutes"),
    Figure("sla_breaches", _("SLA breaches"), LOWER),
    Figure("sla_breach_rate", _("SLA breach rate"), LOWER, "rate"),
    Figure("skill_match_rate", _("Skill match rate"), HIGHER, "rate"),
    Figure("mean_travel_km", _("Mean travel"), LOWER, "km"),
    Figure("utilisation", _("Utilisation"), NEUTRAL, "rate"),
    Figure("load_gini", _("Load spread (Gini, lower is fairer)"), LOWER, "share"),
    Figure("first_time_fix_rate", _("First-time fix rate"), HIGHER, "rate"),
    Figure("offers", _("Offers made"), NEUTRAL),
    Figure("rejects", _("Offers rejected"), LOWER),
    Figure("expiries", _("Offers expired"), LOWER),
)
UNITS = {"minutes": _("min"), "km": _("km"), "rate": "%", "count": "", "share": ""}


def _value(metrics: dict, key: str) -> float | None:
    value: object = metrics
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _show(value: float | None, kind: str, *, signed: bool = False) -> str:
    if value is None:
        return "—"
    sign = "+" if signed and value > 0 else ""
    if kind == "rate":
        return f"{sign}{value * 100:.1f}"
    if kind == "count":
        return f"{sign}{value:,.0f}" if float(value).is_integer() else f"{sign}{value:,.1f}"
    if kind == "share":
        return f"{sign}{value:.3f}"
    return f"{sign}{value:,.1f}"


def comparison_rows(result: dict) -> list[dict]:
    """One row per figure: the live and the draft value, the difference (draft − live; for
    rates in percentage points) and which side is better, if the figure has a better side."""
    runs = (result or {}).get("runs") or []
    if len(runs) < 2:
        return []
    live, draft = runs[0], runs[1]
    rows = []
    for figure in FIGURES:
        a, b = _value(live, figure.key), _value(draft, figure.key)
        diff = b - a if a is not None and b is not None else None
        verdict = ""
        if diff is not None and figure.better != NEUTRAL and abs(diff) > 1e-9:
            draft_better = (diff > 0) == (figure.better == HIGHER)
            verdict = "better" if draft_better else "worse"
        rows.append(
            {
                "key": figure.key,
                "label": figure.label,
                "unit": UNITS[figure.kind],
                "live": _show(a, figure.kind),
                "draft": _show(b, figure.kind),
                "diff": _show(diff, figure.kind, signed=True),
                "verdict": verdict,  # of the draft against live: better | worse | ""
            }
        )
    return rows


def chart_series(result: dict) -> dict:
    """The hourly series both charts draw, for json_script."""
    runs = (result or {}).get("runs") or []
    if len(runs) < 2:
        return {}
    live, draft = runs[0].get("series") or {}, runs[1].get("series") or {}
    hours = live.get("hours") or draft.get("hours") or []
    return {
        "hours": hours,
        "labels": _hour_labels(hours, (result.get("scenario") or {}).get("start")),
        "live": {k: live.get(k) or [] for k in ("accept_p90_minutes", "waiting", "arrivals")},
        "draft": {k: draft.get(k) or [] for k in ("accept_p90_minutes", "waiting", "arrivals")},
    }


def _hour_labels(hours: list[int], start: str | None) -> list[str]:
    """Each hour of the series as local "MM-DD HH:00" (the scenario starts at local midnight)."""
    try:
        t0 = datetime.fromisoformat(start) if start else None
    except ValueError:
        t0 = None
    if t0 is None or t0.tzinfo is None:
        return [str(h) for h in hours]
    return [timezone.localtime(t0 + timedelta(hours=h)).strftime("%m-%d %H:00") for h in hours]
