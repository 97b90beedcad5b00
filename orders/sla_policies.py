"""The SLA policies in force, kept per process for a few seconds, and their nightly
adjustment towards how long each stage really takes."""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection
from django.db.models import Aggregate, Count, DurationField, ExpressionWrapper, F, OuterRef, Subquery
from django.utils import timezone

from orders.models import Order, OrderEvent, SlaPolicy
from orders.sla import SlaBook, SlaRule, clamp

logger = logging.getLogger(__name__)

# Every ingest and transition reads the policies; they change by hand, rarely. A save in this
# process clears the cache at once (signals in apps.py); other processes see it within TTL.
SLA_CACHE_TTL = 5.0
_cache: dict[str, tuple[float, SlaBook]] = {}

HISTORY_DAYS = 30
HISTORY_MIN_SAMPLES = 30
HISTORY_PERCENTILE = 0.75


def sla_book() -> SlaBook:
    hit = _cache.get("book")
    if hit is not None and time.monotonic() - hit[0] < SLA_CACHE_TTL:
        return hit[1]
    book = _load_book()
    _cache["book"] = (time.monotonic(), book)
    return book


def clear_sla_cache(**_signal) -> None:
    _cache.clear()


def _load_book() -> SlaBook:
    rules = {
        (p.stage, p.category): SlaRule(
            stage=p.stage,
            category=p.category,
            allowance_minutes=p.allowance_minutes,
            expedited_factor=p.expedited_factor,
            evening_after=p.evening_after,
            evening_extra_minutes=p.evening_extra_minutes,
            adjust_by_history=p.adjust_by_history,
            history_factor=p.history_factor,
            history_min_factor=p.history_min_factor,
            history_max_factor=p.history_max_factor,
        )
        for p in SlaPolicy.objects.filter(is_active=True)
    }
    return SlaBook(rules=rules, tz=ZoneInfo(settings.TIME_ZONE))


# --- Historical speed --------------------------------------------------------------------
class _Percentile(Aggregate):
    """PostgreSQL's continuous percentile (linear interpolation), over intervals too."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression, fraction: float, **extra):
        super().__init__(expression, fraction=float(fraction), **extra)


@dataclass(frozen=True)
class HistoryAdjustment:
    policy_id: int
    stage: str
    category: str
    samples: int
    p75_minutes: float | None
    factor: float | None  # the new factor; None when left as it was (too few samples)


def _stays(policy: SlaPolicy, *, since: datetime, own_categories: set[str]):
    """How long the normal-urgency orders of `policy`'s stage and category stayed in it, for
    each stay that ended since `since`: a stay runs from the latest event that brought the
    order into the stage (its arrival, or a transition into it) to the transition out."""
    entered = (
        OrderEvent.objects.filter(
            order_id=OuterRef("order_id"),
            to_stage=policy.stage,
            kind__in=[OrderEvent.Kind.INGESTED, OrderEvent.Kind.TRANSITION],
            at__lte=OuterRef("at"),
        )
        .order_by("-at", "-id")
        .values("at")[:1]
    )
    left = OrderEvent.objects.filter(
        kind=OrderEvent.Kind.TRANSITION,
        from_stage=policy.stage,
        at__gte=since,
        order__urgency=Order.Urgency.NORMAL,  # the allowance is for normal orders
    )
    if policy.category:
        left = left.filter(order__category=policy.category)
    elif own_categories:
        # The catch-all policy times the categories that have no policy of their own.
        left = left.exclude(order__category__in=own_categories)
    return (
        left.annotate(entered_at=Subquery(entered))
        .filter(entered_at__isnull=False)
        .annotate(stay=ExpressionWrapper(F("at") - F("entered_at"), output_field=DurationField()))
    )


def _p75_minutes(stays) -> tuple[int, float | None]:
    """(samples, 75th percentile in minutes): one aggregate query on PostgreSQL; elsewhere
    (the embedded SQLite) the stays are read and the percentile computed here alike."""
    if connection.vendor == "postgresql":
        row = stays.aggregate(
            n=Count("id"), p=_Percentile("stay", HISTORY_PERCENTILE, output_field=DurationField())
        )
        p = row["p"]
        return row["n"], (p.total_seconds() / 60 if p is not None else None)
    values = sorted(s.total_seconds() / 60 for s in stays.values_list("stay", flat=True))
    if not values:
        return 0, None
    if len(values) == 1:
        return 1, values[0]
    # statistics' "inclusive" method is the same linear interpolation as percentile_cont.
    return len(values), statistics.quantiles(values, n=4, method="inclusive")[2]


def sla_history_adjust(
    *, now: datetime | None = None, days: int = HISTORY_DAYS, min_samples: int = HISTORY_MIN_SAMPLES
) -> list[HistoryAdjustment]:
    """Nightly: for each active policy that adjusts by history, set its factor to
    p75(time really spent in the stage over the last `days`) / allowance, held to the policy's
    bounds, when there are at least `min_samples` stays; otherwise leave it."""
    now = now or timezone.now()
    since = now - timedelta(days=days)
    policies = list(SlaPolicy.objects.filter(is_active=True))
    own: dict[str, set[str]] = {}
    for p in policies:
        if p.category:
            own.setdefault(p.stage, set()).add(p.category)
    out: list[HistoryAdjustment] = []
    for policy in policies:
        if not policy.adjust_by_history:
            continue
        samples, p75 = _p75_minutes(_stays(policy, since=since, own_categories=own.get(policy.stage, set())))
        factor = None
        if samples >= min_samples and p75 is not None and policy.allowance_minutes:
            factor = round(
                clamp(p75 / policy.allowance_minutes, policy.history_min_factor, policy.history_max_factor), 4
            )
            # update(): the admin's other fields, edited meanwhile, stay as they are; it sends
            # no signal, so this process's cache is cleared here.
            SlaPolicy.objects.filter(pk=policy.pk).update(history_factor=factor, history_updated_at=now)
            clear_sla_cache()
        out.append(
            HistoryAdjustment(
                policy_id=policy.pk,
                stage=policy.stage,
                category=policy.category,
                samples=samples,
                p75_minutes=round(p75, 1) if p75 is not None else None,
                factor=factor,
            )
        )
        logger.info(
            "SLA %s/%s: %d stays, p75 %s min, factor %s",
            policy.stage,
            policy.category or "*",
            samples,
            "-" if p75 is None else f"{p75:.1f}",
            "unchanged" if factor is None else factor,
        )
    return out
