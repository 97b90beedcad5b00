"""Raising red-flag alerts: one row per cause (the dedupe key), pushed to open boards after
commit. Escalations, risk holds and overdue scans all raise through here."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from dashboards.models import Alert


def alerts_raise(alerts: list[Alert]) -> list[Alert]:
    """Store the alerts whose dedupe key is new and push them; returns those stored."""
    if not alerts:
        return []
    keys = [a.dedupe_key for a in alerts]
    taken = set(Alert.objects.filter(dedupe_key__in=keys).values_list("dedupe_key", flat=True))
    fresh = [a for a in alerts if a.dedupe_key not in taken]
    stored = []
    for alert in fresh:
        alert.message = alert.message[:300]
        alert.dedupe_key = alert.dedupe_key[:120]
        # A savepoint each: a concurrent scanner that took the key first wins quietly.
        with transaction.atomic():
            obj, created = Alert.objects.get_or_create(
                dedupe_key=alert.dedupe_key,
                defaults={
                    f.attname: getattr(alert, f.attname)
                    for f in Alert._meta.concrete_fields
                    if not f.primary_key and f.name != "dedupe_key"
                },
            )
        if created:
            stored.append(obj)
    if stored:
        ids = [a.pk for a in stored]
        transaction.on_commit(lambda: _push(ids))
    return stored


def alert_raise(*, kind: str, level: int, key: str, message: str, now: datetime, **where) -> Alert | None:
    stored = alerts_raise(
        [Alert(kind=kind, level=level, dedupe_key=key, message=message, created_at=now, **where)]
    )
    return stored[0] if stored else None


def _push(ids: list[int]) -> None:
    from dashboards.events import publish_alerts_raised

    publish_alerts_raised(ids)
