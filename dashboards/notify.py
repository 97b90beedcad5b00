"""Sending messages to people and groups: one `Notification` row per message and target,
written in the caller's transaction (so a rolled-back change sends nothing) and delivered
after commit by the backends in `dashboards.backends`, retried with backoff by a task.

A failed or slow send never blocks the order flow: rendering and writing the row is all that
happens inline, and a missing template is logged and skipped, never raised. Sending happens
in a worker (`notifications_send`), which claims rows so that two workers never send one twice,
and the in-app inbox (`inbox_for`, `notification_mark_read`) reads the rows themselves."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.template import Context, Engine
from django.utils import timezone
from django.utils.translation import gettext as _

from dashboards.models import Notification, NotificationTemplate

logger = logging.getLogger(__name__)

Channel = NotificationTemplate.Channel

# Autoescape off: the texts go to SMS, WeCom and plain-text mail, not into HTML.
_engine = Engine(autoescape=False)


@dataclass
class Message:
    """One message to send: `template` is a NotificationTemplate code, `channel` one of
    Channel; `user` for in-app (and whose address `target` is), `target` the e-mail address,
    phone number or robot webhook URL. `dedupe_key` makes a second send of the same cause a
    no-op (two scanners, a retried task)."""

    template: str
    channel: str
    payload: dict = field(default_factory=dict)
    user: object | None = None
    target: str = ""
    order_id: int | None = None
    dedupe_key: str | None = None


def compile_template(text: str):
    """Parse a subject or body as notify renders it; raises TemplateSyntaxError."""
    return _engine.from_string(text)


def render(template: NotificationTemplate, payload: dict) -> tuple[str, str]:
    return _render(_compiled(template), payload)


def _compiled(template: NotificationTemplate) -> tuple:
    return (compile_template(template.subject) if template.subject else None, compile_template(template.body))


def _render(compiled: tuple, payload: dict) -> tuple[str, str]:
    subject_t, body_t = compiled
    context = Context(payload)
    subject = subject_t.render(context) if subject_t is not None else ""
    return subject.strip()[:200], body_t.render(context).strip()


def notify(messages: list[Message], *, now: datetime | None = None) -> list[Notification]:
    """Write the messages (skipping duplicates by `dedupe_key`) and send them after commit.
    Returns the rows written. Each template is compiled once per call: an overdue scan sends
    thousands of messages from a handful of templates."""
    if not messages:
        return []
    now = now or timezone.now()
    keyed = [m.dedupe_key[:200] for m in messages if m.dedupe_key]
    if keyed:
        taken = set(Notification.objects.filter(dedupe_key__in=keyed).values_list("dedupe_key", flat=True))
        messages = [m for m in messages if not m.dedupe_key or m.dedupe_key[:200] not in taken]
    codes = {m.template for m in messages}
    templates = {
        (t.code, t.channel): t for t in NotificationTemplate.objects.filter(code__in=codes, is_active=True)
    }
    compiled: dict[tuple[str, str], tuple | None] = {}
    rows: list[Notification] = []
    for m in messages:
        template = templates.get((m.template, m.channel))
        if template is None:
            logger.warning("no active %s template %r: message skipped", m.channel, m.template)
            continue
        if m.channel != Channel.IN_APP and not m.target:
            continue  # nobody to send to by this channel (no phone, no robot configured)
        key = (m.template, m.channel)
        try:
            if key not in compiled:
                compiled[key] = None  # a template that does not compile is skipped every time
                compiled[key] = _compiled(template)
            if compiled[key] is None:
                continue
            subject, body = _render(compiled[key], m.payload)
        except Exception as exc:  # a broken template (syntax, {% url %} …) must not break the caller
            logger.warning("template %s/%s does not render: %s", m.template, m.channel, exc)
            continue
        rows.append(
            Notification(
                channel=m.channel,
                user=m.user,
                target=m.target[:500],
                template=m.template,
                payload=m.payload,
                subject=subject,
                body=body,
                order_id=m.order_id,
                dedupe_key=m.dedupe_key[:200] if m.dedupe_key else None,
                created_at=now,
                next_attempt_at=now,
            )
        )
    stored = _insert(rows)
    ids = [r.pk for r in stored]
    if ids:
        transaction.on_commit(lambda: _deliver_after_commit(ids))
    return stored


def _insert(rows: list[Notification]) -> list[Notification]:
    """Insert in one statement; if a concurrent writer took one of the keys meanwhile, row by
    row, each in a savepoint, dropping the duplicates."""
    if not rows:
        return []
    try:
        with transaction.atomic():
            return Notification.objects.bulk_create(rows)
    except IntegrityError:
        pass
    stored = []
    for row in rows:
        row.pk = None
        try:
            with transaction.atomic():
                row.save(force_insert=True)
            stored.append(row)
        except IntegrityError:
            continue
    return stored


def _deliver_after_commit(ids: list[int]) -> None:
    """Hand the new rows to a worker. Never raises: with the broker down the rows stay
    pending and the beat's retry sweep sends them."""
    from dashboards.tasks import send_notifications_task

    try:
        send_notifications_task.delay(ids)
    except Exception:
        logger.warning(
            "could not enqueue %d notifications; the sweep will send them", len(ids), exc_info=True
        )


def order_context(order) -> dict:
    """The `order` entry of a message payload: what templates may show of an order. Cheap:
    an overdue scan builds it for every order it escalates."""
    from django.conf import settings

    return {
        "id": order.pk,
        "tag": order.tag,
        "stage": order.stage,
        "stage_label": _stage_label(settings.LANGUAGE_CODE, order.stage),
        "due_at": timezone.localtime(order.due_at).strftime("%Y-%m-%d %H:%M") if order.due_at else "",
        "url": settings.SITE_URL.rstrip("/") + _order_path().replace("/0/", f"/{order.pk}/"),
    }


@functools.cache
def _stage_label(language: str, stage: str) -> str:
    from django.utils import translation

    from orders.models import STAGE_LABELS
    from orders.states import Stage

    with translation.override(language):
        return str(STAGE_LABELS[Stage(stage)])


@functools.cache
def _order_path() -> str:
    from django.urls import reverse

    return reverse("dashboards:order_detail", args=[0])


# --- Sending: claim, send, record ------------------------------------------------------------
# Wait after the 1st, 2nd, … failed attempt; after the last one the message is given up.
RETRY_BACKOFF = [
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(minutes=30),
    timedelta(hours=2),
]
MAX_ATTEMPTS = len(RETRY_BACKOFF) + 1
CLAIM_BATCH = 20
# A claimed row is due again only after this: a worker that dies mid-batch delays its rows,
# it never loses them. Longer than a batch can take (20 sends x 13 s of timeouts).
CLAIM_LEASE = timedelta(minutes=10)
# One sweep sends at most this many batches; the next tick carries on.
SWEEP_MAX_BATCHES = 25


@dataclass
class SendReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0  # claimed by another worker, or changed (e.g. resent from admin) meanwhile

    @property
    def claimed(self) -> int:
        return self.sent + self.retrying + self.failed + self.skipped

    def add(self, other: SendReport) -> None:
        self.sent += other.sent
        self.retrying += other.retrying
        self.failed += other.failed
        self.skipped += other.skipped


def retry_delay(attempts: int) -> timedelta | None:
    """How long to wait after `attempts` failed tries; None: give up."""
    if attempts >= MAX_ATTEMPTS:
        return None
    return RETRY_BACKOFF[min(attempts, len(RETRY_BACKOFF)) - 1]


def notifications_claim(
    *, now: datetime, ids: list[int] | None = None, limit: int = CLAIM_BATCH
) -> tuple[list[Notification], datetime]:
    """Take up to `limit` due pending rows for this worker (`orders.leases.claim_due`).
    Returns the rows and their lease."""
    from orders.leases import claim_due

    lease = now + CLAIM_LEASE
    rows = claim_due(Notification, now=now, lease=lease, ids=ids, limit=limit, related=("user",))
    return rows, lease


def notifications_send(
    *, ids: list[int] | None = None, now: datetime | None = None, limit: int = CLAIM_BATCH
) -> SendReport:
    """Claim one batch (of `ids`, or of everything due) and send it. A backend's failure is
    recorded on its row and retried later, never raised."""
    from dashboards.backends import SendError, backend_for

    claimed, lease = notifications_claim(now=now or timezone.now(), ids=ids, limit=limit)
    report = SendReport()
    for notification in claimed:
        try:
            backend_for(notification.channel).send(notification)
            error = ""
        except Exception as exc:  # any failure of any backend is a failed attempt, not a crash
            error = str(exc) if isinstance(exc, SendError) else f"{exc.__class__.__name__}: {exc}"
            logger.warning(
                "notification %s (%s) failed: %s", notification.pk, notification.channel, error[:300]
            )
        outcome = _record_attempt(notification, lease=lease, error=error, now=timezone.now())
        setattr(report, outcome, getattr(report, outcome) + 1)
    return report


def notifications_send_due(*, now: datetime | None = None) -> SendReport:
    """The sweep: send everything due, batch after batch, up to SWEEP_MAX_BATCHES."""
    from orders.leases import sweep_due

    return sweep_due(
        lambda: notifications_send(now=now), SendReport(), batch=CLAIM_BATCH, max_batches=SWEEP_MAX_BATCHES
    )


def _record_attempt(notification: Notification, *, lease: datetime, error: str, now: datetime) -> str:
    """Write what one attempt did, only while the row is still ours (pending, our lease); a
    message about an order gets its audit line when it is sent or given up."""
    attempts = notification.attempts + 1
    if not error:
        changes = {"status": Notification.Status.SENT, "sent_at": now, "next_attempt_at": None}
        outcome = "sent"
    else:
        delay = retry_delay(attempts)
        if delay is None:
            changes = {"status": Notification.Status.FAILED, "next_attempt_at": None}
            outcome = "failed"
        else:
            changes = {"next_attempt_at": now + delay}
            outcome = "retrying"
        changes["last_error"] = error[:2000]
    with transaction.atomic():
        updated = Notification.objects.filter(
            pk=notification.pk, status=Notification.Status.PENDING, next_attempt_at=lease
        ).update(attempts=attempts, **changes)
        if not updated:
            return "skipped"
        for name, value in changes.items():
            setattr(notification, name, value)
        notification.attempts = attempts
        if notification.order_id and outcome != "retrying":
            _audit(notification, now=now)
    return outcome


def _audit(notification: Notification, *, now: datetime) -> None:
    from dashboards.backends import describe_target
    from orders.models import OrderEvent

    values = {"channel": notification.get_channel_display(), "target": describe_target(notification)}
    if notification.status == Notification.Status.SENT:
        reason = _("%(channel)s to %(target)s: sent") % values
    else:
        reason = _("%(channel)s to %(target)s: given up after %(attempts)d attempts (%(error)s)") % {
            **values,
            "attempts": notification.attempts,
            "error": notification.last_error[:300],
        }
    OrderEvent(
        order_id=notification.order_id,
        at=now,
        kind=OrderEvent.Kind.NOTIFICATION,
        actor=f"notify:{notification.channel}",
        reason=reason,
        changes={
            "notification": notification.pk,
            "template": notification.template,
            "channel": notification.channel,
            "status": notification.status,
            "attempts": notification.attempts,
        },
    ).save()


def notifications_resend(*, ids: list[int], now: datetime | None = None) -> list[int]:
    """Send given-up messages again (from admin): pending and due now, their attempts kept;
    one more failure gives them up again. Returns the ids it queued."""
    now = now or timezone.now()
    with transaction.atomic():
        queued = list(
            Notification.objects.select_for_update()
            .filter(pk__in=ids, status=Notification.Status.FAILED)
            .values_list("pk", flat=True)
        )
        Notification.objects.filter(pk__in=queued).update(
            status=Notification.Status.PENDING, next_attempt_at=now
        )
        if queued:
            transaction.on_commit(lambda: _deliver_after_commit(queued))
    return queued


# --- The in-app inbox ----------------------------------------------------------------------
class NotificationNotFound(Exception):
    code = "not_found"


def inbox_for(user) -> QuerySet[Notification]:
    """A person's in-app notifications, newest first (whatever their sending state: the row
    is the message)."""
    return (
        Notification.objects.filter(user=user, channel=Notification.Channel.IN_APP)
        .select_related("order")
        .order_by("-created_at", "-id")
    )


def notification_mark_read(*, user, notification_id: int, now: datetime | None = None) -> Notification:
    """Mark one of the user's in-app notifications read (again is a no-op); anyone else's is
    not found, so ids of other people's messages reveal nothing."""
    notification = inbox_for(user).filter(pk=notification_id).first()
    if notification is None:
        raise NotificationNotFound(f"You have no notification {notification_id}.")
    if notification.read_at is None:
        notification.read_at = now or timezone.now()
        Notification.objects.filter(pk=notification.pk, read_at__isnull=True).update(
            read_at=notification.read_at
        )
    return notification


def notifications_mark_all_read(*, user, now: datetime | None = None) -> int:
    return Notification.objects.filter(
        user=user, channel=Notification.Channel.IN_APP, read_at__isnull=True
    ).update(read_at=now or timezone.now())
