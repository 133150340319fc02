"""Reads for the monitoring pages."""

from __future__ import annotations

from .models import Incident, ReviewItem


def open_incidents(system):
    return (
        Incident.objects.filter(system=system)
        .exclude(state="resolved")
        .select_related("change", "owner")
    )


def next_review_item(system, user):
    """The oldest unreviewed sampled decision of a change ``user`` is independent of."""
    from changes import permissions

    for item in (
        ReviewItem.objects.filter(system=system, reviewed_at__isnull=True)
        .select_related("decision__change__system", "decision__change__author")
        .order_by("id")[:200]
    ):
        if permissions.check_independence(user, item.decision.change).ok:
            return item
    return None


def rollback_target(incident) -> dict | None:
    """Base = the protocol live now, proposed = the version before it (the live change's
    base): the query string of the new-change form."""
    from .live import live

    if not incident.environment:
        return None
    current = live(incident.system, incident.environment)
    if current.change is None:
        return None
    return {
        "system": incident.system_id,
        "base": current.change.proposed_protocol_id,
        "proposed": current.previous_protocol_id,
    }
