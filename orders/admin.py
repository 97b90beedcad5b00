from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from orders.mapping import MappingError, validate_mapping
from orders.models import Channel, Customer, ImportJob, Order, OrderEvent, ReconciliationRun


class ChannelForm(forms.ModelForm):
    class Meta:
        model = Channel
        fields = "__all__"  # noqa: DJ007 - the admin's fieldsets choose what shows

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
    readonly_fields = [
        "poll_cursor",
        "poll_next_at",
        "poll_failures",
        "poll_last_success_at",
        "poll_last_error",
        "poll_last_error_at",
    ]
    fieldsets = [
        (None, {"fields": ["code", "name", "tag_prefix", "kind", "is_active"]}),
        (_("Webhooks"), {"fields": ["webhook_secret", "field_mapping"]}),
        (
            _("Polling connector"),
            {
                "fields": [
                    "poll_url",
                    "poll_auth_header",
                    "poll_cursor_param",
                    "poll_page_size",
                    "poll_page_size_param",
                    "poll_list_path",
                    "poll_next_cursor_path",
                    "poll_interval_minutes",
                ]
            },
        ),
        (_("Polling state"), {"fields": readonly_fields}),
    ]


class ReadOnlyEventInline(admin.TabularInline):
    model = OrderEvent
    extra = 0
    can_delete = False
    fields = ["at", "kind", "actor", "from_stage", "to_stage", "reason", "changes"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


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


class _ReadOnlyAdmin(admin.ModelAdmin):
    """Records the software writes: visible to admins, changed by nobody."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(_ReadOnlyAdmin):
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
class ImportJobAdmin(_ReadOnlyAdmin):
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
