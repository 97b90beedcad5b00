"""Server-rendered pages: the order list and one order with its timeline."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from orders import selectors
from orders.models import STAGE_CHOICES, Channel, Order
from riskcontrol.selectors import risk_summary


@login_required
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
def order_detail(request: HttpRequest, order_id: int) -> HttpResponse:
    try:
        order = selectors.order_with_timeline(user=request.user, order_id=order_id)
    except Order.DoesNotExist as exc:
        raise Http404("No such order") from exc
    return render(request, "dashboards/order_detail.html", {"order": order, "risk": risk_summary(order)})
