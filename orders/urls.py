from django.urls import path

from orders import apis, exception_apis

app_name = "orders"

urlpatterns = [
    path("orders/", apis.OrderListCreateApi.as_view(), name="list"),
    path("orders/batch/", apis.OrderBatchApi.as_view(), name="batch"),
    path("orders/<int:order_id>/", apis.OrderDetailApi.as_view(), name="detail"),
    path("orders/<int:order_id>/transition/", apis.OrderTransitionApi.as_view(), name="transition"),
    path(
        "orders/<int:order_id>/exceptions/",
        exception_apis.OrderExceptionRaiseApi.as_view(),
        name="exception-raise",
    ),
    path("exceptions/", exception_apis.ExceptionListApi.as_view(), name="exceptions"),
    path(
        "exceptions/<int:case_id>/resolve/",
        exception_apis.ExceptionResolveApi.as_view(),
        name="exception-resolve",
    ),
    path("exception-types/", exception_apis.ExceptionTypeListApi.as_view(), name="exception-types"),
]
