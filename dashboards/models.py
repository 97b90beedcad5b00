"""Alerts (red flags a supervisor must see and acknowledge) and notifications (every message
sent to a person or a group, by any channel, with its attempts)."""

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
        SLA_OVERDUE = "sla_overdue", _("Order overdue (L1)")
        SLA_L2 = "sla_l2", _("Overdue order handed to the backup (L2)")
        SLA_L3 = "sla_l3", _("Overdue order escalated to the supervisor (L3)")

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


class NotificationTemplate(models.Model):
    """The words of a message, editable in admin: Django template syntax over the payload."""

    class Channel(models.TextChoices):
        IN_APP = "in_app", _("In-app")
        EMAIL = "email", _("E-mail")
        WECOM = "wecom", _("WeCom group robot")
        SMS = "sms", _("SMS")

    code = models.SlugField(_("code"), max_length=60)
    channel = models.CharField(_("channel"), max_length=10, choices=Channel.choices)
    subject = models.CharField(
        _("subject"), max_length=200, blank=True, help_text=_("E-mail and in-app title.")
    )
    body = models.TextField(_("body"), help_text=_("Django template syntax, e.g. {{ order.tag }}."))
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("notification template")
        verbose_name_plural = _("notification templates")
        ordering = ["code", "channel"]
        constraints = [
            models.UniqueConstraint(fields=["code", "channel"], name="notificationtemplate_one_per_channel"),
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.get_channel_display()})"


class Notification(models.Model):
    """One message to one target by one channel, and what became of it."""

    Channel = NotificationTemplate.Channel

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Given up")

    channel = models.CharField(_("channel"), max_length=10, choices=Channel.choices)
    # The person (in-app, and whose e-mail or phone it was) and the address used: an e-mail
    # address, a phone number or a robot webhook URL; empty for in-app.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notifications",
    )
    target = models.CharField(_("target"), max_length=500, blank=True)
    template = models.CharField(_("template"), max_length=60)
    payload = models.JSONField(_("payload"), default=dict, blank=True)
    subject = models.CharField(_("subject"), max_length=200, blank=True)
    body = models.TextField(_("body"), blank=True)
    order = models.ForeignKey(
        "orders.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="notifications"
    )
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    # One message per cause and target: a second scanner or a retried task hits the key.
    dedupe_key = models.CharField(max_length=200, unique=True, null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)
    read_at = models.DateTimeField(_("read"), null=True, blank=True)

    class Meta:
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"], name="notification_due", condition=models.Q(status="pending")
            ),
            models.Index(fields=["user", "channel", "created_at"], name="notification_inbox"),
        ]

    def __str__(self) -> str:
        return f"{self.template} → {self.target or self.user_id} ({self.channel})"


# --- Reports: rollups the report pages read instead of the order tables ----------------------
# Each rollup row is one local day's facts for one scope key. Supervisors' scope is the
# order's province (orders.selectors.order_visible_to), so order rollups keep the province;
# pool-entry rollups keep the entry's region. `dashboards.reports.services.reports_rollup`
# deletes and rewrites whole days, so a re-run is always safe.
class ReportOrderDay(models.Model):
    """Per day × province × channel × category: orders ready for dispatch, first acceptances
    and stage exits with how many of them were late (SLA breaches)."""

    day = models.DateField()
    province = models.CharField(max_length=30, blank=True)
    channel = models.ForeignKey("orders.Channel", on_delete=models.CASCADE, related_name="+")
    category = models.CharField(max_length=64, blank=True)
    ready = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    exits = models.PositiveIntegerField(default=0)
    breaches = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "province", "channel", "category"], name="reportorderday_one_per_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.province} {self.channel_id} {self.category}"


class ReportResponseDay(models.Model):
    """Per day × province: first responses (ready → accepted) by their acceptance day, with a
    log-bucket histogram of the seconds for percentiles (dashboards.reports.buckets)."""

    day = models.DateField()
    province = models.CharField(max_length=30, blank=True)
    ready = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    seconds_sum = models.FloatField(default=0)
    histogram = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "province"], name="reportresponseday_one_per_key")
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.province}"


class ReportStageDay(models.Model):
    """Per day × province × stage left: exits, breaches, and the stay's seconds (sum and
    histogram) from the TRANSITION events' stage-left facts."""

    day = models.DateField()
    province = models.CharField(max_length=30, blank=True)
    stage = models.CharField(max_length=20)
    exits = models.PositiveIntegerField(default=0)
    breaches = models.PositiveIntegerField(default=0)
    stay_sum = models.FloatField(default=0)
    histogram = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "province", "stage"], name="reportstageday_one_per_key")
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.province} {self.stage}"


class ReportAgentDay(models.Model):
    """Per day × agent: offers made that day and what became of them, and work completed."""

    day = models.DateField()
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="+")
    offers = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    expired = models.PositiveIntegerField(default=0)
    completed = models.PositiveIntegerField(default=0)
    handling_sum = models.FloatField(default=0, help_text="seconds from acceptance to completion")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "agent"], name="reportagentday_one_per_key")]

    def __str__(self) -> str:
        return f"{self.day} {self.agent_id}"


class ReportSkillDay(models.Model):
    """Per day × region × skill needed: pool entries (orders and inquiries) that became ready,
    and those first accepted that day with their wait."""

    day = models.DateField()
    region = models.ForeignKey(
        "agents.Region", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    skill = models.CharField(max_length=40)
    ready = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    wait_sum = models.FloatField(default=0)

    class Meta:
        indexes = [models.Index(fields=["day"])]

    def __str__(self) -> str:
        return f"{self.day} {self.region_id} {self.skill}"


class ReportExceptionDay(models.Model):
    """Per day × province × exception type: cases raised that day, and cases resolved that day
    with their time to resolve."""

    day = models.DateField()
    province = models.CharField(max_length=30, blank=True)
    type = models.ForeignKey("orders.ExceptionType", on_delete=models.CASCADE, related_name="+")
    raised = models.PositiveIntegerField(default=0)
    resolved = models.PositiveIntegerField(default=0)
    resolve_sum = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "province", "type"], name="reportexceptionday_one_per_key")
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.province} {self.type_id}"


class ReportRun(models.Model):
    """When the rollups were last rewritten and which days: the pages say "updated at"."""

    finished_at = models.DateTimeField(default=timezone.now, db_index=True)
    first_day = models.DateField()
    last_day = models.DateField()
    seconds = models.FloatField(default=0)

    def __str__(self) -> str:
        return f"{self.first_day}…{self.last_day} @ {self.finished_at:%Y-%m-%d %H:%M}"


class BacklogSnapshot(models.Model):
    """Open orders per stage and province at one moment, taken hourly by beat."""

    taken_at = models.DateTimeField(_("taken at"))
    stage = models.CharField(_("stage"), max_length=20)
    province = models.CharField(_("province"), max_length=30, blank=True)
    count = models.PositiveIntegerField(_("count"), default=0)

    class Meta:
        verbose_name = _("backlog snapshot")
        verbose_name_plural = _("backlog snapshots")
        constraints = [
            models.UniqueConstraint(
                fields=["taken_at", "stage", "province"], name="backlogsnapshot_one_per_key"
            )
        ]
        indexes = [models.Index(fields=["taken_at"])]

    def __str__(self) -> str:
        return f"{self.taken_at:%Y-%m-%d %H:%M} {self.stage} {self.province}: {self.count}"
