"""Reads for risk control: the rules in force, thresholds, the context the rules need, who
may see which review, and the monthly report."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache

from django.db import connection
from django.db.models import Avg, Case, Count, F, IntegerField, Prefetch, Q, QuerySet, Subquery, Value, When
from django.utils import timezone

from dispatch.selectors import MANAGER_ROLES
from orders.actors import roles_of
from orders.models import Order, Warehouse
from orders.normalize import parse_address
from orders.states import Role
from riskcontrol.engine import Needs, RuleKind, RuleSpec
from riskcontrol.models import (
    BLACKLISTABLE,
    LIST_KIND_LABELS,
    BlacklistEntry,
    DeliveryRestriction,
    Review,
    ReviewDecision,
    RiskPolicy,
    Rule,
    RuleHit,
    RuleWeightChange,
)

DEFAULT_REVIEW_THRESHOLD = 30.0
DEFAULT_QUARANTINE_THRESHOLD = 60.0
CHANNEL_USUAL_DAYS = 30
CHANNEL_USUAL_TTL = 600.0  # seconds a process keeps a channel's usual amount
CHANNEL_USUAL_ORDERS = 1000


@dataclass(frozen=True)
class Thresholds:
    review: float
    quarantine: float


# --- Configuration, kept per process for a few seconds ------------------------------------
# Rules, thresholds, warehouses, delivery restrictions and regions change by hand, rarely;
# reading them for every order was most of screening's cost. A save in this process clears
# the cache at once (signals in apps.py); other processes see it within CONFIG_TTL seconds.
CONFIG_TTL = 5.0
_config: dict[str, tuple[float, object]] = {}


def _cached(name: str, load):
    hit = _config.get(name)
    if hit is not None and time.monotonic() - hit[0] < CONFIG_TTL:
        return hit[1]
    value = load()
    _config[name] = (time.monotonic(), value)
    return value


def clear_config(**_signal) -> None:
    _config.clear()


def _load_rules() -> list[tuple[int | None, datetime | None, datetime | None, RuleSpec]]:
    return [
        (
            r.channel_id,
            r.effective_from,
            r.effective_until,
            RuleSpec(r.pk, RuleKind(r.kind), r.params, r.weight),
        )
        for r in Rule.objects.filter(is_active=True).order_by("pk")
    ]


def _load_thresholds() -> dict[int | None, Thresholds]:
    return {
        p.channel_id: Thresholds(p.review_threshold, p.quarantine_threshold)
        for p in RiskPolicy.objects.filter(is_active=True)
    }


class RuleBook:
    """The rules in force at `now` and the thresholds (from the configuration cache)."""

    def __init__(self, *, now: datetime) -> None:
        self._rules: list[tuple[int | None, RuleSpec]] = [
            (scope, spec)
            for scope, start, end, spec in _cached("rules", _load_rules)
            if (start is None or start <= now) and (end is None or end > now)
        ]
        self._policies = _cached("thresholds", _load_thresholds)

    def rules_for(self, channel_id: int) -> list[RuleSpec]:
        return [spec for scope, spec in self._rules if scope is None or scope == channel_id]

    @property
    def all_rules(self) -> list[RuleSpec]:
        return [spec for _scope, spec in self._rules]

    def thresholds_for(self, channel_id: int) -> Thresholds:
        found = self._policies.get(channel_id) or self._policies.get(None)
        return found or Thresholds(DEFAULT_REVIEW_THRESHOLD, DEFAULT_QUARANTINE_THRESHOLD)


@lru_cache(maxsize=4096)
def city_coords(place: str) -> tuple[float, float] | None:
    """Coordinates of a phone's home city ("广东省深圳市") from the address table."""
    if not place:
        return None
    parsed = parse_address(place)
    if parsed.latitude is None:
        return None
    return float(parsed.latitude), float(parsed.longitude)


class WarehouseBook:
    def __init__(self) -> None:
        self.by_province: dict[str, Warehouse] = {}
        self.default: Warehouse | None = None
        for w in Warehouse.objects.filter(is_active=True).order_by("code"):
            for province in w.provinces or []:
                self.by_province.setdefault(province.strip(), w)
            if w.is_default:
                self.default = w

    def ship_from(self, province: str) -> Warehouse | None:
        return self.by_province.get(province) or self.default


def warehouse_book() -> WarehouseBook:
    return _cached("warehouses", WarehouseBook)


def regions_by_province() -> dict[str, int]:
    from dispatch.selectors import region_by_province

    return _cached("regions", region_by_province)


_channel_usual: dict[int, tuple[float, Decimal | None]] = {}


def channel_usual_amount(channel_id: int) -> Decimal | None:
    """The channel's usual order amount: the average of its latest 1,000 orders of the last
    30 days (one short scan of the (channel, received) index), kept per process for ten
    minutes: a slow-moving figure not worth a query per order."""
    cached = _channel_usual.get(channel_id)
    if cached is not None and time.monotonic() - cached[0] < CHANNEL_USUAL_TTL:
        return cached[1]
    since = timezone.now() - timedelta(days=CHANNEL_USUAL_DAYS)
    latest = Order.objects.filter(channel_id=channel_id, received_at__gte=since).order_by("-received_at")
    value = Order.objects.filter(pk__in=Subquery(latest.values("pk")[:CHANNEL_USUAL_ORDERS])).aggregate(
        a=Avg("amount")
    )["a"]
    value = Decimal(value) if value is not None else None
    _channel_usual[channel_id] = (time.monotonic(), value)
    return value


def clear_caches() -> None:
    _channel_usual.clear()
    clear_config()


@dataclass
class Context:
    """What the rules need beyond the orders themselves, for one batch."""

    history: list[tuple[str, object, float, int]]  # (kind, key, epoch seconds, order id)
    customer_avg: dict[int, Decimal]
    blacklisted: dict[tuple[str, str], str]  # (list, value) → reason
    fragments: list[tuple[str, str]]  # address fragment, reason


PER_KEY_LOOKUPS = 20  # up to this many keys, one index range scan each; beyond, one IN scan


def screening_context(
    needs: Needs,
    *,
    ips: set[str],
    devices: set[str],
    cards: set[str],
    phones: set[str],
    customer_ids: set[int],
    until: datetime,
    exclude_ids: frozenset[int] = frozenset(),
) -> Context:
    """Earlier orders sharing an IP, device or card within the longest window a rule looks
    at, each customer's average amount, and the blacklist entries that match: one statement
    (UNION ALL), one round trip, whatever the number of rules. Each look-back is a range
    scan of its (value, received_at) index. Orders screened again (`exclude_ids`) do not
    count against themselves."""
    pg = connection.vendor == "postgresql"
    orders = connection.ops.quote_name(Order._meta.db_table)
    listed = connection.ops.quote_name(BlacklistEntry._meta.db_table)
    epoch = (
        "EXTRACT(EPOCH FROM received_at)::float8"
        if pg
        else "(CAST(strftime('%%s', received_at) AS REAL) + CAST('0' || substr(received_at, 20) AS REAL))"
    )
    parts: list[str] = []
    params: list = []

    def look_back(
        kind: str, column: str, key_sql: str, extra_sql: str, values: list, since: datetime
    ) -> None:
        if not values:
            return
        head = (
            f"SELECT CAST(%s AS TEXT) AS part, CAST({key_sql} AS TEXT) AS a, CAST({extra_sql} AS TEXT) AS b, "  # noqa: S608 - identifiers and placeholders only
            f"CAST(NULL AS TEXT) AS c, CAST({epoch} AS DOUBLE PRECISION) AS t, CAST(id AS BIGINT) AS n "
            f"FROM {orders} "
        )
        if len(values) <= PER_KEY_LOOKUPS:
            for value in values:
                parts.append(head + f"WHERE {column} = %s AND received_at >= %s AND received_at <= %s")
                params.extend([kind, value, since, until])
        else:
            marks = ", ".join(["%s"] * len(values))
            parts.append(head + f"WHERE {column} IN ({marks}) AND received_at >= %s AND received_at <= %s")
            params.extend([kind, *values, since, until])

    if needs.ip_minutes:
        look_back("ip", "client_ip", "host(client_ip)" if pg else "client_ip", "NULL", sorted(ips),
                  until - timedelta(minutes=needs.ip_minutes))  # fmt: skip
    if needs.device_minutes:
        look_back("device", "device_id", "device_id", "NULL", sorted(devices),
                  until - timedelta(minutes=needs.device_minutes))  # fmt: skip
    if needs.card_hours:
        look_back("card", "card_fingerprint", "card_fingerprint", "amount", sorted(cards),
                  until - timedelta(hours=needs.card_hours))  # fmt: skip
    if needs.customer and customer_ids:
        marks = ", ".join(["%s"] * len(customer_ids))
        parts.append(
            "SELECT CAST('customer' AS TEXT) AS part, CAST(customer_id AS TEXT) AS a, CAST(AVG(amount) AS TEXT) AS b, "  # noqa: S608 - identifiers and placeholders only
            "CAST(NULL AS TEXT) AS c, CAST(NULL AS DOUBLE PRECISION) AS t, CAST(NULL AS BIGINT) AS n "
            f"FROM {orders} WHERE customer_id IN ({marks}) GROUP BY customer_id"
        )
        params.extend(sorted(customer_ids))
    if needs.blacklist:
        wanted, wanted_params = [], []
        for kind, values in (("ip", ips), ("phone", phones), ("device", devices), ("card", cards)):
            if kind in needs.blacklist and values:
                wanted.append(f"(kind = %s AND value IN ({', '.join(['%s'] * len(values))}))")
                wanted_params.extend([kind, *sorted(values)])
        if "address" in needs.blacklist:
            wanted.append("kind = 'address'")
        if wanted:
            parts.append(
                "SELECT CAST('list' AS TEXT) AS part, CAST(kind AS TEXT) AS a, CAST(value AS TEXT) AS b, "  # noqa: S608 - identifiers and placeholders only
                "CAST(reason AS TEXT) AS c, CAST(NULL AS DOUBLE PRECISION) AS t, CAST(NULL AS BIGINT) AS n "
                f"FROM {listed} WHERE (expires_at IS NULL OR expires_at > %s) AND ({' OR '.join(wanted)})"
            )
            params.extend([until, *wanted_params])
    context = Context(history=[], customer_avg={}, blacklisted={}, fragments=[])
    if not parts:
        return context
    sql = " UNION ALL ".join(f"SELECT * FROM ({part}) AS p{i}" for i, part in enumerate(parts))  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    for part, a, b, c, at, order_id in rows:
        if part == "customer":
            if b is not None:
                context.customer_avg[int(a)] = Decimal(b)
        elif part == "list":
            if a == "address":
                context.fragments.append((b, c))
            else:
                context.blacklisted[(a, b)] = c
        elif order_id not in exclude_ids:
            key = (a, Decimal(b)) if part == "card" else a
            context.history.append((part, key, float(at), int(order_id)))
    return context


def delivery_restrictions(*, now: datetime) -> dict[tuple[str, str], DeliveryRestriction]:
    rows = _cached("restrictions", lambda: list(DeliveryRestriction.objects.all()))
    return {
        (r.province, r.city): r
        for r in rows
        if r.active_from <= now and (r.active_until is None or r.active_until > now)
    }


# --- Who sees which review -------------------------------------------------------------------
REVIEW_ROLES = MANAGER_ROLES | {Role.RISK_REVIEWER}


def reviews_visible_to(user) -> QuerySet[Review]:
    """Admins see every review; supervisors those of their regions (all, with no region);
    a risk reviewer the reviews offered to, taken by or decided by them."""
    qs = Review.objects.select_related("order", "order__channel", "agent")
    roles = roles_of(user)
    if Role.ADMIN in roles:
        return qs
    if Role.SUPERVISOR in roles:
        regions = list(user.supervised_regions.values_list("id", flat=True))
        if not regions:
            return qs
        return qs.filter(Q(pool_entry__region_id__in=regions) | Q(pool_entry__region__isnull=True))
    agent = getattr(user, "agent", None) if user.is_authenticated else None
    if Role.RISK_REVIEWER not in roles or agent is None:
        return qs.none()
    return qs.filter(
        Q(agent=agent)
        | Q(decided_by=user)
        | Q(assignments__agent=agent, assignments__state__in=["offered", "accepted"])
    ).distinct()


def risk_summary(order: Order) -> dict | None:
    """What the order page shows of risk control: the hits, in the reader's language, and
    the reviews. None when screening found nothing and nobody held the order."""
    from riskcontrol.explain import explain

    hits = list(RuleHit.objects.filter(order=order).select_related("rule").order_by("-weight", "id"))
    reviews = list(Review.objects.filter(order=order).select_related("agent").order_by("-created_at"))
    if not hits and not reviews:
        return None
    return {
        "score": order.risk_score,
        "hits": [
            {
                "rule": h.rule.name,
                "weight": h.weight,
                "text": explain(h.kind, h.facts),
                "outcome": h.get_outcome_display(),
            }
            for h in hits
        ],
        "reviews": reviews,
    }


# --- The review page ---------------------------------------------------------------------
HISTORY_LIMIT = 20
RELATED_DAYS = 90
RELATED_LIMIT = 20


def open_first(qs: QuerySet[Review]) -> QuerySet[Review]:
    """Open reviews first, oldest first (the longest wait is next); then decided ones, latest first."""
    return qs.annotate(
        open_rank=Case(
            When(state__in=Review.OPEN_STATES, then=Value(0)), default=Value(1), output_field=IntegerField()
        )
    ).order_by("open_rank", F("decided_at").desc(nulls_first=True), "created_at", "id")


def review_detail_queryset(user) -> QuerySet[Review]:
    """Visible reviews with what the detail shows, in a fixed number of queries."""
    return (
        reviews_visible_to(user)
        .select_related("order__customer", "decided_by")
        .prefetch_related(
            Prefetch("order__rule_hits", queryset=RuleHit.objects.select_related("rule")),
            Prefetch("decisions", queryset=ReviewDecision.objects.select_related("by")),
        )
    )


@dataclass
class Related:
    """Other recent orders sharing one of this order's values."""

    kind: str
    label: str
    value: str
    orders: list[Order]
    more: bool  # there are more than are shown


def short_fingerprint(value: str) -> str:
    return f"{value[:8]}…{value[-4:]}" if len(value) > 16 else value


def customer_orders(order: Order, *, limit: int) -> tuple[list[Order], int]:
    """The customer's other orders, latest first, and how many there are."""
    others = Order.objects.filter(customer_id=order.customer_id).exclude(pk=order.pk)
    rows = list(others.order_by("-received_at", "-id")[:limit])
    total = len(rows) if len(rows) < limit else others.count()
    return rows, total


def related_orders(order: Order) -> list[Related]:
    """Orders of the last 90 days with the same IP, device or card (on their indexes)."""
    since = timezone.now() - timedelta(days=RELATED_DAYS)
    out = []
    for kind in ("ip", "device", "card"):
        field = BLACKLISTABLE[kind]
        value = getattr(order, field)
        if not value:
            continue
        rows = list(
            Order.objects.filter(**{field: value}, received_at__gte=since)
            .exclude(pk=order.pk)
            .order_by("-received_at", "-id")[: RELATED_LIMIT + 1]
        )
        shown = short_fingerprint(value) if kind == "card" else str(value)
        out.append(
            Related(kind, str(LIST_KIND_LABELS[kind]), shown, rows[:RELATED_LIMIT], len(rows) > RELATED_LIMIT)
        )
    return out


# --- The monthly report --------------------------------------------------------------------
@dataclass
class RuleMonth:
    rule: Rule
    hits: int
    confirmed: int
    false_positives: int
    weight_end: float
    trail: list[tuple[date, float]]

    @property
    def decided(self) -> int:
        return self.confirmed + self.false_positives

    @property
    def precision(self) -> float | None:
        return self.confirmed / self.decided if self.decided else None


def month_bounds(month: date) -> tuple[datetime, datetime]:
    tz = timezone.get_current_timezone()
    nxt = date(month.year + (month.month == 12), month.month % 12 + 1, 1)
    return datetime(month.year, month.month, 1, tzinfo=tz), datetime(nxt.year, nxt.month, 1, tzinfo=tz)


def monthly_report(month: date, *, trail_months: int = 6) -> list[RuleMonth]:
    """Per rule for one month: hits, confirmed, false positives (aggregated on the
    (rule, at) index) and its weight at the end of this and the previous months."""
    start, end = month_bounds(month)
    counts = {
        row["rule_id"]: row
        for row in RuleHit.objects.filter(at__gte=start, at__lt=end)
        .values("rule_id")
        .annotate(
            hits=Count("id"),
            confirmed=Count("id", filter=Q(outcome=RuleHit.Outcome.CONFIRMED)),
            false_positives=Count("id", filter=Q(outcome=RuleHit.Outcome.FALSE_POSITIVE)),
        )
    }
    month_ends = []
    cursor = month
    for _ in range(trail_months):
        month_ends.append((cursor, month_bounds(cursor)[1]))
        cursor = (cursor.replace(day=1) - timedelta(days=1)).replace(day=1)
    month_ends.reverse()
    changes: dict[int, list] = defaultdict(list)
    for rule_id, at, old, new in (
        RuleWeightChange.objects.filter(at__gte=month_ends[0][1] - timedelta(days=31))
        .order_by("at", "id")
        .values_list("rule_id", "at", "old_weight", "new_weight")
    ):
        changes[rule_id].append((at, old, new))
    out = []
    for rule in Rule.objects.order_by("name"):
        c = counts.get(rule.pk, {})

        def weight_at(moment: datetime, rule=rule) -> float:
            for at, old, _new in changes.get(rule.pk, []):
                if at >= moment:
                    return old
            return rule.weight

        if not c and not rule.is_active and not changes.get(rule.pk):
            continue
        out.append(
            RuleMonth(
                rule=rule,
                hits=c.get("hits", 0),
                confirmed=c.get("confirmed", 0),
                false_positives=c.get("false_positives", 0),
                weight_end=weight_at(end),
                trail=[(m, weight_at(e)) for m, e in month_ends],
            )
        )
    return out
