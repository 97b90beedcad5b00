"""People who work orders: regions, teams, skills and agents with their live state."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
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
