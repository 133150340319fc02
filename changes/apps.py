from django.apps import AppConfig


class ChangesConfig(AppConfig):
    """Systems, protocol versions, change requests, reviews, deployments and the audit log."""

    name = "changes"
    verbose_name = "Protocol changes"

    def ready(self):
        from . import (  # noqa: F401
            audit_auth,  # login/logout/failure auditing
            audit_roles,  # role, team and account-flag auditing
            env_services,  # default environments for new systems
            tokens,  # token revocation on password change
        )
