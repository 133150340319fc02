"""Helpers for the environment tests: one system with versions, changes driven to approved."""

from __future__ import annotations

from changes import services, states
from changes.models import AISystem, ChangeRequest, ProtocolVersion
from tests.factories import PASSWORD, ProtocolFactory, SystemFactory, change_fields


def system_with(team, *versions: str, criticality="low") -> tuple[AISystem, dict]:
    system = SystemFactory(owner_team=team, criticality=criticality)
    return system, {v: ProtocolFactory(system=system, version=v) for v in versions}


def new_version(system, version, prompt) -> ProtocolVersion:
    return ProtocolFactory(system=system, version=version, system_prompt=prompt)


def approved(author, reviewer, system, base, proposed, **overrides) -> ChangeRequest:
    """A change from ``base`` to ``proposed``, submitted, evaluated and approved."""
    change = services.change_request_create(
        actor=author,
        system=system,
        base_protocol=base,
        proposed_protocol=proposed,
        **change_fields(**overrides),
    )
    if overrides.get("stages"):
        raise AssertionError("set stages through the service")
    return approve(change, author, reviewer)


def approve(change, author, reviewer, *more_reviewers) -> ChangeRequest:
    change.refresh_from_db()
    if change.state != states.AWAITING_REVIEW:
        services.change_request_submit(actor=author, change_request=change)
        change.refresh_from_db()
        services.change_request_record_verdict(
            change_id=change.pk, content_sha256=change.content_sha256, passed=True, reasons=[]
        )
    for person in (reviewer, *more_reviewers):
        services.review_submit(
            actor=person, change_request=change, decision="approve", password=PASSWORD
        )
    change.refresh_from_db()
    return change
