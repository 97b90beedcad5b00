from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from orders.mapping import MappingError, validate_mapping
from orders.models import Channel, Customer, ImportJob, Order, OrderEvent, ReconciliationRun, Warehouse
from orders.normalize import parse_address


class WriteOnlyField(forms.CharField):
    """A credential typed in and never shown back (not in the page source, a screenshot or the
    browser's form cache). An empty box keeps the stored value, so it is not a change."""

    widget = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})

    def has_changed(self, initial, data) -> bool:
        return bool(data)


def secret_hint(value: str) -> str:
    if not value:
        return "-"
    return _("ends in …%(tail)s (%(count)d characters)") % {"tail": value[-4:], "count": len(value)}


class ChannelForm(forms.ModelForm):
    webhook_secret = WriteOnlyField(
        label=_("webhook secret"),
        required=False,
        max_length=128,
        help_text=_("HMAC-SHA256 key for signed webhooks. Leave empty to keep the current one."),
    )
    remove_webhook_secret = forms.BooleanField(
        label=_("Remove the webhook secret (all webhooks are then refused)"), required=False
    )
    poll_auth_header = WriteOnlyField(
        label=_("poll auth header"),
        required=False,
        max_length=500,
        help_text=_('Sent as-is, e.g. "Authorization: Bearer …". Leave empty to keep the current one.'),
    )
    remove_poll_auth_header = forms.BooleanField(label=_("Remove the poll auth header"), required=False)

    class Meta:
        model = Channel
        fields = "__all__"  # noqa: DJ007 - the admin's fieldsets choose what shows

    def clean(self) -> dict:
        cleaned = super().clean()
        for name in ("webhook_secret", "poll_auth_header"):
            if cleaned.get(f"remove_{name}"):
                cleaned[name] = ""
            elif not cleaned.get(name):
                cleaned[name] = getattr(self.instance, name)
        return cleaned

    def clean_field_mapping(self) -> dict:
        value = self.cleaned_data.get("field_mapping")
        try:
            validate_mapping(value)
        except MappingError as exc:
            raise ValidationError(str(exc)) from exc
        return value


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = [
        "code",
        "name",
        "kind",
        "is_active",
        "poll_url",
        "poll_last_success_at",
        "poll_last_error_at",
    ]
    list_filter = ["kind", "is_active"]
    poll_state = [
        "poll_cursor",
        "poll_next_at",
        "poll_failures",
        "poll_last_success_at",
        "poll_last_error",
        "poll_last_error_at",
    ]
    readonly_fields = [*poll_state, "webhook_secret_hint", "poll_auth_header_hint"]
    fieldsets = [
        (None, {"fields": ["code", "name", "tag_prefix", "kind", "is_active"]}),
        (
            _("Webhooks"),
            {"fields": ["webhook_secret", "webhook_secret_hint", "remove_webhook_secret", "field_mapping"]},
        ),
        (
            _("Polling connector"),
            {
                "fields": [
                    "poll_url",
                    "poll_auth_header",
                    "poll_auth_header_hint",
                    "remove_poll_auth_header",
                    "poll_cursor_param",
                    "poll_page_size",
                    "poll_page_size_param",
                    "poll_list_path",
                    "poll_next_cursor_path",
                    "poll_interval_minutes",
                ]
            },
        ),
        (_("Polling state"), {"fields": poll_state}),
    ]

    @admin.display(description=_("current secret"))
    def webhook_secret_hint(self, obj: Channel) -> str:
        return secret_hint(obj.webhook_secret)

    @admin.display(description=_("current header"))
    def poll_auth_header_hint(self, obj: Channel) -> str:
        return secret_hint(obj.poll_auth_header)


class ReadOnlyInline(admin.TabularInline):
    """Rows shown under their parent that nobody adds, changes or deletes here."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyEventInline(ReadOnlyInline):
    model = OrderEvent
    fields = ["at", "kind", "actor", "from_stage", "to_stage", "reason", "changes"]
    readonly_fields = fields


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    """Read-only here: orders change only through the services (API, board, imports)."""

    list_display = ["tag", "channel", "customer_name", "amount", "stage", "is_flagged", "received_at"]
    list_filter = ["stage", "channel", "is_flagged", "kind", "urgency"]
    search_fields = ["tag", "external_id", "customer_name", "customer_phone"]
    inlines = [ReadOnlyEventInline]
    list_select_related = ["channel"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Order._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["name", "channel", "account_id", "phone", "is_vip", "order_count"]
    search_fields = ["name", "account_id", "phone"]
    list_filter = ["channel", "is_vip"]


@admin.register(OrderEvent)
class OrderEventAdmin(admin.ModelAdmin):
    """The audit trail: visible, never editable or deletable."""

    list_display = ["order", "at", "kind", "actor", "from_stage", "to_stage"]
    list_filter = ["kind"]
    search_fields = ["order__tag", "actor"]
    actions = None

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records the software writes: visible to admins, changed by nobody (and deleted by
    nobody unless `deletable`)."""

    deletable = True

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return self.deletable and super().has_delete_permission(request, obj)


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    list_display = [
        "channel",
        "started_at",
        "window_start",
        "fetched",
        "created",
        "updated",
        "unchanged",
        "rejected",
        "error",
    ]
    list_filter = ["channel"]


@admin.register(ImportJob)
class ImportJobAdmin(ReadOnlyAdmin):
    list_display = [
        "original_name",
        "channel",
        "status",
        "processed_rows",
        "created_count",
        "updated_count",
        "ignored_count",
        "rejected_count",
        "created_at",
    ]
    list_filter = ["status", "channel"]


class WarehouseForm(forms.ModelForm):
    class Meta:
        model = Warehouse
        fields = "__all__"  # noqa: DJ007 - every field is edited here

    def clean_latitude(self):
        value = self.cleaned_data.get("latitude")
        if value is not None and not -90 <= value <= 90:
            raise ValidationError(_("A latitude runs from -90 to 90; got %(value)s.") % {"value": value})
        return value

    def clean_longitude(self):
        value = self.cleaned_data.get("longitude")
        if value is not None and not -180 <= value <= 180:
            raise ValidationError(_("A longitude runs from -180 to 180; got %(value)s.") % {"value": value})
        return value

    def clean_provinces(self) -> list[str]:
        """Province names as orders store them ("广东" becomes "广东省"), each served by one
        active warehouse only: screening picks the ship-from warehouse by province."""
        value = self.cleaned_data.get("provinces")
        if value in (None, ""):
            return []
        if not isinstance(value, list) or not all(isinstance(p, str) and p.strip() for p in value):
            raise ValidationError(
                _('Provinces must be a list of province names, e.g. ["广东省", "广西壮族自治区"].')
            )
        names = []
        for raw in value:
            parsed = parse_address(raw.strip())
            if not parsed.province or parsed.city:
                raise ValidationError(_("'%(name)s' is not a province name.") % {"name": raw})
            names.append(parsed.province)
        names = list(dict.fromkeys(names))
        if self.cleaned_data.get("is_active", True):
            others = Warehouse.objects.filter(is_active=True).exclude(pk=self.instance.pk)
            for other in others:
                shared = [n for n in names if n in (other.provinces or [])]
                if shared:
                    raise ValidationError(
                        _("Already served by %(warehouse)s: %(provinces)s.")
                        % {"provinces": "、".join(shared), "warehouse": other}
                    )
        return names

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("is_default"):
            other = Warehouse.objects.filter(is_default=True).exclude(pk=self.instance.pk).first()
            if other is not None:
                self.add_error(
                    "is_default",
                    _("%(warehouse)s is already the default; untick it there first.") % {"warehouse": other},
                )
        return cleaned


@admin.register(Warehouse)
class WarehouseAdmin(admin.ModelAdmin):
    form = WarehouseForm
    list_display = ["name", "code", "city", "coordinates", "provinces", "is_default", "is_active"]
    list_filter = ["is_active", "is_default"]
    search_fields = ["name", "code", "city"]

    @admin.display(description=_("coordinates"))
    def coordinates(self, obj: Warehouse) -> str:
        return f"{obj.latitude}, {obj.longitude}"


import orders.admin_exceptions  # noqa: E402, F401 - registers the exception admins
from orders import admin_audit, admin_outbound, admin_sla  # noqa: E402, F401 - register the admin log, outbound webhook and SLA admins
