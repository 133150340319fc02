from django.apps import AppConfig


class ChangesConfig(AppConfig):
    """Systems, protocol versions, change requests, reviews, deployments and the audit log."""

    name = "changes"
    verbose_name = "Protocol changes"

    def ready(self):
        # Connect login/logout/failure auditing, and role, team and account-flag auditing.
        from . import audit_auth, audit_roles, tokens  # noqa: F401
