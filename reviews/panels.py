"""Sections this app adds to pages of ``changes`` (through ``changes.hooks.register_panel``)."""

from __future__ import annotations

import re

from django.template.loader import render_to_string

from changes import selectors as change_selectors
from changes.models import Review

from . import discussion, permissions, snapshots
from . import requests as review_requests

_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")


def number_since(since: dict | None) -> dict | None:
    """A copy of the "changes since your review" diff whose protocol lines carry the line
    number they have now (``no``), and each part the thread anchor it maps to (proposed ->
    side "new", base -> side "old"), so a reviewer can comment on a line they see there."""
    if not since or not since.get("protocol"):
        return since
    parts = []
    for part in since["protocol"]:
        which, attr = part["key"].split(".", 1)
        current, lines = None, []
        for line in part["unified"]:
            row = {**line, "no": None}
            match = _HUNK.match(line["text"]) if line["kind"] == "hunk" else None
            if match:
                current = int(match.group(1))
            elif line["kind"] in ("insert", "equal") and current is not None:
                row["no"] = current
                current += 1
            lines.append(row)
        side = "new" if which == "proposed" else "old"
        parts.append({**part, "unified": lines, "anchor_part": attr, "anchor_side": side})
    return {**since, "protocol": parts}


def change_context(change, user) -> dict:
    statuses = review_requests.statuses(change)
    can_request = permissions.may_request(user, change) and permissions.takes_reviews(change)
    asked = {s.request.reviewer_id for s in statuses if s.state == "pending"}
    eligible = (
        [u for u in review_requests.eligible_reviewers(change) if u.pk not in asked]
        if can_request
        else []
    )
    mine = Review.objects.filter(change=change, reviewer=user).order_by("-created_at", "-id")
    last_mine = mine.first()
    since = None
    if last_mine is not None and last_mine.content_sha256 != change.content_sha256:
        since = number_since(snapshots.since(change, last_mine.content_sha256)) or {"missing": True}
    outdated = Review.objects.filter(change=change, decision="request_changes").exclude(
        content_sha256=change.content_sha256
    )
    return {
        "change": change,
        "requests": statuses,
        "can_request": can_request,
        "eligible": eligible,
        "my_last_review": last_mine,
        "since": since,
        "outdated_reviews": list(outdated.select_related("reviewer")),
        "threads": discussion.threads_of(change),
        "thread_counts": discussion.counts(change),
        "may_comment": permissions.may_comment(user),
    }


def change_panel(request, change) -> str | None:
    return render_to_string(
        "reviews/_change_panel.html", change_context(change, request.user), request=request
    )


def dashboard_panel(request) -> str | None:
    visible = change_selectors.visible_changes(request.user)
    rows = review_requests.pending_for(request.user, visible)
    if not rows:
        return None
    return render_to_string("reviews/_dashboard_panel.html", {"rows": rows}, request=request)
