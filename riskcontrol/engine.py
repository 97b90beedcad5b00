"""The risk rules themselves: pure functions over an order snapshot and its history counts.

No Django here. Screening at the door, the dry run over past orders and the tests all call
`evaluate`; only how the snapshot and the history are built differs (database counts for a
live order, an in-memory replay for the dry run). A hit carries facts, not prose: the Django
side turns them into a sentence in the reader's language.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from math import asin, cos, radians, sin, sqrt
from typing import Any


class RuleKind(StrEnum):
    ADDRESS_KEYWORDS = "address_keywords"
    IP_VELOCITY = "ip_velocity"
    DEVICE_VELOCITY = "device_velocity"
    CARD_SAME_AMOUNT = "card_same_amount"
    ROUND_AMOUNT = "round_amount"
    PHONE_DISTANCE = "phone_distance"
    NEW_ACCOUNT_COUPON = "new_account_coupon"
    NEW_ACCOUNT = "new_account"
    AMOUNT_OVER_USUAL = "amount_over_usual"
    BLACKLIST = "blacklist"
    COMPOSITE = "composite"


class ListKind(StrEnum):
    """What a blacklist entry matches."""

    IP = "ip"
    PHONE = "phone"
    DEVICE = "device"
    CARD = "card"
    ADDRESS = "address"  # a fragment of the address as written


class Decision(StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FLAG = "flag"  # between the thresholds: marked for attention, not held
    QUARANTINE = "quarantine"


@dataclass(frozen=True, slots=True)
class OrderSnap:
    """What the rules may look at for one order. Times are epoch seconds."""

    key: Any  # the caller's handle (an index in a batch, an order id in a dry run)
    at: float
    amount: Decimal
    note: str = ""
    address: str = ""
    coupon: str = ""
    ip: str = ""
    device: str = ""
    card: str = ""
    phone: str = ""
    phone_city: str = ""
    phone_coords: tuple[float, float] | None = None
    delivery_city: str = ""
    delivery_coords: tuple[float, float] | None = None
    warehouse_name: str = ""
    warehouse_coords: tuple[float, float] | None = None
    channel_id: int | None = None
    customer_prior_orders: int = 0
    customer_avg_amount: Decimal | None = None
    account_age_days: float | None = None  # None: we know nothing of the account
    channel_avg_amount: Decimal | None = None
    blacklisted: tuple[tuple[str, str, str], ...] = ()  # (list kind, value, reason) that match


@dataclass(frozen=True, slots=True)
class RuleSpec:
    id: Any
    kind: RuleKind
    params: dict
    weight: float


@dataclass(frozen=True, slots=True)
class Hit:
    rule_id: Any
    kind: RuleKind
    weight: float
    facts: dict


@dataclass(slots=True)
class Verdict:
    key: Any
    score: float
    decision: Decision
    hits: list[Hit]


class History:
    """Earlier orders by IP, device and (card, amount), as sorted (time, sequence) pairs.

    `count_before` counts the pairs in [since, before): the live path puts stored orders at
    sequence -1 and a batch's own orders at their index, so the 3rd order of a batch sees the
    first two; the dry run gives every order its id."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, Any], list[tuple[float, int]]] = defaultdict(list)
        self._sorted = True

    def add(self, kind: str, value: Any, at: float, seq: int = -1) -> None:
        if value in ("", None):
            return
        self._keys[(kind, value)].append((at, seq))
        self._sorted = False

    def add_order(self, snap: OrderSnap, seq: int) -> None:
        self.add("ip", snap.ip, snap.at, seq)
        self.add("device", snap.device, snap.at, seq)
        if snap.card:
            self.add("card", (snap.card, snap.amount), snap.at, seq)

    def _sort(self) -> None:
        if not self._sorted:
            for values in self._keys.values():
                values.sort()
            self._sorted = True

    def count_before(self, kind: str, value: Any, *, since: float, before: tuple[float, int]) -> int:
        if value in ("", None):
            return 0
        self._sort()
        values = self._keys.get((kind, value))
        if not values:
            return 0
        return bisect.bisect_left(values, before) - bisect.bisect_left(values, (since, -(2**62)))


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lng1, lat2, lng2 = map(radians, (a[0], a[1], b[0], b[1]))
    h = sin((lat2 - lat1) / 2) ** 2 + cos(lat1) * cos(lat2) * sin((lng2 - lng1) / 2) ** 2
    return 2 * 6371.0088 * asin(sqrt(h))


def _account_age(order: OrderSnap) -> float:
    """Days since the account was made; a first order from an account we know nothing of is new."""
    if order.account_age_days is not None:
        return order.account_age_days
    return 0.0 if order.customer_prior_orders == 0 else float("inf")


# --- One function per rule kind: facts when it hits, None when it does not --------------
def _address_keywords(order: OrderSnap, p: dict, history: History, seq: int) -> dict | None:
    text = order.address.casefold()
    for word in p["keywords"]:
        if word and word.casefold() in text:
            return {"keyword": word}
    return None


def _velocity(kind: str, value: str):
    def check(order: OrderSnap, p: dict, history: History, seq: int) -> dict | None:
        key = getattr(order, value)
        if not key:
            return None
        since = order.at - p["minutes"] * 60
        n = history.count_before(kind, key, since=since, before=(order.at, seq)) + 1
        if n >= p["count"]:
            return {"n": n, "minutes": p["minutes"]}
        return None

    return check


def _card_same_amount(order: OrderSnap, p: dict, history: History, seq: int) -> dict | None:
    if not order.card:
        return None
    since = order.at - p["hours"] * 3600
    n = history.count_before("card", (order.card, order.amount), since=since, before=(order.at, seq)) + 1
    if n >= p["count"]:
        return {"n": n, "amount": str(order.amount), "hours": p["hours"]}
    return None


def _round_amount(order: OrderSnap, p: dict, history: History, seq: int) -> dict | None:
    multiple = Decimal(p["multiple"])
    if order.amount < multiple or order.amount % multiple:
        return None
    if p.get("require_no_note", True) and order.note.strip():
        return None
    return {"amount": str(order.amount), "multiple": p["multiple"]}


def _phone_distance(order: OrderSnap, p: dict, history: History, seq: int) -> dict | None:
    if order.phone_coords is None:
        return None
    if p["reference"] == "warehouse":
        other, name = order.warehouse_coords, order.warehouse_name
    else:
        other, name = order.delivery_coords, order.delivery_city
    if other is None:
        return None
    km = haversine_km(order.phone_coords, other)
    if km > p["km"]:
        return {"phone_city": order.phone_city, "place": name, "reference": p["reference"], "km": round(km)}
    return None


def _new_account(order: OrderSnap, p: dict, history: History, seq: int) -> dict | None:
    age = _account_age(order)
    if age <= p["days"]:
        return {"age_days": round(age, 1)}
    return None


def _new_account_coupon(order: OrderSnap, p: dict, history: History, seq: int) -> dict | None:
    if not order.coupon or order.customer_prior_orders:
        return None
    age = _account_age(order)
    if age <= p["days"]:
        return {"age_days": round(age, 1), "coupon": order.coupon}
    return None


def _amount_over_usual(order: OrderSnap, p: dict, history: History, seq: int) -> dict | None:
    basis, usual = "channel", order.channel_avg_amount
    if (
        p["basis"] == "customer"
        and order.customer_avg_amount is not None
        and order.customer_prior_orders >= p["min_history"]
    ):
        basis, usual = "customer", order.customer_avg_amount
    if not usual or usual <= 0:
        return None
    ratio = order.amount / usual
    if ratio > Decimal(str(p["k"])):
        return {
            "amount": str(order.amount),
            "basis": basis,
            "usual": str(usual.quantize(Decimal("0.01"))),
            "ratio": float(round(ratio, 1)),
        }
    return None


def _blacklist(order: OrderSnap, p: dict, history: History, seq: int) -> dict | None:
    kinds = set(p["kinds"])
    for kind, value, reason in order.blacklisted:
        if kind in kinds:
            return {"list": kind, "value": value, "reason": reason}
    return None


CHECKS = {
    RuleKind.ADDRESS_KEYWORDS: _address_keywords,
    RuleKind.IP_VELOCITY: _velocity("ip", "ip"),
    RuleKind.DEVICE_VELOCITY: _velocity("device", "device"),
    RuleKind.CARD_SAME_AMOUNT: _card_same_amount,
    RuleKind.ROUND_AMOUNT: _round_amount,
    RuleKind.PHONE_DISTANCE: _phone_distance,
    RuleKind.NEW_ACCOUNT: _new_account,
    RuleKind.NEW_ACCOUNT_COUPON: _new_account_coupon,
    RuleKind.AMOUNT_OVER_USUAL: _amount_over_usual,
    RuleKind.BLACKLIST: _blacklist,
}


def check(kind: RuleKind, params: dict, order: OrderSnap, history: History, seq: int) -> dict | None:
    """Facts for one rule (or condition) on one order, or None."""
    if kind == RuleKind.COMPOSITE:
        parts = []
        for condition in params["all"]:
            facts = check(RuleKind(condition["kind"]), condition["params"], order, history, seq)
            if facts is None:
                return None
            parts.append({"kind": condition["kind"], "facts": facts})
        return {"parts": parts}
    return CHECKS[kind](order, params, history, seq)


def evaluate(
    order: OrderSnap,
    rules: Iterable[RuleSpec],
    history: History,
    *,
    seq: int = 0,
    review_threshold: float,
    quarantine_threshold: float,
) -> Verdict:
    """Every rule that hits, the summed weight, and what that score means."""
    hits = []
    for rule in rules:
        facts = check(rule.kind, rule.params, order, history, seq)
        if facts is not None:
            hits.append(Hit(rule.id, rule.kind, rule.weight, facts))
    score = round(sum(h.weight for h in hits), 2)
    if hits and score >= quarantine_threshold:
        decision = Decision.QUARANTINE
    elif hits and score >= review_threshold:
        decision = Decision.FLAG
    else:
        decision = Decision.PASS
    return Verdict(order.key, score, decision, hits)


# --- What a rule needs from history: the snapshot builders fetch only that ---------------
@dataclass(frozen=True)
class Needs:
    ip_minutes: int = 0
    device_minutes: int = 0
    card_hours: int = 0
    customer: bool = False
    channel_avg: bool = False
    phone_coords: bool = False
    warehouse: bool = False
    blacklist: frozenset[str] = field(default_factory=frozenset)


def needs_of(rules: Iterable[RuleSpec]) -> Needs:
    ip = device = card = 0
    customer = channel = phone = warehouse = False
    lists: set[str] = set()

    def visit(kind: RuleKind, p: dict) -> None:
        nonlocal ip, device, card, customer, channel, phone, warehouse
        if kind == RuleKind.IP_VELOCITY:
            ip = max(ip, p["minutes"])
        elif kind == RuleKind.DEVICE_VELOCITY:
            device = max(device, p["minutes"])
        elif kind == RuleKind.CARD_SAME_AMOUNT:
            card = max(card, p["hours"])
        elif kind in (RuleKind.NEW_ACCOUNT, RuleKind.NEW_ACCOUNT_COUPON):
            customer = True
        elif kind == RuleKind.AMOUNT_OVER_USUAL:
            customer = True
            channel = True
        elif kind == RuleKind.PHONE_DISTANCE:
            phone = True
            warehouse = warehouse or p["reference"] == "warehouse"
        elif kind == RuleKind.BLACKLIST:
            lists.update(p["kinds"])
        elif kind == RuleKind.COMPOSITE:
            for condition in p["all"]:
                visit(RuleKind(condition["kind"]), condition["params"])

    for rule in rules:
        visit(rule.kind, rule.params)
    return Needs(ip, device, card, customer, channel, phone, warehouse, frozenset(lists))


# --- Learning ----------------------------------------------------------------------------
def posterior_precision(
    confirmed: int, false_positives: int, *, prior_precision: float, strength: float
) -> float:
    """The mean of Beta(prior·s + confirmed, (1 − prior)·s + false positives): with few cases
    it stays near the prior, with many it follows what reviewers found."""
    a = prior_precision * strength + confirmed
    b = (1 - prior_precision) * strength + false_positives
    return a / (a + b)


def learned_weight(
    *, base: float, precision: float, neutral: float, low: float, high: float, current: float, step: float
) -> float:
    """Where the weight should go: the admin's base scaled by how the rule's precision
    compares with the neutral precision, bounded, and moved at most `step` of the way
    there per run so one night cannot swing a rule."""
    target = min(high, max(low, base * precision / neutral))
    moved = current + (target - current) * step
    return round(min(high, max(low, moved)), 2)
