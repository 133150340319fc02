"""API v1 routes (mounted under ``/api/v1/``). Explicit paths: integer ids, no format
suffixes, and only the methods each resource supports (anything else is 405)."""

from django.urls import path

from . import apis, audit_apis, env_apis

LIST = {"get": "list"}
LIST_CREATE = {"get": "list", "post": "create"}
DETAIL = {"get": "retrieve"}

urlpatterns = [
    path("auth/token/", apis.TokenApi.as_view(), name="api-token"),
    path("auth/token/rotate/", apis.TokenRotateApi.as_view(), name="api-token-rotate"),
    path("auth/token/revoke/", apis.TokenRevokeApi.as_view(), name="api-token-revoke"),
    path("teams/", apis.TeamViewSet.as_view(LIST), name="api-team-list"),
    path("teams/<int:pk>/", apis.TeamViewSet.as_view(DETAIL), name="api-team-detail"),
    path("systems/", apis.SystemViewSet.as_view(LIST_CREATE), name="api-system-list"),
    path("systems/<int:pk>/", apis.SystemViewSet.as_view(DETAIL), name="api-system-detail"),
    path(
        "systems/<int:system_pk>/protocols/",
        apis.ProtocolVersionViewSet.as_view(LIST_CREATE),
        name="api-protocol-list",
    ),
    path(
        "systems/<int:system_pk>/protocols/diff/",
        apis.ProtocolDiffApi.as_view(),
        name="api-protocol-diff",
    ),
    path(
        "systems/<int:system_pk>/protocols/<int:pk>/",
        apis.ProtocolVersionViewSet.as_view(DETAIL),
        name="api-protocol-detail",
    ),
    path("changes/", apis.ChangeViewSet.as_view(LIST_CREATE), name="api-change-list"),
    path(
        "changes/<int:pk>/",
        apis.ChangeViewSet.as_view({"get": "retrieve", "patch": "partial_update"}),
        name="api-change-detail",
    ),
    path("changes/<int:pk>/submit/", apis.ChangeSubmitApi.as_view(), name="api-change-submit"),
    path(
        "changes/<int:pk>/withdraw/", apis.ChangeWithdrawApi.as_view(), name="api-change-withdraw"
    ),
    path(
        "changes/<int:pk>/emergency/confirm/",
        apis.ChangeEmergencyConfirmApi.as_view(),
        name="api-change-emergency-confirm",
    ),
    path("changes/<int:pk>/close/", apis.ChangeCloseApi.as_view(), name="api-change-close"),
    path("changes/<int:pk>/reviews/", apis.ChangeReviewsApi.as_view(), name="api-change-reviews"),
    path("changes/<int:pk>/gate/", apis.ChangeGateApi.as_view(), name="api-change-gate"),
    path("changes/<int:pk>/deploy/", apis.ChangeDeployApi.as_view(), name="api-change-deploy"),
    path(
        "changes/<int:pk>/timeline/", apis.ChangeTimelineApi.as_view(), name="api-change-timeline"
    ),
    path(
        "systems/<int:pk>/environments/",
        env_apis.SystemEnvironmentsApi.as_view(),
        name="api-system-environments",
    ),
    path(
        "systems/<int:pk>/environments/<slug:env>/",
        env_apis.EnvironmentDetailApi.as_view(),
        name="api-environment-detail",
    ),
    path(
        "systems/<int:pk>/environments/<slug:env>/history/",
        env_apis.EnvironmentHistoryApi.as_view(),
        name="api-environment-history",
    ),
    path("changes/<int:pk>/rollback/", env_apis.ChangeRollbackApi.as_view(), name="api-rollback"),
    path("changes/<int:pk>/rebase/", env_apis.ChangeRebaseApi.as_view(), name="api-rebase"),
    path("changes/<int:pk>/stages/", env_apis.ChangeStagesApi.as_view(), name="api-stages"),
    path("changes/<int:pk>/stage/", env_apis.ChangeStageApi.as_view(), name="api-stage"),
    path("audit/events/", audit_apis.AuditEventsApi.as_view(), name="api-audit-events"),
    path("audit/verify/", audit_apis.AuditVerifyApi.as_view(), name="api-audit-verify"),
]
