from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from core.api.time import ServerTimeApi
from core.views import api_not_found, docs_page, healthz, metrics

api_patterns: list[URLPattern | URLResolver] = [
    path("", include("accounts.api.urls")),
    path("", include("orders.api.urls")),
    path("", include("flywheel.api.urls")),
    path("", include("revenue.api.urls")),
    path("time", ServerTimeApi.as_view(), name="api-time"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Swagger UI and Redoc from the project's static files (drf-spectacular-sidecar): offline.
    path("docs/", docs_page(SpectacularSwaggerView.as_view(url_name="api-schema")), name="api-docs"),
    path("redoc/", docs_page(SpectacularRedocView.as_view(url_name="api-schema")), name="api-redoc"),
    # Last: every other /api/ path answers the envelope's 404, DEBUG or not.
    re_path(r"^(?P<path>[\s\S]*)\Z", api_not_found, name="api-not-found"),  # line breaks too
]

urlpatterns = [
    path("api/", include(api_patterns)),
    path("api", api_not_found),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("metrics", metrics, name="metrics"),
    path("", include("config.page_urls")),
]

handler400 = "core.views.bad_request"
handler404 = "core.views.not_found"
handler500 = "core.views.server_error"
