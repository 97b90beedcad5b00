"""Dispatch state: policies, the waiting pool, offers/assignments, and customer inquiries."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from dispatch.engine.types import Criterion, HardFilter, PolicyKind, WaitReason

LIVE_STATES = ("offered", "accepted")

# What a pool entry's `wait_reason` means, for people: the manual queue and the L2 alert.
WAIT_REASON_LABELS = {
    "queued": _("Queued"),
    "returned": _("Returned to the pool"),
    WaitReason.NO_QUALIFIED_AGENT: _("No agent can take it"),
    WaitReason.NONE_ONLINE: _("No qualified agent is online"),
    WaitReason.ALL_AT_CAPACITY: _("Every qualified agent is at capacity"),
    WaitReason.OUTRANKED: _("Free agents went to more urgent items"),
}


def default_filters() -> list[str]:
    """What the built-in default policy applies: skill and area."""
    return [HardFilter.SKILL.value, HardFilter.AREA.value]


class DispatchPolicy(models.Model):
    """How the pool picks an agent, for the orders a (channel, service type, region) scope
    matches. The most specific active policy wins; with none, a default smart policy applies."""

    class Kind(models.TextChoices):
        ROUND_ROBIN = PolicyKind.ROUND_ROBIN.value, _("Round robin")
        WEIGHTED = PolicyKind.WEIGHTED.value, _("Fixed weights")
        SMART = PolicyKind.SMART.value, _("Smart")

    name = models.CharField(_("name"), max_length=80, unique=True)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices, default=Kind.SMART)
    is_active = models.BooleanField(_("active"), default=True)
    channel = models.ForeignKey(
        "orders.Channel", null=True, blank=True, on_delete=models.CASCADE, verbose_name=_("channel")
    )
    service_type = models.CharField(
        _("service type"), max_length=64, blank=True, help_text=_("An order's category; blank matches any.")
    )
    region = models.ForeignKey(
        "agents.Region", null=True, blank=True, on_delete=models.CASCADE, verbose_name=_("region")
    )
    criteria = models.JSONField(
        _("criteria"),
        default=list,
        blank=True,
        help_text=_(
            'Smart policies: an ordered list, most important first, e.g. [{"criterion": "skill", '
            '"weight": 8}, {"criterion": "load", "weight": 4}]. A missing weight is derived from '
            "the position. Criteria: urgency, proximity, skill, load, quality, returning, vip, channel_team."
        ),
    )
    filters = models.JSONField(
        _("hard filters"),
        default=default_filters,
        blank=True,
        help_text=_(
            'Besides online, free capacity and "never the same agent twice": any of skill, area, '
            "channel_team."
        ),
    )
    offer_seconds = models.PositiveIntegerField(_("offer window (seconds)"), default=600)
    burst_first = models.PositiveIntegerField(
        _("burst: offers at the short window"),
        default=100,
        help_text=_("When a round makes more offers than this, the first ones get the short window."),
    )
    burst_min_seconds = models.PositiveIntegerField(_("burst: short window (seconds)"), default=300)
    burst_max_seconds = models.PositiveIntegerField(_("burst: widest window (seconds)"), default=900)
    max_rounds = models.PositiveSmallIntegerField(
        _("rounds before L2"),
        default=3,
        help_text=_("Failed offer rounds (rejected or expired) before the supervisor takes over."),
    )
    l2_wait_seconds = models.PositiveIntegerField(
        _("wait before L2 (seconds)"),
        default=300,
        help_text=_(
            "An item waiting this long while no qualified agent is online goes to the supervisor's queue."
        ),
    )

    class Meta:
        verbose_name = _("dispatch policy")
        verbose_name_plural = _("dispatch policies")
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=[k.value for k in PolicyKind]), name="dispatchpolicy_kind_known"
            ),
            models.CheckConstraint(condition=Q(max_rounds__gte=1), name="dispatchpolicy_rounds_positive"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = {}
        problem = validate_criteria(self.criteria)
        if problem:
            errors["criteria"] = problem
        problem = validate_filters(self.filters)
        if problem:
            errors["filters"] = problem
        if self.burst_min_seconds > self.burst_max_seconds:
            errors["burst_min_seconds"] = _("The short window cannot be longer than the widest one.")
        if self.offer_seconds < 30:
            errors["offer_seconds"] = _("An offer window under 30 seconds cannot be answered.")
        if errors:
            raise ValidationError(errors)


def validate_criteria(value: object) -> str:
    """'' when `value` is a valid criteria list, else what is wrong with it."""
    if not isinstance(value, list):
        return "Criteria must be a list of objects."
    known = {c.value for c in Criterion}
    seen = set()
    for position, item in enumerate(value, start=1):
        if not isinstance(item, dict) or "criterion" not in item:
            return f'Item {position} must be an object with a "criterion" key.'
        unknown = set(item) - {"criterion", "weight"}
        if unknown:
            return f"Item {position} has unknown keys: {', '.join(sorted(unknown))}."
        name = item["criterion"]
        if name not in known:
            return f"Item {position}: '{name}' is not a criterion. Known: {', '.join(sorted(known))}."
        if name in seen:
            return f"Item {position}: '{name}' is listed twice."
        seen.add(name)
        weight = item.get("weight")
        if weight is not None and (
            isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 1000
        ):
            return f"Item {position}: the weight of '{name}' must be a number from 0 to 1000."
    return ""


def validate_filters(value: object) -> str:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return "Filters must be a list of names."
    known = {f.value for f in HardFilter}
    unknown = [v for v in value if v not in known]
    if unknown:
        return f"Unknown filters: {', '.join(unknown)}. Known: {', '.join(sorted(known))}."
    return ""


class WeightedShare(models.Model):
    """A fixed share of a weighted policy's items for one agent."""

    policy = models.ForeignKey(DispatchPolicy, on_delete=models.CASCADE, related_name="shares")
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE)
    share = models.PositiveIntegerField(_("share"), default=1)

    class Meta:
        verbose_name = _("share")
        verbose_name_plural = _("shares")
        constraints = [
            models.UniqueConstraint(fields=["policy", "agent"], name="weightedshare_once"),
            models.CheckConstraint(condition=Q(share__gte=1), name="weightedshare_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.agent_id}×{self.share}"


class Inquiry(models.Model):
    """A customer's chat or consultation message waiting for a person (seed 003)."""

    class State(models.TextChoices):
        OPEN = "open", _("Waiting")
        ASSIGNED = "assigned", _("With an agent")
        CLOSED = "closed", _("Closed")

    channel = models.ForeignKey("orders.Channel", on_delete=models.PROTECT, related_name="inquiries")
    customer = models.ForeignKey(
        "orders.Customer", null=True, blank=True, on_delete=models.PROTECT, related_name="inquiries"
    )
    account_key = models.CharField(_("customer account"), max_length=128, blank=True)
    customer_name = models.CharField(_("customer name"), max_length=100, blank=True)
    is_vip = models.BooleanField(_("VIP"), default=False)
    text = models.TextField(_("message"))
    skills = models.JSONField(_("skills"), default=list, blank=True)
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.OPEN)
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="inquiries"
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)

    class Meta:
        verbose_name = _("inquiry")
        verbose_name_plural = _("inquiries")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "created_at"])]

    def __str__(self) -> str:
        return f"{self.channel_id}:{self.pk}"


class PoolEntry(models.Model):
    """One order or inquiry in the waiting pool, from ready until someone accepted it (or it
    closed). The database row is the truth: a lost task only delays the next match."""

    class State(models.TextChoices):
        WAITING = "waiting", _("Waiting")
        OFFERED = "offered", _("Offered")
        ASSIGNED = "assigned", _("Assigned")
        ESCALATED = "escalated", _("With the supervisor")
        CLOSED = "closed", _("Closed")

    class Kind(models.TextChoices):
        ORDER = "order", _("Order")
        INQUIRY = "inquiry", _("Inquiry")
        REVIEW = "review", _("Risk review")

    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    order = models.OneToOneField(
        "orders.Order", null=True, blank=True, on_delete=models.CASCADE, related_name="pool_entry"
    )
    inquiry = models.OneToOneField(
        Inquiry, null=True, blank=True, on_delete=models.CASCADE, related_name="pool_entry"
    )
    review = models.OneToOneField(
        "riskcontrol.Review", null=True, blank=True, on_delete=models.CASCADE, related_name="pool_entry"
    )
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.WAITING)
    channel = models.ForeignKey("orders.Channel", on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey(
        "orders.Customer", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    region = models.ForeignKey("agents.Region", null=True, blank=True, on_delete=models.SET_NULL)
    category = models.CharField(max_length=64, blank=True)
    skills = models.JSONField(_("skills needed"), default=list, blank=True)
    latitude = models.FloatField(null=True, blank=True)
    longitude = models.FloatField(null=True, blank=True)
    expedited = models.BooleanField(_("expedited"), default=False)
    repeat_repair = models.BooleanField(_("repeat repair"), default=False)
    is_vip = models.BooleanField(_("VIP"), default=False)
    urgent = models.BooleanField(default=False, help_text="expedited or repeat repair; matched first")
    ready_at = models.DateTimeField(
        _("ready"), default=timezone.now, help_text="first ready; kept on returns"
    )
    waiting_since = models.DateTimeField(_("waiting since"), default=timezone.now)
    rounds = models.PositiveSmallIntegerField(_("failed rounds"), default=0)
    wait_reason = models.CharField(_("waiting because"), max_length=30, blank=True, default="queued")
    wait_detail = models.CharField(max_length=200, blank=True)
    escalation_level = models.PositiveSmallIntegerField(_("escalation level"), default=0)
    escalated_at = models.DateTimeField(_("escalated"), null=True, blank=True)
    last_tried_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("pool entry")
        verbose_name_plural = _("pool entries")
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind="order", order__isnull=False, inquiry__isnull=True, review__isnull=True))
                | Q(kind="inquiry", inquiry__isnull=False, order__isnull=True, review__isnull=True)
                | Q(kind="review", review__isnull=False, order__isnull=True, inquiry__isnull=True),
                name="poolentry_one_subject",
            ),
        ]
        indexes = [
            # The tick's claim: waiting entries, urgent first, oldest first.
            models.Index(
                fields=["-urgent", "ready_at", "id"], name="poolentry_waiting", condition=Q(state="waiting")
            ),
            models.Index(fields=["state", "region"]),
            # Reads of a range of days: the report rollups and the simulator's recorded days.
            models.Index(fields=["ready_at"], name="poolentry_ready_at"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.order_id or self.inquiry_id} ({self.state})"


class Assignment(models.Model):
    """An offer to one agent and what became of it. At most one live (offered or accepted)
    assignment per pool entry and per order: a partial unique constraint holds it."""

    class State(models.TextChoices):
        OFFERED = "offered", _("Offered")
        ACCEPTED = "accepted", _("Accepted")
        REJECTED = "rejected", _("Rejected")
        EXPIRED = "expired", _("Expired")
        RELEASED = "released", _("Released")
        COMPLETED = "completed", _("Completed")
        CANCELLED = "cancelled", _("Cancelled")

    entry = models.ForeignKey(PoolEntry, on_delete=models.CASCADE, related_name="assignments")
    order = models.ForeignKey(
        "orders.Order", null=True, blank=True, on_delete=models.CASCADE, related_name="assignments"
    )
    inquiry = models.ForeignKey(
        Inquiry, null=True, blank=True, on_delete=models.CASCADE, related_name="assignments"
    )
    review = models.ForeignKey(
        "riskcontrol.Review", null=True, blank=True, on_delete=models.CASCADE, related_name="assignments"
    )
    agent = models.ForeignKey("agents.Agent", on_delete=models.PROTECT, related_name="assignments")
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.OFFERED)
    round = models.PositiveSmallIntegerField(_("round"), default=1)
    policy_kind = models.CharField(_("policy"), max_length=20, blank=True)
    score = models.FloatField(_("score"), null=True, blank=True)
    breakdown = models.JSONField(_("why this agent"), default=dict, blank=True)
    distance_km = models.FloatField(_("distance (km)"), null=True, blank=True)
    skill_match = models.BooleanField(_("skill match"), default=True)
    manual = models.BooleanField(_("by hand"), default=False)
    assigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    offered_at = models.DateTimeField(_("offered"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    responded_at = models.DateTimeField(_("answered"), null=True, blank=True)
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)
    reason = models.CharField(_("reason"), max_length=300, blank=True)

    class Meta:
        verbose_name = _("assignment")
        verbose_name_plural = _("assignments")
        ordering = ["-offered_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["entry"], condition=Q(state__in=LIVE_STATES), name="assignment_one_live_per_entry"
            ),
            models.UniqueConstraint(
                fields=["order"], condition=Q(state__in=LIVE_STATES), name="assignment_one_live_per_order"
            ),
        ]
        indexes = [
            models.Index(fields=["expires_at"], name="assignment_offer_expiry", condition=Q(state="offered")),
            models.Index(fields=["agent", "state"]),
            # Every round counts each agent's offers since midnight (weighted shares, ties).
            models.Index(fields=["offered_at"], name="assignment_offered_at"),
        ]

    def __str__(self) -> str:
        return f"{self.entry_id}→{self.agent_id} ({self.state})"


class SimulationRun(models.Model):
    """A supervisor's request to replay past days under the live policies and under the live
    policies with one draft switched on; a worker fills in the progress and the comparison."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("requested by"),
    )
    policy = models.ForeignKey(
        DispatchPolicy,
        on_delete=models.PROTECT,
        related_name="simulation_runs",
        verbose_name=_("draft policy"),
    )
    start_date = models.DateField(_("first day"))
    end_date = models.DateField(_("end (exclusive)"), help_text=_("The day after the last day replayed."))
    seed = models.PositiveIntegerField(_("seed"), default=1)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(_("progress"), default=0.0)
    result = models.JSONField(_("result"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("requested"), default=timezone.now)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    # When a worker last showed it is alive on this run (start, each progress write), or when the
    # run was last sent to the queue: the recovery sweep finds stuck runs by it.
    heartbeat_at = models.DateTimeField(_("last sign of life"), null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)

    class Meta:
        verbose_name = _("simulation run")
        verbose_name_plural = _("simulation runs")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="simulationrun_liveness")]
        constraints = [
            models.CheckConstraint(
                condition=Q(end_date__gt=models.F("start_date")), name="simulationrun_range_forward"
            ),
            models.CheckConstraint(
                condition=Q(progress__gte=0.0, progress__lte=1.0), name="simulationrun_progress_share"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.policy_id} {self.start_date}..{self.end_date} ({self.status})"

    @property
    def last_day(self):
        """The last day replayed (the range's end is exclusive)."""
        return self.end_date - timedelta(days=1)
