"""Dispatch REST API: offers and their answers, manual assignment, inquiries, the pool."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.models import Agent
from dispatch import selectors, services
from dispatch.models import Assignment, Inquiry, PoolEntry
from orders.actors import roles_of, user_actor
from orders.apis import _COMMON, CanIngestOrders, ErrorSerializer
from orders.models import Channel
from orders.selectors import order_visible_to


def agent_of(user) -> Agent:
    """The caller's agent profile; 403 for accounts that are not agents."""
    agent = Agent.objects.filter(user=user).first() if user.is_authenticated else None
    if agent is None:
        raise services.NotAnAgent("Your account has no agent profile; only agents have a queue.")
    return agent


class IsSupervisor(BasePermission):
    message = "Only supervisors and admins may do this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(roles_of(request.user) & selectors.MANAGER_ROLES)


class AssignmentSerializer(serializers.ModelSerializer):
    agent_name = serializers.CharField(source="agent.display_name")
    order_tag = serializers.CharField(source="order.tag", allow_null=True, default=None)
    order_summary = serializers.SerializerMethodField()
    inquiry_text = serializers.CharField(source="inquiry.text", allow_null=True, default=None)
    review_order_tag = serializers.CharField(source="review.order.tag", allow_null=True, default=None)

    class Meta:
        model = Assignment
        fields = [
            "id", "state", "agent", "agent_name", "order", "order_tag", "order_summary", "inquiry",
            "inquiry_text", "review", "review_order_tag", "round", "policy_kind", "score", "breakdown",
            "distance_km", "skill_match", "manual", "offered_at", "expires_at", "responded_at", "closed_at",
            "reason",
        ]  # fmt: skip
        read_only_fields = fields

    def get_order_summary(self, a: Assignment) -> dict | None:
        # A review task is about its held order: the reviewer sees that order's summary.
        o = a.order or (a.review.order if a.review_id else None)
        if o is None:
            return None
        return {
            "customer": o.customer_name,
            "address": o.address,
            "category": o.category,
            "amount": str(o.amount),
            "urgency": o.urgency,
            "stage": o.stage,
            "note": o.note[:200],
        }


class AssignmentListApi(ListAPIView):
    """Agents see their own assignments; supervisors and admins everyone's (`?agent=`)."""

    serializer_class = AssignmentSerializer
    permission_classes = [IsAuthenticated]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "mine", bool, description="Only the caller's own (agents always get only theirs)."
            ),
            OpenApiParameter(
                "state", str, many=True, enum=Assignment.State.values, description="Repeatable."
            ),
            OpenApiParameter("agent", int),
        ],
        responses={
            200: AssignmentSerializer(many=True),
            403: OpenApiResponse(
                ErrorSerializer, description="`mine=true` from an account with no agent profile."
            ),
        },
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        qs = selectors.assignments_visible_to(self.request.user).select_related("review__order")
        params = self.request.query_params
        if _yes_no(params, "mine"):
            qs = qs.filter(agent=agent_of(self.request.user))
        states = [s for s in params.getlist("state") if s]
        known = {s.value for s in Assignment.State}
        bad = [s for s in states if s not in known]
        if bad:
            raise exceptions.ValidationError(
                {"state": [f"Unknown state: {', '.join(bad)}. Known: {', '.join(sorted(known))}."]}
            )
        if states:
            qs = qs.filter(state__in=states)
        if params.get("agent"):
            try:
                qs = qs.filter(agent_id=int(params["agent"]))
            except ValueError as exc:
                raise exceptions.ValidationError({"agent": ["An agent id is a number."]}) from exc
        return qs.order_by("-offered_at", "-id")


def _yes_no(params, name: str) -> bool:
    """A yes/no query parameter: absent or empty is no; a value that is neither is a 400."""
    raw = params.get(name, "").strip().lower()
    if raw in {"", "0", "false", "no"}:
        return False
    if raw in {"1", "true", "yes"}:
        return True
    raise exceptions.ValidationError({name: [f"'{raw[:20]}' is not true or false."]})


class RejectInSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


_ANSWER_RESPONSES = {
    200: AssignmentSerializer,
    404: OpenApiResponse(ErrorSerializer, description="No such offer, or not yours."),
    409: OpenApiResponse(ErrorSerializer, description="The offer is no longer open (expired, answered)."),
    **_COMMON,
}


class AssignmentAcceptApi(APIView):
    @extend_schema(
        request=None, responses=_ANSWER_RESPONSES, description="Take the offer: you own the order."
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        a = services.assignment_accept(assignment_id=assignment_id, agent=agent_of(request.user))
        return Response(
            AssignmentSerializer(selectors.assignments_visible_to(request.user).get(pk=a.pk)).data
        )


class AssignmentRejectApi(APIView):
    @extend_schema(
        request=RejectInSerializer,
        responses=_ANSWER_RESPONSES,
        description="Decline the offer; it is re-matched, never to you again.",
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        data = RejectInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        a = services.assignment_reject(
            assignment_id=assignment_id, agent=agent_of(request.user), reason=data.validated_data["reason"]
        )
        return Response(
            AssignmentSerializer(selectors.assignments_visible_to(request.user).get(pk=a.pk)).data
        )


class AssignInSerializer(serializers.Serializer):
    agent = serializers.IntegerField(
        allow_null=True, help_text="An agent id; null pulls the order back to the pool."
    )
    force = serializers.BooleanField(default=False, help_text="Assign even when the agent is at capacity.")


def _assign_schema(noun: str):
    return extend_schema(
        request=AssignInSerializer,
        responses={
            200: OpenApiResponse(AssignmentSerializer, description="The new assignment."),
            204: OpenApiResponse(description="Pulled back into the pool (`agent` null)."),
            404: ErrorSerializer,
            409: OpenApiResponse(
                ErrorSerializer,
                description=f"{noun.capitalize()} closed, or agent at capacity without force.",
            ),
            **_COMMON,
        },
        description=f"Supervisors give an {noun} to an agent by hand, or pull it back into the pool.",
    )


def _assign(request: Request, assign, **subject: int) -> Response:
    """Validate the body, call `services.order_assign` or `inquiry_assign`, answer."""
    data = AssignInSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    a = assign(
        **subject,
        agent_id=data.validated_data["agent"],
        force=data.validated_data["force"],
        actor=user_actor(request.user),
    )
    if a is None:  # pulled back into the pool: there is no assignment to show
        return Response(status=status.HTTP_204_NO_CONTENT)
    return Response(AssignmentSerializer(a).data)


class OrderAssignApi(APIView):
    permission_classes = [IsAuthenticated, IsSupervisor]

    @_assign_schema("order")
    def post(self, request: Request, order_id: int) -> Response:
        if not order_visible_to(request.user).filter(pk=order_id).exists():
            raise Http404(f"Order {order_id} does not exist.")
        return _assign(request, services.order_assign, order_id=order_id)


class InquiryAssignApi(APIView):
    permission_classes = [IsAuthenticated, IsSupervisor]

    @_assign_schema("inquiry")
    def post(self, request: Request, inquiry_id: int) -> Response:
        return _assign(request, services.inquiry_assign, inquiry_id=inquiry_id)


class _ChannelCodeField(serializers.SlugRelatedField):
    def to_internal_value(self, data):
        if isinstance(data, str) and "\x00" in data:  # PostgreSQL cannot compare text holding NUL
            self.fail("invalid")
        return super().to_internal_value(data)


class InquiryInSerializer(serializers.Serializer):
    channel = _ChannelCodeField(slug_field="code", queryset=Channel.objects.filter(is_active=True))
    account_id = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")
    customer_name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    text = serializers.CharField(max_length=4000)
    vip = serializers.BooleanField(default=False)

    def validate_text(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("The message is empty.")
        return value.strip()


class InquiryOutSerializer(serializers.ModelSerializer):
    channel = serializers.CharField(source="channel.code")
    agent_name = serializers.CharField(source="agent.display_name", allow_null=True, default=None)
    pool_state = serializers.CharField(source="pool_entry.state", default=None)
    wait_reason = serializers.CharField(source="pool_entry.wait_reason", default=None)

    class Meta:
        model = Inquiry
        fields = [
            "id", "channel", "account_key", "customer_name", "is_vip", "text", "skills", "state",
            "agent", "agent_name", "pool_state", "wait_reason", "created_at", "closed_at",
        ]  # fmt: skip
        read_only_fields = fields


class InquiryListCreateApi(ListAPIView):
    """POST: a customer's chat or consultation message, routed like an order. GET: agents
    see the inquiries they hold; supervisors all."""

    serializer_class = InquiryOutSerializer
    permission_classes = [IsAuthenticated, CanIngestOrders]

    def get_queryset(self):
        qs = Inquiry.objects.select_related("channel", "agent", "pool_entry").order_by("-created_at", "-id")
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no user
            return qs.none()
        user = self.request.user
        if roles_of(user) & selectors.MANAGER_ROLES or user.has_perm("dispatch.view_inquiry"):
            return qs
        agent = Agent.objects.filter(user=user).first()
        return qs.filter(agent=agent) if agent else qs.none()

    @extend_schema(request=InquiryInSerializer, responses={201: InquiryOutSerializer, **_COMMON})
    def post(self, request: Request) -> Response:
        data = InquiryInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        inquiry = services.inquiry_create(
            channel=v["channel"],
            account_id=v["account_id"],
            customer_name=v["customer_name"],
            text=v["text"],
            vip=v["vip"],
        )
        inquiry = Inquiry.objects.select_related("channel", "agent", "pool_entry").get(pk=inquiry.pk)
        return Response(InquiryOutSerializer(inquiry).data, status=status.HTTP_201_CREATED)


class InquiryCloseApi(APIView):
    @extend_schema(
        request=None,
        responses={200: InquiryOutSerializer, 404: ErrorSerializer, 409: ErrorSerializer, **_COMMON},
        description="The conversation is over; the agent's slot frees.",
    )
    def post(self, request: Request, inquiry_id: int) -> Response:
        manager = bool(roles_of(request.user) & selectors.MANAGER_ROLES)
        agent = None if manager else agent_of(request.user)
        services.inquiry_close(inquiry_id=inquiry_id, actor=user_actor(request.user), agent=agent)
        inquiry = Inquiry.objects.select_related("channel", "agent", "pool_entry").get(pk=inquiry_id)
        return Response(InquiryOutSerializer(inquiry).data)


class PoolEntrySerializer(serializers.ModelSerializer):
    order_tag = serializers.CharField(source="order.tag", allow_null=True, default=None)
    region_name = serializers.CharField(source="region.name", allow_null=True, default=None)

    class Meta:
        model = PoolEntry
        fields = [
            "id", "kind", "order", "order_tag", "inquiry", "state", "region", "region_name", "category",
            "skills", "urgent", "is_vip", "ready_at", "waiting_since", "rounds", "wait_reason",
            "wait_detail", "escalation_level", "escalated_at",
        ]  # fmt: skip
        read_only_fields = fields


class PoolListApi(ListAPIView):
    """The waiting pool and the supervisors' manual queue (`?state=escalated`), with the
    reason each item waits."""

    serializer_class = PoolEntrySerializer
    permission_classes = [IsAuthenticated, IsSupervisor]

    @extend_schema(
        parameters=[
            OpenApiParameter("state", str, many=True, enum=PoolEntry.State.values, description="Repeatable.")
        ]
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        qs = selectors.pool_visible_to(self.request.user)
        states = [s for s in self.request.query_params.getlist("state") if s]
        states = states or ["waiting", "offered", "escalated"]
        known = {s.value for s in PoolEntry.State}
        bad = [s for s in states if s not in known]
        if bad:
            raise exceptions.ValidationError(
                {"state": [f"Unknown state: {', '.join(bad)}. Known: {', '.join(sorted(known))}."]}
            )
        return qs.filter(state__in=states).order_by("-urgent", "ready_at", "id")
