"""Writes made from the board: a supervisor acknowledging a red-flag alert. (Moving a card is
orders.services.order_transition, through the order API.)"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from dashboards.models import Alert


class AlertAlreadyAcknowledged(Exception):
    code = "already_acknowledged"

    def __init__(self, alert: Alert) -> None:
        who = alert.acknowledged_by.get_username() if alert.acknowledged_by_id else _("someone")
        when = timezone.localtime(alert.acknowledged_at).strftime("%Y-%m-%d %H:%M")
        super().__init__(
            _("This alert was already acknowledged by %(who)s at %(when)s.") % {"who": who, "when": when}
        )
        self.alert = alert


@transaction.atomic
def alert_acknowledge(*, alert_id: int, user) -> Alert:
    """Mark an alert seen by `user` and tell the other boards after commit. The update is
    conditional, so of two supervisors clicking at once exactly one acknowledges it; the
    other is told who did. Alert.DoesNotExist when there is no such alert."""
    now = timezone.now()
    taken = Alert.objects.filter(pk=alert_id, acknowledged_at__isnull=True).update(
        acknowledged_at=now, acknowledged_by=user
    )
    alert = Alert.objects.select_related("order", "region", "acknowledged_by").get(pk=alert_id)
    if not taken:
        raise AlertAlreadyAcknowledged(alert)
    transaction.on_commit(lambda: _push(alert_id))
    return alert


def _push(alert_id: int) -> None:
    from dashboards.events import publish_alerts_acknowledged

    publish_alerts_acknowledged([alert_id])
