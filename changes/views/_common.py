"""Helpers of the workflow pages: the scoped change lookup and the panels other apps plug in.

The app-agnostic page kit (denials, messages, pagination) is ``core.ui``.
"""

from __future__ import annotations

import logging

from django.template.loader import render_to_string

from core.ui import or_404

from .. import hooks, selectors

logger = logging.getLogger(__name__)


def change_or_404(user, pk):
    """A change the user may see; anything else is a 404 (no leak of its existence)."""
    return or_404(selectors.change_for, user, pk, detail="No such change.")


def render_panel(port, change, request) -> tuple[str | None, bool]:
    """(html, failed) for a hook's panel: (None, False) when the hook has no panel."""
    try:
        result = port.panel(change, request.user)
        if result is None:
            return None, False
        template_name, context = result
        html = render_to_string(
            template_name, {"change": change, **(context or {})}, request=request
        )
        return html, False
    except Exception:  # a broken panel must not take the change page down with it
        logger.exception("The %s panel failed for change %s", type(port).__name__, change.pk)
        return None, True


def evaluation_panel(change, request):
    return render_panel(hooks.evaluation(), change, request)


def attestation_panel(change, request):
    return render_panel(hooks.attestation(), change, request)


def slot_panels(slot: str, request, **objects) -> list[str]:
    """HTML of every panel registered for ``slot`` (a failing one is logged and skipped)."""
    out = []
    for panel in hooks.panels(slot):
        try:
            html = panel(request, **objects)
        except Exception:  # a broken panel must not take the page down with it
            logger.exception("The %s panel %r failed", slot, panel)
            continue
        if html:
            out.append(html)
    return out
