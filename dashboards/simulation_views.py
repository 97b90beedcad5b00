"""The simulator pages for supervisors and admins: try a draft dispatch policy on a past week
and compare it with the live policies, side by side (the replay runs in a Celery worker)."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods

from dispatch.sim import selectors
from dispatch.sim.services import SimulationRefused, simulation_request


class DraftPolicyField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        if obj.is_active:
            return _("%(name)s (active)") % {"name": obj.name}
        return _("%(name)s (draft)") % {"name": obj.name}


class SimulationForm(forms.Form):
    policy = DraftPolicyField(
        label=gettext_lazy("Policy to try"),
        queryset=selectors.draft_choices(),
        empty_label=None,
        help_text=gettext_lazy(
            "Switched on over the live policies: it replaces the active policy of the same scope, "
            "or is added beside them."
        ),
    )
    week = forms.DateField(
        label=gettext_lazy("Replay the 7 days from"),
        # An <input type="date"> takes ISO dates only, whatever the page's language.
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        help_text=gettext_lazy("Seven whole past days from this one are replayed (default: the last seven)."),
    )
    seed = forms.IntegerField(
        label=gettext_lazy("Seed"),
        min_value=1,
        max_value=2**31 - 1,
        initial=1,
        required=False,
        help_text=gettext_lazy("The same seed replays the same agent answers."),
    )


def _forbidden(request: HttpRequest, template: str) -> HttpResponse:
    return render(
        request,
        template,
        {"forbidden": _("Only supervisors and admins may run simulations.")},
        status=403,
    )


@login_required
@require_http_methods(["GET", "POST"])
def simulation_list(request: HttpRequest) -> HttpResponse:
    if not selectors.may_simulate(request.user):
        return _forbidden(request, "dashboards/simulations.html")
    status = 200
    if request.method == "POST":
        form = SimulationForm(request.POST)
        if form.is_valid():
            first = form.cleaned_data["week"]
            try:
                run = simulation_request(
                    user=request.user,
                    policy=form.cleaned_data["policy"],
                    start=first,
                    end=first + timedelta(days=7),
                    seed=form.cleaned_data["seed"] or 1,
                )
            except SimulationRefused as exc:
                form.add_error(None, exc.message)
            else:
                return redirect("dashboards:simulation_detail", run_id=run.pk)
        status = 400
    else:
        form = SimulationForm(initial={"week": selectors.last_seven_days(), "seed": 1})
    page = Paginator(selectors.simulation_runs(), 20).get_page(request.GET.get("page"))
    return render(
        request,
        "dashboards/simulations.html",
        {"form": form, "page": page, "today": timezone.localdate()},
        status=status,
    )


@login_required
@require_GET
def simulation_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    if not selectors.may_simulate(request.user):
        return _forbidden(request, "dashboards/simulation_detail.html")
    run = get_object_or_404(selectors.simulation_runs(), pk=run_id)
    result = run.result or {}
    return render(
        request,
        "dashboards/simulation_detail.html",
        {
            "run": run,
            "state": selectors.run_status(run),
            "rows": selectors.comparison_rows(result),
            "series": selectors.chart_series(result),
            "scenario": result.get("scenario") or {},
            "labels": {
                "live": _("Live policies"),
                "draft": _("With “%(name)s”") % {"name": run.policy.name},
                "accept": _("Time to accept, 90th percentile (min), by the hour orders became ready"),
                "waiting": _("Orders waiting for an agent, on the hour"),
                "minutes": _("min"),
                "orders": _("orders"),
            },
        },
    )


@login_required
@require_GET
def simulation_status(request: HttpRequest, run_id: int) -> JsonResponse:
    if not selectors.may_simulate(request.user):
        return JsonResponse({"detail": _("Only supervisors and admins may run simulations.")}, status=403)
    run = get_object_or_404(selectors.simulation_runs(), pk=run_id)
    return JsonResponse(selectors.run_status(run), headers={"Cache-Control": "no-store"})
