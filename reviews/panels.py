"""Sections this app adds to pages of ``changes`` (through ``changes.hooks.register_panel``)."""

from __future__ import annotations

from django.template.loader import render_to_string

from changes import selectors as change_selectors
from changes.models import Review

from . import discussion, permissions, snapshots
from . import requests as review_requests


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
        since = snapshots.since(change, last_mine.content_sha256) or {"missing": True}
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
