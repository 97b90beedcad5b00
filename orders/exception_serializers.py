"""The exception JSON contract: raising and resolving (shapes only; the service judges the
rest), and how cases and types are shown."""

from __future__ import annotations

from rest_framework import serializers

from orders.exceptions import NOTE_MAX, RESOLUTION_MAX
from orders.models import ExceptionCase, ExceptionType


class ExceptionRaiseSerializer(serializers.Serializer):
    type = serializers.CharField(
        max_length=40, help_text="An active exception type's code, e.g. out_of_stock."
    )
    note = serializers.CharField(max_length=NOTE_MAX, required=False, allow_blank=True, default="")
    delay_until = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Required by reschedule types (the customer's new date, in the future); refused by others.",
    )


class ExceptionResolveSerializer(serializers.Serializer):
    # Length and blankness are judged by the service, so that every caller gets the same words.
    resolution = serializers.CharField(
        allow_blank=True,
        trim_whitespace=True,
        help_text=f"How it was resolved; sent to the customer (≤ {RESOLUTION_MAX}).",
    )


class ExceptionCaseSerializer(serializers.ModelSerializer):
    order_tag = serializers.CharField(source="order.tag", read_only=True)
    order_stage = serializers.CharField(source="order.stage", read_only=True)
    type = serializers.CharField(source="type.code", read_only=True)
    type_name = serializers.CharField(source="type.name", read_only=True)
    route = serializers.ChoiceField(source="type.route", choices=ExceptionType.Route.choices, read_only=True)
    status = serializers.ChoiceField(choices=ExceptionCase.Status.choices, read_only=True)
    team = serializers.CharField(source="team.code", read_only=True, allow_null=True, default=None)
    team_name = serializers.CharField(source="team.name", read_only=True, allow_null=True, default=None)
    owner_name = serializers.CharField(
        source="owner.display_name", read_only=True, allow_null=True, default=None
    )
    raised_by = serializers.CharField(source="raised_by_name", read_only=True)
    resolved_by = serializers.CharField(source="resolved_by_name", read_only=True)

    class Meta:
        model = ExceptionCase
        fields = [
            "id", "order", "order_tag", "order_stage", "type", "type_name", "route", "status",
            "held_stage", "team", "team_name", "owner", "owner_name", "note", "delay_until",
            "raised_by", "raised_at", "resolved_by", "resolved_at", "resolution",
        ]  # fmt: skip
        read_only_fields = fields


class ExceptionTypeSerializer(serializers.ModelSerializer):
    route = serializers.ChoiceField(choices=ExceptionType.Route.choices, read_only=True)
    team = serializers.CharField(source="team.code", read_only=True, allow_null=True, default=None)
    team_name = serializers.CharField(source="team.name", read_only=True, allow_null=True, default=None)
    holds_order = serializers.BooleanField(read_only=True)
    needs_delay_until = serializers.SerializerMethodField()

    class Meta:
        model = ExceptionType
        fields = ["code", "name", "route", "team", "team_name", "holds_order", "needs_delay_until"]
        read_only_fields = fields

    def get_needs_delay_until(self, exc_type: ExceptionType) -> bool:
        return exc_type.route == ExceptionType.Route.RESCHEDULE
