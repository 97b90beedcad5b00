from django.urls import path

from dashboards import imports_views, queue_views, views

app_name = "dashboards"

urlpatterns = [
    path("", views.order_list, name="order_list"),
    path("orders/<int:order_id>/", views.order_detail, name="order_detail"),
    path("orders/export.csv", imports_views.order_export, name="order_export"),
    path("imports/", imports_views.import_upload, name="import_upload"),
    path("imports/<int:job_id>/", imports_views.import_detail, name="import_detail"),
    path("imports/<int:job_id>/status.json", imports_views.import_status, name="import_status"),
    path("imports/<int:job_id>/errors.csv", imports_views.import_errors, name="import_errors"),
    path("queue/", queue_views.agent_queue, name="agent_queue"),
    path("dispatch/manual/", queue_views.manual_queue, name="manual_queue"),
]
