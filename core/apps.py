from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The platform layer every app uses: errors, roles, token auth, limits, API and page kits.

    No models and no imports of the domain apps; what it needs from them (the audit log, the
    token model) is lent through ``core.ports`` at their ``ready``.
    """

    name = "core"
    verbose_name = "Platform"
