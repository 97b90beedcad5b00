"""Risk review URLs: the API under /api/ and the reviewers' pages under /risk/."""

from django.urls import path

from riskcontrol import apis, views

app_name = "riskcontrol"

urlpatterns = [
    path("api/reviews/", apis.ReviewListApi.as_view(), name="api-reviews"),
    path("api/reviews/<int:review_id>/", apis.ReviewDetailApi.as_view(), name="api-review"),
    path("api/reviews/<int:review_id>/decide/", apis.ReviewDecideApi.as_view(), name="api-review-decide"),
    path("risk/reviews/", views.review_list, name="reviews"),
    path("risk/reviews/<int:review_id>/", views.review_detail, name="review"),
    path("risk/report/", views.rule_report, name="report"),
]
