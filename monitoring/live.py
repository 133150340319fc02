"""What is live where: the ONE place monitoring asks which protocol an environment runs.

The answer is the live registry (``changes.LiveVersion``, one row per environment, written
under its row lock by every deploy, stage 1 and rollback): its protocol is live, and the
deployment that put it there names the change it was served under. Deployment history is
never consulted, so a staged rollout, a deploy to one environment of several, or a rollback
read exactly what the deploy gate reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from changes.env_models import Environment, LiveVersion
from changes.models import ChangeRequest

#: Environments a system without registry rows still knows (as the UI's deploy form offers
#: them, ``changes.forms.KNOWN_ENVIRONMENTS``); nothing is live there.
DEFAULT_ENVIRONMENTS = ("staging", "production")


@dataclass(frozen=True)
class Live:
    environment: str
    protocol_sha256: str | None  # None: nothing approved is live in this environment
    change: ChangeRequest | None
    previous_protocol_id: int | None = None  # the base of the live change (rollback target)


def known_environments(system) -> set[str]:
    """Environment names a decision of this system may carry: its registered environments
    (the defaults for a system that has none)."""
    names = set(Environment.objects.filter(system=system).values_list("name", flat=True))
    return names or set(DEFAULT_ENVIRONMENTS)


def _live_of(environment: str, row: LiveVersion | None) -> Live:
    if row is None or row.protocol_id is None:
        return Live(environment, None, None)
    change = row.deployment.change if row.deployment_id else None
    return Live(
        environment,
        row.protocol.content_sha256,
        change,
        change.base_protocol_id if change else None,
    )


def _rows(system):
    return LiveVersion.objects.filter(environment__system=system).select_related(
        "environment", "protocol", "deployment__change"
    )


def live(system, environment: str) -> Live:
    """The protocol live in ``environment`` for ``system`` (one indexed query)."""
    return _live_of(environment, _rows(system).filter(environment__name=environment).first())


def live_protocol_hash(system, environment: str) -> str | None:
    """The content hash of the protocol version live in ``environment``, or None."""
    return live(system, environment).protocol_sha256


def live_map(system) -> dict[str, Live]:
    """Every known environment of ``system`` with what is live there (one query)."""
    rows = {row.environment.name: row for row in _rows(system)}
    return {env: _live_of(env, rows.get(env)) for env in sorted(known_environments(system))}
