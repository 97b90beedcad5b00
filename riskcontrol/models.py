"""Risk control state: rules and their weight history, thresholds, blacklists, delivery
limits, what screening found on each order, and the reviews that decide quarantined ones."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from riskcontrol.engine import ListKind, RuleKind

RULE_KIND_LABELS = {
    RuleKind.ADDRESS_KEYWORDS: _("Address keywords"),
    RuleKind.IP_VELOCITY: _("Same IP, many orders"),
    RuleKind.DEVICE_VELOCITY: _("Same device, many orders"),
    RuleKind.CARD_SAME_AMOUNT: _("Same card, same amount"),
    RuleKind.ROUND_AMOUNT: _("Round amount without a note"),
    RuleKind.PHONE_DISTANCE: _("Phone's home city far away"),
    RuleKind.NEW_ACCOUNT_COUPON: _("New account's first order with a coupon"),
    RuleKind.NEW_ACCOUNT: _("New account"),
    RuleKind.AMOUNT_OVER_USUAL: _("Amount far over the usual"),
    RuleKind.BLACKLIST: _("Blacklist"),
    RuleKind.COMPOSITE: _("Composite (all of several conditions)"),
}
LIST_KIND_LABELS = {
    ListKind.IP: _("IP address"),
    ListKind.PHONE: _("Phone"),
    ListKind.DEVICE: _("Device fingerprint"),
    ListKind.CARD: _("Card fingerprint"),
    ListKind.ADDRESS: _("Address fragment"),
}

# What a reviewer may blacklist from a confirmed order: list kind → the order's field.
BLACKLISTABLE = {
    "ip": "client_ip",
    "phone": "customer_phone",
    "device": "device_id",
    "card": "card_fingerprint",
}


class RiskPolicy(models.Model):
    """The two thresholds a screening score is compared with. A channel's own policy wins
    over the general one (no channel); with neither, the built-in defaults apply."""

    name = models.CharField(_("name"), max_length=80, unique=True)
    channel = models.OneToOneField(
        "orders.Channel",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        verbose_name=_("channel"),
        help_text=_("Blank: every channel without a policy of its own."),
    )
    review_threshold = models.FloatField(
        _("flag at"), default=30, help_text=_("From this score an order is flagged for attention.")
    )
    quarantine_threshold = models.FloatField(
        _("quarantine at"),
        default=60,
        help_text=_("From this score an order is held (待核实) and a reviewer decides."),
    )
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("risk policy")
        verbose_name_plural = _("risk policies")
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"],
                condition=Q(channel__isnull=True, is_active=True),
                name="riskpolicy_one_general",
            ),
            models.CheckConstraint(
                condition=Q(review_threshold__gt=0)
                & Q(quarantine_threshold__gte=models.F("review_threshold")),
                name="riskpolicy_thresholds_ordered",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.review_threshold is not None and self.review_threshold <= 0:
            raise ValidationError({"review_threshold": _("The flag threshold must be above 0.")})
        if (
            self.review_threshold is not None
            and self.quarantine_threshold is not None
            and self.quarantine_threshold < self.review_threshold
        ):
            raise ValidationError(
                {"quarantine_threshold": _("The quarantine threshold cannot be below the flag threshold.")}
            )


class Rule(models.Model):
    kind = models.CharField(
        _("type"), max_length=30, choices=[(k.value, label) for k, label in RULE_KIND_LABELS.items()]
    )
    name = models.CharField(_("name"), max_length=100, unique=True)
    description = models.TextField(_("description"), blank=True)
    params = models.JSONField(_("parameters"), default=dict, blank=True)
    weight = models.FloatField(_("weight"), default=30, help_text=_("Added to the score when the rule hits."))
    base_weight = models.FloatField(
        _("base weight"),
        default=30,
        help_text=_("The weight set by hand; learning scales it by the rule's precision."),
    )
    min_weight = models.FloatField(_("lowest weight learning may set"), default=5)
    max_weight = models.FloatField(_("highest weight learning may set"), default=100)
    weight_frozen = models.BooleanField(
        _("weight frozen"), default=False, help_text=_("Learning leaves a frozen weight as it is.")
    )
    is_active = models.BooleanField(_("on"), default=True)
    channel = models.ForeignKey(
        "orders.Channel",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        verbose_name=_("only for channel"),
        help_text=_("Blank: every channel."),
    )
    effective_from = models.DateTimeField(_("effective from"), null=True, blank=True)
    effective_until = models.DateTimeField(_("effective until"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("risk rule")
        verbose_name_plural = _("risk rules")
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=[k.value for k in RuleKind]), name="rule_kind_known"),
            models.CheckConstraint(
                condition=Q(min_weight__gte=0) & Q(max_weight__gte=models.F("min_weight")),
                name="rule_weight_bounds_ordered",
            ),
            models.CheckConstraint(
                condition=Q(effective_until__isnull=True)
                | Q(effective_from__isnull=True)
                | Q(effective_until__gt=models.F("effective_from")),
                name="rule_effective_dates_ordered",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from riskcontrol.params import clean_params

        errors = {}
        if self.kind:
            try:
                self.params = clean_params(self.kind, self.params)
            except ValidationError as exc:
                errors["params"] = exc.messages
        if self.min_weight is not None and self.max_weight is not None and self.max_weight < self.min_weight:
            errors["max_weight"] = _("The highest weight cannot be below the lowest.")
        if self.weight is not None and not 0 <= self.weight <= 1000:
            errors["weight"] = _("A weight runs from 0 to 1000.")
        if self.effective_from and self.effective_until and self.effective_until <= self.effective_from:
            errors["effective_until"] = _("The end must come after the start.")
        if errors:
            raise ValidationError(errors)


class RuleWeightChange(models.Model):
    """Every change of a rule's weight, by learning or by hand, with why."""

    class Source(models.TextChoices):
        LEARNING = "learning", _("Learning")
        ADMIN = "admin", _("By hand")

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="weight_changes")
    at = models.DateTimeField(_("at"), default=timezone.now)
    source = models.CharField(_("source"), max_length=10, choices=Source.choices)
    old_weight = models.FloatField(_("old weight"))
    new_weight = models.FloatField(_("new weight"))
    confirmed = models.PositiveIntegerField(_("confirmed"), default=0)
    false_positives = models.PositiveIntegerField(_("false positives"), default=0)
    precision = models.FloatField(_("precision (posterior)"), null=True, blank=True)
    reason = models.CharField(_("reason"), max_length=300)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        verbose_name = _("rule weight change")
        verbose_name_plural = _("rule weight changes")
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["rule", "at"])]

    def __str__(self) -> str:
        return f"{self.rule_id}: {self.old_weight} → {self.new_weight}"


class BlacklistEntry(models.Model):
    kind = models.CharField(
        _("list"), max_length=10, choices=[(k.value, label) for k, label in LIST_KIND_LABELS.items()]
    )
    value = models.CharField(
        _("value"),
        max_length=200,
        help_text=_("IPs and phones as stored (E.164); cards as their SHA-256; an address fragment as text."),
    )
    reason = models.CharField(_("reason"), max_length=300)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True, help_text=_("Blank: never."))
    created_at = models.DateTimeField(_("added"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source_order = models.ForeignKey(
        "orders.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = _("blacklist entry")
        verbose_name_plural = _("blacklist")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "value"], name="blacklist_once"),
            models.CheckConstraint(
                condition=Q(kind__in=[k.value for k in ListKind]), name="blacklist_kind_known"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.value}"

    def clean(self) -> None:
        from riskcontrol.params import clean_list_value

        if self.kind and self.value is not None:
            try:
                self.value = clean_list_value(self.kind, self.value)
            except ValidationError as exc:
                raise ValidationError({"value": exc.messages}) from exc


class DeliveryRestriction(models.Model):
    """A place where the promised delivery time cannot be met (floods, a closed depot):
    orders to it are flagged before anyone promises a date."""

    province = models.CharField(_("province"), max_length=30)
    city = models.CharField(_("city"), max_length=30, blank=True, help_text=_("Blank: the whole province."))
    reason = models.CharField(_("reason"), max_length=200)
    extra_days = models.PositiveSmallIntegerField(_("extra days"), default=0)
    active_from = models.DateTimeField(_("from"), default=timezone.now)
    active_until = models.DateTimeField(_("until"), null=True, blank=True)

    class Meta:
        verbose_name = _("delivery restriction")
        verbose_name_plural = _("delivery restrictions")
        ordering = ["province", "city"]

    def __str__(self) -> str:
        return f"{self.province}{self.city}: {self.reason}"


class RuleHit(models.Model):
    """One rule that hit one order at screening, with the facts behind it. The outcome is
    copied here when a reviewer decides, so learning and reports read one table."""

    class Outcome(models.TextChoices):
        NONE = "", _("Not decided")
        CONFIRMED = "confirmed", _("Confirmed fraud")
        FALSE_POSITIVE = "false_positive", _("False positive")

    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, related_name="rule_hits")
    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="hits")
    at = models.DateTimeField(_("at"), default=timezone.now)
    kind = models.CharField(max_length=30)
    weight = models.FloatField(_("weight then"))
    facts = models.JSONField(default=dict)
    explanation = models.CharField(_("explanation"), max_length=300)
    outcome = models.CharField(_("outcome"), max_length=20, choices=Outcome.choices, blank=True, default="")

    class Meta:
        verbose_name = _("rule hit")
        verbose_name_plural = _("rule hits")
        ordering = ["-weight", "id"]
        indexes = [models.Index(fields=["rule", "at"]), models.Index(fields=["at"])]

    def __str__(self) -> str:
        return f"{self.rule_id}@{self.order_id}"


class Review(models.Model):
    """The human decision on a quarantined order. One open review per order."""

    class State(models.TextChoices):
        OPEN = "open", _("Waiting for a reviewer")
        INVESTIGATING = "investigating", _("Needs investigation")
        CONFIRMED = "confirmed", _("Confirmed fraud")
        FALSE_POSITIVE = "false_positive", _("False positive")
        WITHDRAWN = "withdrawn", _("Closed without a decision")

    OPEN_STATES = (State.OPEN, State.INVESTIGATING)

    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, related_name="reviews")
    state = models.CharField(_("state"), max_length=20, choices=State.choices, default=State.OPEN)
    score = models.FloatField(_("score"), default=0)
    reason = models.CharField(_("why held"), max_length=300, blank=True)
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="reviews",
        verbose_name=_("reviewer"),
    )  # fmt: skip
    created_at = models.DateTimeField(_("opened"), default=timezone.now)
    decided_at = models.DateTimeField(_("decided"), null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.TextField(_("note"), blank=True)

    class Meta:
        verbose_name = _("risk review")
        verbose_name_plural = _("risk reviews")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["order"],
                condition=Q(state__in=["open", "investigating"]),
                name="review_one_open_per_order",
            )
        ]
        indexes = [models.Index(fields=["state", "created_at"])]

    def __str__(self) -> str:
        return f"review {self.pk} of order {self.order_id}"

    @property
    def is_open(self) -> bool:
        return self.state in self.OPEN_STATES


class ReviewDecision(models.Model):
    """Every decision taken on a review (a review may be investigated before it is decided):
    the audit trail of the reviewers' work. Never changed."""

    class Decision(models.TextChoices):
        CONFIRMED = "confirmed", _("Confirmed fraud")
        FALSE_POSITIVE = "false_positive", _("False positive")
        INVESTIGATE = "investigate", _("Needs investigation")

    review = models.ForeignKey(Review, on_delete=models.CASCADE, related_name="decisions")
    decision = models.CharField(_("decision"), max_length=20, choices=Decision.choices)
    note = models.TextField(_("note"), blank=True)
    blacklisted = models.JSONField(_("blacklisted"), default=list, blank=True)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField(_("at"), default=timezone.now)

    class Meta:
        verbose_name = _("review decision")
        verbose_name_plural = _("review decisions")
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.review_id}: {self.decision}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None and not kwargs.get("force_insert"):
            raise ValidationError("Review decisions are append-only: they cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError("Review decisions are append-only: they cannot be deleted.")
