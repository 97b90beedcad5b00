"""Risk review REST API: the reviews a reviewer may see, one review with its hits and
decisions, and the decision itself."""

from __future__ import annotations

import django_filters
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.generics import ListAPIView
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from orders.actors import roles_of
from orders.apis import _COMMON, ErrorSerializer
from orders.selectors import AnyOfFilter
from riskcontrol import selectors, services
from riskcontrol.models import Review
from riskcontrol.serializers import ReviewDecideInSerializer, ReviewDetailSerializer, ReviewListSerializer


class MayReview(BasePermission):
    message = _("Only risk reviewers, supervisors and admins may work on risk reviews.")

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(roles_of(request.user) & selectors.REVIEW_ROLES)


class ReviewFilter(django_filters.FilterSet):
    state = AnyOfFilter(choices=Review.State.choices)

    class Meta:
        model = Review
        fields = ["state"]


def visible_review(user, review_id: int) -> Review:
    review = selectors.review_detail_queryset(user).filter(pk=review_id).first()
    if review is None:
        raise Http404(f"Review {review_id} does not exist.")
    return review


_NOT_VISIBLE = OpenApiResponse(ErrorSerializer, description="No such review, or not one you may see.")


class ReviewListApi(ListAPIView):
    """Reviews you may see, open ones first: admins all, supervisors their regions' and risk
    reviewers those offered to, taken by or decided by them."""

    serializer_class = ReviewListSerializer
    filterset_class = ReviewFilter
    permission_classes = [IsAuthenticated, MayReview]

    def get_queryset(self):
        return selectors.open_first(
            selectors.reviews_visible_to(self.request.user).select_related("decided_by")
        )

    @extend_schema(responses={200: ReviewListSerializer(many=True), **_COMMON})
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class ReviewDetailApi(APIView):
    permission_classes = [IsAuthenticated, MayReview]

    @extend_schema(
        responses={200: ReviewDetailSerializer, 404: _NOT_VISIBLE, **_COMMON},
        description="One review: the order, every rule hit with its weight and explanation, "
        "and the decisions taken so far.",
    )
    def get(self, request: Request, review_id: int) -> Response:
        return Response(ReviewDetailSerializer(visible_review(request.user, review_id)).data)


class ReviewDecideApi(APIView):
    permission_classes = [IsAuthenticated, MayReview]

    @extend_schema(
        request=ReviewDecideInSerializer,
        responses={
            200: ReviewDetailSerializer,
            404: _NOT_VISIBLE,
            409: OpenApiResponse(ErrorSerializer, description="The review is already closed; says how."),
            **_COMMON,
        },
        description="Decide a review. `confirmed` cancels the order and may blacklist its IP, "
        "phone, device and card (`blacklist`, for `blacklist_days` or for good); "
        "`false_positive` releases it to pending review; `investigate` keeps it held and the "
        "review open. 400 writes nothing.",
    )
    def post(self, request: Request, review_id: int) -> Response:
        review = visible_review(request.user, review_id)
        data = ReviewDecideInSerializer(data=request.data, context={"order": review.order})
        data.is_valid(raise_exception=True)
        try:
            services.review_decide(review_id=review.pk, user=request.user, **data.validated_data)
        except DjangoValidationError as exc:  # a stored value the blacklist refuses
            raise exceptions.ValidationError({"blacklist": exc.messages}) from exc
        return Response(ReviewDetailSerializer(visible_review(request.user, review.pk)).data)
