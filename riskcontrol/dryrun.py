"""Dry run: one rule over the orders of the last N days, judged by the same evaluator as
screening at the door, so an admin sees what it would flag before switching it on.

Only the snapshot building differs from the door: instead of a few indexed counts per new
order, one ordered scan of the window rebuilds what each order looked like when it arrived
(earlier orders on the same IP, device or card; the customer's orders before it) by
replaying the window in time order, each order's id being its sequence."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Count, F, FloatField, Func, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from orders.models import Order
from riskcontrol import selectors as sel
from riskcontrol.engine import History, Needs, OrderSnap, RuleKind, RuleSpec, check, needs_of
from riskcontrol.explain import explain
from riskcontrol.models import BlacklistEntry, Review
from riskcontrol.params import clean_params

MIN_DAYS = 1
MAX_DAYS = 365
SCAN_CHUNK = 20000
DECIDED = (Review.State.CONFIRMED, Review.State.FALSE_POSITIVE)


class Epoch(Func):
    """A time as epoch seconds, computed by PostgreSQL: parsing 100,000 timestamps in Python
    costs more than the whole scan. Exact to the microsecond, as `datetime.timestamp()`."""

    template = "EXTRACT(EPOCH FROM %(expressions)s)::float8"
    output_field = FloatField()
    # psycopg already returns a float: without a converter Django passes rows through as
    # they come, which saves a function call per row.
    convert_value = staticmethod(Func._convert_value_noop)

    def as_sqlite(self, compiler, connection, **extra_context):
        # The embedded database stores "YYYY-MM-DD HH:MM:SS[.ffffff]" in UTC: whole seconds
        # plus the fraction. '%%%%s' reaches SQLite as '%s' (it passes the template, then the
        # backend's placeholder conversion).
        template = (
            "(CAST(strftime('%%%%s', %(expressions)s) AS REAL)"
            " + CAST('0' || substr(%(expressions)s, 20) AS REAL))"
        )
        return self.as_sql(compiler, connection, template=template, **extra_context)


@dataclass(frozen=True)
class DryRunSample:
    order_id: int
    tag: str
    received_at: datetime
    amount: Decimal
    facts: dict
    explanation: str
    outcome: str  # the decided review's state (confirmed / false_positive), or ""


@dataclass
class DryRunResult:
    kind: str
    params: dict
    days: int
    channel_id: int | None
    since: datetime
    until: datetime
    scanned: int = 0
    flagged: int = 0
    confirmed: int = 0  # among the flagged: reviews decided confirmed fraud
    false_positives: int = 0  # among the flagged: reviews decided false positive
    samples: list[DryRunSample] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def flagged_share(self) -> float | None:
        return self.flagged / self.scanned if self.scanned else None

    @property
    def decided(self) -> int:
        return self.confirmed + self.false_positives

    @property
    def precision(self) -> float | None:
        return self.confirmed / self.decided if self.decided else None


def rule_dry_run(
    *,
    kind: str,
    params: dict,
    days: int,
    channel_id: int | None = None,
    samples: int = 20,
    now: datetime | None = None,
) -> DryRunResult:
    """What one rule (any type, composite included) would have flagged among the orders
    received in the last `days` days, of one channel or all. Raises ValidationError on bad
    parameters or a window outside 1–365 days. Reads only; writes nothing."""
    started = time.perf_counter()
    if isinstance(days, bool) or not isinstance(days, int) or not MIN_DAYS <= days <= MAX_DAYS:
        raise ValidationError(
            _("The number of days must be a whole number from %(low)d to %(high)d.")
            % {"low": MIN_DAYS, "high": MAX_DAYS}
        )
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
        raise ValidationError(_("The number of samples must be a whole number, 0 or more."))
    params = clean_params(kind, params)
    rule_kind = RuleKind(kind)
    needs = needs_of([RuleSpec(None, rule_kind, params, 0.0)])
    now = now or timezone.now()
    since = now - timedelta(days=days)
    result = DryRunResult(
        kind=rule_kind.value, params=params, days=days, channel_id=channel_id, since=since, until=now
    )

    # Velocity counts see every channel's orders (as at the door), so with a channel chosen
    # and a velocity part the scan takes all channels and judges only that channel's.
    window = Order.objects.filter(received_at__gte=since, received_at__lte=now)
    judged = window.filter(channel_id=channel_id) if channel_id is not None else window
    velocity = bool(needs.ip_minutes or needs.device_minutes or needs.card_hours)
    scan = (window if velocity else judged).annotate(at=Epoch("received_at"))
    if needs.customer:
        scan = scan.annotate(
            account_created_at=Epoch("customer__account_created_at"),
            customer_orders=F("customer__order_count"),
        )
    columns = _columns(_kinds_in(rule_kind, params), needs)
    ix = {name: i for i, name in enumerate(columns)}

    with _reading_everything():
        rows = list(scan.order_by("received_at", "id").values_list(*columns).iterator(chunk_size=SCAN_CHUNK))
        history = _history(needs, rows, ix, since=since)
        customers = (
            _CustomerReplay(
                rows,
                ix,
                judged=judged,
                since=since,
                now=now,
                usual=_compares_with_customers_usual(rule_kind, params),
            )
            if needs.customer
            else None
        )
        places = _Places(ix, warehouses=needs.warehouse) if needs.phone_coords else None
        listed = _Blacklist(needs.blacklist, ix, now=now)
        outcomes = _decided_reviews(since=since, until=now, channel_id=channel_id)
    channel_avg = (
        {cid: sel.channel_usual_amount(cid) for cid in {r[ix["channel_id"]] for r in rows}}
        if needs.channel_avg
        else {}
    )
    texts = [(name, ix[column]) for name, column in TEXT_COLUMNS if column in ix]
    i_id, i_at, i_amount, i_channel = ix["id"], ix["at"], ix["amount"], ix["channel_id"]

    found: deque[tuple] = deque(maxlen=samples)
    for row in rows:
        if channel_id is not None and row[i_channel] != channel_id:
            continue
        at, amount = row[i_at], row[i_amount]
        extra = {name: row[i] or "" for name, i in texts}
        if customers is not None:
            extra.update(customers.as_of(row, at, amount))
        if places is not None:
            extra.update(places.of(row))
        snap = OrderSnap(
            key=row[i_id],
            at=at,
            amount=amount,
            channel_id=row[i_channel],
            channel_avg_amount=channel_avg.get(row[i_channel]),
            blacklisted=listed.of(row),
            **extra,
        )
        result.scanned += 1
        facts = check(rule_kind, params, snap, history, row[i_id])
        if facts is None:
            continue
        result.flagged += 1
        outcome = outcomes.get(row[i_id], "")
        if outcome == Review.State.CONFIRMED:
            result.confirmed += 1
        elif outcome == Review.State.FALSE_POSITIVE:
            result.false_positives += 1
        if samples:
            found.append((row[i_id], amount, facts, outcome))

    shown = {
        pk: (tag, at)
        for pk, tag, at in Order.objects.filter(pk__in=[s[0] for s in found]).values_list(
            "id", "tag", "received_at"
        )
    }
    result.samples = [
        DryRunSample(
            order_id=order_id,
            tag=shown[order_id][0],
            received_at=shown[order_id][1],
            amount=amount,
            facts=facts,
            explanation=explain(rule_kind, facts),
            outcome=outcome,
        )
        for order_id, amount, facts, outcome in reversed(found)
        if order_id in shown  # an order deleted meanwhile is no sample
    ]
    result.elapsed_s = round(time.perf_counter() - started, 3)
    return result


@contextmanager
def _reading_everything():
    """One transaction for the reads. On PostgreSQL the scan's server-side cursor is then
    planned for reading every row (a cursor is otherwise planned for its first tenth, which
    picks slow nested loops here), and grouping gets the memory to stay off disk."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL cursor_tuple_fraction = 1.0")
                cursor.execute("SET LOCAL work_mem = '64MB'")
        yield


def _kinds_in(kind: RuleKind, params: dict) -> set[RuleKind]:
    if kind == RuleKind.COMPOSITE:
        return {RuleKind(c["kind"]) for c in params["all"]}
    return {kind}


# (OrderSnap field, Order column) for the text the rules read as is.
TEXT_COLUMNS = (
    ("note", "note"),
    ("address", "address"),
    ("coupon", "coupon_code"),
    ("ip", "client_ip"),
    ("device", "device_id"),
    ("card", "card_fingerprint"),
    ("phone", "customer_phone"),
)


def _columns(kinds: set[RuleKind], needs: Needs) -> list[str]:
    """Only the columns the rule looks at, besides what every sample shows."""
    lists = needs.blacklist
    wanted = {
        "address": RuleKind.ADDRESS_KEYWORDS in kinds or "address" in lists,
        "note": RuleKind.ROUND_AMOUNT in kinds,
        "coupon_code": RuleKind.NEW_ACCOUNT_COUPON in kinds,
        "client_ip": bool(needs.ip_minutes) or "ip" in lists,
        "device_id": bool(needs.device_minutes) or "device" in lists,
        "card_fingerprint": bool(needs.card_hours) or "card" in lists,
        "customer_phone": "phone" in lists,
        "customer_phone_city": needs.phone_coords,
        "province": needs.phone_coords,
        "city": needs.phone_coords,
        "latitude": needs.phone_coords,
        "longitude": needs.phone_coords,
        "customer_id": needs.customer,
        "account_created_at": needs.customer,
        "customer_orders": needs.customer,
    }
    return ["id", "at", "amount", "channel_id"] + [name for name, on in wanted.items() if on]


def _history(needs: Needs, rows: list, ix: dict[str, int], *, since: datetime) -> History:
    """Orders by IP, device and (card, amount): the window itself, and the look-back before
    it as long as the rule's longest window so the window's first orders count theirs too.
    Filled once, then read: `count_before` only counts what came before (time, id)."""
    history = History()
    i_id, i_at, i_amount = ix["id"], ix["at"], ix["amount"]
    for kind, column, seconds in (
        ("ip", "client_ip", needs.ip_minutes * 60),
        ("device", "device_id", needs.device_minutes * 60),
        ("card", "card_fingerprint", needs.card_hours * 3600),
    ):
        if not seconds:
            continue
        i_value = ix[column]
        seen = set()
        for row in rows:
            value = row[i_value]
            if value:
                seen.add(value)
                history.add(
                    kind,
                    (value, row[i_amount]) if kind == "card" else value,
                    row[i_at],
                    row[i_id],
                )
        earlier = Order.objects.filter(
            received_at__gte=since - timedelta(seconds=seconds), received_at__lt=since
        )
        earlier = earlier.filter(client_ip__isnull=False) if kind == "ip" else earlier.exclude(**{column: ""})
        for value, at, pk, amount in (
            earlier.annotate(at=Epoch("received_at"))
            .values_list(column, "at", "id", "amount")
            .iterator(chunk_size=SCAN_CHUNK)
        ):
            if value in seen:
                history.add(kind, (value, amount) if kind == "card" else value, at, pk)
    return history


def _compares_with_customers_usual(kind: RuleKind, params: dict) -> bool:
    if kind == RuleKind.COMPOSITE:
        return any(_compares_with_customers_usual(RuleKind(c["kind"]), c["params"]) for c in params["all"])
    return kind == RuleKind.AMOUNT_OVER_USUAL and params["basis"] == "customer"


class _CustomerReplay:
    """Each customer's prior orders and usual amount as they stood when each order came in.

    As at the door: the prior count is the customer's order counter (so it includes the
    earlier orders of the same batch), and the usual amount averages the orders stored
    before the batch (same arrival time = same batch). The count at the window's start is
    the counter less the customer's orders from then on; the sums before the window come
    from one grouped query, made only when the rule compares with a customer's usual."""

    def __init__(
        self, rows: list, ix: dict[str, int], *, judged, since: datetime, now: datetime, usual: bool
    ):
        self.i_customer, self.i_created = ix["customer_id"], ix["account_created_at"]
        i_orders = ix["customer_orders"]
        later: dict[int, int] = defaultdict(int)  # orders from `since` on
        for row in rows:
            later[row[self.i_customer]] += 1
        after = Order.objects.filter(received_at__gt=now).values("customer_id").annotate(n=Count("id"))
        for customer_id, n in after.values_list("customer_id", "n"):
            if customer_id in later:
                later[customer_id] += n
        # [prior count, stored count, stored sum, batch arrival time, batch count, batch sum]
        self.state: dict[int, list] = {}
        for row in rows:
            customer_id = row[self.i_customer]
            if customer_id not in self.state:
                prior = row[i_orders] - later[customer_id]
                prior = prior if prior > 0 else 0
                self.state[customer_id] = [prior, 0, Decimal(0), None, 0, Decimal(0)]
        self.usual = usual
        if usual:
            before = (
                Order.objects.filter(received_at__lt=since, customer_id__in=judged.values("customer_id"))
                .values("customer_id")
                .annotate(n=Count("id"), total=Sum("amount"))
                .values_list("customer_id", "n", "total")
            )
            for customer_id, n, total in before:
                if customer_id in self.state:
                    self.state[customer_id][1:3] = [n, total]

    def as_of(self, row: tuple, at: float, amount: Decimal) -> dict:
        """This order's customer fields; then the order is counted."""
        state = self.state[row[self.i_customer]]
        prior, avg = state[0], None
        state[0] += 1
        if self.usual:
            if state[3] != at:  # a new batch: the previous one is stored now
                state[1] += state[4]
                state[2] += state[5]
                state[3], state[4], state[5] = at, 0, Decimal(0)
            avg = state[2] / state[1] if state[1] and prior else None
            state[4] += 1
            state[5] += amount
        created = row[self.i_created]
        return {
            "customer_prior_orders": prior,
            "customer_avg_amount": avg,
            "account_age_days": (at - created) / 86400 if created is not None else None,
        }


class _Places:
    """Phone home city, delivery place and ship-from warehouse coordinates of a row, worked
    out once per distinct place: a window has far fewer places than orders."""

    def __init__(self, ix: dict[str, int], *, warehouses: bool) -> None:
        self.columns = [ix[c] for c in ("customer_phone_city", "province", "city", "latitude", "longitude")]
        self.book = sel.WarehouseBook() if warehouses else None
        self.seen: dict[tuple, dict] = {}

    def of(self, row: tuple) -> dict:
        key = tuple(row[i] for i in self.columns)
        out = self.seen.get(key)
        if out is None:
            out = self.seen[key] = self._work_out(*key)
        return out

    def _work_out(self, phone_city, province, city, lat, lng) -> dict:
        phone_city, province = phone_city or "", province or ""
        out = {
            "phone_city": phone_city,
            "phone_coords": sel.city_coords(phone_city),
            "delivery_city": city or province,
            "delivery_coords": (float(lat), float(lng)) if lat is not None else None,
        }
        warehouse = self.book.ship_from(province) if self.book is not None else None
        if warehouse is not None:
            out["warehouse_name"] = warehouse.name
            out["warehouse_coords"] = (float(warehouse.latitude), float(warehouse.longitude))
        return out


class _Blacklist:
    """The blacklist in force now (one query) and which of its entries a row matches."""

    def __init__(self, lists: frozenset[str], ix: dict[str, int], *, now: datetime) -> None:
        self.exact: dict[tuple[str, str], str] = {}
        self.fragments: list[tuple[str, str]] = []
        self.columns = [
            (kind, ix[column])
            for kind, column in (
                ("ip", "client_ip"),
                ("phone", "customer_phone"),
                ("device", "device_id"),
                ("card", "card_fingerprint"),
            )
            if kind in lists
        ]
        self.i_address = ix.get("address")
        if not lists:
            return
        live = BlacklistEntry.objects.filter(kind__in=lists).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        )
        for kind, value, reason in live.values_list("kind", "value", "reason"):
            if kind == "address":
                self.fragments.append((value, reason))
            else:
                self.exact[(kind, value)] = reason

    def of(self, row: tuple) -> tuple[tuple[str, str, str], ...]:
        if not self.exact and not self.fragments:
            return ()
        listed = []
        for kind, i in self.columns:
            value = row[i]
            if value and (kind, value) in self.exact:
                listed.append((kind, value, self.exact[(kind, value)]))
        if self.fragments:
            address = row[self.i_address] or ""
            listed += [
                ("address", fragment, reason) for fragment, reason in self.fragments if fragment in address
            ]
        return tuple(listed)


def _decided_reviews(*, since: datetime, until: datetime, channel_id: int | None) -> dict[int, str]:
    """The state of the last decided review of each order of the window that has one."""
    reviews = Review.objects.filter(
        state__in=DECIDED, order__received_at__gte=since, order__received_at__lte=until
    )
    if channel_id is not None:
        reviews = reviews.filter(order__channel_id=channel_id)
    return dict(reviews.order_by("decided_at", "id").values_list("order_id", "state"))
