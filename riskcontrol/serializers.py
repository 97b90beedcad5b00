"""The review JSON contract: reviews as reviewers read them, and a decision as it comes in."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from orders.models import Order
from riskcontrol.models import BLACKLISTABLE, LIST_KIND_LABELS, Review, ReviewDecision, RuleHit

NOTE_MAX = 2000
BLACKLIST_DAYS_MAX = 3650


class ReviewListSerializer(serializers.ModelSerializer):
    order_tag = serializers.CharField(source="order.tag")
    channel = serializers.CharField(source="order.channel.code")
    order_stage = serializers.CharField(source="order.stage")
    agent_name = serializers.CharField(source="agent.display_name", allow_null=True, default=None)
    decided_by = serializers.CharField(source="decided_by.username", allow_null=True, default=None)

    class Meta:
        model = Review
        fields = [
            "id", "state", "score", "reason", "order", "order_tag", "channel", "order_stage",
            "agent", "agent_name", "created_at", "decided_at", "decided_by",
        ]  # fmt: skip
        read_only_fields = fields


class ReviewOrderSerializer(serializers.ModelSerializer):
    """What the reviewer judges the order by."""

    channel = serializers.CharField(source="channel.code")
    phone = serializers.CharField(source="customer_phone")
    phone_home_city = serializers.CharField(source="customer_phone_city")
    account_id = serializers.CharField(source="customer.account_id")
    account_created_at = serializers.DateTimeField(source="customer.account_created_at")

    class Meta:
        model = Order
        fields = [
            "id", "tag", "channel", "external_id", "stage", "received_at", "customer_name", "phone",
            "phone_home_city", "account_id", "account_created_at", "is_returning", "address",
            "province", "city", "amount", "currency", "coupon_code", "note", "client_ip", "device_id",
            "card_fingerprint", "risk_score", "flags",
        ]  # fmt: skip
        read_only_fields = fields


class RuleHitSerializer(serializers.ModelSerializer):
    rule_name = serializers.CharField(source="rule.name")

    class Meta:
        model = RuleHit
        fields = ["id", "rule", "rule_name", "kind", "weight", "explanation", "outcome", "at"]
        read_only_fields = fields


class ReviewDecisionSerializer(serializers.ModelSerializer):
    by = serializers.CharField(source="by.username", allow_null=True, default=None)

    class Meta:
        model = ReviewDecision
        fields = ["id", "decision", "note", "blacklisted", "by", "at"]
        read_only_fields = fields


class ReviewDetailSerializer(ReviewListSerializer):
    order = ReviewOrderSerializer()
    hits = RuleHitSerializer(source="order.rule_hits", many=True)
    decisions = ReviewDecisionSerializer(many=True)

    class Meta(ReviewListSerializer.Meta):
        fields = [*ReviewListSerializer.Meta.fields, "note", "hits", "decisions"]
        read_only_fields = fields


class ReviewDecideInSerializer(serializers.Serializer):
    """A decision on one review. Give the order in the context: only what it has can be
    blacklisted."""

    decision = serializers.ChoiceField(choices=ReviewDecision.Decision.choices)
    note = serializers.CharField(max_length=NOTE_MAX, required=False, allow_blank=True, default="")
    blacklist = serializers.ListField(
        child=serializers.ChoiceField(choices=[(k, LIST_KIND_LABELS[k]) for k in BLACKLISTABLE]),
        required=False,
        default=list,
        max_length=len(BLACKLISTABLE),
        help_text="Confirmed fraud only: which of the order's values to blacklist.",
    )
    blacklist_days = serializers.IntegerField(
        min_value=1,
        max_value=BLACKLIST_DAYS_MAX,
        required=False,
        allow_null=True,
        default=None,
        help_text="How long the blacklist entries last; omitted: for good.",
    )

    def validate_note(self, value: str) -> str:
        return value.strip()

    def validate(self, attrs: dict) -> dict:
        attrs["blacklist"] = list(dict.fromkeys(attrs["blacklist"]))
        if attrs["blacklist"] and attrs["decision"] != ReviewDecision.Decision.CONFIRMED:
            raise serializers.ValidationError({"blacklist": [_("Only confirmed fraud can be blacklisted.")]})
        if attrs["blacklist_days"] is not None and not attrs["blacklist"]:
            raise serializers.ValidationError(
                {"blacklist_days": [_("An expiry only applies when something is blacklisted.")]}
            )
        order = self.context.get("order")
        if order is not None:
            missing = [k for k in attrs["blacklist"] if not getattr(order, BLACKLISTABLE[k])]
            if missing:
                raise serializers.ValidationError(
                    {
                        "blacklist": [
                            _("This order has no %(what)s to blacklist.") % {"what": LIST_KIND_LABELS[k]}
                            for k in missing
                        ]
                    }
                )
        return attrs
