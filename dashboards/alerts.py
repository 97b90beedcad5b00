"""Raising red-flag alerts: one row per cause (the dedupe key), pushed to open boards after
commit. Escalations, risk holds and overdue scans all raise through here."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from dashboards.models import Alert


def alerts_raise(alerts: list[Alert]) -> list[Alert]:
    """Store the alerts whose dedupe key is new, in one statement, and push them after commit;
    returns those stored. A concurrent writer that took a key first wins quietly (the unique
    index); at worst a board is told about its alert too, and boards show each id once."""
    for alert in alerts:
        alert.message = alert.message[:300]
        alert.dedupe_key = alert.dedupe_key[:120]
    by_key = {a.dedupe_key: a for a in alerts}
    if not by_key:
        return []
    taken = set(Alert.objects.filter(dedupe_key__in=list(by_key)).values_list("dedupe_key", flat=True))
    fresh = [a for key, a in by_key.items() if key not in taken]
    if not fresh:
        return []
    Alert.objects.bulk_create(fresh, ignore_conflicts=True)
    stored = list(Alert.objects.filter(dedupe_key__in=[a.dedupe_key for a in fresh]))
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
