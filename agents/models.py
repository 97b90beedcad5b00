"""People who work orders: regions, teams, skills and agents with their live state."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Region(models.Model):
    code = models.SlugField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=60)
    provinces = models.JSONField(
        _("provinces"), default=list, blank=True, help_text=_("Province names this region covers.")
    )
    supervisors = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="supervised_regions", verbose_name=_("supervisors")
    )
    wecom_webhook_url = models.URLField(
        _("WeCom robot webhook"),
        max_length=500,
        blank=True,
        help_text=_("The region's group robot for alerts."),
    )

    class Meta:
        verbose_name = _("region")
        verbose_name_plural = _("regions")
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name


class Team(models.Model):
    """A team or skill group (售前, 售后, 安装 …)."""

    code = models.SlugField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=60)
    region = models.ForeignKey(Region, null=True, blank=True, on_delete=models.SET_NULL)
    wecom_webhook_url = models.URLField(
        _("WeCom robot webhook"),
        max_length=500,
        blank=True,
        help_text=_("The team's group robot; overdue reminders go here, mentioning the owner."),
    )

    class Meta:
        verbose_name = _("team")
        verbose_name_plural = _("teams")
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name


class Skill(models.Model):
    code = models.SlugField(_("code"), max_length=40, unique=True)
    name = models.CharField(_("name"), max_length=60)
    keywords = models.JSONField(
        _("keywords"),
        default=list,
        blank=True,
        help_text=_("Words in an order's category, note or a message that call for this skill."),
    )
    wait_alert_seconds = models.PositiveIntegerField(
        _("queue wait alert (seconds)"),
        default=180,
        help_text=_("Alert supervisors when an inquiry needing this skill has waited this long."),
    )

    class Meta:
        verbose_name = _("skill")
        verbose_name_plural = _("skills")
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name


class Agent(models.Model):
    class Status(models.TextChoices):
        ONLINE = "online", _("Online")
        BUSY = "busy", _("Busy")
        BREAK = "break", _("On a break")
        OFFLINE = "offline", _("Offline")

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent")
    display_name = models.CharField(_("display name"), max_length=60)
    teams = models.ManyToManyField(Team, blank=True, related_name="agents", verbose_name=_("teams"))
    regions = models.ManyToManyField(Region, blank=True, related_name="agents", verbose_name=_("regions"))
    skills = models.ManyToManyField(Skill, through="AgentSkill", blank=True, related_name="agents")
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.OFFLINE)
    capacity = models.PositiveSmallIntegerField(_("capacity"), default=5)
    service_radius_km = models.PositiveIntegerField(_("service radius (km)"), default=30)
    latitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    longitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    location_at = models.DateTimeField(_("location updated"), null=True, blank=True)
    backup = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, verbose_name=_("backup")
    )
    supervisor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="supervised_agents",
        verbose_name=_("supervisor"),
    )
    dedicated_channels = models.ManyToManyField(
        "orders.Channel",
        blank=True,
        related_name="dedicated_agents",
        verbose_name=_("dedicated channels"),
        help_text=_("Channels this agent's team serves first (e.g. the JD team)."),
    )
    dedicated_customers = models.ManyToManyField(
        "orders.Customer",
        blank=True,
        related_name="dedicated_agents",
        verbose_name=_("dedicated customers"),
        help_text=_("VIP customers this agent serves personally."),
    )
    status_changed_at = models.DateTimeField(_("status since"), null=True, blank=True)
    last_offer_at = models.DateTimeField(_("last offer"), null=True, blank=True)

    # The profile: recomputed from assignments and ratings when an order closes or a rating
    # arrives (agent_profile_refresh); None until there is something to compute from.
    avg_handling_minutes = models.FloatField(_("average handling time (minutes)"), null=True, blank=True)
    good_rate_30d = models.FloatField(_("good ratings, 30 days"), null=True, blank=True)
    good_rate_7d = models.FloatField(_("good ratings, 7 days"), null=True, blank=True)
    on_time_rate = models.FloatField(_("on-time rate"), null=True, blank=True)
    first_fix_rate = models.FloatField(_("first-time-fix rate"), null=True, blank=True)
    acceptance_rate = models.FloatField(_("acceptance rate"), null=True, blank=True)
    ratings_30d = models.PositiveIntegerField(_("ratings, 30 days"), default=0)
    consecutive_exceptions = models.PositiveIntegerField(
        _("consecutive exceptions"),
        default=0,
        help_text=_("Rejects, expired offers and going dark since the last accepted offer."),
    )
    quality_weight = models.FloatField(_("quality weight"), default=0.5)
    profile_updated_at = models.DateTimeField(_("profile updated"), null=True, blank=True)

    class Meta:
        verbose_name = _("agent")
        verbose_name_plural = _("agents")
        constraints = [
            models.CheckConstraint(condition=Q(capacity__gte=1), name="agent_capacity_positive"),
            models.CheckConstraint(condition=~Q(backup=models.F("id")), name="agent_not_own_backup"),
        ]

    def __str__(self) -> str:
        return self.display_name


class AgentSkill(models.Model):
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE)
    skill = models.ForeignKey(Skill, on_delete=models.CASCADE)
    level = models.PositiveSmallIntegerField(_("level"), default=1, help_text=_("1 novice … 5 expert"))

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["agent", "skill"], name="agentskill_once"),
            models.CheckConstraint(condition=Q(level__gte=1, level__lte=5), name="agentskill_level_1_5"),
        ]

    def __str__(self) -> str:
        return f"{self.agent_id}:{self.skill_id}@{self.level}"


class Rating(models.Model):
    """A customer's rating of the work on one order, credited to the agent who owned it."""

    order = models.OneToOneField("orders.Order", on_delete=models.PROTECT, related_name="rating")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="ratings")
    score = models.PositiveSmallIntegerField(_("score"))
    on_time = models.BooleanField(_("on time"), null=True, blank=True)
    fixed_first_time = models.BooleanField(_("fixed first time"), null=True, blank=True)
    created_at = models.DateTimeField(_("rated at"), default=timezone.now)

    class Meta:
        verbose_name = _("rating")
        verbose_name_plural = _("ratings")
        constraints = [
            models.CheckConstraint(condition=Q(score__gte=1, score__lte=5), name="rating_score_1_5")
        ]
        indexes = [models.Index(fields=["agent", "created_at"])]

    def __str__(self) -> str:
        return f"{self.order_id}: {self.score}"


class PerformanceRecord(models.Model):
    """A line in an agent's performance file, e.g. the L3 escalation after 3 exceptions."""

    class Kind(models.TextChoices):
        CONSECUTIVE_EXCEPTIONS = "consecutive_exceptions", _("Consecutive exceptions")

    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="performance_records")
    kind = models.CharField(_("kind"), max_length=30, choices=Kind.choices)
    at = models.DateTimeField(_("at"), default=timezone.now)
    count = models.PositiveIntegerField(_("count"), default=0)
    detail = models.TextField(_("detail"), blank=True)

    class Meta:
        verbose_name = _("performance record")
        verbose_name_plural = _("performance records")
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.agent_id} {self.kind} {self.at:%Y-%m-%d}"


class UserContact(models.Model):
    """How to reach a person outside the app: the phone for SMS and WeCom mentions (the
    e-mail address is the account's own)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="contact")
    phone = models.CharField(
        _("mobile phone"), max_length=20, blank=True, help_text=_("E.164, e.g. +8613800138000.")
    )

    class Meta:
        verbose_name = _("contact")
        verbose_name_plural = _("contacts")

    def __str__(self) -> str:
        return f"{self.user} {self.phone}"
