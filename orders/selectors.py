"""Reads of orders: who may see what, list filters, one order with its timeline."""

from __future__ import annotations

from datetime import UTC, datetime

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from django.utils.translation import gettext_lazy as _
from django_filters.fields import IsoDateTimeField, MultipleChoiceField

from orders.actors import roles_of
from orders.models import Order
from orders.states import Role, Stage

# Roles that see every order; a supervisor sees the orders of their regions.
_SEE_ALL = frozenset({Role.ADMIN, Role.CUSTOMER_SERVICE, Role.WAREHOUSE, Role.RISK_REVIEWER})


def order_visible_to(user) -> QuerySet[Order]:
    """Orders `user` may see: everything for back-office roles; for a supervisor the orders
    delivered to their regions' provinces, and those no region covers (someone must see
    them); only their own for agents."""
    qs = Order.objects.select_related("channel", "owner", "customer")
    roles = roles_of(user)
    if roles & _SEE_ALL or user.has_perm("orders.view_order"):  # the perm: integration accounts
        return qs
    if Role.SUPERVISOR in roles:
        return qs.filter(_supervised(user))
    if Role.AGENT in roles:
        return qs.filter(owner=user)
    return qs.none()


def _supervised(user) -> Q:
    from agents.models import Region

    mine: set[str] = set()
    covered: set[str] = set()
    supervised = set(user.supervised_regions.values_list("id", flat=True))
    if not supervised:
        return Q()  # a supervisor of no particular region oversees them all
    for region_id, provinces in Region.objects.values_list("id", "provinces"):
        names = {str(p).strip() for p in provinces or []}
        covered |= names
        if region_id in supervised:
            mine |= names
    return Q(province__in=mine) | ~Q(province__in=covered)


class YesNoField(forms.Field):
    """true/false or 1/0; empty is "not given". Anything else is an error naming the value, not a
    filter silently dropped: `?flagged=yes please` must not look like every order."""

    def to_python(self, value: object) -> bool | None:
        text = str(value or "").strip().lower()
        if not text:
            return None
        if text in {"true", "1"}:
            return True
        if text in {"false", "0"}:
            return False
        raise forms.ValidationError(
            _("'%(value)s' is not true or false."), code="invalid", params={"value": text[:20]}
        )


class YesNoFilter(django_filters.BooleanFilter):
    field_class = YesNoField


class AnyOfField(MultipleChoiceField):
    """Repeatable choices where an empty one (`stage=`, an empty form field) is left out, as an
    empty value is for every other query parameter."""

    def clean(self, value):
        return super().clean([v for v in value or [] if v != ""])


class AnyOfFilter(django_filters.MultipleChoiceFilter):
    field_class = AnyOfField


class InstantField(IsoDateTimeField):
    """ISO 8601 allows offsets PostgreSQL refuses (beyond ±15:59, a 500): compare in UTC."""

    def to_python(self, value: object) -> datetime | None:
        moment = super().to_python(value)
        if moment is None:
            return None
        try:
            return moment.astimezone(UTC)
        except OverflowError as exc:
            raise forms.ValidationError(
                _("This moment is outside the years 1 to 9999."), code="invalid"
            ) from exc


class InstantFilter(django_filters.IsoDateTimeFilter):
    field_class = InstantField


class OrderFilter(django_filters.FilterSet):
    stage = AnyOfFilter(choices=[(s.value, s.value) for s in Stage])
    channel = django_filters.CharFilter(field_name="channel__code")
    flagged = YesNoFilter(field_name="is_flagged")
    created_after = InstantFilter(field_name="received_at", lookup_expr="gte")
    created_before = InstantFilter(field_name="received_at", lookup_expr="lt")
    q = django_filters.CharFilter(method="search", label="text search")

    class Meta:
        model = Order
        fields = ["stage", "channel", "flagged", "created_after", "created_before", "q"]

    def search(self, queryset: QuerySet[Order], name: str, value: str) -> QuerySet[Order]:
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(
            Q(tag__icontains=value)
            | Q(external_id__icontains=value)
            | Q(customer_name__icontains=value)
            | Q(customer_phone__icontains=value)
            | Q(address__icontains=value)
        )


def order_list(*, user, params) -> QuerySet[Order]:
    qs = order_visible_to(user).order_by("-received_at", "-id")
    return OrderFilter(params, queryset=qs).qs


def order_with_timeline(*, user, order_id: int) -> Order:
    """The order and its audit events; Order.DoesNotExist when absent or not visible."""
    return order_visible_to(user).prefetch_related("events").get(pk=order_id)
