"""The supervisors' board (/board/) and the alert list (/alerts/). The board page renders the
shell, the counts and the first page of every column and lane in one request (three queries
for all the cards); static/js/board.js pages further, moves cards and keeps it live."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from agents.models import Agent, Region, Team
from dashboards import board_selectors as board
from dashboards.board_services import AlertAlreadyAcknowledged, alert_acknowledge
from dashboards.models import Alert
from dashboards.templatetags.paidan import FLAG_LABELS
from orders.models import STAGE_LABELS, Channel
from orders.states import TRANSITIONS, Stage

COLUMN_NOTES = {Stage.DONE: gettext_lazy("last 24 hours")}


def _labels() -> dict:
    """Words the script shows for codes it reads from the API, in the page's language."""
    return {
        "stage": {str(code): str(label) for code, label in STAGE_LABELS.items()},
        "flag": {code: str(label) for code, label in FLAG_LABELS.items()},
        "alert_kind": {code: str(label) for code, label in Alert.Kind.choices},
        # The state machine, for the words of a refusal (the server decides every move).
        "transitions": {str(s): sorted(str(t) for t in targets) for s, targets in TRANSITIONS.items()},
    }


@login_required
@require_GET
def board_page(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not board.may_use_board(user):
        return render(
            request,
            "dashboards/board.html",
            {
                "forbidden": _(
                    "The board is for supervisors and the back office; agents work from their queue."
                )
            },
            status=403,
        )
    now = timezone.now()
    filter_errors: dict[str, str] = {}
    try:
        filters = board.parse_board_filters(request.GET)
    except board.BoardInputError as exc:
        # The page still opens, unfiltered, and says which filter it could not use.
        filter_errors = exc.errors
        filters = board.BoardFilters()
    orders = board.board_orders(user, filters, now=now)
    counts = board.board_counts(orders)
    pages = board.first_pages(orders, now=now)
    scope = board.board_scope(user)
    if scope.sees_all:
        regions = list(Region.objects.order_by("code").values("code", "name"))
    else:
        regions = board.supervised_regions(user)
    sees_alerts = board.may_see_alerts(user)
    open_alerts = (
        board.alerts_visible_to(user).filter(acknowledged_at__isnull=True).count() if sees_alerts else None
    )
    columns = [
        {
            "stage": stage.value,
            "label": STAGE_LABELS[stage],
            "count": counts[stage.value],
            "lane": stage in board.LANES,
            "note": COLUMN_NOTES.get(stage, ""),
        }
        for stage in board.ON_BOARD
    ]
    return render(
        request,
        "dashboards/board.html",
        {
            "columns": columns,
            "filters": filters,
            "filter_errors": filter_errors,
            "channels": Channel.objects.order_by("code").values("code", "name"),
            "regions": regions,
            "teams": Team.objects.order_by("code").values("code", "name"),
            "agents": Agent.objects.order_by("display_name").values("user__username", "display_name"),
            "sees_alerts": sees_alerts,
            "open_alerts": open_alerts,
            "initial": {
                "columns": pages,
                "counts": counts,
                "server_time": now.isoformat(),
                "filters": filters.as_params(),
            },
            "labels": _labels(),
            "page_size": board.PAGE_SIZE,
        },
    )


@login_required
@require_GET
def alert_list(request: HttpRequest) -> HttpResponse:
    if not board.may_see_alerts(request.user):
        return render(
            request,
            "dashboards/alerts.html",
            {"forbidden": _("Alerts are for supervisors and admins.")},
            status=403,
        )
    visible = board.alerts_visible_to(request.user)
    return render(
        request,
        "dashboards/alerts.html",
        {
            "open": visible.filter(acknowledged_at__isnull=True).order_by("-created_at", "-id")[:200],
            "recent": visible.filter(acknowledged_at__isnull=False).order_by("-acknowledged_at", "-id")[:50],
        },
    )


@login_required
@require_POST
def alert_ack(request: HttpRequest, alert_id: int) -> HttpResponse:
    if not board.may_see_alerts(request.user):
        raise PermissionDenied(_("Alerts are for supervisors and admins."))
    if not board.alerts_visible_to(request.user).filter(pk=alert_id).exists():
        messages.error(request, _("There is no alert %(id)d among your regions' alerts.") % {"id": alert_id})
        return redirect("dashboards:alerts")
    try:
        alert_acknowledge(alert_id=alert_id, user=request.user)
    except AlertAlreadyAcknowledged as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Alert acknowledged."))
    return redirect("dashboards:alerts")
