from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.utils.translation import gettext_lazy as _

from dispatch import services
from dispatch.models import Assignment, DispatchPolicy, Inquiry, PoolEntry, SimulationRun, WeightedShare
from orders.actors import user_actor
from orders.admin_audit import audited_action


class WeightedShareInline(admin.TabularInline):
    model = WeightedShare
    extra = 1
    raw_id_fields = ["agent"]


@admin.register(DispatchPolicy)
class DispatchPolicyAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "kind",
        "is_active",
        "channel",
        "service_type",
        "region",
        "offer_seconds",
        "max_rounds",
    ]
    list_filter = ["kind", "is_active", "channel", "region"]
    inlines = [WeightedShareInline]
    fieldsets = [
        (None, {"fields": ["name", "kind", "is_active"]}),
        (_("Applies to"), {"fields": ["channel", "service_type", "region"]}),
        (_("Smart criteria and filters"), {"fields": ["criteria", "filters"]}),
        (
            _("Offers and escalation"),
            {
                "fields": [
                    "offer_seconds",
                    "burst_first",
                    "burst_min_seconds",
                    "burst_max_seconds",
                    "max_rounds",
                    "l2_wait_seconds",
                ]
            },
        ),
    ]


class AssignmentInline(admin.TabularInline):
    model = Assignment
    extra = 0
    can_delete = False
    fields = [
        "agent",
        "state",
        "round",
        "score",
        "breakdown",
        "offered_at",
        "expires_at",
        "responded_at",
        "reason",
    ]
    readonly_fields = fields
    fk_name = "entry"

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class AssignForm(forms.Form):
    agent = forms.ModelChoiceField(queryset=None, label=_("Agent"))
    force = forms.BooleanField(required=False, label=_("Even if the agent is at capacity"))

    def __init__(self, *args, **kwargs):
        from agents.models import Agent

        super().__init__(*args, **kwargs)
        self.fields["agent"].queryset = Agent.objects.order_by("display_name")


@admin.register(PoolEntry)
class PoolEntryAdmin(admin.ModelAdmin):
    """The pool read-only; changes go through the services (actions below)."""

    list_display = [
        "__str__",
        "kind",
        "state",
        "region",
        "skills",
        "urgent",
        "rounds",
        "wait_reason",
        "escalation_level",
        "ready_at",
    ]
    list_filter = ["state", "kind", "escalation_level", "region"]
    inlines = [AssignmentInline]
    actions = ["assign_to_agent", "return_to_pool"]
    readonly_fields = [f.name for f in PoolEntry._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @audited_action(description=_("Assign the selected orders to an agent…"))
    def assign_to_agent(self, request, queryset):
        from django.template.response import TemplateResponse

        entries = list(queryset.filter(kind=PoolEntry.Kind.ORDER))
        if "apply" in request.POST:
            form = AssignForm(request.POST)
            if form.is_valid():
                done = 0
                for entry in entries:
                    try:
                        with transaction.atomic():
                            services.order_assign(
                                order_id=entry.order_id,
                                agent_id=form.cleaned_data["agent"].pk,
                                force=form.cleaned_data["force"],
                                actor=user_actor(request.user),
                            )
                        done += 1
                    except services.DispatchError as exc:
                        self.message_user(request, f"{entry}: {exc}", messages.ERROR)
                self.message_user(request, _("%(n)d assigned.") % {"n": done}, messages.SUCCESS)
                return None
        else:
            form = AssignForm()
        return TemplateResponse(
            request,
            "admin/dispatch/assign.html",
            {
                **self.admin_site.each_context(request),
                "form": form,
                "entries": entries,
                "title": _("Assign by hand"),
            },
        )

    @audited_action(description=_("Return the selected orders to automatic matching"))
    def return_to_pool(self, request, queryset):
        count = 0
        for entry in queryset.filter(kind=PoolEntry.Kind.ORDER).exclude(state=PoolEntry.State.CLOSED):
            services.order_assign(order_id=entry.order_id, agent_id=None, actor=user_actor(request.user))
            count += 1
        self.message_user(request, _("%(n)d returned to the pool.") % {"n": count}, messages.SUCCESS)


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "entry", "agent", "state", "round", "score", "manual", "offered_at", "expires_at"]
    list_filter = ["state", "manual", "policy_kind"]
    readonly_fields = [f.name for f in Assignment._meta.fields]
    raw_id_fields = ["entry", "order", "inquiry", "agent"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Inquiry)
class InquiryAdmin(admin.ModelAdmin):
    list_display = ["id", "channel", "customer_name", "is_vip", "state", "agent", "created_at"]
    list_filter = ["state", "channel", "is_vip"]
    search_fields = ["text", "customer_name", "account_key"]
    readonly_fields = [f.name for f in Inquiry._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(SimulationRun)
class SimulationRunAdmin(admin.ModelAdmin):
    """Runs are requested from the simulator page and filled in by a worker: here they are read,
    and old ones deleted."""

    list_display = [
        "id",
        "policy",
        "start_date",
        "end_date",
        "status",
        "progress",
        "requested_by",
        "created_at",
    ]
    list_filter = ["status"]
    list_select_related = ["policy", "requested_by"]
    readonly_fields = [f.name for f in SimulationRun._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
