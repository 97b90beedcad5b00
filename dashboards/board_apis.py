"""The board's JSON API: columns in keyset pages, counts, cards by id (for live updates), one
order's timeline (the drawer), and alerts with their acknowledgement. Reads go through
dashboards.board_selectors (and so orders.selectors.order_visible_to); moving a card is the
order transition API."""

from __future__ import annotations

from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dashboards import board_selectors as board
from dashboards.board_services import AlertAlreadyAcknowledged, alert_acknowledge
from orders.apis import ErrorSerializer
from orders.models import Order


class CanUseBoard(BasePermission):
    message = "The board is for supervisors, admins, customer service, warehouse and risk reviewers; agents have their queue page."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return board.may_use_board(request.user)


class CanSeeAlerts(BasePermission):
    message = "Alerts are for supervisors and admins."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return board.may_see_alerts(request.user)


def _invalid(exc: board.BoardInputError) -> Response:
    """400 naming every bad parameter; nothing is read or written."""
    return Response(
        {"code": "invalid_parameters", "detail": str(exc), "errors": exc.errors},
        status=status.HTTP_400_BAD_REQUEST,
    )


def _collect(errors: dict[str, str], parse):
    """Run one parser; its complaints join `errors` so one 400 names every bad parameter."""
    try:
        return parse()
    except board.BoardInputError as exc:
        errors.update(exc.errors)
        return None


# --- Schema (documentation only: the answers are built by dashboards.board_selectors) -------
class BoardCardExceptionSerializer(serializers.Serializer):
    type = serializers.CharField(allow_null=True)
    owner = serializers.CharField(allow_null=True)
    team = serializers.CharField(allow_null=True)


class BoardCardSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    tag = serializers.CharField()
    stage = serializers.CharField()
    held_stage = serializers.CharField()
    channel = serializers.CharField()
    channel_name = serializers.CharField()
    customer = serializers.CharField()
    vip = serializers.BooleanField()
    amount = serializers.CharField()
    currency = serializers.CharField()
    owner = serializers.CharField(allow_null=True)
    owner_username = serializers.CharField(allow_null=True)
    due_at = serializers.DateTimeField(allow_null=True)
    stage_entered_at = serializers.DateTimeField()
    flags = serializers.ListField(child=serializers.CharField())
    risk_score = serializers.FloatField()
    urgency = serializers.CharField()
    province = serializers.CharField()
    city = serializers.CharField()
    sla_level = serializers.IntegerField()
    late = serializers.BooleanField(help_text="Past its due time, or in this stage over 2 hours.")
    exception = BoardCardExceptionSerializer(allow_null=True)


class BoardColumnPageSerializer(serializers.Serializer):
    cards = BoardCardSerializer(many=True)
    next = serializers.CharField(allow_null=True)


class BoardCountsSerializer(serializers.Serializer):
    pending_review = serializers.IntegerField()
    picking = serializers.IntegerField()
    shipping = serializers.IntegerField()
    done = serializers.IntegerField(help_text="Done in the last 24 hours.")
    exception = serializers.IntegerField()
    quarantined = serializers.IntegerField()


class BoardBadInputSerializer(serializers.Serializer):
    code = serializers.CharField()
    detail = serializers.CharField()
    errors = serializers.DictField(child=serializers.CharField())


_FLAG = {"type": "string", "enum": sorted(board._TRUE | board._FALSE)}
_IDS = {"type": "string", "pattern": rf"^\d{{1,18}}(,\d{{1,18}}){{0,{board.MAX_IDS - 1}}}$"}
_FILTER_PARAMS = [
    OpenApiParameter("channel", str, description="Channel code."),
    OpenApiParameter("region", str, description="Region code: orders delivered to its provinces."),
    OpenApiParameter(
        "team", str, description="Team code: orders its agents own or whose open exception it works."
    ),
    OpenApiParameter("agent", str, description="Username: orders they own or whose open exception they own."),
    OpenApiParameter("flagged", _FLAG, description="1: only flagged orders; 0: only unflagged."),
    OpenApiParameter(
        "overdue", _FLAG, description="1: only red cards (past due, or over 2 hours in the stage)."
    ),
    OpenApiParameter(
        "q",
        {"type": "string", "maxLength": 100},
        description="Text in the tag, external id, customer name, phone or address.",
    ),
]
_ERRORS = {
    400: OpenApiResponse(BoardBadInputSerializer, description="A bad filter, stage, cursor, limit or ids."),
    401: OpenApiResponse(ErrorSerializer, description="Not authenticated."),
    403: OpenApiResponse(ErrorSerializer, description="This account has no board."),
}


# --- The board ------------------------------------------------------------------------------
class BoardApi(APIView):
    permission_classes = [IsAuthenticated, CanUseBoard]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "stage",
                str,
                enum=[s.value for s in board.ON_BOARD],
                description="One column or lane; without it, the first page of each.",
            ),
            OpenApiParameter("cursor", str, description="`next` of the previous page of that stage."),
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": board.MAX_PAGE},
                description=f"Cards per page (default {board.PAGE_SIZE}).",
            ),
            *_FILTER_PARAMS,
        ],
        responses={
            200: inline_serializer(
                "BoardColumns",
                {
                    "stage": serializers.CharField(required=False),
                    "cards": BoardCardSerializer(many=True, required=False),
                    "next": serializers.CharField(allow_null=True, required=False),
                    "columns": serializers.DictField(child=BoardColumnPageSerializer(), required=False),
                    "counts": BoardCountsSerializer(),
                    "server_time": serializers.DateTimeField(),
                },
            ),
            **_ERRORS,
        },
        description="Cards of the board's columns (pending review, picking, shipping, done of the last "
        "24 hours) and lanes (exception, quarantined), most urgent due time first (done: latest "
        "first), in keyset pages; with `stage`, one page of that column.",
    )
    def get(self, request: Request) -> Response:
        now = timezone.now()
        params = request.query_params
        errors: dict[str, str] = {}
        filters = _collect(errors, lambda: board.parse_board_filters(params))
        stage = _collect(errors, lambda: board.parse_stage(params["stage"])) if params.get("stage") else None
        limit = _collect(errors, lambda: board.parse_limit(params.get("limit")))
        if params.get("cursor") and not params.get("stage"):
            errors["cursor"] = _("A cursor pages one column: give its stage too.")
        if errors:
            return _invalid(board.BoardInputError(errors))
        orders = board.board_orders(request.user, filters, now=now)
        body: dict = {}
        if stage is None:
            body["columns"] = board.first_pages(orders, now=now, limit=limit)
        else:
            try:
                cards, cursor = board.column_page(
                    orders, stage=stage, cursor=params.get("cursor") or None, limit=limit, now=now
                )
            except board.BoardInputError as exc:
                return _invalid(exc)
            body.update(stage=stage.value, cards=cards, next=cursor)
        body["counts"] = board.board_counts(orders)
        body["server_time"] = now.isoformat()
        return Response(body)


class BoardCountsApi(APIView):
    permission_classes = [IsAuthenticated, CanUseBoard]

    @extend_schema(
        parameters=_FILTER_PARAMS,
        responses={
            200: inline_serializer(
                "BoardCountsAnswer",
                {"counts": BoardCountsSerializer(), "open_alerts": serializers.IntegerField(allow_null=True)},
            ),
            **_ERRORS,
        },
        description="Cards per column and lane under the filters, and the open alerts the caller "
        "sees (null for accounts without alerts).",
    )
    def get(self, request: Request) -> Response:
        try:
            filters = board.parse_board_filters(request.query_params)
        except board.BoardInputError as exc:
            return _invalid(exc)
        counts = board.board_counts(board.board_orders(request.user, filters, now=timezone.now()))
        alerts = None
        if board.may_see_alerts(request.user):
            alerts = board.alerts_visible_to(request.user).filter(acknowledged_at__isnull=True).count()
        return Response({"counts": counts, "open_alerts": alerts})


class BoardCardsApi(APIView):
    permission_classes = [IsAuthenticated, CanUseBoard]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "ids", _IDS, required=True, description="Order ids, comma-separated (at most 500)."
            ),
            *_FILTER_PARAMS,
        ],
        responses={
            200: inline_serializer(
                "BoardCards", {"cards": BoardCardSerializer(many=True), "counts": BoardCountsSerializer()}
            ),
            **_ERRORS,
        },
        description="The cards among `ids` that are on the caller's board under the filters, and "
        "fresh counts. An id left out has left the board for this caller: its card goes.",
    )
    def get(self, request: Request) -> Response:
        now = timezone.now()
        try:
            filters = board.parse_board_filters(request.query_params)
            ids = board.parse_ids(request.query_params.get("ids"))
        except board.BoardInputError as exc:
            return _invalid(exc)
        orders = board.board_orders(request.user, filters, now=now)
        return Response(
            {"cards": board.cards_by_id(orders, ids, now=now), "counts": board.board_counts(orders)}
        )


class OrderTimelineApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={
            200: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="`order` (details) and `events` (the audit trail, oldest first).",
            ),
            401: OpenApiResponse(ErrorSerializer, description="Not authenticated."),
            404: OpenApiResponse(
                ErrorSerializer, description="No such order, or not one the caller may see."
            ),
        },
        description="One order's details and its whole timeline, with stage and event labels in "
        "the request's language (the board's drawer).",
    )
    def get(self, request: Request, order_id: int) -> Response:
        try:
            data = board.order_timeline(user=request.user, order_id=order_id, now=timezone.now())
        except Order.DoesNotExist:
            return Response(
                {"code": "not_found", "detail": f"Order {order_id} does not exist."},
                status=status.HTTP_404_NOT_FOUND,
            )
        return Response(data)


# --- Alerts ------------------------------------------------------------------------------------
class BoardAlertOrderSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    tag = serializers.CharField()


class BoardAlertSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    kind_label = serializers.CharField()
    level = serializers.IntegerField()
    message = serializers.CharField()
    region = serializers.CharField(allow_null=True)
    order = BoardAlertOrderSerializer(allow_null=True)
    created_at = serializers.DateTimeField()
    acknowledged_at = serializers.DateTimeField(allow_null=True)
    acknowledged_by = serializers.CharField(allow_null=True)


MAX_ALERTS = 200


class AlertListApi(APIView):
    permission_classes = [IsAuthenticated, CanSeeAlerts]

    @extend_schema(
        parameters=[
            OpenApiParameter("open", _FLAG, description="1: only alerts nobody acknowledged yet."),
            OpenApiParameter("ids", _IDS, description="Only these alert ids, comma-separated."),
        ],
        responses={
            200: inline_serializer(
                "BoardAlerts",
                {"results": BoardAlertSerializer(many=True), "open_count": serializers.IntegerField()},
            ),
            400: OpenApiResponse(BoardBadInputSerializer, description="Bad `open` or `ids`."),
            401: OpenApiResponse(ErrorSerializer, description="Not authenticated."),
            403: OpenApiResponse(ErrorSerializer, description="Only supervisors and admins see alerts."),
        },
        description=f"The alerts of the caller's regions, newest first (at most {MAX_ALERTS}).",
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        qs = board.alerts_visible_to(request.user)
        try:
            errors: dict[str, str] = {}
            only_open = board.parse_flag(params, "open", errors)
            if errors:
                raise board.BoardInputError(errors)
            if params.get("ids"):
                qs = qs.filter(pk__in=board.parse_ids(params.get("ids")))
        except board.BoardInputError as exc:
            return _invalid(exc)
        open_count = board.alerts_visible_to(request.user).filter(acknowledged_at__isnull=True).count()
        if only_open:
            qs = qs.filter(acknowledged_at__isnull=True)
        alerts = qs.order_by("-created_at", "-id")[:MAX_ALERTS]
        return Response({"results": [board.alert_data(a) for a in alerts], "open_count": open_count})


class AlertAckApi(APIView):
    permission_classes = [IsAuthenticated, CanSeeAlerts]

    @extend_schema(
        request=None,
        responses={
            200: BoardAlertSerializer,
            401: OpenApiResponse(ErrorSerializer, description="Not authenticated."),
            403: OpenApiResponse(
                ErrorSerializer, description="Only supervisors and admins acknowledge alerts."
            ),
            404: OpenApiResponse(ErrorSerializer, description="No such alert in the caller's regions."),
            409: OpenApiResponse(ErrorSerializer, description="Already acknowledged: says by whom and when."),
        },
        description="Acknowledge an alert of one of your regions; the other boards drop it from their list.",
    )
    def post(self, request: Request, alert_id: int) -> Response:
        if not board.alerts_visible_to(request.user).filter(pk=alert_id).exists():
            return Response(
                {"code": "not_found", "detail": f"Alert {alert_id} does not exist."},
                status=status.HTTP_404_NOT_FOUND,
            )
        try:
            alert = alert_acknowledge(alert_id=alert_id, user=request.user)
        except AlertAlreadyAcknowledged as exc:
            return Response(
                {"code": exc.code, "detail": str(exc), "alert": board.alert_data(exc.alert)}, status=409
            )
        return Response(board.alert_data(alert))
