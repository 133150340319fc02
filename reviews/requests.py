"""Requested reviewers (issue 14, item 2): who was asked, who answered, who is pending."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from changes import audit, permissions, states
from changes.models import ChangeRequest, Review
from core import roles
from core.errors import Conflict, NotAllowed, ValidationFailed

from .models import ReviewRequest
from .permissions import may_request, takes_reviews

MAX_PER_CALL = 20


def ineligibility(reviewer, change: ChangeRequest) -> list[str]:
    """Every reason ``reviewer`` could not sign ``change`` (empty: they may be asked)."""
    if reviewer.pk == change.author_id:
        return [f"{reviewer.username} is the author of {change.reference}."]
    if not reviewer.is_active:
        return [f"{reviewer.username} is deactivated."]
    check = permissions.check_independence(reviewer, change)
    return [f"{reviewer.username}: {reason}" for reason in check.reasons]


def eligible_reviewers(change: ChangeRequest) -> list:
    users = (
        get_user_model()
        .objects.filter(groups__name=roles.REVIEWER, is_active=True)
        .distinct()
        .order_by("username")
    )
    return [u for u in users if not ineligibility(u, change)]


def _resolve(identifiers) -> list:
    if not isinstance(identifiers, list) or not identifiers:
        raise ValidationFailed("reviewers: give a non-empty list of usernames or user ids.")
    if len(identifiers) > MAX_PER_CALL:
        raise ValidationFailed(f"reviewers: at most {MAX_PER_CALL} per request.")
    users, User = [], get_user_model()
    for ident in identifiers:
        if isinstance(ident, bool) or not isinstance(ident, int | str):
            raise ValidationFailed("reviewers: each entry is a username or a user id.")
        query = {"pk": ident} if isinstance(ident, int) else {"username": str(ident)}
        user = User.objects.filter(**query).first()
        if user is None:
            raise ValidationFailed(f"reviewers: no user '{ident}'.")
        users.append(user)
    return list({u.pk: u for u in users}.values())


@transaction.atomic
def review_request(*, actor, change_request: ChangeRequest, reviewers) -> list[ReviewRequest]:
    """Ask reviewers (or ask again, after an edit). Writes one ``review.requested`` event per
    reviewer (the notification and webhooks follow on commit). All or nothing: one
    ineligible reviewer refuses the whole call with every reason (400)."""
    change = ChangeRequest.objects.select_for_update(of=("self",)).get(pk=change_request.pk)
    if not may_request(actor, change):
        raise NotAllowed("Only the author (or an editor) of a change requests reviewers.")
    if not takes_reviews(change):
        raise Conflict(
            f"A change in state '{change.state_label}' takes no more reviews.", code="closed"
        )
    users = _resolve(reviewers)
    reasons = [reason for user in users for reason in ineligibility(user, change)]
    if reasons:
        raise ValidationFailed(
            "reviewers: " + " ".join(reasons), code="ineligible_reviewer", reasons=reasons
        )
    now, out = timezone.now(), []
    for user in users:
        row, created = ReviewRequest.objects.get_or_create(
            change=change,
            reviewer=user,
            defaults={
                "requested_by": actor,
                "requested_at": now,
                "content_sha256": change.content_sha256,
            },
        )
        if not created and row.content_sha256 == change.content_sha256 and not answered(row):
            continue  # already asked about this content and not answered: no second ping
        if not created:
            row.requested_by, row.requested_at = actor, now
            row.content_sha256, row.times = change.content_sha256, row.times + 1
            row.save(update_fields=["requested_by", "requested_at", "content_sha256", "times"])
        audit.append(
            actor=actor,
            verb="review.requested",
            obj=change,
            data={
                "reviewer": user.pk,
                "reviewer_username": user.username,
                "content_sha256": change.content_sha256,
                "re_request": not created,
            },
        )
        out.append(row)
    return out


def answered(row: ReviewRequest) -> bool:
    return Review.objects.filter(
        change_id=row.change_id, reviewer_id=row.reviewer_id, created_at__gte=row.requested_at
    ).exists()


@dataclass
class RequestStatus:
    """One requested reviewer as the change page and the API show them."""

    request: ReviewRequest
    state: str  # "pending" | "answered"
    review: Review | None
    outdated: bool  # answered on content that has changed since

    def as_dict(self) -> dict:
        return {
            "reviewer": self.request.reviewer.username,
            "requested_by": self.request.requested_by.username,
            "requested_at": self.request.requested_at.isoformat(),
            "requested_on_sha256": self.request.content_sha256,
            "state": self.state,
            "decision": self.review.decision if self.review else None,
            "answered_at": self.review.created_at.isoformat() if self.review else None,
            "answered_on_sha256": self.review.content_sha256 if self.review else None,
            "outdated": self.outdated,
        }


def statuses(change: ChangeRequest) -> list[RequestStatus]:
    rows = list(
        ReviewRequest.objects.filter(change=change).select_related("reviewer", "requested_by")
    )
    reviews = list(
        Review.objects.filter(
            change=change, reviewer_id__in=[r.reviewer_id for r in rows]
        ).order_by("created_at", "id")
    )
    out = []
    for row in rows:
        answers = [
            r
            for r in reviews
            if r.reviewer_id == row.reviewer_id and r.created_at >= row.requested_at
        ]
        latest = answers[-1] if answers else None
        out.append(
            RequestStatus(
                request=row,
                state="answered" if latest else "pending",
                review=latest,
                outdated=bool(latest) and latest.content_sha256 != change.content_sha256,
            )
        )
    return out


def pending_for(user, visible) -> list[ChangeRequest]:
    """Changes (among ``visible``) that asked ``user`` for a review still not given."""
    rows = ReviewRequest.objects.filter(reviewer=user, change__in=visible).select_related(
        "change", "change__system", "change__author", "requested_by"
    )
    out = []
    for row in rows:
        if not takes_reviews(row.change):
            continue
        answered = Review.objects.filter(
            change_id=row.change_id, reviewer=user, created_at__gte=row.requested_at
        ).exists()
        if not answered:
            out.append(row)
    return out


@transaction.atomic
def auto_request(*, change_id: int) -> list[ReviewRequest]:
    """When a change starts awaiting review, ask the people its system's reviewer rules name
    (``users`` rules), if eligible and not yet asked for this content. Writes
    ``review.requested`` (actor: the system) per person asked."""
    from . import rules

    change = ChangeRequest.objects.select_for_update(of=("self",)).get(pk=change_id)
    ruleset = rules.current(change.system_id)
    if ruleset is None or change.state != states.AWAITING_REVIEW:
        return []
    wanted = {pk for rule in ruleset.rules if rule["kind"] == "users" for pk in rule["users"]}
    already = set(
        ReviewRequest.objects.filter(
            change=change, content_sha256=change.content_sha256
        ).values_list("reviewer_id", flat=True)
    )
    out, now = [], timezone.now()
    for user in get_user_model().objects.filter(pk__in=wanted - already).order_by("pk"):
        if ineligibility(user, change):
            continue
        row, created = ReviewRequest.objects.get_or_create(
            change=change,
            reviewer=user,
            defaults={
                "requested_by": change.author,
                "requested_at": now,
                "content_sha256": change.content_sha256,
            },
        )
        if not created:
            row.requested_at, row.content_sha256, row.times = (
                now,
                change.content_sha256,
                row.times + 1,
            )
            row.save(update_fields=["requested_at", "content_sha256", "times"])
        audit.append(
            actor=None,
            verb="review.requested",
            obj=change,
            data={
                "reviewer": user.pk,
                "reviewer_username": user.username,
                "content_sha256": change.content_sha256,
                "re_request": not created,
                "by_rule": True,
            },
        )
        out.append(row)
    return out
