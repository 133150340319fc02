"""The attestation port the workflow calls (see ``changes.hooks.AttestationPort``)."""

from __future__ import annotations

from changes.hooks import AttestationPort

PANEL_TEMPLATE = "attestations/_change_panel.html"


class Attestations(AttestationPort):
    """Issues attestations on approval and deployment, and draws the change-page panel."""

    def issue(self, change, *, reason: str) -> None:
        """Create the pending row in the caller's transaction; the render is enqueued on
        commit and runs on a worker, never in the web request."""
        from . import services

        services.attestation_issue(change=change, reason=reason)

    def panel(self, change, user) -> tuple[str, dict] | None:
        """(template, context): every version with its status and download links."""
        from . import views

        return PANEL_TEMPLATE, views.panel_context(change, user)

    def ensure_demo_key(self) -> str:
        """Generate the development signing key unless one is configured or present."""
        import logging

        from . import keys

        # The key module logs the same news as a warning; say it once, to the caller.
        key_logger = logging.getLogger(keys.__name__)
        level = key_logger.level
        key_logger.setLevel(logging.ERROR)
        try:
            path, created = keys.ensure_dev_key()
        finally:
            key_logger.setLevel(level)
        return f"Generated a development signing key at {path}" if created else ""

    def statuses(self, change_ids) -> dict[int, str]:
        """The newest attestation's status per change; "ready" when any version is ready
        (the download then serves the newest ready PDF)."""
        from .models import Attestation

        out: dict[int, str] = {}
        rows = Attestation.objects.filter(change_id__in=list(change_ids)).order_by("version")
        for change_id, status in rows.values_list("change_id", "status"):
            if out.get(change_id) != Attestation.READY:
                out[change_id] = status
        return out
