"""Server-rendered pages: the order list and one order with its timeline."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from dashboards.forms import OrderEditForm
from orders import selectors
from orders.actors import roles_of, user_actor
from orders.models import STAGE_CHOICES, Channel, Order
from orders.services import order_edit
from orders.states import TransitionError
from riskcontrol.selectors import risk_summary


@login_required
@require_GET
def order_list(request: HttpRequest) -> HttpResponse:
    orders = selectors.order_list(user=request.user, params=request.GET)
    page = Paginator(orders, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "dashboards/order_list.html",
        {
            "page": page,
            "stages": STAGE_CHOICES,
            "channels": Channel.objects.order_by("code"),
            "params": request.GET,
            "querystring": query.urlencode(),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def order_detail(request: HttpRequest, order_id: int) -> HttpResponse:
    try:
        order = selectors.order_with_timeline(user=request.user, order_id=order_id)
    except Order.DoesNotExist as exc:
        raise Http404("No such order") from exc
    roles = roles_of(request.user)
    form = OrderEditForm(request.POST or None, roles=roles, order=order)
    if request.method == "POST":
        if not form.editable:
            raise PermissionDenied
        if form.is_valid():
            changes = form.changes()
            if not changes:
                messages.info(request, _("Nothing changed."))
                return redirect(request.path)
            try:
                order_edit(
                    order_id=order.pk,
                    actor=user_actor(request.user),
                    changes=changes,
                    reason=form.cleaned_data["reason"],
                )
            except TransitionError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, _("Saved; the change is on the timeline."))
                return redirect(request.path)
    return render(
        request,
        "dashboards/order_detail.html",
        {"order": order, "risk": risk_summary(order), "edit_form": form if form.editable else None},
    )
