"""The in-app inbox API: the caller's notifications, and marking them read. Nobody sees or
marks anyone else's: another person's notification is simply not found."""

from __future__ import annotations

from django.urls import path, reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dashboards.models import Notification
from dashboards.notify import (
    NotificationNotFound,
    inbox_for,
    notification_mark_read,
    notifications_mark_all_read,
)
from orders.apis import ErrorSerializer


class NotificationOutSerializer(serializers.ModelSerializer):
    order_tag = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()
    is_read = serializers.SerializerMethodField()

    class Meta:
        model = Notification
        fields = [
            "id",
            "template",
            "subject",
            "body",
            "order",
            "order_tag",
            "url",
            "created_at",
            "read_at",
            "is_read",
        ]
        read_only_fields = fields

    def get_order_tag(self, obj: Notification) -> str | None:
        return obj.order.tag if obj.order_id and obj.order else None

    def get_url(self, obj: Notification) -> str | None:
        """Where clicking the message goes: the order's page."""
        return reverse("dashboards:order_detail", args=[obj.order_id]) if obj.order_id else None

    def get_is_read(self, obj: Notification) -> bool:
        return obj.read_at is not None


class _QueryBoolean(serializers.BooleanField):
    # Only an empty value means "not given"; DRF would also read the word "null" as that.
    NULL_VALUES = {"", None}


class InboxQuerySerializer(serializers.Serializer):
    # allow_null: absent is "all", not False (DRF reads a missing form boolean as False).
    unread = _QueryBoolean(required=False, allow_null=True, default=None)


class InboxPagination(PageNumberPagination):
    """Pages of the inbox, with the unread count the bell shows."""

    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100
    unread = 0

    def get_page_size(self, request: Request) -> int:
        # DRF falls back to the default for any value it cannot read; a typo gets a 400 instead.
        raw = request.query_params.get(self.page_size_query_param, "")
        if raw and not (raw.isascii() and raw.lstrip("-").isdigit()):
            raise ValidationError({self.page_size_query_param: [f"'{raw[:20]}' is not a whole number."]})
        return super().get_page_size(request)

    def get_paginated_response(self, data: list) -> Response:
        return Response(
            {
                "count": self.page.paginator.count,
                "unread": self.unread,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema: dict) -> dict:
        response = super().get_paginated_response_schema(schema)
        response["properties"]["unread"] = {
            "type": "integer",
            "example": 3,
            "description": "Your unread notifications, whatever the filter.",
        }
        response["required"] = [*response.get("required", []), "unread"]
        return response


class NotificationListApi(ListAPIView):
    """GET: your in-app notifications, newest first, with your unread count."""

    serializer_class = NotificationOutSerializer
    pagination_class = InboxPagination
    filter_backends: list = []

    def get_queryset(self):
        queryset = inbox_for(self.request.user)
        unread = self._query.get("unread")
        if unread is not None:
            queryset = queryset.filter(read_at__isnull=unread)
        return queryset

    @extend_schema(
        parameters=[
            OpenApiParameter("unread", bool, description="true: only unread; false: only read; absent: all."),
        ],
        responses={
            200: NotificationOutSerializer(many=True),
            400: OpenApiResponse(description="A query parameter is invalid; the body says which."),
            401: OpenApiResponse(ErrorSerializer, description="Not authenticated."),
            404: OpenApiResponse(ErrorSerializer, description="No such page."),
        },
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        query = InboxQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        self._query = query.validated_data
        self.paginator.unread = inbox_for(request.user).filter(read_at__isnull=True).count()
        return self.list(request, *args, **kwargs)


class NotificationReadApi(APIView):
    @extend_schema(
        request=None,
        responses={
            200: NotificationOutSerializer,
            401: OpenApiResponse(ErrorSerializer, description="Not authenticated."),
            404: OpenApiResponse(ErrorSerializer, description="You have no notification with this id."),
        },
        description="Mark one of your notifications read; marking it again changes nothing.",
    )
    def post(self, request: Request, notification_id: int) -> Response:
        try:
            notification = notification_mark_read(user=request.user, notification_id=notification_id)
        except NotificationNotFound as exc:
            return Response({"code": exc.code, "detail": str(exc)}, status=status.HTTP_404_NOT_FOUND)
        return Response(NotificationOutSerializer(notification).data)


class NotificationReadAllApi(APIView):
    @extend_schema(
        request=None,
        responses={
            200: inline_serializer("NotificationsMarked", {"marked": serializers.IntegerField()}),
            401: OpenApiResponse(ErrorSerializer, description="Not authenticated."),
        },
        description="Mark all your notifications read; `marked` says how many were unread.",
    )
    def post(self, request: Request) -> Response:
        return Response({"marked": notifications_mark_all_read(user=request.user)})


app_name = "notifications"

urlpatterns = [
    path("notifications/", NotificationListApi.as_view(), name="list"),
    path("notifications/read-all/", NotificationReadAllApi.as_view(), name="read-all"),
    path("notifications/<int:notification_id>/read/", NotificationReadApi.as_view(), name="read"),
]
