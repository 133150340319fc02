from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    """Live decisions, monitors, rollups, review sampling and incidents (docs/MONITORING.md)."""

    name = "monitoring"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from changes import hooks

        from . import closing, panels, probes, selectors, services

        hooks.register_content_part("monitor", services.monitor_content)
        hooks.register_listener(probes.on_audit_event)
        hooks.register_close_part(closing.close_part)
        hooks.register_panel("change", panels.change_panel)
        hooks.register_stage_rule(selectors.stage_rule)
