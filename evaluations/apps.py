from django.apps import AppConfig


class EvaluationsConfig(AppConfig):
    """Suites, runs, samples, graders, statistics and the evaluation gate."""

    name = "evaluations"

    def ready(self):
        # The workflow (``changes``) never imports this app: it calls the port registered here.
        from changes import hooks

        from . import selectors
        from .port import DjangoEvaluationPort

        hooks.register_evaluation(DjangoEvaluationPort())
        # Flagged reasoning above a suite's limit needs a reviewer's acknowledgement to deploy.
        hooks.register_gate_rule(selectors.acknowledgement_reasons)

        from .exception_services import on_audit_event

        hooks.register_listener(on_audit_event)
        from .exception_views import panel

        hooks.register_panel("change", panel)
