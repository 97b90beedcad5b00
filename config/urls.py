from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from orders.webhooks import receive_webhook

urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/", include("orders.urls")),
    path("api/", include("dispatch.urls")),
    path("api/", include("dashboards.notification_apis")),
    path("hooks/<slug:channel_code>/", receive_webhook, name="webhook"),
    path("", include("riskcontrol.urls")),
    path("", include("dashboards.urls")),
]
