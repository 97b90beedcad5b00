"""Outbound webhooks: other systems (ERP, WMS, logistics) subscribe to order events and get
signed JSON, retried with backoff over hours, every attempt recorded.

It is an outbox. `events_written` is called wherever audit events are written (OrderEvent.save
and AuditQuerySet.bulk_create) and stores one OutboundDelivery per event and matching
subscription in the same transaction, so a committed event is never lost and a rolled-back
one is never sent. Delivery happens after commit in a worker; a beat sweep sends retries and
anything whose task was lost. With no active subscription the hook costs a dictionary look-up:
the subscriptions are cached per process for a few seconds (and dropped when one is saved).

A request carries:
    X-Paidan-Event: order.stage_changed
    X-Paidan-Delivery: <delivery id, the same on every retry: dedupe on it>
    X-Paidan-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
and a body {"id", "type", "occurred_at", "order": {…}, "event": {"from", "to", "reason", "actor"}}.
Any 2xx answer is success; anything else (redirects included) is retried."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import requests
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from orders.leases import claim_due, sweep_due
from orders.models import Order, OrderEvent, OutboundAttempt, OutboundDelivery, WebhookSubscription

logger = logging.getLogger(__name__)

# Audit event kind → the event type subscribers see. "Older delivery ignored" is bookkeeping
# about our own input and is never sent.
EVENT_TYPES: dict[str, str] = {
    OrderEvent.Kind.INGESTED: "order.created",
    OrderEvent.Kind.UPDATED: "order.updated",
    OrderEvent.Kind.TRANSITION: "order.stage_changed",
    OrderEvent.Kind.ASSIGNMENT: "order.assigned",
    OrderEvent.Kind.EDIT: "order.edited",
    OrderEvent.Kind.RULE_HIT: "order.risk_hit",
    OrderEvent.Kind.REVIEW: "order.review",
    OrderEvent.Kind.NOTIFICATION: "order.notification",
}
EVENT_TYPE_CHOICES = [
    ("order.created", _("order.created — a new order was received")),
    ("order.updated", _("order.updated — the source sent newer data")),
    ("order.stage_changed", _("order.stage_changed — the order moved to another stage")),
    ("order.assigned", _("order.assigned — offered, accepted, rejected, reassigned or escalated")),
    ("order.edited", _("order.edited — customer details or the note corrected by hand")),
    ("order.risk_hit", _("order.risk_hit — a risk rule matched")),
    ("order.review", _("order.review — a risk reviewer decided")),
    ("order.notification", _("order.notification — a message about the order was sent or given up")),
]

# Wait after the 1st, 2nd, … failed attempt: about 22 hours in all, then given up.
RETRY_BACKOFF = [
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=3),
    timedelta(hours=6),
    timedelta(hours=12),
]
MAX_ATTEMPTS = len(RETRY_BACKOFF) + 1
HTTP_TIMEOUT = (3.05, 10)  # (connect, read) seconds
USER_AGENT = "Paidan-Webhooks/0.1"
CLAIM_BATCH = 20
# Longer than a batch can take (20 × 13 s of timeouts): a dead worker's rows come back after it.
CLAIM_LEASE = timedelta(minutes=10)
SWEEP_MAX_BATCHES = 25
# Replays from admin up to this many are sent while the admin waits; more are queued.
REPLAY_INLINE_MAX = 10
SUBSCRIPTION_CACHE_SECONDS = 5.0


# --- Which subscriptions exist: cached per process -----------------------------------------
@dataclass(frozen=True)
class _Subscription:
    id: int
    event_types: frozenset[str]  # empty: every type

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


_cache: tuple[float, tuple[_Subscription, ...]] | None = None
_cache_lock = threading.Lock()


def active_subscriptions() -> tuple[_Subscription, ...]:
    """The active subscriptions, read at most every few seconds per process: every audit
    write asks, and almost always the answer is "none"."""
    global _cache
    cached = _cache
    now = time.monotonic()
    if cached is not None and now - cached[0] < SUBSCRIPTION_CACHE_SECONDS:
        return cached[1]
    with _cache_lock:
        rows = WebhookSubscription.objects.filter(is_active=True).values_list("pk", "event_types")
        subscriptions = tuple(
            _Subscription(pk, frozenset(t for t in (types or []) if isinstance(t, str))) for pk, types in rows
        )
        _cache = (now, subscriptions)
    return subscriptions


def clear_subscription_cache(**kwargs: object) -> None:
    global _cache
    _cache = None


def _subscription_changed(**kwargs: object) -> None:
    # Now for this thread, and again at commit: another thread may re-read before it.
    clear_subscription_cache()
    transaction.on_commit(clear_subscription_cache)


# Cache invalidation, not business logic: this process forgets its copy. Other processes
# see a change within SUBSCRIPTION_CACHE_SECONDS.
post_save.connect(
    _subscription_changed, sender=WebhookSubscription, dispatch_uid="outbound-subscription-saved"
)
post_delete.connect(
    _subscription_changed, sender=WebhookSubscription, dispatch_uid="outbound-subscription-deleted"
)


# --- The outbox: written with the events ----------------------------------------------------
def event_id_for(event: OrderEvent) -> str:
    return f"evt_{event.pk}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def event_payload(event: OrderEvent, event_type: str, order: Order | None) -> dict:
    return {
        "id": event_id_for(event),
        "type": event_type,
        "occurred_at": _iso(event.at),
        "order": {
            "id": event.order_id,
            "tag": order.tag if order else None,
            "channel": order.channel.code if order else None,
            "external_id": order.external_id if order else None,
            "stage": order.stage if order else None,
            "owner": order.owner.get_username() if order and order.owner_id else None,
            "due_at": _iso(order.due_at) if order else None,
        },
        "event": {
            "from": event.from_stage or None,
            "to": event.to_stage or None,
            "reason": str(event.reason),
            "actor": event.actor,
        },
    }


def events_written(events: Iterable[OrderEvent]) -> list[OutboundDelivery]:
    """Store the deliveries of just-written audit events, in the caller's transaction, and
    send them after it commits. Costs nothing without an active subscription."""
    subscriptions = active_subscriptions()
    if not subscriptions:
        return []
    wanted: list[tuple[OrderEvent, str, list[_Subscription]]] = []
    for event in events:
        event_type = EVENT_TYPES.get(event.kind)
        if event_type is None or event.pk is None:
            continue
        takers = [s for s in subscriptions if s.wants(event_type)]
        if takers:
            wanted.append((event, event_type, takers))
    if not wanted:
        return []
    orders = Order.objects.select_related("channel", "owner").in_bulk({e.order_id for e, _t, _s in wanted})
    now = timezone.now()
    rows = []
    for event, event_type, takers in wanted:
        payload = event_payload(event, event_type, orders.get(event.order_id))
        rows.extend(
            OutboundDelivery(
                subscription_id=subscription.id,
                event_id=payload["id"],
                event_type=event_type,
                order_id=event.order_id,
                payload=payload,
                created_at=now,
                next_attempt_at=now,
            )
            for subscription in takers
        )
    OutboundDelivery.objects.bulk_create(rows)
    ids = [row.pk for row in rows]
    transaction.on_commit(lambda: _deliver_after_commit(ids))
    return rows


def _deliver_after_commit(ids: list[int]) -> None:
    """Hand the deliveries to a worker. Never raises: the sweep sends what was not enqueued."""
    from orders.tasks import deliver_outbound_task

    try:
        deliver_outbound_task.delay(ids)
    except Exception:
        logger.warning(
            "could not enqueue %d outbound deliveries; the sweep will send them", len(ids), exc_info=True
        )


# --- Delivery: claim, send, record -------------------------------------------------------------
def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The X-Paidan-Signature header value for `body` sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def retry_delay(attempts: int) -> timedelta | None:
    """How long to wait after `attempts` failed tries; None: give up."""
    if attempts >= MAX_ATTEMPTS:
        return None
    return RETRY_BACKOFF[min(attempts, len(RETRY_BACKOFF)) - 1]


@dataclass
class DeliveryReport:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0  # replayed or re-claimed by someone else meanwhile

    @property
    def claimed(self) -> int:
        return self.delivered + self.retrying + self.failed + self.skipped

    def add(self, other: DeliveryReport) -> None:
        self.delivered += other.delivered
        self.retrying += other.retrying
        self.failed += other.failed
        self.skipped += other.skipped


def outbound_claim(
    *, now: datetime, ids: list[int] | None = None, limit: int = CLAIM_BATCH
) -> tuple[list[OutboundDelivery], datetime]:
    """Take up to `limit` due pending deliveries (`orders.leases.claim_due`)."""
    lease = now + CLAIM_LEASE
    rows = claim_due(OutboundDelivery, now=now, lease=lease, ids=ids, limit=limit, related=("subscription",))
    return rows, lease


def outbound_deliver(
    *, ids: list[int] | None = None, now: datetime | None = None, limit: int = CLAIM_BATCH
) -> DeliveryReport:
    """Claim one batch (of `ids`, or of everything due) and send each delivery once."""
    claimed, lease = outbound_claim(now=now or timezone.now(), ids=ids, limit=limit)
    report = DeliveryReport()
    for delivery in claimed:
        if not delivery.subscription.is_active:
            outcome = _give_up_switched_off(delivery, lease=lease)
        else:
            status_code, error, duration_ms = _post(delivery)
            outcome = _record_attempt(
                delivery, lease=lease, status_code=status_code, error=error, duration_ms=duration_ms
            )
        setattr(report, outcome, getattr(report, outcome) + 1)
    return report


def outbound_deliver_due(*, now: datetime | None = None) -> DeliveryReport:
    """The sweep: deliver everything due, batch after batch, up to SWEEP_MAX_BATCHES."""
    return sweep_due(
        lambda: outbound_deliver(now=now), DeliveryReport(), batch=CLAIM_BATCH, max_batches=SWEEP_MAX_BATCHES
    )


def _post(delivery: OutboundDelivery) -> tuple[int | None, str, int]:
    """One HTTP attempt: (status code or None, error or "", milliseconds)."""
    body = json.dumps(delivery.payload, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        "X-Paidan-Event": delivery.event_type,
        "X-Paidan-Delivery": str(delivery.pk),
        "X-Paidan-Signature": sign(delivery.subscription.secret, body, int(time.time())),
    }
    started = time.monotonic()
    try:
        response = requests.post(
            delivery.subscription.url, data=body, headers=headers, timeout=HTTP_TIMEOUT, allow_redirects=False
        )
    except requests.RequestException as exc:
        return None, f"{exc.__class__.__name__}: {exc}"[:2000], _ms_since(started)
    duration = _ms_since(started)
    if 200 <= response.status_code < 300:
        return response.status_code, "", duration
    snippet = " ".join(response.text[:500].split())
    return response.status_code, f"HTTP {response.status_code}: {snippet}".strip(), duration


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _record_attempt(
    delivery: OutboundDelivery, *, lease: datetime, status_code: int | None, error: str, duration_ms: int
) -> str:
    """The attempt is always kept; the delivery's state changes only while it is still ours."""
    now = timezone.now()
    attempts = delivery.attempts + 1
    if not error:
        changes: dict = {
            "status": OutboundDelivery.Status.DELIVERED,
            "delivered_at": now,
            "next_attempt_at": None,
        }
        outcome = "delivered"
    else:
        delay = retry_delay(attempts)
        if delay is None:
            changes = {"status": OutboundDelivery.Status.FAILED, "next_attempt_at": None}
            outcome = "failed"
        else:
            changes = {"next_attempt_at": now + delay}
            outcome = "retrying"
        changes["last_error"] = error
    with transaction.atomic():
        OutboundAttempt.objects.create(
            delivery=delivery, at=now, status_code=status_code, error=error, duration_ms=duration_ms
        )
        updated = OutboundDelivery.objects.filter(
            pk=delivery.pk, status=OutboundDelivery.Status.PENDING, next_attempt_at=lease
        ).update(attempts=attempts, **changes)
    if not updated:
        return "skipped"
    for name, value in changes.items():
        setattr(delivery, name, value)
    delivery.attempts = attempts
    if outcome == "failed":
        logger.warning(
            "outbound delivery %s to %s given up after %d attempts: %s",
            delivery.pk,
            delivery.subscription.name,
            attempts,
            error[:300],
        )
    return outcome


def _give_up_switched_off(delivery: OutboundDelivery, *, lease: datetime) -> str:
    """A switched-off subscription receives nothing; its pending deliveries end here (replay
    them from admin after switching it back on)."""
    updated = OutboundDelivery.objects.filter(
        pk=delivery.pk, status=OutboundDelivery.Status.PENDING, next_attempt_at=lease
    ).update(
        status=OutboundDelivery.Status.FAILED,
        next_attempt_at=None,
        last_error="The subscription is switched off.",
    )
    return "failed" if updated else "skipped"


def outbound_replay(
    *, ids: list[int], now: datetime | None = None
) -> tuple[list[int], DeliveryReport | None]:
    """Send deliveries again now, whatever their state (a delivered one too): each try is a
    new attempt row, and the count of attempts goes on. A few are sent while the caller waits
    (the report says how it went); more are queued for a worker (report None)."""
    now = now or timezone.now()
    with transaction.atomic():
        replayed = list(
            OutboundDelivery.objects.select_for_update(of=("self",))
            .filter(pk__in=ids, subscription__is_active=True)
            .values_list("pk", flat=True)
        )
        OutboundDelivery.objects.filter(pk__in=replayed).update(
            status=OutboundDelivery.Status.PENDING, next_attempt_at=now
        )
        if len(replayed) > REPLAY_INLINE_MAX:
            transaction.on_commit(lambda: _deliver_after_commit(replayed))
    if not replayed or len(replayed) > REPLAY_INLINE_MAX:
        return replayed, None
    return replayed, outbound_deliver(ids=replayed, now=now, limit=REPLAY_INLINE_MAX)
