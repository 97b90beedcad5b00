"""Exception REST API: raise one on an order, resolve it, list the cases you may see, and the
types there are. Domain refusals become 403/409 in orders.apis.exception_handler; bad input
is answered here as a 400 naming the field."""

from __future__ import annotations

from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from orders import exception_selectors as selectors
from orders import exceptions as services
from orders.actors import user_actor
from orders.apis import ErrorSerializer
from orders.exception_serializers import (
    ExceptionCaseSerializer,
    ExceptionRaiseSerializer,
    ExceptionResolveSerializer,
    ExceptionTypeSerializer,
)
from orders.models import ExceptionCase
from orders.selectors import order_visible_to

_ERRORS = {
    400: OpenApiResponse(description="Invalid input: `errors` says which field and why."),
    401: OpenApiResponse(ErrorSerializer, description="Not authenticated."),
    403: OpenApiResponse(ErrorSerializer, description="Your role may not do this."),
    404: OpenApiResponse(ErrorSerializer, description="No such order or exception that you may see."),
    409: OpenApiResponse(
        ErrorSerializer,
        description="The order or the case does not allow it: closed order, an exception already open, "
        "already resolved, or a stage move the state machine refuses.",
    ),
}


def _bad_input(code: str, detail: str, errors: dict) -> Response:
    return Response({"code": code, "detail": detail, "errors": errors}, status=status.HTTP_400_BAD_REQUEST)


def _validated(serializer: serializers.Serializer) -> dict | Response:
    if serializer.is_valid():
        return serializer.validated_data
    return _bad_input("invalid", _("The request was not valid; nothing was stored."), serializer.errors)


def _not_found(detail: str) -> Response:
    return Response({"code": "not_found", "detail": detail}, status=status.HTTP_404_NOT_FOUND)


class OrderExceptionRaiseApi(APIView):
    @extend_schema(
        request=ExceptionRaiseSerializer,
        responses={201: ExceptionCaseSerializer, **_ERRORS},
        description="Raise an exception on an order. Holding types (reconfirm, stock_lock, hold) move the "
        "order to the exception lane and give the case to an agent of the type's team; a reschedule "
        "type needs `delay_until`, notes the delay, moves the due time, texts the customer and is "
        "stored already resolved.",
    )
    def post(self, request: Request, order_id: int) -> Response:
        if not order_visible_to(request.user).filter(pk=order_id).exists():
            return _not_found(_("Order %(id)s does not exist.") % {"id": order_id})
        data = _validated(ExceptionRaiseSerializer(data=request.data))
        if isinstance(data, Response):
            return data
        try:
            case = services.exception_raise(
                order_id=order_id,
                type_code=data["type"],
                note=data["note"],
                delay_until=data["delay_until"],
                actor=user_actor(request.user),
            )
        except services.ExceptionInputInvalid as exc:
            return _bad_input(exc.code, exc.message, {exc.field: [exc.message]})
        case = selectors.exception_visible_to(request.user).filter(pk=case.pk).first() or case
        return Response(ExceptionCaseSerializer(case).data, status=status.HTTP_201_CREATED)


class ExceptionResolveApi(APIView):
    @extend_schema(
        request=ExceptionResolveSerializer,
        responses={200: ExceptionCaseSerializer, **_ERRORS},
        description="Resolve an open exception: the order returns to the stage it was held in and the "
        "customer gets the type's message by SMS.",
    )
    def post(self, request: Request, case_id: int) -> Response:
        if not selectors.exception_visible_to(request.user).filter(pk=case_id).exists():
            return _not_found(_("Exception %(id)s does not exist.") % {"id": case_id})
        data = _validated(ExceptionResolveSerializer(data=request.data))
        if isinstance(data, Response):
            return data
        try:
            services.exception_resolve(
                case_id=case_id, resolution=data["resolution"], actor=user_actor(request.user)
            )
        except services.ExceptionInputInvalid as exc:
            return _bad_input(exc.code, exc.message, {exc.field: [exc.message]})
        except services.ExceptionNotFound as exc:
            return _not_found(str(exc))
        case = selectors.exception_visible_to(request.user).get(pk=case_id)
        return Response(ExceptionCaseSerializer(case).data)


class ExceptionListApi(ListAPIView):
    """Exception cases you may see, newest first: `?status=open`, `?mine=true` (the cases you own),
    `?order=<id>`, `?type=<code>`, `?team=<code>`."""

    serializer_class = ExceptionCaseSerializer
    filterset_class = selectors.ExceptionCaseFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user, no database
            return ExceptionCase.objects.none()
        return selectors.exception_visible_to(self.request.user).order_by("-raised_at", "-id")

    @extend_schema(
        responses={
            200: ExceptionCaseSerializer(many=True),
            400: OpenApiResponse(description="A filter value is not valid; the body names it."),
            401: _ERRORS[401],
        }
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class ExceptionTypeListApi(ListAPIView):
    """The active exception types, for a form's choices."""

    serializer_class = ExceptionTypeSerializer
    pagination_class = None
    filter_backends: list = []

    def get_queryset(self):
        return selectors.exception_types_active()

    @extend_schema(responses={200: ExceptionTypeSerializer(many=True), 401: _ERRORS[401]})
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)
