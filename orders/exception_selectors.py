"""Reads of exception cases and types: who may see which case, and the list filters."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django_filters import rest_framework as django_filters

from agents.models import Agent
from orders.models import ExceptionCase, ExceptionType
from orders.selectors import YesNoFilter, order_visible_to


def exception_visible_to(user) -> QuerySet[ExceptionCase]:
    """Cases on the orders `user` may see, and the cases they own: an agent sees the cases on
    their own orders and those routed to them, whoever owns the order."""
    visible = Q(order__in=order_visible_to(user).values("pk"))
    agent_id = Agent.objects.filter(user_id=user.pk).values_list("pk", flat=True).first()
    if agent_id is not None:
        visible |= Q(owner_id=agent_id)
    return ExceptionCase.objects.select_related("order", "type", "team", "owner").filter(visible)


def exception_types_active() -> QuerySet[ExceptionType]:
    return ExceptionType.objects.select_related("team").filter(is_active=True).order_by("code")


class ExceptionCaseFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=ExceptionCase.Status.choices)
    type = django_filters.CharFilter(field_name="type__code", label="exception type code")
    team = django_filters.CharFilter(field_name="team__code", label="team code")
    order = django_filters.NumberFilter(field_name="order_id", label="order id")
    mine = YesNoFilter(method="owned_by_me", label="only the cases I own")

    class Meta:
        model = ExceptionCase
        fields = ["status", "type", "team", "order", "mine"]

    def owned_by_me(
        self, queryset: QuerySet[ExceptionCase], name: str, value: bool
    ) -> QuerySet[ExceptionCase]:
        if not value:
            return queryset
        user = getattr(self.request, "user", None)
        return queryset.filter(owner__user_id=getattr(user, "pk", None))
