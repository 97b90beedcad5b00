from django.urls import path

from dashboards import board_apis, board_views, imports_views, queue_views, simulation_views, views
from dashboards.reports import views as report_views

app_name = "dashboards"

urlpatterns = [
    path("", views.order_list, name="order_list"),
    path("board/", board_views.board_page, name="board"),
    path("alerts/", board_views.alert_list, name="alerts"),
    path("alerts/<int:alert_id>/ack/", board_views.alert_ack, name="alert_ack"),
    path("orders/<int:order_id>/", views.order_detail, name="order_detail"),
    path("orders/export.csv", imports_views.order_export, name="order_export"),
    path("imports/", imports_views.import_upload, name="import_upload"),
    path("imports/<int:job_id>/", imports_views.import_detail, name="import_detail"),
    path("imports/<int:job_id>/status.json", imports_views.import_status, name="import_status"),
    path("imports/<int:job_id>/errors.csv", imports_views.import_errors, name="import_errors"),
    path("queue/", queue_views.agent_queue, name="agent_queue"),
    path("dispatch/manual/", queue_views.manual_queue, name="manual_queue"),
    path("dispatch/simulations/", simulation_views.simulation_list, name="simulations"),
    path("dispatch/simulations/<int:run_id>/", simulation_views.simulation_detail, name="simulation_detail"),
    path(
        "dispatch/simulations/<int:run_id>/status.json",
        simulation_views.simulation_status,
        name="simulation_status",
    ),
    path("reports/", report_views.report_index, name="reports"),
    path("reports/weekly/", report_views.report_weekly, name="report_weekly"),
    path("reports/<slug:slug>/", report_views.report_page, name="report"),
    # The board's JSON API (beside the order API's /api/orders/…).
    path("api/board/", board_apis.BoardApi.as_view(), name="board_api"),
    path("api/board/counts/", board_apis.BoardCountsApi.as_view(), name="board_counts_api"),
    path("api/board/cards/", board_apis.BoardCardsApi.as_view(), name="board_cards_api"),
    path(
        "api/orders/<int:order_id>/timeline/",
        board_apis.OrderTimelineApi.as_view(),
        name="order_timeline_api",
    ),
    path("api/alerts/", board_apis.AlertListApi.as_view(), name="alerts_api"),
    path("api/alerts/<int:alert_id>/ack/", board_apis.AlertAckApi.as_view(), name="alert_ack_api"),
]
