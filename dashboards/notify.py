"""Sending messages to people and groups: one `Notification` row per message and target,
written in the caller's transaction (so a rolled-back change sends nothing) and delivered
after commit by the backends in `dashboards.backends`, retried with backoff by a task.

A failed or slow send never blocks the order flow: rendering and writing the row is all that
happens inline, and a missing template is logged and skipped, never raised."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, transaction
from django.template import Context, Engine, TemplateSyntaxError
from django.utils import timezone

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


def render(template: NotificationTemplate, payload: dict) -> tuple[str, str]:
    context = Context(payload)
    subject = _engine.from_string(template.subject).render(context) if template.subject else ""
    return subject.strip()[:200], _engine.from_string(template.body).render(context).strip()


def notify(messages: list[Message], *, now: datetime | None = None) -> list[Notification]:
    """Write the messages (skipping duplicates by `dedupe_key`) and send them after commit.
    Returns the rows written."""
    if not messages:
        return []
    now = now or timezone.now()
    codes = {m.template for m in messages}
    templates = {
        (t.code, t.channel): t for t in NotificationTemplate.objects.filter(code__in=codes, is_active=True)
    }
    rows: list[Notification] = []
    for m in messages:
        template = templates.get((m.template, m.channel))
        if template is None:
            logger.warning("no active %s template %r: message skipped", m.channel, m.template)
            continue
        if m.channel != Channel.IN_APP and not m.target:
            continue  # nobody to send to by this channel (no phone, no robot configured)
        try:
            subject, body = render(template, m.payload)
        except TemplateSyntaxError as exc:
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
    if not rows:
        return []
    keyed = [r.dedupe_key for r in rows if r.dedupe_key]
    if keyed:
        taken = set(Notification.objects.filter(dedupe_key__in=keyed).values_list("dedupe_key", flat=True))
        rows = [r for r in rows if r.dedupe_key not in taken]
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
