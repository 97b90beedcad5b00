"""Every write to an order goes through here: ingestion (all four ways in), stage
transitions and hand edits. Each writes its audit events and schedules the board push."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework import serializers

from dispatch import services as dispatch_services
from orders import normalize as norm
from orders.actors import Actor
from orders.models import Channel, Customer, Order, OrderEvent, TagSequence
from orders.selectors import order_visible_to
from orders.serializers import OrderInSerializer, reusable
from orders.sla import due_at_for
from orders.sla_policies import sla_book
from orders.states import TERMINAL_STAGES, Role, Stage, TransitionError, check_transition
from riskcontrol import services as risk_services
from riskcontrol.services import DoorScreening

logger = logging.getLogger(__name__)

DATA_FLAGS = frozenset(
    {
        norm.FLAG_ADDRESS_AMBIGUOUS,
        norm.FLAG_ADDRESS_MISSING,
        norm.FLAG_PHONE_INVALID,
        norm.FLAG_PHONE_MISSING,
        norm.FLAG_CUSTOMER_NAME_MISSING,
        norm.FLAG_NO_ITEMS,
        norm.FLAG_AMOUNT_MISMATCH,
    }
)


class OrderNotFound(Exception):
    pass


class FieldNotEditable(TransitionError):
    code = "field_forbidden"


@dataclass
class IngestResult:
    index: int
    status: str  # created | updated | ignored | rejected
    id: int | None = None
    tag: str | None = None
    external_id: str | None = None
    reason: str = ""
    errors: dict[str, Any] = field(default_factory=dict)
    order: Order | None = field(default=None, repr=False)  # the stored row, for the caller's answer

    def as_dict(self) -> dict[str, Any]:
        out = {
            "index": self.index,
            "status": self.status,
            "id": self.id,
            "tag": self.tag,
            "external_id": self.external_id,
            "reason": self.reason,
        }
        if self.errors:
            out["errors"] = self.errors
        return out


def _validate(serializer: OrderInSerializer, payload: Any) -> tuple[dict | None, dict]:
    if not isinstance(payload, dict):
        return None, {"non_field_errors": ["Each order must be a JSON object."]}
    try:
        return serializer.run_validation(payload), {}
    except serializers.ValidationError as exc:
        return None, serializers.as_serializer_error(exc)


@dataclass
class _Prepared:
    """A validated order turned into model field values (pure work, no queries)."""

    index: int
    channel: Channel
    external_id: str
    account_key: str
    customer: dict
    values: dict
    data_flags: list[str]


def _prepare(index: int, data: dict, channel: Channel) -> _Prepared:
    customer = data["customer"]
    phone = norm.normalize_phone(customer["phone"])
    parsed = norm.parse_address(data["address"])
    flags: list[str] = []
    if not data["address"].strip():
        flags.append(norm.FLAG_ADDRESS_MISSING)
    elif parsed.ambiguous:
        flags.append(norm.FLAG_ADDRESS_AMBIGUOUS)
    if not customer["phone"].strip():
        flags.append(norm.FLAG_PHONE_MISSING)
    elif not phone.valid:
        flags.append(norm.FLAG_PHONE_INVALID)
    if not customer["name"].strip():
        flags.append(norm.FLAG_CUSTOMER_NAME_MISSING)
    items = [
        {"sku": i["sku"], "name": i["name"], "qty": i["qty"], "price": str(i["price"])} for i in data["items"]
    ]
    if not items:
        flags.append(norm.FLAG_NO_ITEMS)
    else:
        total = sum((Decimal(i["price"]) * i["qty"] for i in items), Decimal("0"))
        # Coupons and shipping make the amount differ; only a larger amount is suspicious.
        if total and data["amount"] > total * 2:
            flags.append(norm.FLAG_AMOUNT_MISMATCH)
    kind = data["kind"] or norm.detect_kind(data["note"]) or Order.Kind.NORMAL
    if customer["account_id"]:
        account_key = f"acct:{customer['account_id']}"
    elif phone.valid:
        account_key = f"phone:{phone.e164}"
    else:
        account_key = f"anon:{data['external_id']}"
    values = {
        "customer_name": customer["name"].strip(),
        "customer_phone": phone.e164,
        "customer_phone_raw": customer["phone"].strip()[:40],
        "customer_phone_city": phone.home_city,
        "is_vip": customer["is_vip"],
        "address": data["address"].strip(),
        "province": parsed.province,
        "city": parsed.city,
        "district": parsed.district,
        "adcode": parsed.adcode,
        "latitude": parsed.latitude,
        "longitude": parsed.longitude,
        "items": items,
        "amount": data["amount"],
        "currency": data["currency"],
        "coupon_code": data["coupon_code"].strip(),
        "note": data["note"],
        "category": data["category"].strip(),
        "urgency": data["urgency"],
        "kind": kind,
        "client_ip": data["client_ip"],
        "device_id": data["device_id"].strip(),
        "card_fingerprint": norm.hash_card_fingerprint(data["card_fingerprint"]),
        "source_created_at": data["source_created_at"],
        "source_updated_at": data["source_updated_at"],
    }
    return _Prepared(
        index=index,
        channel=channel,
        external_id=data["external_id"],
        account_key=account_key,
        customer=customer | {"phone_e164": phone.e164, "phone_city": phone.home_city},
        values=values,
        data_flags=flags,
    )


def order_ingest(*, payload: Any, actor: Actor, channel: Channel | None = None) -> IngestResult:
    """Store one order from any source; see `order_ingest_batch`."""
    return order_ingest_batch(payloads=[payload], actor=actor, channel=channel)[0]


def order_ingest_batch(
    *, payloads: list[Any], actor: Actor, channel: Channel | None = None
) -> list[IngestResult]:
    """Validate and store many orders; each gets its own result and bad ones never stop good ones.

    Idempotent on (channel, external id): a newer `source_updated_at` updates, an older or
    equal one is ignored (older ones counted on the order). When `channel` is given (webhooks,
    imports, pollers) every payload belongs to it whatever it says.
    """
    results: list[IngestResult | None] = [None] * len(payloads)
    valid: list[tuple[int, dict]] = []
    serializer = reusable(OrderInSerializer)
    for index, payload in enumerate(payloads):
        if channel is not None and isinstance(payload, dict):
            payload = {**payload, "channel": channel.code}
        data, errors = _validate(serializer, payload)
        if data is None:
            ext = payload.get("external_id") if isinstance(payload, dict) else None
            results[index] = IngestResult(
                index=index,
                status="rejected",
                external_id=str(ext) if ext is not None else None,
                reason="invalid",
                errors=errors,
            )
        else:
            valid.append((index, data))

    if valid:
        try:
            stored = _store_valid(valid, actor=actor)
        except IntegrityError:
            # A concurrent delivery created one of these orders after we looked: the unique
            # constraint caught it and the transaction rolled back. Looking again now sees it.
            logger.info("ingest raced with a concurrent delivery; retrying once")
            stored = _store_valid(valid, actor=actor)
        for result in stored:
            results[result.index] = result
    return [r for r in results if r is not None]


@transaction.atomic
def _store_valid(valid: list[tuple[int, dict]], *, actor: Actor) -> list[IngestResult]:
    codes = {data["channel"] for _, data in valid}
    channels = {c.code: c for c in Channel.objects.filter(code__in=codes)}
    results: list[IngestResult] = []
    prepared: list[_Prepared] = []
    for index, data in valid:
        chan = channels.get(data["channel"])
        if chan is None or not chan.is_active:
            problem = "is not a known channel" if chan is None else "is switched off"
            results.append(
                IngestResult(
                    index=index,
                    status="rejected",
                    external_id=data["external_id"],
                    reason="unknown_channel",
                    errors={"channel": [f"'{data['channel']}' {problem}."]},
                )
            )
            continue
        prepared.append(_prepare(index, data, chan))
    if not prepared:
        return results

    now = timezone.now()
    existing = _lock_existing_orders(prepared)
    hidden = _hidden_from(actor, existing.values())
    if hidden:
        keep = []
        for item in prepared:
            current = existing.get((item.channel.pk, item.external_id))
            if current is None or current.pk not in hidden:
                keep.append(item)
                continue
            results.append(
                IngestResult(
                    index=item.index,
                    status="rejected",
                    external_id=item.external_id,
                    reason="not_yours",
                    errors={
                        "external_id": [
                            f"Channel '{item.channel.code}' already has an order '{item.external_id}' "
                            "that is not one you may see; it was not changed."
                        ]
                    },
                )
            )
        prepared = keep
        if not prepared:
            return results

    new_orders: dict[tuple[int, str], Order] = {}
    new_order_updates: dict[tuple[int, str], list[dict]] = defaultdict(list)
    changed: dict[int, tuple[Order, dict]] = {}
    stale_counts: dict[int, int] = defaultdict(int)
    events: list[OrderEvent] = []
    pending: list[tuple[_Prepared, str, Order]] = []  # (item, status, order) for results

    for item in prepared:
        key = (item.channel.pk, item.external_id)
        current = existing.get(key) or new_orders.get(key)
        if current is None:
            order = Order(
                channel=item.channel,
                external_id=item.external_id,
                stage=Stage.PENDING_REVIEW,
                stage_entered_at=now,
                received_at=now,
                due_at=due_at_for(
                    stage=Stage.PENDING_REVIEW,
                    entered_at=now,
                    expedited=item.values["urgency"] == Order.Urgency.EXPEDITED,
                    category=item.values["category"],
                    policies=sla_book(),
                ),
                flags=sorted(item.data_flags),
                is_flagged=bool(item.data_flags),
                **item.values,
            )
            new_orders[key] = order
            pending.append((item, "created", order))
            continue
        if item.values["source_updated_at"] > current.source_updated_at:
            diff = _apply_source_values(current, item)
            if current.pk is None:
                new_order_updates[key].append(diff)
            else:
                prior = changed.get(current.pk, (current, {}))[1]
                changed[current.pk] = (current, prior | diff)
            pending.append((item, "updated", current))
        else:
            if current.pk is not None and item.values["source_updated_at"] < current.source_updated_at:
                stale_counts[current.pk] += 1
            pending.append((item, "ignored", current))

    # Customers are written for what is stored (created or newer), never for ignored data.
    stored = [(item, status, order) for item, status, order in pending if status != "ignored"]
    customers = _upsert_customers(stored, now=now)
    for item, status, order in stored:
        if status == "created":
            customer = customers[(item.channel.pk, item.account_key)]
            order.customer = customer
            order.is_returning = customer._orders_before > 0
            order._prior_orders = customer._orders_before
            customer._orders_before += 1
    _assign_tags(list(new_orders.values()), now=now)
    # Screened before the insert: a held order is written held, so no one can pick it first.
    screening = DoorScreening(orders=list(new_orders.values()), now=now)
    screening.before_insert()
    Order.objects.bulk_create(list(new_orders.values()))
    risk_events = screening.after_insert(write_events=False)
    # In the same transaction: an accepted order is always in the pool or with an owner.
    dispatch_services.pool_add_orders(orders=list(new_orders.values()), now=now)

    for order in new_orders.values():
        events.append(
            _event(
                order,
                actor,
                OrderEvent.Kind.INGESTED,
                to_stage=order.stage,
                at=now,
                changes={"flags": order.flags} if order.flags else {},
            )
        )
        for diff in new_order_updates.get((order.channel_id, order.external_id), []):
            events.append(_event(order, actor, OrderEvent.Kind.UPDATED, at=now, changes=diff))
    events += risk_events  # after each order's "received" line
    if changed:
        fields = sorted(
            {f for _, diff in changed.values() for f in diff} | {"flags", "is_flagged", "updated_at"}
        )
        model_fields = [f for f in fields if f in {fld.name for fld in Order._meta.fields}]
        for order, _diff in changed.values():
            order.updated_at = now
        Order.objects.bulk_update([o for o, _ in changed.values()], model_fields)
        for order, diff in changed.values():
            events.append(_event(order, actor, OrderEvent.Kind.UPDATED, at=now, changes=diff))
    for order_id, count in stale_counts.items():
        Order.objects.filter(pk=order_id).update(stale_deliveries=F("stale_deliveries") + count)
    for item, status, order in pending:
        if status == "ignored" and order.pk in stale_counts:
            events.append(
                _event(
                    order,
                    actor,
                    OrderEvent.Kind.IGNORED_STALE,
                    at=now,
                    reason=f"source_updated_at {item.values['source_updated_at'].isoformat()} "
                    f"is older than {order.source_updated_at.isoformat()}",
                )
            )
    OrderEvent.objects.bulk_create(events)
    if changed:
        risk_services.rescreen_updated(
            orders=[o for o, diff in changed.values() if set(diff) & risk_services.SCREENED_FIELDS], now=now
        )

    for item, status, order in pending:
        reason = ""
        if status == "ignored":
            older = item.values["source_updated_at"] < order.source_updated_at
            reason = "older_than_stored" if older else "same_as_stored"
        order.channel = item.channel  # the same instance for every result: no lazy loads
        results.append(
            IngestResult(
                index=item.index,
                status=status,
                id=order.pk,
                tag=order.tag,
                external_id=order.external_id,
                reason=reason,
                order=order,
            )
        )
    touched = [o.pk for o in new_orders.values()] + list(changed)
    if touched:
        _after_commit_push(touched)
    return results


def _hidden_from(actor: Actor, orders) -> set[int]:
    """The stored orders a person delivering by hand may not see, and so may not change: a
    regional supervisor's delivery neither rewrites another region's order nor reads it back
    in the answer. The system and integration accounts (orders.add_order) deliver for whole
    channels and are not limited."""
    user = actor.user
    ids = {order.pk for order in orders}
    if user is None or not ids or user.has_perm("orders.add_order"):
        return set()
    return ids - set(order_visible_to(user).filter(pk__in=ids).values_list("pk", flat=True))


def _lock_existing_orders(prepared: list[_Prepared]) -> dict[tuple[int, str], Order]:
    by_channel: dict[int, set[str]] = defaultdict(set)
    for item in prepared:
        by_channel[item.channel.pk].add(item.external_id)
    found: dict[tuple[int, str], Order] = {}
    for channel_id, ids in by_channel.items():
        rows = (
            Order.objects.select_for_update()
            .filter(channel_id=channel_id, external_id__in=ids)
            .order_by("pk")
        )
        for order in rows:
            found[(channel_id, order.external_id)] = order
    return found


def _apply_source_values(order: Order, item: _Prepared) -> dict:
    """Copy the source's fields onto `order`; return {field: [old, new]} for what changed."""
    diff: dict[str, list] = {}
    for name, new in item.values.items():
        old = getattr(order, name)
        if old != new:
            diff[name] = [_jsonable(old), _jsonable(new)]
            setattr(order, name, new)
    kept = [f for f in order.flags if f not in DATA_FLAGS]
    flags = sorted(set(kept) | set(item.data_flags))
    if flags != order.flags:
        diff["flags"] = [order.flags, flags]
        order.flags = flags
    order.is_flagged = bool(order.flags)
    return diff


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | str | list | dict):
        return value
    return str(value)


_CUSTOMER_UPSERT = """
INSERT INTO {table} (channel_id, account_key, account_id, name, phone, phone_home_city,
                     account_created_at, is_vip, order_count, first_order_at, last_order_at)
VALUES {rows}
ON CONFLICT (channel_id, account_key) DO UPDATE SET
  account_id = CASE WHEN excluded.account_id <> '' THEN excluded.account_id ELSE {table}.account_id END,
  name = CASE WHEN excluded.name <> '' THEN excluded.name ELSE {table}.name END,
  phone = CASE WHEN excluded.phone <> '' THEN excluded.phone ELSE {table}.phone END,
  phone_home_city = CASE WHEN excluded.phone_home_city <> ''
                         THEN excluded.phone_home_city ELSE {table}.phone_home_city END,
  account_created_at = COALESCE(excluded.account_created_at, {table}.account_created_at),
  is_vip = ({table}.is_vip OR excluded.is_vip),
  order_count = {table}.order_count + excluded.order_count,
  first_order_at = COALESCE({table}.first_order_at, excluded.first_order_at),
  last_order_at = CASE WHEN excluded.order_count > 0
                       THEN excluded.last_order_at ELSE {table}.last_order_at END
RETURNING id, account_key, account_id, account_created_at, order_count
"""


def _upsert_customers(
    stored: list[tuple[_Prepared, str, Order]], *, now: datetime
) -> dict[tuple[int, str], Customer]:
    """One customer row per (channel, account key), written in one INSERT … ON CONFLICT DO
    UPDATE per channel (PostgreSQL and SQLite alike): details the delivery has win, empty ones
    keep what we hold, and the count of new orders is added by the database on the locked row.
    Each returned customer carries `_orders_before` for the returning-customer mark."""
    wanted: dict[tuple[int, str], _Prepared] = {}
    new_orders: dict[tuple[int, str], int] = defaultdict(int)
    for item, status, _order in stored:
        key = (item.channel.pk, item.account_key)
        wanted[key] = item  # the last delivery's details win
        if status == "created":
            new_orders[key] += 1
    fields = {f.name: f for f in Customer._meta.fields}

    def prep(name: str, value: Any) -> Any:
        return fields[name].get_db_prep_save(value, connection)

    found: dict[tuple[int, str], Customer] = {}
    table = connection.ops.quote_name(Customer._meta.db_table)
    by_channel: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for key in sorted(wanted):  # a fixed order: concurrent batches lock rows alike
        by_channel[key[0]].append(key)
    for channel_id, keys in by_channel.items():
        params: list[Any] = []
        for key in keys:
            c = wanted[key].customer
            count = new_orders.get(key, 0)
            params += [
                channel_id, key[1], c["account_id"], c["name"].strip(), c["phone_e164"], c["phone_city"],
                prep("account_created_at", c["account_created_at"]), c["is_vip"], count,
                prep("first_order_at", now), prep("last_order_at", now),
            ]  # fmt: skip
        rows = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(keys))
        with connection.cursor() as cursor:
            cursor.execute(_CUSTOMER_UPSERT.format(table=table, rows=rows), params)
            returned = cursor.fetchall()
        for pk, account_key, account_id, account_created_at, order_count in returned:
            if isinstance(account_created_at, str):  # SQLite returns text or naive values, in UTC
                account_created_at = fields["account_created_at"].to_python(account_created_at)
            if account_created_at is not None and timezone.is_naive(account_created_at):
                account_created_at = timezone.make_aware(account_created_at, UTC)
            key = (channel_id, account_key)
            customer = Customer(
                pk=pk, channel_id=channel_id, account_key=account_key, account_id=account_id,
                account_created_at=account_created_at, order_count=order_count,
            )  # fmt: skip
            customer._orders_before = order_count - new_orders.get(key, 0)
            found[key] = customer
    return found


_TAG_RESERVE = """
INSERT INTO {table} (channel_id, day, last) VALUES (%s, %s, %s)
ON CONFLICT (channel_id, day) DO UPDATE SET last = {table}.last + excluded.last
RETURNING last
"""


def _assign_tags(orders: list[Order], *, now: datetime) -> None:
    """JD-20251222-001: per channel and local day, numbers reserved in one upsert whose row
    lock serialises concurrent reservations (PostgreSQL and SQLite alike)."""
    if not orders:
        return
    day = timezone.localdate(now)
    by_channel: dict[int, list[Order]] = defaultdict(list)
    for order in orders:
        by_channel[order.channel_id].append(order)
    table = connection.ops.quote_name(TagSequence._meta.db_table)
    day_value = TagSequence._meta.get_field("day").get_db_prep_save(day, connection)
    for channel_id, group in sorted(by_channel.items()):
        with connection.cursor() as cursor:
            cursor.execute(_TAG_RESERVE.format(table=table), [channel_id, day_value, len(group)])
            last = cursor.fetchone()[0]
        first = last - len(group) + 1
        prefix = group[0].channel.tag_prefix
        for offset, order in enumerate(group):
            order.tag = f"{prefix}-{day:%Y%m%d}-{first + offset:03d}"


def _event(
    order: Order,
    actor: Actor,
    kind: str,
    *,
    at: datetime,
    from_stage: str = "",
    to_stage: str = "",
    reason: str = "",
    changes: dict | None = None,
) -> OrderEvent:
    return OrderEvent(
        order=order,
        at=at,
        kind=kind,
        actor=actor.name[:100],
        actor_user_id=actor.user_id,
        from_stage=from_stage,
        to_stage=to_stage,
        reason=reason,
        changes=changes or {},
    )


def _after_commit_push(order_ids: list[int]) -> None:
    from dashboards.events import publish_orders_changed

    transaction.on_commit(lambda: publish_orders_changed(order_ids))


def lock_order(order_id: int) -> Order:
    try:
        return Order.objects.select_for_update().select_related("channel").get(pk=order_id)
    except Order.DoesNotExist as exc:
        raise OrderNotFound(f"Order {order_id} does not exist.") from exc


@transaction.atomic
def order_transition(*, order_id: int, to: str, actor: Actor, reason: str = "") -> Order:
    """Move an order to another stage if the state machine and the actor's role allow it."""
    order = lock_order(order_id)
    current = Stage(order.stage)
    target = Stage(to)
    held = Stage(order.held_stage) if order.held_stage else None
    check_transition(current=current, target=target, roles=actor.roles, held_stage=held)
    now = timezone.now()
    # What the reports need of the stage being left, read before it is overwritten: when it
    # began, when it was due and whether it was left late (an SLA breach).
    left = {
        "entered_at": order.stage_entered_at.isoformat(),
        "due_at": order.due_at.isoformat() if order.due_at else None,
        "overdue": bool(order.due_at and now > order.due_at),
    }
    if target == Stage.EXCEPTION:
        order.held_stage = current
    elif current == Stage.EXCEPTION:
        order.held_stage = ""
    order.stage = target
    order.stage_entered_at = now
    order.due_at = due_at_for(
        stage=target,
        entered_at=now,
        expedited=order.urgency == Order.Urgency.EXPEDITED,
        category=order.category,
        policies=sla_book(),
    )
    # A new stage is a new deadline: the overdue ladder starts again from the bottom.
    order.sla_level, order.sla_level_at = 0, None
    fields = ["stage", "held_stage", "stage_entered_at", "due_at", "sla_level", "sla_level_at", "updated_at"]
    order.save(update_fields=fields)
    _event(
        order,
        actor,
        OrderEvent.Kind.TRANSITION,
        at=now,
        from_stage=current,
        to_stage=target,
        reason=reason,
        changes={"left": left},
    ).save()
    if current == Stage.QUARANTINED:
        risk_services.order_left_quarantine(order=order, actor=actor, now=now)
    if target == Stage.QUARANTINED:
        risk_services.order_held(order=order, actor=actor, reason=reason, now=now)
    if target in TERMINAL_STAGES:
        dispatch_services.dispatch_order_closed(order=order, now=now)
    elif target == Stage.EXCEPTION:
        dispatch_services.dispatch_order_paused(order=order, now=now, why=reason or "exception")
    elif current in (Stage.QUARANTINED, Stage.EXCEPTION):
        dispatch_services.dispatch_order_reopened(order=order, now=now)
    if Stage.EXCEPTION in (current, target):
        # Every order in the exception lane has an open case saying why and who (deferred
        # import: orders.exceptions builds on this module).
        from orders.exceptions import exception_follow_transition

        exception_follow_transition(
            order=order, current=current, target=target, actor=actor, reason=reason, now=now
        )
    _after_commit_push([order.pk])
    return order


EDITABLE_BY: dict[str, frozenset[Role]] = {
    "customer_name": frozenset({Role.CUSTOMER_SERVICE, Role.SUPERVISOR, Role.ADMIN}),
    "customer_phone": frozenset({Role.CUSTOMER_SERVICE, Role.SUPERVISOR, Role.ADMIN}),
    "address": frozenset({Role.CUSTOMER_SERVICE, Role.SUPERVISOR, Role.ADMIN}),
    "note": frozenset({Role.CUSTOMER_SERVICE, Role.SUPERVISOR, Role.ADMIN, Role.AGENT}),
}


@transaction.atomic
def order_edit(*, order_id: int, actor: Actor, changes: dict[str, str], reason: str = "") -> Order:
    """Correct customer details or the note by hand; re-parses what it touches, audits the diff."""
    for name in changes:
        allowed = EDITABLE_BY.get(name)
        if allowed is None or not (actor.roles & allowed):
            raise FieldNotEditable(f"Your role may not edit '{name}'.")
    order = lock_order(order_id)
    diff: dict[str, list] = {}

    def put(name: str, value: Any) -> None:
        old = getattr(order, name)
        if old != value:
            diff[name] = [_jsonable(old), _jsonable(value)]
            setattr(order, name, value)

    flags = set(order.flags)
    if "customer_name" in changes:
        put("customer_name", changes["customer_name"].strip())
        flags.discard(norm.FLAG_CUSTOMER_NAME_MISSING)
        if not order.customer_name:
            flags.add(norm.FLAG_CUSTOMER_NAME_MISSING)
    if "customer_phone" in changes:
        phone = norm.normalize_phone(changes["customer_phone"])
        put("customer_phone_raw", changes["customer_phone"].strip())
        put("customer_phone", phone.e164)
        put("customer_phone_city", phone.home_city)
        flags -= {norm.FLAG_PHONE_INVALID, norm.FLAG_PHONE_MISSING}
        if not changes["customer_phone"].strip():
            flags.add(norm.FLAG_PHONE_MISSING)
        elif not phone.valid:
            flags.add(norm.FLAG_PHONE_INVALID)
    if "address" in changes:
        parsed = norm.parse_address(changes["address"])
        put("address", changes["address"].strip())
        for name in ("province", "city", "district", "adcode", "latitude", "longitude"):
            put(name, getattr(parsed, name))
        flags -= {norm.FLAG_ADDRESS_AMBIGUOUS, norm.FLAG_ADDRESS_MISSING}
        if not order.address:
            flags.add(norm.FLAG_ADDRESS_MISSING)
        elif parsed.ambiguous:
            flags.add(norm.FLAG_ADDRESS_AMBIGUOUS)
    if "note" in changes:
        put("note", changes["note"])
    if sorted(flags) != order.flags:
        diff["flags"] = [order.flags, sorted(flags)]
        order.flags = sorted(flags)
    order.is_flagged = bool(order.flags)
    if not diff:
        return order
    order.save()
    _event(order, actor, OrderEvent.Kind.EDIT, at=timezone.now(), reason=reason, changes=diff).save()
    _after_commit_push([order.pk])
    return order
