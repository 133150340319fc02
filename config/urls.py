"""URL map: web UI, API v1, OpenAPI schema and docs, health probes, admin, error handlers."""

from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from core import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("changes.auth_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI with its init script served as a file (strict CSP); its page keeps a small
    # inline <style>, the one relaxation, on this page only. Redoc (inline script) is gone.
    path(
        "api/docs/",
        csp_update({"style-src": ["'unsafe-inline'"]})(
            SpectacularSwaggerSplitView.as_view(url_name="schema")
        ),
        name="api-docs",
    ),
    path("api/v1/", include("changes.api_urls")),
    path("api/v1/", include("evaluations.api_urls")),
    path("api/v1/", include("attestations.api_urls")),
    path("api/v1/", include("reviews.api_urls")),
    path("evaluations/", include("evaluations.urls")),
    path("attestations/", include("attestations.urls")),
    path("reviews/", include("reviews.urls")),
    path("api/v1/", include("monitoring.api_urls")),
    path("monitoring/", include("monitoring.urls")),
    path("", include("changes.urls")),
]

# Styled pages for people, {"detail", "code"} JSON under /api/ (config/error_views.py).
handler400 = "config.error_views.bad_request"
handler403 = "config.error_views.permission_denied"
handler404 = "config.error_views.page_not_found"
handler500 = "config.error_views.server_error"
