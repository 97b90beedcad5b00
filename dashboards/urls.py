from django.urls import path

from dashboards import views

app_name = "dashboards"

urlpatterns = [
    path("", views.order_list, name="order_list"),
    path("orders/<int:order_id>/", views.order_detail, name="order_detail"),
]
