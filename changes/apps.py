from django.apps import AppConfig


class ChangesConfig(AppConfig):
    """Systems, protocol versions, change requests, reviews, deployments and the audit log."""

    name = "changes"
    verbose_name = "Protocol changes"

    def ready(self):
        from . import (
            audit_auth,  # noqa: F401  (connects login/logout/failure auditing)
            env_services,  # noqa: F401  (default environments for new systems)
        )
