"""API v1 routes of the monitoring app (mounted under ``/api/v1/``)."""

from django.urls import path

from . import apis

urlpatterns = [
    path("changes/<int:pk>/monitor/", apis.MonitorApi.as_view(), name="api-change-monitor"),
    path(
        "systems/<int:pk>/monitoring/",
        apis.MonitoringStatusApi.as_view(),
        name="api-system-monitoring",
    ),
    path(
        "systems/<int:pk>/decisions/",
        apis.DecisionIngestApi.as_view(),
        name="api-decision-ingest",
    ),
    path(
        "systems/<int:pk>/otlp/v1/traces",
        apis.OtlpTracesApi.as_view(),
        name="api-otlp-traces",
    ),
    path(
        "systems/<int:pk>/ingest-tokens/<int:token_pk>/",
        apis.IngestTokenRevokeApi.as_view(),
        name="api-ingest-token-revoke",
    ),
    path(
        "systems/<int:pk>/ingest-tokens/",
        apis.IngestTokenApi.as_view(),
        name="api-ingest-token-create",
    ),
]
