from django.apps import AppConfig


class ReviewsConfig(AppConfig):
    """Review collaboration around changes: notifications, requested reviewers, what changed
    since a review, discussion threads and signed outgoing webhooks (docs/REVIEWS.md)."""

    name = "reviews"
    verbose_name = "Reviews and notifications"

    def ready(self):
        # The workflow (``changes``) never imports this app: it hears audit events and draws
        # page panels through the seams in ``changes.hooks``.
        from attestations import document
        from changes import hooks

        from . import discussion, events, panels, rules

        hooks.register_listener(events.on_audit_event)
        hooks.register_panel("change", panels.change_panel)
        hooks.register_panel("dashboard", panels.dashboard_panel)
        hooks.register_gate_rule(discussion.gate_reasons)
        hooks.register_gate_rule(rules.unmet)
        document.register_facts("discussion", discussion.attestation_facts)
