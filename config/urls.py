from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.utils.translation import gettext as _
from django.views.defaults import page_not_found
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from dashboards import login_limits
from orders.webhooks import receive_webhook

urlpatterns = [
    # Ahead of admin.site.urls: the admin's login with failed attempts limited (429).
    path("admin/login/", login_limits.admin_login),
    path("admin/", admin.site.urls),
    path("login/", login_limits.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # GET only: its HTML-only renderer cannot answer OPTIONS, which was a 500 for anyone
    # (tests/test_role_matrix_writes.py).
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="schema", http_method_names=["get", "head"]),
        name="api-docs",
    ),
    path("api/", include("orders.urls")),
    path("api/", include("dispatch.urls")),
    path("api/", include("dashboards.notification_apis")),
    path("hooks/<slug:channel_code>/", receive_webhook, name="webhook"),
    path("", include("riskcontrol.urls")),
    path("", include("dashboards.urls")),
]


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """A URL under /api/ or /hooks/ that matches no endpoint (a typo, an id that is not a
    number) is answered in the API's own error body, not with the HTML page people get."""
    if request.path.startswith(("/api/", "/hooks/")):
        detail = _("There is no API endpoint at %(path)s.") % {"path": request.path}
        return JsonResponse({"code": "not_found", "detail": detail}, status=404)
    return page_not_found(request, exception)


handler404 = not_found
