"""The order JSON contract: what comes in (validated here, once, for every way in) and out."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal

from django.utils import timezone
from rest_framework import serializers

from orders.models import Order, OrderEvent
from orders.normalize import external_id_problem, normalize_external_id

_reusable: dict[type, serializers.Serializer] = {}
_reusable_lock = threading.Lock()


def reusable(serializer_class: type[serializers.Serializer]) -> serializers.Serializer:
    """One unbound instance per class and process. Building DRF's field tree costs more than
    validating or rendering one order; `run_validation` and `to_representation` keep no state
    on the instance, so it is shared as DRF's own ListSerializer shares its child. (Under
    daphne every request runs on a new thread, so a per-thread cache would never hit.)"""
    instance = _reusable.get(serializer_class)
    if instance is None:
        with _reusable_lock:
            instance = _reusable.get(serializer_class)
            if instance is None:
                instance = serializer_class()
                instance.fields  # noqa: B018 - build the field tree once, before sharing
                _reusable[serializer_class] = instance
    return instance


class SourceDateTimeField(serializers.DateTimeField):
    """ISO 8601, or unix seconds as many marketplaces send; naive times are Asia/Shanghai."""

    def to_internal_value(self, value):
        if isinstance(value, bool):
            self.fail("invalid", format="ISO 8601 or unix seconds")
        if isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
            try:
                return datetime.fromtimestamp(float(value), tz=UTC)
            except (OverflowError, OSError, ValueError):
                self.fail("invalid", format="ISO 8601 or unix seconds")
        return super().to_internal_value(value)


class CustomerInSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    phone = serializers.CharField(max_length=40, required=False, allow_blank=True, default="")
    account_id = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")
    account_created_at = SourceDateTimeField(required=False, allow_null=True, default=None)
    is_vip = serializers.BooleanField(required=False, default=False)


_CUSTOMER_DEFAULTS = {"name": "", "phone": "", "account_id": "", "account_created_at": None, "is_vip": False}


class ItemSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    qty = serializers.IntegerField(min_value=1, max_value=100_000)
    price = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=Decimal("0"), coerce_to_string=True
    )


class OrderInSerializer(serializers.Serializer):
    """One incoming order. Missing contact details are accepted and flagged by the service;
    what the order cannot exist without (channel, external id, amount) is required."""

    channel = serializers.SlugField(max_length=32)
    external_id = serializers.CharField(max_length=200, trim_whitespace=False)
    source_created_at = SourceDateTimeField(required=False, allow_null=True, default=None)
    source_updated_at = SourceDateTimeField(required=False, allow_null=True, default=None)
    customer = CustomerInSerializer(required=False, default=dict)
    address = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    items = ItemSerializer(many=True, required=False, default=list, max_length=500)
    amount = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=Decimal("0"))
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False, default="CNY")
    coupon_code = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    note = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    category = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    urgency = serializers.ChoiceField(
        choices=Order.Urgency.choices, required=False, default=Order.Urgency.NORMAL
    )
    kind = serializers.ChoiceField(choices=Order.Kind.choices, required=False, allow_null=True, default=None)
    client_ip = serializers.IPAddressField(required=False, allow_null=True, allow_blank=True, default=None)
    device_id = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")
    card_fingerprint = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")

    def validate_external_id(self, value: str) -> str:
        normalized = normalize_external_id(value)
        problem = external_id_problem(normalized)
        if problem:
            raise serializers.ValidationError(f"external_id {problem}.")
        return normalized

    def validate_client_ip(self, value: str | None) -> str | None:
        return value or None

    def validate(self, attrs: dict) -> dict:
        # An omitted customer gets `{}` without the nested fields' defaults; fill them here.
        attrs["customer"] = {**_CUSTOMER_DEFAULTS, **attrs["customer"]}
        if attrs["source_updated_at"] is None:
            attrs["source_updated_at"] = attrs["source_created_at"] or timezone.now()
        return attrs


class OrderBatchInSerializer(serializers.Serializer):
    """The envelope only; items are validated one by one so that good ones are stored."""

    orders = serializers.ListField(child=serializers.DictField(), min_length=1, max_length=1000)


class OrderEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = OrderEvent
        fields = ["id", "at", "kind", "actor", "from_stage", "to_stage", "reason", "changes"]


class CustomerOutSerializer(serializers.Serializer):
    name = serializers.CharField(source="customer_name")
    phone = serializers.CharField(source="customer_phone")
    phone_as_sent = serializers.CharField(source="customer_phone_raw")
    phone_home_city = serializers.CharField(source="customer_phone_city")
    account_id = serializers.CharField(source="customer.account_id")
    account_created_at = serializers.DateTimeField(source="customer.account_created_at")
    is_vip = serializers.BooleanField()
    is_returning = serializers.BooleanField()


class OrderOutSerializer(serializers.ModelSerializer):
    channel = serializers.CharField(source="channel.code")
    customer = CustomerOutSerializer(source="*")
    owner = serializers.CharField(source="owner.username", allow_null=True, default=None)
    parsed_address = serializers.SerializerMethodField()

    class Meta:
        model = Order
        fields = [
            "id", "tag", "channel", "external_id", "stage", "held_stage", "flags", "owner",
            "due_at", "stage_entered_at", "source_created_at", "source_updated_at",
            "received_at", "updated_at", "customer", "address", "parsed_address", "items",
            "amount", "currency", "coupon_code", "note", "category", "urgency", "kind",
            "client_ip", "device_id", "card_fingerprint", "stale_deliveries",
        ]  # fmt: skip
        read_only_fields = fields

    def get_parsed_address(self, order: Order) -> dict:
        return {
            "province": order.province,
            "city": order.city,
            "district": order.district,
            "adcode": order.adcode,
            "latitude": str(order.latitude) if order.latitude is not None else None,
            "longitude": str(order.longitude) if order.longitude is not None else None,
        }


class OrderDetailSerializer(OrderOutSerializer):
    timeline = OrderEventSerializer(source="events", many=True)

    class Meta(OrderOutSerializer.Meta):
        fields = [*OrderOutSerializer.Meta.fields, "timeline"]
        read_only_fields = fields


class TransitionInSerializer(serializers.Serializer):
    to = serializers.ChoiceField(choices=[s for s, _ in Order._meta.get_field("stage").choices])
    reason = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")


class OrderEditSerializer(serializers.Serializer):
    """What people may correct by hand (customer service: contact details and notes)."""

    customer_name = serializers.CharField(max_length=100, required=False)
    customer_phone = serializers.CharField(max_length=40, required=False, allow_blank=True)
    address = serializers.CharField(max_length=500, required=False, allow_blank=True)
    note = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    reason = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")


class IngestResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["created", "updated", "ignored", "rejected"])
    id = serializers.IntegerField(allow_null=True)
    tag = serializers.CharField(allow_null=True)
    external_id = serializers.CharField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)
    errors = serializers.DictField(required=False)
