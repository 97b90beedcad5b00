"""Agents' REST API: their own profile, status and location, and customers' ratings."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents import services
from agents.models import Agent, Rating
from dispatch.apis import agent_of
from orders.actors import user_actor
from orders.apis import _COMMON, CanIngestOrders, ErrorSerializer
from orders.selectors import order_visible_to


class AgentOutSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")
    skills = serializers.SerializerMethodField()

    class Meta:
        model = Agent
        fields = [
            "id", "username", "display_name", "status", "status_changed_at", "capacity",
            "service_radius_km", "latitude", "longitude", "location_at", "skills",
            "avg_handling_minutes", "good_rate_30d", "good_rate_7d", "on_time_rate",
            "first_fix_rate", "acceptance_rate", "ratings_30d", "consecutive_exceptions",
            "quality_weight", "profile_updated_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_skills(self, agent: Agent) -> dict[str, int]:
        return {s.skill.code: s.level for s in agent.agentskill_set.select_related("skill")}


class StatusInSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Agent.Status.choices)


class DegreesField(serializers.DecimalField):
    """Degrees kept to 6 places (~0.1 m). A phone reports a double with ~15 digits: it is
    rounded, not refused. A number, or a numeric string."""

    def __init__(self, *, bound: int) -> None:
        super().__init__(
            max_digits=9, decimal_places=6, min_value=-bound, max_value=bound, coerce_to_string=False
        )

    def validate_precision(self, value: Decimal) -> Decimal:
        if abs(value) < 1000:  # a larger value is refused by the digit limit, not rounded
            value = value.quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN)
        return super().validate_precision(value)


class LocationInSerializer(serializers.Serializer):
    lat = DegreesField(bound=90)
    lng = DegreesField(bound=180)


class RatingInSerializer(serializers.Serializer):
    score = serializers.IntegerField(min_value=1, max_value=5)
    on_time = serializers.BooleanField(required=False, allow_null=True, default=None)
    fixed_first_time = serializers.BooleanField(required=False, allow_null=True, default=None)


class RatingOutSerializer(serializers.ModelSerializer):
    class Meta:
        model = Rating
        fields = ["id", "order", "agent", "score", "on_time", "fixed_first_time", "created_at"]
        read_only_fields = fields


_AGENT_ONLY = {403: OpenApiResponse(ErrorSerializer, description="Your account has no agent profile.")}


class AgentMeApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: AgentOutSerializer, **_COMMON, **_AGENT_ONLY})
    def get(self, request: Request) -> Response:
        return Response(AgentOutSerializer(agent_of(request.user)).data)


class AgentStatusApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=StatusInSerializer,
        responses={200: AgentOutSerializer, **_COMMON, **_AGENT_ONLY},
        description="online receives offers; busy and break keep open offers but get no new ones; "
        "offline hands open offers back to the pool at once.",
    )
    def post(self, request: Request) -> Response:
        data = StatusInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        agent = services.agent_set_status(agent=agent_of(request.user), status=data.validated_data["status"])
        return Response(AgentOutSerializer(agent).data)


class AgentLocationApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=LocationInSerializer, responses={200: AgentOutSerializer, **_COMMON, **_AGENT_ONLY}
    )
    def post(self, request: Request) -> Response:
        data = LocationInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        agent = services.agent_set_location(
            agent=agent_of(request.user), lat=data.validated_data["lat"], lng=data.validated_data["lng"]
        )
        return Response(AgentOutSerializer(agent).data)


class OrderRatingApi(APIView):
    permission_classes = [IsAuthenticated, CanIngestOrders]

    @extend_schema(
        request=RatingInSerializer,
        responses={
            201: RatingOutSerializer,
            404: ErrorSerializer,
            409: OpenApiResponse(ErrorSerializer, description="Already rated, or no agent owns the order."),
            **_COMMON,
        },
        description="A customer's rating of the work on an order; updates the owning agent's profile.",
    )
    def post(self, request: Request, order_id: int) -> Response:
        if not order_visible_to(request.user).filter(pk=order_id).exists():
            raise Http404(f"Order {order_id} does not exist.")
        data = RatingInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rating = services.rating_record(
            order_id=order_id, actor=user_actor(request.user), **data.validated_data
        )
        return Response(RatingOutSerializer(rating).data, status=status.HTTP_201_CREATED)
