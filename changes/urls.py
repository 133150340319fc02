"""Web UI routes (server-rendered pages; htmx partials under the same views)."""

from django.urls import path

from .views import actions, audit_pages, changes, environments, systems

urlpatterns = [
    path("", changes.dashboard, name="dashboard"),
    path("changes/", changes.change_list, name="change-list"),
    path("changes/new/", changes.change_create, name="change-create"),
    path("changes/protocol-options/", changes.protocol_options, name="protocol-options"),
    path("changes/<int:pk>/", changes.change_detail, name="change-detail"),
    path("changes/<int:pk>/edit/", changes.change_edit, name="change-edit"),
    path("changes/<int:pk>/submit/", actions.change_submit, name="change-submit"),
    path("changes/<int:pk>/withdraw/", actions.change_withdraw, name="change-withdraw"),
    path(
        "changes/<int:pk>/confirm-emergency/",
        actions.change_confirm_emergency,
        name="change-confirm-emergency",
    ),
    path("changes/<int:pk>/close/", actions.change_close, name="change-close"),
    path("changes/<int:pk>/deploy/", actions.change_deploy, name="change-deploy"),
    path(
        "changes/<int:pk>/deploy/confirm/",
        actions.change_deploy_confirm,
        name="change-deploy-confirm",
    ),
    path("changes/<int:pk>/review/", actions.change_review, name="change-review"),
    path("changes/<int:pk>/rollback/", environments.change_rollback, name="change-rollback"),
    path("changes/<int:pk>/rebase/", environments.change_rebase, name="change-rebase"),
    path("preview/markdown/", changes.markdown_preview, name="markdown-preview"),
    path("systems/", systems.system_list, name="system-list"),
    path("systems/<int:pk>/", systems.system_detail, name="system-detail"),
    path("systems/<int:pk>/protocols/compare/", systems.protocol_compare, name="protocol-compare"),
    path("systems/<int:pk>/protocols/new/", systems.protocol_create, name="protocol-create"),
    path(
        "systems/<int:pk>/protocols/<int:protocol_pk>/",
        systems.protocol_detail,
        name="protocol-detail",
    ),
    path("audit/", audit_pages.audit_log, name="audit-log"),
    path("audit/verify/", audit_pages.audit_verify, name="audit-verify"),
    path("audit/changes/", audit_pages.audit_changes, name="audit-changes"),
]
