"""The section this app adds to the change page (``changes.hooks.register_panel``): where the
change stands in its monitoring window, so the close button's refusal is never a surprise."""

from __future__ import annotations

from django.template.loader import render_to_string

from changes import states

from . import closing


def change_panel(request, change) -> str | None:
    if change.state not in {states.DEPLOYED, states.CLOSED}:
        return None
    win = closing.window(change)
    if win is None:
        return None
    return render_to_string(
        "monitoring/_change_window.html",
        {
            "change": change,
            "window": win,
            "reasons": win.reasons(),
            "closed": change.state == states.CLOSED,
        },
        request=request,
    )
