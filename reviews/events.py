"""Which audit events concern whom: the catalog behind notifications and webhooks.

The workflow appends one audit event per action (``changes.audit``); this app hears each one
through ``changes.hooks.register_listener`` and, for the verbs below, schedules a fan-out
task on commit. Nothing is sent inside the request or inside the writer's transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.db import transaction
from django.urls import reverse

from changes.models import AISystem, AuditEvent, ChangeRequest, Review

from . import models as m

logger = logging.getLogger(__name__)

# audit verb -> event type
VERB_TYPES = {
    "review.requested": m.REVIEW_REQUESTED,
    "review.approved": m.REVIEW_GIVEN,
    "change.changes_requested": m.REVIEW_GIVEN,
    "change.rejected": m.REVIEW_GIVEN,
    "change.evaluation_passed": m.EVALUATION_FINISHED,
    "change.evaluation_failed": m.EVALUATION_FINISHED,
    "review.voided": m.APPROVALS_VOIDED,
    "change.deployed": m.DEPLOYED,
    "attestation.issued": m.ATTESTATION_READY,
    "incident.opened": m.INCIDENT_OPENED,
    "comment.added": m.COMMENT_ADDED,
}
# Verbs after which the reviewed content is snapshotted (see ``reviews.snapshots``).
SNAPSHOT_VERBS = frozenset(
    {"change.created", "change.edited", "review.approved", "change.changes_requested"}
    | {"change.rejected"}
)


@dataclass
class Described:
    """What one event means: its type, the change, who is told, and the words."""

    type: str
    change: ChangeRequest | None
    recipients: list = field(default_factory=list)
    title: str = ""
    body: str = ""
    url: str = ""
    data: dict = field(default_factory=dict)
    system_id: int | None = None  # the system an event without a change concerns (webhooks)


def on_audit_event(event: AuditEvent) -> None:
    """The listener: schedule the fan-out on commit; snapshot reviewed content now."""
    if event.verb in SNAPSHOT_VERBS:
        from . import snapshots

        snapshots.record_for_event(event)
    if event.verb in VERB_TYPES:
        from .tasks import enqueue_fan_out

        transaction.on_commit(lambda: enqueue_fan_out(event.pk), robust=True)


def _users(ids) -> list:
    return list(get_user_model().objects.filter(pk__in=set(ids), is_active=True))


def _outcome(event: AuditEvent) -> str:
    if event.verb == "change.evaluation_passed":
        return "pass"
    reasons = " ".join(str(r) for r in event.data.get("reasons", []))
    return "inconclusive" if "inconclusive" in reasons.lower() else "fail"


def describe(event: AuditEvent) -> Described | None:
    """The meaning of ``event`` for people and endpoints, or None when it concerns nobody."""
    kind = VERB_TYPES.get(event.verb)
    if kind is None:
        return None
    change = None
    if event.object_type == "changes.changerequest" and event.object_id.isdigit():
        change = (
            ChangeRequest.objects.select_related("system", "author")
            .filter(pk=int(event.object_id))
            .first()
        )
    data = dict(event.data or {})
    if change is None and kind == m.INCIDENT_OPENED and str(data.get("change_id", "")).isdigit():
        # The monitoring app's event is on the incident; it names the change it concerns.
        change = (
            ChangeRequest.objects.select_related("system", "author")
            .filter(pk=int(data["change_id"]))
            .first()
        )
    if change is None and kind != m.INCIDENT_OPENED:
        return None
    who = event.actor_username or "the system"
    ref = change.reference if change else ""
    url = reverse("change-detail", args=[change.pk]) if change else ""
    author_side = [change.author_id, *change.editors.values_list("id", flat=True)] if change else []
    out = Described(type=kind, change=change, url=url, data=data)
    if kind == m.REVIEW_REQUESTED:
        out.recipients = _users([data.get("reviewer")])
        asker = f"The reviewer rules of {change.system.name}" if data.get("by_rule") else who
        out.title = f"{asker} requested your review of {ref}: {change.title}"
        out.body = "Open the change to review it; your review signs its current content hash."
        url += "#reviews"
    elif kind == m.REVIEW_GIVEN:
        decision = {"review.approved": "approved"}.get(
            event.verb, "requested changes to" if "changes" in event.verb else "rejected"
        )
        out.recipients = _users(author_side)
        out.title = f"{who} {decision} {ref}: {change.title}"
        out.data = {**data, "decision": decision}
    elif kind == m.EVALUATION_FINISHED:
        outcome = _outcome(event)
        out.recipients = _users(author_side)
        out.title = f"Evaluation of {ref} finished: {outcome}"
        out.body = "\n".join(str(r) for r in data.get("reasons", [])[:10])
        out.data = {**data, "outcome": outcome}
    elif kind == m.APPROVALS_VOIDED:
        ids = Review.objects.filter(pk__in=data.get("reviews", [])).values_list(
            "reviewer_id", flat=True
        )
        out.recipients = _users(ids)
        out.title = f"Your approval of {ref} was voided"
        out.body = str(data.get("reason", ""))
    elif kind == m.DEPLOYED:
        approvers = change.reviews.filter(decision="approve").values_list("reviewer_id", flat=True)
        out.recipients = _users([*author_side, *approvers])
        out.title = f"{ref} was deployed to {data.get('environment', '?')}"
    elif kind == m.ATTESTATION_READY:
        out.recipients = _users(author_side)
        out.title = f"The attestation for {ref} is ready (version {data.get('version', '?')})"
        url += "#attestation"
    elif kind == m.INCIDENT_OPENED:
        # The monitoring app appends ``incident.opened`` on the incident, naming the system
        # (``system_id``) and the change if any; the system's owning team hears of it.
        system_id = change.system_id if change else data.get("system_id", data.get("system"))
        system = (
            AISystem.objects.filter(pk=system_id).select_related("owner_team").first()
            if str(system_id or "").isdigit()
            else None
        )
        members = system.owner_team.members.values_list("id", flat=True) if system else []
        out.recipients = _users(members)
        out.title = f"Incident opened on {system.name if system else 'a system'}"
        out.body = str(data.get("summary", ""))[:2000]
        out.system_id = system.pk if system else None
        if event.object_type == "monitoring.incident" and event.object_id.isdigit():
            url = reverse("monitoring-incident", args=[int(event.object_id)])
    elif kind == m.COMMENT_ADDED:
        participants = data.get("participants", [])
        out.recipients = _users([*author_side, *participants])
        out.title = f"{who} commented on {ref}"
        out.body = str(data.get("excerpt", ""))[:500]
        url += "#discussion"
    out.url = url
    actor = event.actor_id
    out.recipients = [u for u in out.recipients if u.pk != actor]  # never tell you of yourself
    return out
