"""Risk control in the admin: rules an operations person tunes (with the dry run), the
thresholds, blacklists and delivery limits, and read-only views of what screening and the
reviewers did."""

from __future__ import annotations

import json
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from orders.admin import ReadOnlyAdmin, ReadOnlyInline
from orders.models import Channel
from orders.normalize import parse_address
from riskcontrol import services
from riskcontrol.defaults import TRANSIT_WORDS
from riskcontrol.dryrun import MAX_DAYS, MIN_DAYS, rule_dry_run
from riskcontrol.engine import RuleKind
from riskcontrol.models import (
    RULE_KIND_LABELS,
    BlacklistEntry,
    DeliveryRestriction,
    Review,
    ReviewDecision,
    RiskPolicy,
    Rule,
    RuleHit,
    RuleWeightChange,
)
from riskcontrol.params import COMPOSITE_MOST, SPECS, Choice, Flag, Int, Num, Subset, Words

HITS_DAYS = 30

# What each parameter means, whatever the rule type that takes it.
PARAM_HELP = {
    "keywords": _("Words looked for in the address as written; any one of them hits."),
    "count": _("How many orders make it hit, this one included."),
    "minutes": _("The look-back window, in minutes."),
    "hours": _("The look-back window, in hours."),
    "multiple": _("The amount is a whole multiple of this (yuan)."),
    "require_no_note": _("Hit only when the order has no note."),
    "km": _("Distance in kilometres."),
    "reference": _("Measure from the ship-from warehouse or from the delivery city."),
    "days": _("An account is new for this many days after it was created."),
    "k": _("Hit when the amount is more than k times the usual amount."),
    "basis": _(
        "Compare with the customer's own usual amount (the channel's when the customer has too few "
        "orders) or always with the channel's."
    ),
    "min_history": _("Orders a customer needs before their own usual amount is used."),
    "kinds": _("Which blacklists to check."),
}

COMPOSITE_EXAMPLE = {
    "all": [
        {"kind": RuleKind.NEW_ACCOUNT.value, "params": {"days": 30}},
        {"kind": RuleKind.AMOUNT_OVER_USUAL.value, "params": {"k": 3.0, "basis": "channel"}},
        {"kind": RuleKind.ADDRESS_KEYWORDS.value, "params": {"keywords": TRANSIT_WORDS}},
    ]
}


def _describe(spec) -> tuple[str, str]:
    """(what kind of value and its bounds, its default) of one parameter spec."""
    if isinstance(spec, Int):
        what = gettext("whole number from %(low)s to %(high)s") % {"low": spec.low, "high": spec.high}
    elif isinstance(spec, Num):
        what = gettext("number from %(low)s to %(high)s") % {"low": spec.low, "high": spec.high}
    elif isinstance(spec, Flag):
        what = gettext("true or false")
    elif isinstance(spec, Choice):
        what = gettext("one of: %(options)s") % {"options": ", ".join(spec.options)}
    elif isinstance(spec, Subset):
        what = gettext("non-empty list drawn from: %(options)s") % {"options": ", ".join(spec.options)}
    elif isinstance(spec, Words):
        what = gettext("list of words, at most %(most)d, each at most %(longest)d characters") % {
            "most": spec.most,
            "longest": spec.longest,
        }
    else:  # pragma: no cover - every spec type is listed above
        what = type(spec).__name__
    default = spec.default
    if default is None:
        shown = gettext("required")
    else:
        shown = json.dumps(list(default) if isinstance(default, tuple) else default, ensure_ascii=False)
    return what, shown


def _example(kind: RuleKind) -> str:
    if kind == RuleKind.COMPOSITE:
        value = COMPOSITE_EXAMPLE
    else:
        value = {
            name: list(spec.default) if isinstance(spec.default, tuple) else spec.default
            for name, spec in SPECS[kind].items()
        }
    return json.dumps(value, ensure_ascii=False, indent=2)


def params_reference_html(chosen: str | None) -> str:
    """Per rule type: its parameters with meaning, bounds and default, and an example. The
    chosen type's block shows; the change form's script follows the type selector."""
    blocks = []
    for kind, label in RULE_KIND_LABELS.items():
        if kind == RuleKind.COMPOSITE:
            rows = [
                {
                    "name": "all",
                    "help": gettext(
                        "The conditions that must all hit: each a rule type with its parameters as in "
                        "the tables above (defaults fill what is left out). A composite cannot contain "
                        "another composite."
                    ),
                    "what": gettext('list of 2 to %(n)d objects {"kind": …, "params": {…}}')
                    % {"n": COMPOSITE_MOST},
                    "default": gettext("required"),
                }
            ]
        else:
            rows = []
            for name, spec in SPECS[kind].items():
                what, default = _describe(spec)
                rows.append(
                    {"name": name, "help": PARAM_HELP.get(name, ""), "what": what, "default": default}
                )
        blocks.append(
            {
                "kind": kind.value,
                "label": label,
                "rows": rows,
                "example": _example(kind),
                # A composite's conditions are the other types: with it, every table shows.
                "hidden": bool(chosen) and chosen not in (kind.value, RuleKind.COMPOSITE.value),
            }
        )
    return render_to_string("admin/riskcontrol/rule/params_reference.html", {"blocks": blocks})


def _as_text(value) -> str | None:
    """The JSON as readable text, or None when it holds a lone surrogate (a "\\ud800" escape):
    such JSON parses, but no text can carry it, not the page (a 500) nor PostgreSQL."""
    text = json.dumps(value, ensure_ascii=False, indent=2)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return text


class IndentedJSONField(forms.JSONField):
    """Parameters shown indented, so a composite's conditions read one per line."""

    def to_python(self, value):
        converted = super().to_python(value)
        if _as_text(converted) is None:
            raise ValidationError(
                _("The parameters hold a \\ud800–\\udfff escape, which stands for no character."),
                code="invalid",
            )
        return converted

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        # Readable where it can be; escaped where it holds what no text can carry.
        return _as_text(value) or json.dumps(value, indent=2, cls=self.encoder)


class RuleForm(forms.ModelForm):
    class Meta:
        model = Rule
        fields = "__all__"  # noqa: DJ007 - the admin's fieldsets choose what shows
        field_classes = {"params": IndentedJSONField}
        widgets = {
            "params": forms.Textarea(attrs={"rows": 12, "cols": 80, "style": "font-family: monospace"})
        }
        help_texts = {
            "params": _(
                "A JSON object. Parameters left out take their defaults; the table below lists what "
                "this type takes."
            )
        }


class RuleWeightChangeInline(ReadOnlyInline):
    model = RuleWeightChange
    fields = [
        "at",
        "source",
        "old_weight",
        "new_weight",
        "confirmed",
        "false_positives",
        "precision",
        "reason",
        "by",
    ]
    readonly_fields = fields
    verbose_name_plural = _("weight history")


class DryRunForm(forms.Form):
    days = forms.IntegerField(
        label=_("Orders of the last (days)"), min_value=MIN_DAYS, max_value=MAX_DAYS, initial=30
    )
    channel = forms.ModelChoiceField(
        label=_("Channel"),
        queryset=Channel.objects.order_by("code"),
        required=False,
        empty_label=_("All channels"),
    )


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    form = RuleForm
    list_display = [
        "name",
        "kind",
        "weight",
        "base_weight",
        "bounds",
        "weight_frozen",
        "is_active",
        "channel",
        "effective_from",
        "effective_until",
        "hits_recent",
    ]
    list_filter = ["kind", "is_active", "weight_frozen", "channel"]
    search_fields = ["name", "description"]
    list_select_related = ["channel"]
    readonly_fields = ["base_weight", "params_reference", "created_at", "updated_at"]
    inlines = [RuleWeightChangeInline]
    actions = ["dry_run_selected"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "description", "is_active"]}),
        (_("Parameters"), {"fields": ["params", "params_reference"]}),
        (_("Weight"), {"fields": ["weight", "base_weight", "min_weight", "max_weight", "weight_frozen"]}),
        (_("Applies to"), {"fields": ["channel", "effective_from", "effective_until"]}),
        (_("Record"), {"fields": ["created_at", "updated_at"]}),
    ]

    def get_queryset(self, request):
        since = timezone.now() - timedelta(days=HITS_DAYS)
        hits = (
            RuleHit.objects.filter(rule=OuterRef("pk"), at__gte=since)
            .order_by()
            .values("rule")
            .annotate(n=Count("id"))
            .values("n")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(hits_recent=Coalesce(Subquery(hits, output_field=IntegerField()), 0))
        )

    def get_readonly_fields(self, request, obj: Rule | None = None):
        # A rule's type is fixed once made: its hits and learned weight belong to that type.
        return [*self.readonly_fields, "kind"] if obj is not None else self.readonly_fields

    @admin.display(description=_("hits, last 30 days"), ordering="hits_recent")
    def hits_recent(self, obj: Rule) -> int:
        return obj.hits_recent

    @admin.display(description=_("learning bounds"))
    def bounds(self, obj: Rule) -> str:
        return f"{obj.min_weight:g}–{obj.max_weight:g}"

    @admin.display(description=_("what each type takes"))
    def params_reference(self, obj: Rule | None) -> str:
        return mark_safe(params_reference_html(obj.kind if obj is not None else None))  # noqa: S308 - our template

    def save_model(self, request, obj: Rule, form, change: bool) -> None:
        if not change:
            obj.base_weight = obj.weight
            super().save_model(request, obj, form, change)
            return
        old_weight = form.initial.get("weight")
        super().save_model(request, obj, form, change)
        if "weight" in form.changed_data and old_weight is not None:
            services.rule_weight_set(rule=obj, old_weight=old_weight, user=request.user)

    # --- Dry run ---------------------------------------------------------------------------
    def get_urls(self):
        return [
            path(
                "<path:object_id>/dry-run/",
                self.admin_site.admin_view(self.dry_run_view),
                name=f"{self.opts.app_label}_{self.opts.model_name}_dry_run",
            ),
            *super().get_urls(),
        ]

    @admin.action(description=_("Dry run the selected rule"))
    def dry_run_selected(self, request, queryset):
        rules = list(queryset.values_list("pk", flat=True)[:2])
        if len(rules) != 1:
            self.message_user(request, gettext("Choose exactly one rule for a dry run."), messages.WARNING)
            return None
        return HttpResponseRedirect(reverse("admin:riskcontrol_rule_dry_run", args=[rules[0]]))

    def dry_run_view(self, request, object_id: str):
        rule = self.get_object(request, unquote(object_id))
        if rule is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_permission(request, rule):
            raise PermissionDenied
        bound = "days" in request.GET
        form = DryRunForm(request.GET if bound else None, initial={"days": 30, "channel": rule.channel_id})
        result = error = None
        if bound and form.is_valid():
            channel = form.cleaned_data["channel"]
            try:
                result = rule_dry_run(
                    kind=rule.kind,
                    params=rule.params,
                    days=form.cleaned_data["days"],
                    channel_id=channel.pk if channel else None,
                )
            except ValidationError as exc:
                error = " ".join(exc.messages)
        outcome_labels = dict(Review.State.choices)
        samples = [
            {
                "sample": s,
                "url": reverse("dashboards:order_detail", args=[s.order_id]),
                "outcome": outcome_labels.get(s.outcome, ""),
            }
            for s in (result.samples if result else [])
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Dry run: %(name)s") % {"name": rule.name},
            "opts": self.opts,
            "original": rule,
            "kind_label": rule.get_kind_display(),
            "params_json": json.dumps(rule.params, ensure_ascii=False),
            "form": form,
            "result": result,
            "flagged_pct": result.flagged_share * 100
            if result and result.flagged_share is not None
            else None,
            "precision_pct": result.precision * 100 if result and result.precision is not None else None,
            "channel": form.cleaned_data.get("channel") if result else None,
            "samples": samples,
            "error": error,
        }
        return TemplateResponse(request, "admin/riskcontrol/dry_run.html", context)


@admin.register(RiskPolicy)
class RiskPolicyAdmin(admin.ModelAdmin):
    list_display = ["name", "channel", "review_threshold", "quarantine_threshold", "is_active"]
    list_filter = ["is_active", "channel"]
    search_fields = ["name"]


@admin.register(BlacklistEntry)
class BlacklistEntryAdmin(admin.ModelAdmin):
    list_display = ["kind", "value", "reason", "expires_at", "created_at", "created_by", "source_order"]
    list_filter = ["kind"]
    search_fields = ["value", "reason"]
    list_select_related = ["created_by", "source_order"]
    fields = ["kind", "value", "reason", "expires_at", "created_at", "created_by", "source_order"]
    readonly_fields = ["created_at", "created_by", "source_order"]

    def save_model(self, request, obj: BlacklistEntry, form, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


class DeliveryRestrictionForm(forms.ModelForm):
    """Places named as orders store them ("广东" → "广东省", "深圳" → "深圳市"): screening
    compares the names exactly, so a restriction nobody's order can match is refused."""

    class Meta:
        model = DeliveryRestriction
        fields = "__all__"  # noqa: DJ007 - every field is edited here

    def clean_province(self) -> str:
        raw = (self.cleaned_data.get("province") or "").strip()
        parsed = parse_address(raw)
        if not parsed.province or parsed.city:
            raise ValidationError(gettext("'%(name)s' is not a province name.") % {"name": raw})
        return parsed.province

    def clean(self):
        cleaned = super().clean()
        province, city = cleaned.get("province"), (cleaned.get("city") or "").strip()
        if province and city and city != province:  # a municipality's city is the province itself
            parsed = parse_address(province + city)
            if parsed.province != province or not parsed.city or parsed.district:
                self.add_error(
                    "city",
                    gettext("'%(city)s' is not a city of %(province)s.")
                    % {"city": city, "province": province},
                )
            else:
                cleaned["city"] = parsed.city
        start, end = cleaned.get("active_from"), cleaned.get("active_until")
        if start and end and end <= start:
            self.add_error("active_until", gettext("The end must come after the start."))
        return cleaned


@admin.register(DeliveryRestriction)
class DeliveryRestrictionAdmin(admin.ModelAdmin):
    form = DeliveryRestrictionForm
    list_display = ["province", "city", "reason", "extra_days", "active_from", "active_until"]
    search_fields = ["province", "city", "reason"]


class _ReadOnly(ReadOnlyAdmin):
    """What the software and the reviewers wrote: visible, changed and deleted here by nobody."""

    deletable = False


@admin.register(RuleWeightChange)
class RuleWeightChangeAdmin(_ReadOnly):
    list_display = ["rule", "at", "source", "old_weight", "new_weight", "precision", "reason", "by"]
    list_filter = ["source", "rule"]
    list_select_related = ["rule", "by"]
    date_hierarchy = "at"


class ReviewDecisionInline(ReadOnlyInline):
    model = ReviewDecision
    fields = ["at", "decision", "note", "blacklisted", "by"]
    readonly_fields = fields


@admin.register(Review)
class ReviewAdmin(_ReadOnly):
    """Decisions are taken on the review page, where the reviewer sees the whole case."""

    list_display = [
        "id",
        "order",
        "state",
        "score",
        "reason",
        "agent",
        "created_at",
        "decided_at",
        "decided_by",
    ]
    list_filter = ["state"]
    search_fields = ["order__tag", "reason", "note"]
    list_select_related = ["order", "agent", "decided_by"]
    inlines = [ReviewDecisionInline]
    date_hierarchy = "created_at"


@admin.register(RuleHit)
class RuleHitAdmin(_ReadOnly):
    list_display = ["order", "rule", "at", "weight", "explanation", "outcome"]
    list_filter = ["outcome", "rule"]
    search_fields = ["order__tag", "explanation"]
    list_select_related = ["order", "rule"]
    date_hierarchy = "at"
