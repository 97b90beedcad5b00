"""The order store: channels, customers, orders and their append-only audit trail."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from orders.states import Stage

STAGE_LABELS = {
    Stage.PENDING_REVIEW: _("Pending review"),
    Stage.PICKING: _("Picking"),
    Stage.SHIPPING: _("Shipping"),
    Stage.DONE: _("Done"),
    Stage.QUARANTINED: _("Quarantined"),
    Stage.EXCEPTION: _("Exception"),
    Stage.CANCELLED: _("Cancelled"),
}
STAGE_CHOICES = [(stage.value, STAGE_LABELS[stage]) for stage in Stage]


class Channel(models.Model):
    class Kind(models.TextChoices):
        MARKETPLACE = "marketplace", _("Marketplace")
        MINI_PROGRAM = "mini_program", _("Mini-program")
        WECHAT = "wechat", _("WeChat")
        EMAIL = "email", _("E-mail")
        SPREADSHEET = "spreadsheet", _("Spreadsheet")
        API = "api", _("API")

    code = models.SlugField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=100)
    tag_prefix = models.CharField(
        _("tag prefix"), max_length=12, help_text=_("Readable tags look like JD-20251222-001.")
    )
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices, default=Kind.API)
    is_active = models.BooleanField(_("active"), default=True)
    webhook_secret = models.CharField(
        _("webhook secret"),
        max_length=128,
        blank=True,
        help_text=_("HMAC-SHA256 key for signed webhooks; empty refuses all webhooks."),
    )
    field_mapping = models.JSONField(
        _("field mapping"),
        default=dict,
        blank=True,
        help_text=_(
            'Our field → path in the channel\'s JSON, e.g. {"external_id": "order_sn", '
            '"customer.name": "buyer.nick", "items": {"path": "goods", "fields": '
            '{"sku": "goods_id", "qty": "num"}}}. Empty: the body already uses our fields.'
        ),
    )
    # Polling connector (generic REST/JSON); empty URL means the channel is not polled.
    poll_url = models.URLField(_("poll URL"), blank=True)
    poll_auth_header = models.CharField(
        _("poll auth header"),
        max_length=500,
        blank=True,
        help_text=_('Sent as-is, e.g. "Authorization: Bearer …".'),
    )
    poll_cursor_param = models.CharField(_("cursor parameter"), max_length=50, default="since")
    poll_page_size = models.PositiveIntegerField(_("page size"), default=100)
    poll_page_size_param = models.CharField(_("page size parameter"), max_length=50, default="limit")
    poll_list_path = models.CharField(_("path to the list"), max_length=100, default="orders", blank=True)
    poll_next_cursor_path = models.CharField(
        _("path to the next cursor"), max_length=100, default="next_cursor", blank=True
    )
    poll_interval_minutes = models.PositiveIntegerField(_("poll every (minutes)"), default=10)
    poll_cursor = models.CharField(_("cursor"), max_length=200, blank=True)
    poll_next_at = models.DateTimeField(_("next poll at"), null=True, blank=True)
    poll_failures = models.PositiveIntegerField(_("consecutive failures"), default=0)
    poll_last_success_at = models.DateTimeField(_("last successful poll"), null=True, blank=True)
    poll_last_error = models.TextField(_("last poll error"), blank=True)
    poll_last_error_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("channel")
        verbose_name_plural = _("channels")
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class Customer(models.Model):
    """One buyer of one channel, keyed by account id, or by phone when there is none."""

    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="customers")
    account_key = models.CharField(max_length=160)
    account_id = models.CharField(_("account id"), max_length=128, blank=True)
    name = models.CharField(_("name"), max_length=100, blank=True)
    phone = models.CharField(_("phone (E.164)"), max_length=20, blank=True)
    phone_home_city = models.CharField(_("phone home city"), max_length=60, blank=True)
    account_created_at = models.DateTimeField(_("account created"), null=True, blank=True)
    is_vip = models.BooleanField(_("VIP"), default=False)
    order_count = models.PositiveIntegerField(_("orders"), default=0)
    first_order_at = models.DateTimeField(null=True, blank=True)
    last_order_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("customer")
        verbose_name_plural = _("customers")
        constraints = [
            models.UniqueConstraint(fields=["channel", "account_key"], name="customer_one_per_key")
        ]
        indexes = [models.Index(fields=["phone"])]

    def __str__(self) -> str:
        return self.name or self.account_key


class TagSequence(models.Model):
    """Per channel and day, the last number given out in a readable tag."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE)
    day = models.DateField()
    last = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "day"], name="tagsequence_one_per_day")]

    def __str__(self) -> str:
        return f"{self.channel_id} {self.day} #{self.last}"


class Order(models.Model):
    class Urgency(models.TextChoices):
        NORMAL = "normal", _("Normal")
        EXPEDITED = "expedited", _("Expedited")

    class Kind(models.TextChoices):
        NORMAL = "normal", _("Normal")
        RESHIPMENT = "reshipment", _("Reshipment")
        EXCHANGE = "exchange", _("After-sale exchange")

    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="orders")
    external_id = models.CharField(_("external id"), max_length=128)
    tag = models.CharField(_("tag"), max_length=40, unique=True)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="orders")
    customer_name = models.CharField(_("customer name"), max_length=100, blank=True)
    customer_phone = models.CharField(_("phone (E.164)"), max_length=20, blank=True)
    customer_phone_raw = models.CharField(_("phone as sent"), max_length=40, blank=True)
    customer_phone_city = models.CharField(_("phone home city"), max_length=60, blank=True)
    is_vip = models.BooleanField(_("VIP"), default=False)
    is_returning = models.BooleanField(_("returning customer"), default=False)

    address = models.CharField(_("address as written"), max_length=500, blank=True)
    province = models.CharField(_("province"), max_length=30, blank=True)
    city = models.CharField(_("city"), max_length=30, blank=True)
    district = models.CharField(_("district"), max_length=30, blank=True)
    adcode = models.CharField(_("area code"), max_length=12, blank=True)
    latitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    longitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)

    items = models.JSONField(_("items"), default=list, blank=True)
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    currency = models.CharField(_("currency"), max_length=3, default="CNY")
    coupon_code = models.CharField(_("coupon"), max_length=64, blank=True)
    note = models.TextField(_("note"), blank=True)
    category = models.CharField(_("category or service type"), max_length=64, blank=True)
    urgency = models.CharField(_("urgency"), max_length=10, choices=Urgency.choices, default=Urgency.NORMAL)
    kind = models.CharField(_("kind"), max_length=12, choices=Kind.choices, default=Kind.NORMAL)
    client_ip = models.GenericIPAddressField(_("client IP"), null=True, blank=True)
    device_id = models.CharField(_("device fingerprint"), max_length=128, blank=True)
    card_fingerprint = models.CharField(_("card fingerprint (SHA-256)"), max_length=64, blank=True)

    source_created_at = models.DateTimeField(_("created at source"), null=True, blank=True)
    source_updated_at = models.DateTimeField(_("updated at source"))
    stale_deliveries = models.PositiveIntegerField(
        _("older deliveries ignored"),
        default=0,
        help_text=_("Timestamp wins: older data is counted, not applied."),
    )

    stage = models.CharField(_("stage"), max_length=20, choices=STAGE_CHOICES, default=Stage.PENDING_REVIEW)
    held_stage = models.CharField(
        _("held in stage"), max_length=20, blank=True, help_text=_("Where an exception returns to.")
    )
    stage_entered_at = models.DateTimeField(_("in stage since"), default=timezone.now)
    due_at = models.DateTimeField(_("due"), null=True, blank=True)
    # How far the overdue ladder has gone for the current stage (0 none, 1 owner told,
    # 2 handed to the backup, 3 supervisor told); reset when the order changes stage.
    sla_level = models.PositiveSmallIntegerField(_("escalation level"), default=0)
    sla_level_at = models.DateTimeField(_("escalated at"), null=True, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_orders",
    )
    flags = models.JSONField(_("flags"), default=list, blank=True)
    is_flagged = models.BooleanField(_("flagged"), default=False)
    risk_score = models.FloatField(_("risk score"), default=0)

    received_at = models.DateTimeField(_("received"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        constraints = [
            models.UniqueConstraint(fields=["channel", "external_id"], name="order_one_per_external_id"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="order_amount_not_negative"),
            models.CheckConstraint(condition=Q(stage__in=[s.value for s in Stage]), name="order_stage_known"),
        ]
        indexes = [
            models.Index(fields=["stage", "received_at"]),
            models.Index(fields=["received_at"]),
            models.Index(fields=["due_at"]),
            # The overdue scan reads only orders still climbing the ladder: its cost grows with
            # the overdue orders, not with all orders.
            models.Index(
                fields=["due_at"],
                name="order_sla_climbing",
                condition=Q(due_at__isnull=False) & Q(sla_level__lt=3),
            ),
            models.Index(fields=["customer_phone"]),
            # A channel's usual amount (risk screening) reads its latest orders.
            models.Index(fields=["channel", "received_at"], name="order_channel_time"),
            # Risk screening counts earlier orders per IP, device and card in a time window.
            models.Index(
                fields=["client_ip", "received_at"],
                name="order_ip_time",
                condition=Q(client_ip__isnull=False),
            ),
            models.Index(
                fields=["device_id", "received_at"], name="order_device_time", condition=~Q(device_id="")
            ),
            models.Index(
                fields=["card_fingerprint", "amount", "received_at"],
                name="order_card_time",
                condition=~Q(card_fingerprint=""),
            ),
        ]

    def __str__(self) -> str:
        return self.tag


class Warehouse(models.Model):
    """Where orders ship from. An order ships from the warehouse that serves its province,
    else from the default one; risk screening measures distances from it."""

    code = models.SlugField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=100)
    city = models.CharField(_("city"), max_length=60)
    latitude = models.DecimalField(_("latitude"), max_digits=9, decimal_places=6)
    longitude = models.DecimalField(_("longitude"), max_digits=9, decimal_places=6)
    provinces = models.JSONField(
        _("provinces served"), default=list, blank=True, help_text=_('e.g. ["广东省", "广西壮族自治区"]')
    )
    is_default = models.BooleanField(_("default"), default=False, help_text=_("Ships what no other serves."))
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("warehouse")
        verbose_name_plural = _("warehouses")
        ordering = ["code"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="warehouse_one_default"
            ),
            models.CheckConstraint(
                condition=Q(latitude__gte=-90, latitude__lte=90, longitude__gte=-180, longitude__lte=180),
                name="warehouse_coordinates_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.city})"

    def clean(self) -> None:
        if not isinstance(self.provinces, list) or not all(
            isinstance(p, str) and p.strip() for p in self.provinces
        ):
            raise ValidationError({"provinces": _("Provinces must be a list of province names.")})


class AuditQuerySet(models.QuerySet):
    def bulk_create(self, objs, *args, **kwargs):
        # Outbound webhooks are an outbox: their deliveries are written in this transaction.
        from orders.outbound import events_written

        with transaction.atomic(using=self.db, savepoint=False):
            created = super().bulk_create(objs, *args, **kwargs)
            events_written(created)
        return created

    def update(self, **kwargs):
        raise ValidationError("Audit events are append-only: they cannot be changed.")

    def delete(self):
        raise ValidationError("Audit events are append-only: they cannot be deleted.")


class OrderEvent(models.Model):
    """One line of an order's life. Written only by services, never changed or deleted
    (the model refuses, and on PostgreSQL a trigger refuses too)."""

    class Kind(models.TextChoices):
        INGESTED = "ingested", _("Received")
        UPDATED = "updated", _("Updated from source")
        IGNORED_STALE = "ignored_stale", _("Older delivery ignored")
        TRANSITION = "transition", _("Stage change")
        EDIT = "edit", _("Edited")
        ASSIGNMENT = "assignment", _("Assignment")
        RULE_HIT = "rule_hit", _("Rule hit")
        REVIEW = "review", _("Risk review")
        NOTIFICATION = "notification", _("Notification")

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="events")
    at = models.DateTimeField(_("at"), default=timezone.now, db_index=True)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor = models.CharField(
        _("actor"), max_length=100, help_text=_("A person's username or the system part, e.g. webhook:jd.")
    )
    from_stage = models.CharField(_("from"), max_length=20, blank=True)
    to_stage = models.CharField(_("to"), max_length=20, blank=True)
    reason = models.TextField(_("reason"), blank=True)
    changes = models.JSONField(_("changed fields"), default=dict, blank=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["order", "at"])]

    def __str__(self) -> str:
        return f"{self.order_id} {self.kind} {self.at:%Y-%m-%d %H:%M:%S}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None and not kwargs.get("force_insert"):
            raise ValidationError("Audit events are append-only: they cannot be changed.")
        from orders.outbound import events_written  # the outbox, as in AuditQuerySet.bulk_create

        with transaction.atomic(using=kwargs.get("using"), savepoint=False):
            super().save(*args, **kwargs)
            events_written([self])

    def delete(self, *args, **kwargs):
        raise ValidationError("Audit events are append-only: they cannot be deleted.")


class WebhookDelivery(models.Model):
    """An accepted webhook event id; its uniqueness is the replay protection."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE)
    event_id = models.CharField(max_length=128)
    received_at = models.DateTimeField(default=timezone.now)
    order = models.ForeignKey(Order, null=True, on_delete=models.SET_NULL)
    outcome = models.CharField(max_length=20)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "event_id"], name="webhook_event_once")]

    def __str__(self) -> str:
        return f"{self.channel_id}:{self.event_id}"


class ImportJob(models.Model):
    """A CSV/Excel import, from the upload page or the command line, with its progress."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="imports")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=10, default="upload")  # upload | command
    file = models.FileField(upload_to="imports/%Y/%m/", blank=True)
    original_name = models.CharField(max_length=255)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    total_rows = models.PositiveIntegerField(null=True, blank=True)
    processed_rows = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    ignored_count = models.PositiveIntegerField(default=0)
    rejected_count = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("import")
        verbose_name_plural = _("imports")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.status})"


class ImportRowError(models.Model):
    """One rejected row of an import: the per-row error report."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="row_errors")
    row_number = models.PositiveIntegerField()
    external_id = models.CharField(max_length=200, blank=True)
    errors = models.JSONField(default=dict)
    raw = models.JSONField(default=dict)

    class Meta:
        ordering = ["row_number"]
        indexes = [models.Index(fields=["job", "row_number"])]

    def __str__(self) -> str:
        return f"row {self.row_number} of import {self.job_id}"


class ReconciliationRun(models.Model):
    """A daily re-read of a polling channel's last 48 hours, and what it repaired."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="reconciliations")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    fetched = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0, help_text=_("Missing orders added"))
    updated = models.PositiveIntegerField(default=0, help_text=_("Stale orders brought up to date"))
    unchanged = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    report = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name = _("reconciliation run")
        verbose_name_plural = _("reconciliation runs")
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.channel_id} {self.window_start:%Y-%m-%d %H:%M}"


class SlaPolicy(models.Model):
    """Time allowed in a stage, per category (cold chain is faster). The most specific active
    policy wins: (stage, category) over (stage, any category); with none, `orders.sla`'s
    defaults apply."""

    stage = models.CharField(
        _("stage"),
        max_length=20,
        choices=[(s.value, STAGE_LABELS[s]) for s in Stage if s not in (Stage.DONE, Stage.CANCELLED)],
    )
    category = models.CharField(
        _("category"), max_length=64, blank=True, help_text=_("Empty: every category without its own policy.")
    )
    allowance_minutes = models.PositiveIntegerField(_("time allowed (minutes)"))
    expedited_factor = models.FloatField(
        _("expedited factor"), default=0.5, help_text=_("Expedited orders get this share of the time.")
    )
    evening_after = models.TimeField(
        _("evening from"),
        null=True,
        blank=True,
        help_text=_("Orders entering the stage at or after this local time get extra time. Empty: none."),
    )
    evening_extra_minutes = models.PositiveIntegerField(_("evening extra (minutes)"), default=60)
    adjust_by_history = models.BooleanField(
        _("adjust by historical speed"),
        default=False,
        help_text=_("Nightly, stretch or shrink the time allowed towards how long this stage really takes."),
    )
    history_factor = models.FloatField(_("historical factor"), default=1.0)
    history_min_factor = models.FloatField(_("lowest factor"), default=0.8)
    history_max_factor = models.FloatField(_("highest factor"), default=1.5)
    history_updated_at = models.DateTimeField(_("factor updated"), null=True, blank=True)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("SLA policy")
        verbose_name_plural = _("SLA policies")
        ordering = ["stage", "category"]
        constraints = [
            models.UniqueConstraint(fields=["stage", "category"], name="slapolicy_one_per_stage_category"),
            models.CheckConstraint(
                condition=Q(expedited_factor__gt=0) & Q(expedited_factor__lte=1),
                name="slapolicy_expedited_factor",
            ),
            models.CheckConstraint(
                condition=Q(history_min_factor__gt=0)
                & Q(history_min_factor__lte=1)
                & Q(history_max_factor__gte=1)
                & Q(history_max_factor__lte=5),
                name="slapolicy_history_bounds",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_stage_display()} · {self.category or _('any category')}"


class ExceptionType(models.Model):
    """A kind of exception and where it goes. The route says what raising it does."""

    class Route(models.TextChoices):
        RECONFIRM = "reconfirm", _("Reconfirm with the customer (task for the team)")
        STOCK_LOCK = "stock_lock", _("Lock the order and notify procurement")
        RESCHEDULE = "reschedule", _("Note the delay and move the due time")
        HOLD = "hold", _("Hold the order for the team")

    code = models.SlugField(_("code"), max_length=40, unique=True)
    name = models.CharField(_("name"), max_length=60)
    route = models.CharField(_("route"), max_length=12, choices=Route.choices, default=Route.HOLD)
    team = models.ForeignKey(
        "agents.Team",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        verbose_name=_("team"),
        help_text=_("Who works this exception; an agent of this team becomes its owner."),
    )
    notify_emails = models.CharField(
        _("also notify (e-mail)"),
        max_length=500,
        blank=True,
        help_text=_("Comma-separated, e.g. procurement."),
    )
    notify_wecom_url = models.URLField(_("also notify (WeCom robot webhook)"), blank=True)
    customer_template = models.CharField(
        _("customer message template"),
        max_length=60,
        blank=True,
        help_text=_("Notification template code sent to the customer (SMS) when the exception is resolved."),
    )
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("exception type")
        verbose_name_plural = _("exception types")
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name

    @property
    def holds_order(self) -> bool:
        return self.route != self.Route.RESCHEDULE


class ExceptionCase(models.Model):
    """One exception raised on an order: its owner, and how it was resolved."""

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        RESOLVED = "resolved", _("Resolved")

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="exceptions")
    type = models.ForeignKey(
        ExceptionType, on_delete=models.PROTECT, related_name="cases", verbose_name=_("type")
    )
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.OPEN)
    held_stage = models.CharField(_("raised in stage"), max_length=20, blank=True)
    team = models.ForeignKey(
        "agents.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    owner = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="exception_cases"
    )
    note = models.TextField(_("note"), blank=True)
    delay_until = models.DateTimeField(_("delayed until"), null=True, blank=True)
    raised_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    raised_by_name = models.CharField(_("raised by"), max_length=150)
    raised_at = models.DateTimeField(_("raised"), default=timezone.now)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_by_name = models.CharField(_("resolved by"), max_length=150, blank=True)
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)
    resolution = models.TextField(_("resolution"), blank=True)

    class Meta:
        verbose_name = _("exception")
        verbose_name_plural = _("exceptions")
        ordering = ["-raised_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["order"], condition=Q(status="open"), name="exceptioncase_one_open_per_order"
            ),
        ]
        indexes = [models.Index(fields=["status", "raised_at"]), models.Index(fields=["owner", "status"])]

    def __str__(self) -> str:
        return f"{self.type} · {self.order}"


class WebhookSubscription(models.Model):
    """Another system (ERP, WMS, logistics) that receives signed JSON for order events."""

    name = models.CharField(_("name"), max_length=100)
    url = models.URLField(_("URL"), max_length=500)
    secret = models.CharField(
        _("signing secret"), max_length=200, help_text=_("HMAC-SHA256 key for the X-Paidan-Signature header.")
    )
    event_types = models.JSONField(
        _("event types"), default=list, blank=True, help_text=_("Which events to send; empty: all of them.")
    )
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("webhook subscription")
        verbose_name_plural = _("webhook subscriptions")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class OutboundDelivery(models.Model):
    """One event for one subscriber, retried with backoff until delivered or given up."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        DELIVERED = "delivered", _("Delivered")
        FAILED = "failed", _("Given up")

    subscription = models.ForeignKey(WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.CharField(_("event id"), max_length=64)
    event_type = models.CharField(_("event type"), max_length=40)
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    payload = models.JSONField(_("payload"))
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)

    class Meta:
        verbose_name = _("outbound delivery")
        verbose_name_plural = _("outbound deliveries")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["subscription", "event_id"], name="outbound_one_per_event"),
        ]
        indexes = [
            models.Index(fields=["next_attempt_at"], name="outbound_due", condition=Q(status="pending")),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.subscription}"


class OutboundAttempt(models.Model):
    """One try at delivering: kept for every try, never changed."""

    delivery = models.ForeignKey(OutboundDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    at = models.DateTimeField(_("at"), default=timezone.now)
    status_code = models.PositiveSmallIntegerField(_("HTTP status"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True)
    duration_ms = models.PositiveIntegerField(_("took (ms)"), default=0)

    class Meta:
        verbose_name = _("delivery attempt")
        verbose_name_plural = _("delivery attempts")
        ordering = ["at"]

    def __str__(self) -> str:
        return f"{self.delivery_id} @ {self.at:%Y-%m-%d %H:%M:%S}"
