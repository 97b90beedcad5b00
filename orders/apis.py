"""Order REST API: ingest single and batch, list, read with timeline, transition, edit."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from dispatch import services as dispatch_services
from orders import exceptions as exception_services
from orders import selectors, services
from orders.actors import roles_of, user_actor
from orders.models import Order
from orders.serializers import (
    IngestResultSerializer,
    OrderBatchInSerializer,
    OrderDetailSerializer,
    OrderEditSerializer,
    OrderInSerializer,
    OrderOutSerializer,
    TransitionInSerializer,
    reusable,
)
from orders.states import IllegalTransition, Role, RoleMayNotTransition, TransitionError
from riskcontrol import services as risk_services

ErrorSerializer = inline_serializer(
    "Error", {"code": serializers.CharField(), "detail": serializers.CharField()}
)

# One place maps domain errors to HTTP.
_DOMAIN_STATUS: list[tuple[type[Exception], int]] = [
    (RoleMayNotTransition, status.HTTP_403_FORBIDDEN),
    (services.FieldNotEditable, status.HTTP_403_FORBIDDEN),
    (risk_services.MayNotReview, status.HTTP_403_FORBIDDEN),
    (risk_services.ReviewError, status.HTTP_409_CONFLICT),
    (risk_services.ReviewNotFound, status.HTTP_404_NOT_FOUND),
    (IllegalTransition, status.HTTP_409_CONFLICT),
    (TransitionError, status.HTTP_409_CONFLICT),
    (services.OrderNotFound, status.HTTP_404_NOT_FOUND),
    (dispatch_services.AssignmentNotFound, status.HTTP_404_NOT_FOUND),
    (dispatch_services.NotAnAgent, status.HTTP_403_FORBIDDEN),
    (Order.DoesNotExist, status.HTTP_404_NOT_FOUND),
    (exception_services.ExceptionInputInvalid, status.HTTP_400_BAD_REQUEST),
]


def exception_handler(exc: Exception, context: dict) -> Response | None:
    for cls, code in _DOMAIN_STATUS:
        if isinstance(exc, cls):
            body = {"code": getattr(exc, "code", "not_found"), "detail": str(exc)}
            if isinstance(exc, exception_services.ExceptionInputInvalid):
                body["errors"] = {exc.field: [exc.message]}
            return Response(body, status=code)
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {"code": "too_large", "detail": "The request body is larger than this server accepts."},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, exceptions.ParseError):
        return Response(
            {"code": "malformed_json", "detail": f"The body is not valid JSON: {exc.detail}"},
            status=status.HTTP_400_BAD_REQUEST,
        )
    response = drf_exception_handler(exc, context)
    # DRF answers its own refusals (401, 403, 404, 405, 415, 429) with `detail` only; every
    # error of this API also carries a `code`, so a client switches on one field.
    if response is not None and isinstance(response.data, dict) and set(response.data) == {"detail"}:
        detail = response.data["detail"]
        response.data = {"code": getattr(detail, "code", None) or "error", "detail": detail}
    return response


MAX_BATCH = 1000
_INGEST_ROLES = frozenset({Role.ADMIN, Role.SUPERVISOR, Role.CUSTOMER_SERVICE})


class CanIngestOrders(BasePermission):
    """Integrations (a user holding `orders.add_order`), supervisors, customer service, admins."""

    message = "Your account may not create orders: it needs the customer service, supervisor or admin role, or the 'orders.add_order' permission."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if request.method in SAFE_METHODS:
            return True
        user = request.user
        return bool(roles_of(user) & _INGEST_ROLES) or user.has_perm("orders.add_order")


_COMMON = {
    400: OpenApiResponse(description="Invalid input: the body says which field and why."),
    401: OpenApiResponse(ErrorSerializer, description="Not authenticated."),
    403: OpenApiResponse(ErrorSerializer, description="Your role may not do this."),
}


class OrderListCreateApi(ListAPIView):
    """GET: orders you may see, filtered and paginated. POST: ingest one order."""

    serializer_class = OrderOutSerializer
    filterset_class = selectors.OrderFilter
    permission_classes = [IsAuthenticated, CanIngestOrders]

    def get_queryset(self):
        return selectors.order_visible_to(self.request.user).order_by("-received_at", "-id")

    @extend_schema(
        request=OrderInSerializer,
        responses={
            201: OrderOutSerializer,
            200: OrderOutSerializer,
            **_COMMON,
            413: OpenApiResponse(ErrorSerializer, description="Body too large."),
        },
        description="Ingest one order. 201 when created, 200 when updated or ignored "
        "(`X-Paidan-Ingest` says which); 400 with field errors when invalid.",
    )
    def post(self, request: Request) -> Response:
        result = services.order_ingest(payload=request.data, actor=user_actor(request.user))
        if result.status == "rejected":
            return Response(
                {"code": result.reason, "detail": "The order was not stored.", "errors": result.errors},
                status=status.HTTP_400_BAD_REQUEST,
            )
        # Whoever delivered the order sees what was stored, whatever their reading rights.
        order = result.order
        code = status.HTTP_201_CREATED if result.status == "created" else status.HTTP_200_OK
        response = Response(reusable(OrderOutSerializer).to_representation(order), status=code)
        response["X-Paidan-Ingest"] = (
            result.status if not result.reason else f"{result.status}; {result.reason}"
        )
        return response


class OrderBatchApi(APIView):
    permission_classes = [IsAuthenticated, CanIngestOrders]

    @extend_schema(
        request=OrderBatchInSerializer,
        responses={
            200: inline_serializer(
                "BatchResult",
                {
                    "created": serializers.IntegerField(),
                    "updated": serializers.IntegerField(),
                    "ignored": serializers.IntegerField(),
                    "rejected": serializers.IntegerField(),
                    "results": IngestResultSerializer(many=True),
                },
            ),
            **_COMMON,
            413: OpenApiResponse(ErrorSerializer, description="Body too large."),
        },
        description="Up to 1,000 orders. Each item is answered on its own; valid items are "
        "stored even when others fail.",
    )
    def post(self, request: Request) -> Response:
        # The envelope only; each item is validated on its own so that good ones are stored.
        raw = request.data.get("orders") if isinstance(request.data, dict) else None
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_BATCH:
            if isinstance(raw, list):
                got = f"a list of {len(raw)}"
            else:
                got = "no orders list" if raw is None else f"a {type(raw).__name__}"
            raise exceptions.ValidationError(
                {"orders": [f'Send {{"orders": [ … ]}} with 1 to {MAX_BATCH:,} orders; got {got}.']}
            )
        results = services.order_ingest_batch(payloads=raw, actor=user_actor(request.user))
        counts = {k: 0 for k in ("created", "updated", "ignored", "rejected")}
        for r in results:
            counts[r.status] += 1
        return Response({**counts, "results": [r.as_dict() for r in results]})


class OrderDetailApi(APIView):
    @extend_schema(responses={200: OrderDetailSerializer, 404: ErrorSerializer, 401: ErrorSerializer})
    def get(self, request: Request, order_id: int) -> Response:
        order = selectors.order_with_timeline(user=request.user, order_id=order_id)
        return Response(OrderDetailSerializer(order).data)

    @extend_schema(
        request=OrderEditSerializer,
        responses={200: OrderDetailSerializer, 404: ErrorSerializer, **_COMMON},
        description="Correct customer details or the note (customer service).",
    )
    def patch(self, request: Request, order_id: int) -> Response:
        _visible_or_404(request, order_id)
        data = OrderEditSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        reason = fields.pop("reason")
        if not fields:
            raise exceptions.ValidationError({"non_field_errors": ["Nothing to change."]})
        services.order_edit(order_id=order_id, actor=user_actor(request.user), changes=fields, reason=reason)
        order = selectors.order_with_timeline(user=request.user, order_id=order_id)
        return Response(OrderDetailSerializer(order).data)


class OrderTransitionApi(APIView):
    @extend_schema(
        request=TransitionInSerializer,
        responses={
            200: OrderOutSerializer,
            404: ErrorSerializer,
            409: OpenApiResponse(ErrorSerializer, description="Not a legal move from this stage."),
            **_COMMON,
        },
    )
    def post(self, request: Request, order_id: int) -> Response:
        _visible_or_404(request, order_id)
        data = TransitionInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        order = services.order_transition(
            order_id=order_id,
            to=data.validated_data["to"],
            reason=data.validated_data["reason"],
            actor=user_actor(request.user),
        )
        order = selectors.order_visible_to(request.user).get(pk=order.pk)
        return Response(OrderOutSerializer(order).data)


def _visible_or_404(request: Request, order_id: int) -> None:
    if not selectors.order_visible_to(request.user).filter(pk=order_id).exists():
        raise Http404(f"Order {order_id} does not exist.")
