"""Pages for dispatch work: an agent's live queue (filled by static/js/queue.js from the API)
and the supervisors' manual dispatch queue of escalated items."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Case, Count, IntegerField, Q, Value, When
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods

from agents.models import Agent, Skill
from dispatch import services
from dispatch.engine.types import Criterion
from dispatch.models import LIVE_STATES, PoolEntry
from dispatch.selectors import MANAGER_ROLES, pool_visible_to
from orders.actors import roles_of, user_actor
from orders.exceptions import RESOLUTION_MAX
from orders.models import STAGE_LABELS, Order

CRITERION_LABELS = {
    Criterion.URGENCY: gettext_lazy("Urgency"),
    Criterion.PROXIMITY: gettext_lazy("Distance"),
    Criterion.SKILL: gettext_lazy("Skill"),
    Criterion.LOAD: gettext_lazy("Load"),
    Criterion.QUALITY: gettext_lazy("Quality"),
    Criterion.RETURNING: gettext_lazy("Returning customer"),
    Criterion.VIP: gettext_lazy("VIP"),
    Criterion.CHANNEL_TEAM: gettext_lazy("Channel team"),
}

# Online first: those are the people who can start at once.
_STATUS_ORDER = Case(
    *(When(status=s, then=Value(n)) for n, s in enumerate(Agent.Status.values)),
    output_field=IntegerField(),
)


@login_required
@require_GET
def agent_queue(request: HttpRequest) -> HttpResponse:
    agent = Agent.objects.filter(user=request.user).first()
    if agent is None:
        return render(
            request,
            "dashboards/agent_queue.html",
            {"forbidden": _("Your account has no agent profile; only agents have a queue.")},
            status=403,
        )
    return render(
        request,
        "dashboards/agent_queue.html",
        {
            "agent": agent,
            "statuses": Agent.Status.choices,
            "resolution_max": RESOLUTION_MAX,
            # Labels the script shows for codes it reads from the API, in the page's language.
            "labels": {
                "stage": {str(code): str(label) for code, label in STAGE_LABELS.items()},
                "urgency": {code: str(label) for code, label in Order.Urgency.choices},
                "criterion": {str(code): str(label) for code, label in CRITERION_LABELS.items()},
                "status": {code: str(label) for code, label in Agent.Status.choices},
            },
        },
    )


class ManualAssignForm(forms.Form):
    ASSIGN, RETURN = "assign", "return"

    order = forms.IntegerField(min_value=1, required=False)
    inquiry = forms.IntegerField(min_value=1, required=False)
    agent = forms.IntegerField(min_value=1, required=False)
    force = forms.BooleanField(required=False)
    action = forms.ChoiceField(choices=[(ASSIGN, ASSIGN), (RETURN, RETURN)])

    def clean(self) -> dict:
        data = super().clean()
        if bool(data.get("order")) == bool(data.get("inquiry")):
            raise forms.ValidationError(_("Choose one order or one inquiry."))
        if data.get("action") == self.ASSIGN and not data.get("agent"):
            raise forms.ValidationError(_("Choose the agent to assign it to."))
        return data


@login_required
@require_http_methods(["GET", "POST"])
def manual_queue(request: HttpRequest) -> HttpResponse:
    if not roles_of(request.user) & MANAGER_ROLES:
        return render(
            request,
            "dashboards/manual_queue.html",
            {"forbidden": _("Only supervisors and admins may dispatch by hand.")},
            status=403,
        )
    if request.method == "POST":
        _manual_assign(request)
        return redirect("dashboards:manual_queue")  # POST/redirect/GET: a reload never re-assigns

    entries = (
        pool_visible_to(request.user)
        .filter(state=PoolEntry.State.ESCALATED)
        .order_by("-urgent", "escalated_at", "id")
    )
    # Every row carries the whole roster in its select: pages stay short.
    page = Paginator(entries, 25).get_page(request.GET.get("page"))
    agents = Agent.objects.annotate(
        load=Count("assignments", filter=Q(assignments__state__in=LIVE_STATES)),
        status_rank=_STATUS_ORDER,
    ).order_by("status_rank", "display_name", "pk")
    skill_names = dict(Skill.objects.values_list("code", "name"))
    rows = [
        {"entry": entry, "skills": [skill_names.get(code, code) for code in entry.skills or []]}
        for entry in page
    ]
    return render(
        request,
        "dashboards/manual_queue.html",
        {"page": page, "rows": rows, "agents": agents},
    )


def _manual_assign(request: HttpRequest) -> None:
    """Validate the row's form and call the service; every outcome becomes a message."""
    form = ManualAssignForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return
    data = form.cleaned_data
    # Only orders in this supervisor's part of the pool; another region's are not theirs.
    mine = pool_visible_to(request.user).select_related("order")
    if data["order"]:
        entry = mine.filter(order_id=data["order"]).first()
        if entry is None:
            messages.error(request, _("Order %(id)s is not in your dispatch pool.") % {"id": data["order"]})
            return
        tag = entry.order.tag
    else:
        entry = mine.filter(inquiry_id=data["inquiry"]).first()
        if entry is None:
            messages.error(
                request, _("Inquiry %(id)s is not in your dispatch pool.") % {"id": data["inquiry"]}
            )
            return
        tag = _("Inquiry %(id)s") % {"id": entry.inquiry_id}
    agent_id = data["agent"] if data["action"] == ManualAssignForm.ASSIGN else None
    try:
        if entry.order_id:
            assignment = services.order_assign(
                order_id=entry.order_id,
                agent_id=agent_id,
                force=data["force"],
                actor=user_actor(request.user),
            )
        else:
            assignment = services.inquiry_assign(
                inquiry_id=entry.inquiry_id,
                agent_id=agent_id,
                force=data["force"],
                actor=user_actor(request.user),
            )
    except services.CapacityExceeded:
        # The service's own message speaks to API clients ("send force=true"); say it for the form.
        agent = Agent.objects.annotate(
            load=Count("assignments", filter=Q(assignments__state__in=LIVE_STATES))
        ).get(pk=agent_id)
        messages.error(
            request,
            _(
                "%(order)s was not assigned: %(agent)s already has %(load)d of %(capacity)d items. "
                "Tick “Assign even if at capacity” to assign it anyway."
            )
            % {"order": tag, "agent": agent, "load": agent.load, "capacity": agent.capacity},
        )
    except (services.DispatchError, services.AssignmentNotFound) as exc:
        messages.error(request, _("%(order)s was not assigned: %(why)s") % {"order": tag, "why": exc})
    else:
        if assignment is None:
            messages.success(request, _("%(order)s is back in automatic matching.") % {"order": tag})
        else:
            messages.success(
                request, _("%(order)s is now with %(agent)s.") % {"order": tag, "agent": assignment.agent}
            )
