from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core.api.time import ServerTimeApi
from core.views import healthz, metrics

api_patterns: list[URLPattern | URLResolver] = [
    path("", include("accounts.api.urls")),
    path("", include("orders.api.urls")),
    path("", include("flywheel.api.urls")),
    path("", include("revenue.api.urls")),
    path("time", ServerTimeApi.as_view(), name="api-time"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

urlpatterns = [
    path("api/", include(api_patterns)),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("metrics", metrics, name="metrics"),
    path("", include("config.page_urls")),
]

handler400 = "core.views.bad_request"
handler404 = "core.views.not_found"
handler500 = "core.views.server_error"
