"""Admin for SLA policies: the time each stage may take, per category, with the evening rule
and the factor learnt nightly from how long stages really take."""

from __future__ import annotations

from datetime import time

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils.formats import time_format
from django.utils.translation import gettext_lazy as _

from orders.models import SlaPolicy
from orders.sla import clamp

MAX_ALLOWANCE_MINUTES = 30 * 24 * 60  # a month: beyond it a deadline means nothing
MAX_EVENING_EXTRA_MINUTES = 12 * 60
MAX_HISTORY_FACTOR = 5.0


class SlaPolicyForm(forms.ModelForm):
    class Meta:
        model = SlaPolicy
        fields = [
            "stage",
            "category",
            "allowance_minutes",
            "expedited_factor",
            "evening_after",
            "evening_extra_minutes",
            "adjust_by_history",
            "history_min_factor",
            "history_max_factor",
            "is_active",
        ]

    def clean_category(self) -> str:
        return (self.cleaned_data.get("category") or "").strip()

    def clean_allowance_minutes(self) -> int:
        value = self.cleaned_data.get("allowance_minutes")
        if value is not None and not 1 <= value <= MAX_ALLOWANCE_MINUTES:
            raise ValidationError(
                _("The time allowed must be between 1 and %(max)d minutes; got %(value)s.")
                % {"max": MAX_ALLOWANCE_MINUTES, "value": value}
            )
        return value

    def clean_expedited_factor(self) -> float:
        value = self.cleaned_data.get("expedited_factor")
        if value is not None and not 0 < value <= 1:
            raise ValidationError(
                _("Expedited orders get a share of the time: more than 0 and at most 1; got %(value)s.")
                % {"value": value}
            )
        return value

    def clean_evening_after(self) -> time | None:
        value = self.cleaned_data.get("evening_after")
        if value == time(0, 0):
            raise ValidationError(
                _("00:00 would make every order an evening order; leave it empty for no evening rule.")
            )
        return value

    def clean_evening_extra_minutes(self) -> int:
        value = self.cleaned_data.get("evening_extra_minutes")
        if value is not None and value > MAX_EVENING_EXTRA_MINUTES:
            raise ValidationError(
                _("The evening extra may be at most %(max)d minutes; got %(value)s.")
                % {"max": MAX_EVENING_EXTRA_MINUTES, "value": value}
            )
        return value

    def clean_history_min_factor(self) -> float:
        value = self.cleaned_data.get("history_min_factor")
        if value is not None and not 0 < value <= 1:
            raise ValidationError(
                _("The lowest factor must be more than 0 and at most 1; got %(value)s.") % {"value": value}
            )
        return value

    def clean_history_max_factor(self) -> float:
        value = self.cleaned_data.get("history_max_factor")
        if value is not None and not 1 <= value <= MAX_HISTORY_FACTOR:
            raise ValidationError(
                _("The highest factor must be between 1 and %(max)s; got %(value)s.")
                % {"max": MAX_HISTORY_FACTOR, "value": value}
            )
        return value


@admin.register(SlaPolicy)
class SlaPolicyAdmin(admin.ModelAdmin):
    form = SlaPolicyForm
    list_display = [
        "stage",
        "category_display",
        "allowance_minutes",
        "expedited_factor",
        "evening_rule",
        "history_display",
        "history_updated_at",
        "is_active",
    ]
    list_display_links = ["stage", "category_display"]
    list_filter = ["stage", "is_active", "adjust_by_history"]
    search_fields = ["category"]
    readonly_fields = ["history_factor", "history_updated_at"]
    fieldsets = [
        (None, {"fields": ["stage", "category", "allowance_minutes", "expedited_factor", "is_active"]}),
        (_("Evening"), {"fields": ["evening_after", "evening_extra_minutes"]}),
        (
            _("Historical speed"),
            {
                "fields": [
                    "adjust_by_history",
                    "history_min_factor",
                    "history_max_factor",
                    "history_factor",
                    "history_updated_at",
                ],
                "description": _(
                    "Each night the factor becomes the 75th percentile of how long this stage "
                    "really took over the last 30 days divided by the time allowed, held between "
                    "the lowest and highest factor (with at least 30 orders to go by)."
                ),
            },
        ),
    ]

    @admin.display(description=_("category"), ordering="category")
    def category_display(self, obj: SlaPolicy) -> str:
        return obj.category or str(_("any category"))

    @admin.display(description=_("evening rule"))
    def evening_rule(self, obj: SlaPolicy) -> str:
        if obj.evening_after is None or not obj.evening_extra_minutes:
            return "—"
        return _("from %(time)s: +%(minutes)d min") % {
            "time": time_format(obj.evening_after, "H:i"),
            "minutes": obj.evening_extra_minutes,
        }

    @admin.display(description=_("historical factor"))
    def history_display(self, obj: SlaPolicy) -> str:
        if not obj.adjust_by_history:
            return "—"
        factor = clamp(obj.history_factor, obj.history_min_factor, obj.history_max_factor)
        return f"×{factor:.2f} ({obj.history_min_factor:g}–{obj.history_max_factor:g})"
