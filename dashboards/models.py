"""Alerts: red flags a supervisor must see and acknowledge (escalations, queue waits)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Alert(models.Model):
    class Kind(models.TextChoices):
        DISPATCH_L2 = "dispatch_l2", _("Needs manual dispatch (L2)")
        AGENT_L3 = "agent_l3", _("Agent with repeated exceptions (L3)")
        QUEUE_WAIT = "queue_wait", _("Inquiries waiting too long")
        RISK_QUARANTINE = "risk_quarantine", _("Order held by risk control")

    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    level = models.PositiveSmallIntegerField(_("level"), default=2)
    message = models.CharField(_("message"), max_length=300)
    region = models.ForeignKey("agents.Region", null=True, blank=True, on_delete=models.SET_NULL)
    order = models.ForeignKey("orders.Order", null=True, blank=True, on_delete=models.CASCADE)
    agent = models.ForeignKey("agents.Agent", null=True, blank=True, on_delete=models.CASCADE)
    skill = models.ForeignKey("agents.Skill", null=True, blank=True, on_delete=models.CASCADE)
    # One alert per cause: a second scanner or a retried task hits the unique key, not the pager.
    dedupe_key = models.CharField(max_length=120, unique=True)
    created_at = models.DateTimeField(_("raised"), default=timezone.now)
    acknowledged_at = models.DateTimeField(_("acknowledged"), null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = _("alert")
        verbose_name_plural = _("alerts")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["acknowledged_at", "created_at"])]

    def __str__(self) -> str:
        return self.message
