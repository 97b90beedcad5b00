"""Admin for exceptions: the types (route, team, who else is told, the customer's SMS) are
configured here; the cases are only read here, since they change through the services."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext_lazy as _

from dashboards.models import NotificationTemplate
from orders.models import ExceptionCase, ExceptionType


class ExceptionTypeForm(forms.ModelForm):
    class Meta:
        model = ExceptionType
        fields = [
            "code",
            "name",
            "route",
            "team",
            "notify_emails",
            "notify_wecom_url",
            "customer_template",
            "is_active",
        ]

    def clean_customer_template(self) -> str:
        code = (self.cleaned_data.get("customer_template") or "").strip()
        if not code:
            return code  # no message to the customer
        sms = NotificationTemplate.objects.filter(channel=NotificationTemplate.Channel.SMS)
        if not sms.filter(code=code).exists():
            known = ", ".join(sms.order_by("code").values_list("code", flat=True)) or "-"
            raise ValidationError(
                _("“%(code)s” is not an SMS notification template. SMS templates: %(known)s."),
                params={"code": code, "known": known},
                code="unknown_template",
            )
        if not sms.filter(code=code, is_active=True).exists():
            raise ValidationError(
                _("The SMS template “%(code)s” is switched off; switch it on or choose another."),
                params={"code": code},
                code="inactive_template",
            )
        return code

    def clean_notify_emails(self) -> str:
        raw = self.cleaned_data.get("notify_emails") or ""
        addresses = [a.strip() for a in raw.replace(";", ",").split(",") if a.strip()]
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError as exc:
                raise ValidationError(
                    _("“%(address)s” is not an e-mail address. Separate addresses with commas."),
                    params={"address": address},
                    code="invalid_email",
                ) from exc
        return ", ".join(addresses)


@admin.register(ExceptionType)
class ExceptionTypeAdmin(admin.ModelAdmin):
    form = ExceptionTypeForm
    list_display = ["code", "name", "route", "team", "customer_template", "is_active"]
    list_filter = ["route", "team", "is_active"]
    search_fields = ["code", "name"]
    list_select_related = ["team"]
    fieldsets = [
        (None, {"fields": ["code", "name", "route", "team", "is_active"]}),
        (_("Who else is told when it is raised"), {"fields": ["notify_emails", "notify_wecom_url"]}),
        (_("The customer"), {"fields": ["customer_template"]}),
    ]

    def has_delete_permission(self, request, obj=None) -> bool:
        # Cases keep their type (PROTECT); an unused type is switched off, not deleted.
        if obj is not None and obj.cases.exists():
            return False
        return super().has_delete_permission(request, obj)


@admin.register(ExceptionCase)
class ExceptionCaseAdmin(admin.ModelAdmin):
    """Read-only: cases are raised and resolved through the API, the board and the queue."""

    list_display = ["order", "type", "status", "team", "owner", "raised_by_name", "raised_at", "resolved_at"]
    list_filter = ["status", "type", "team"]
    search_fields = ["order__tag", "note", "resolution", "raised_by_name"]
    list_select_related = ["order", "type", "team", "owner"]
    date_hierarchy = "raised_at"
    actions = None

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
