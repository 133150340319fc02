from django.apps import AppConfig


class ChangesConfig(AppConfig):
    """Systems, protocol versions, change requests, reviews, deployments and the audit log."""

    name = "changes"
    verbose_name = "Protocol changes"

    def ready(self):
        from core import ports

        from . import audit
        from .models import ApiToken

        ports.register_audit_writer(audit.append)
        ports.register_token_model(ApiToken)

        from . import (  # noqa: F401
            audit_auth,  # login/logout/failure auditing
            audit_roles,  # role, team and account-flag auditing
            env_services,  # default environments for new systems
            tokens,  # token revocation on password change
        )
