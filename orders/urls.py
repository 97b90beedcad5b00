from django.urls import path

from orders import apis

app_name = "orders"

urlpatterns = [
    path("orders/", apis.OrderListCreateApi.as_view(), name="list"),
    path("orders/batch/", apis.OrderBatchApi.as_view(), name="batch"),
    path("orders/<int:order_id>/", apis.OrderDetailApi.as_view(), name="detail"),
    path("orders/<int:order_id>/transition/", apis.OrderTransitionApi.as_view(), name="transition"),
]
