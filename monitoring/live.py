"""What is live where: the ONE place monitoring asks which protocol an environment runs.

Today the answer comes from ``changes.Deployment`` records (the newest deployment of a change
of this system to the environment; its proposed protocol version is live). When the live
registry lands, only this module changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from changes.models import ChangeRequest, Deployment

#: Environments every system knows even before anything was deployed to them (as the UI's
#: deploy form offers them, ``changes.forms.KNOWN_ENVIRONMENTS``).
DEFAULT_ENVIRONMENTS = ("staging", "production")


@dataclass(frozen=True)
class Live:
    environment: str
    protocol_sha256: str | None  # None: nothing approved is live in this environment
    change: ChangeRequest | None
    previous_protocol_id: int | None = None  # the base of the live change (rollback target)


def known_environments(system) -> set[str]:
    """Environment names a decision of this system may carry."""
    deployed = Deployment.objects.filter(change__system=system).values_list(
        "environment", flat=True
    )
    return set(DEFAULT_ENVIRONMENTS) | set(deployed)


def live(system, environment: str) -> Live:
    """The protocol live in ``environment`` for ``system`` (one indexed query)."""
    deployment = (
        Deployment.objects.filter(change__system=system, environment=environment)
        .select_related("change__proposed_protocol")
        .order_by("-created_at", "-id")
        .first()
    )
    if deployment is None:
        return Live(environment, None, None)
    change = deployment.change
    return Live(
        environment,
        change.proposed_protocol.content_sha256,
        change,
        change.base_protocol_id,
    )


def live_protocol_hash(system, environment: str) -> str | None:
    """The content hash of the protocol version live in ``environment``, or None."""
    return live(system, environment).protocol_sha256


def live_map(system) -> dict[str, Live]:
    """Every known environment of ``system`` with what is live there."""
    return {env: live(system, env) for env in sorted(known_environments(system))}
