"""A small but complete world for API fuzzing: three teams, every persona, systems on each team,
a suite, and changes in (nearly) every state, with real evaluation runs, reviews, a deployment
and a rendered attestation, all built through the services.

Private data carries *markers*: a unique string in the title and rationale of a draft change of
Team A and of one of Team C (a team no persona belongs to). ``World.markers_hidden_from(user)``
names the markers a user must never see in any response body.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from django.contrib.auth.models import User

from changes import services, states
from changes.models import AISystem, ChangeRequest, ProtocolVersion, Team
from core import roles
from evaluations import suite_services
from evaluations.models import EvaluationRun
from tests.evaluations.conftest import drain, suite_text
from tests.factories import PASSWORD, ProtocolFactory, SystemFactory, TeamFactory, UserFactory

# The personas whose tokens fuzz the API (the brief: engineer, reviewer, auditor, admin,
# pipeline and an outsider without any role or team).
PERSONAS = ("engineer", "reviewer", "auditor", "admin", "pipeline", "outsider")


@dataclass
class World:
    users: dict[str, User]
    teams: dict[str, Team]
    systems: dict[str, AISystem]
    protocols: dict[str, list[ProtocolVersion]]
    suites: list[int]
    changes: dict[str, ChangeRequest]
    runs: list[int]
    attestations: list[int]
    markers: dict[str, str] = field(default_factory=dict)

    # --- ids the fuzzer may aim at -------------------------------------------------------

    def change_ids(self) -> list[int]:
        return sorted(c.pk for c in self.changes.values())

    def system_ids(self) -> list[int]:
        return sorted(s.pk for s in self.systems.values())

    def protocol_ids(self) -> list[int]:
        return sorted(p.pk for ps in self.protocols.values() for p in ps)

    def team_ids(self) -> list[int]:
        return sorted(t.pk for t in self.teams.values())

    def coherent_protocols(self) -> list[tuple[int, int, int]]:
        """(system, base, proposed) triples that make a valid new change."""
        out = []
        for name, system in self.systems.items():
            ps = self.protocols[name]
            out += [(system.pk, a.pk, b.pk) for a in ps for b in ps if a.pk != b.pk]
        return out

    def markers_hidden_from(self, user) -> dict[str, str]:
        """Marker name -> marker string that ``user`` may not see anywhere."""
        if roles.has_role(user, roles.AUDITOR) or roles.is_admin(user):
            return {}
        team_names = set(user.teams.values_list("name", flat=True))
        hidden = {}
        for team, marker in self.markers.items():
            if team not in team_names:
                hidden[team] = marker
        return hidden


def _persona_users(teams: dict[str, Team]) -> dict[str, User]:
    users = {
        "engineer": UserFactory(username="engineer", roles=[roles.ENGINEER], team=teams["A"]),
        "engineer2": UserFactory(username="engineer2", roles=[roles.ENGINEER], team=teams["A"]),
        "engineer_c": UserFactory(username="engineer_c", roles=[roles.ENGINEER], team=teams["C"]),
        "reviewer": UserFactory(username="reviewer", roles=[roles.REVIEWER], team=teams["B"]),
        "reviewer2": UserFactory(username="reviewer2", roles=[roles.REVIEWER], team=teams["B"]),
        "auditor": UserFactory(username="auditor", roles=[roles.AUDITOR]),
        "admin": UserFactory(
            username="admin", roles=[roles.ADMIN], is_staff=True, is_superuser=True
        ),
        "pipeline": UserFactory(username="pipeline", roles=[roles.PIPELINE]),
        "outsider": UserFactory(username="outsider"),
    }
    return users


def _file(
    author, system, protos, *, title, suites, rationale="Because the logs say so."
) -> ChangeRequest:
    from tests.factories import change_fields

    return services.change_request_create(
        actor=author,
        system=system,
        base_protocol=protos[0],
        proposed_protocol=protos[1],
        suites=suites,
        **change_fields(title=title, rationale=rationale),
    )


def _submit_and_drain(change, author) -> ChangeRequest:
    services.change_request_submit(actor=author, change_request=change)
    for run in EvaluationRun.objects.filter(change=change).order_by("id"):
        drain(run)
    change.refresh_from_db()
    return change


def _review(change, reviewer, decision, comment=""):
    services.review_submit(
        actor=reviewer,
        change_request=change,
        decision=decision,
        comment=comment,
        password=PASSWORD,
    )
    change.refresh_from_db()
    return change


def build_world(*, render_attestation: bool = True) -> World:
    """Seed the database (call inside a django_db test). Slow parts: the drained runs (a few
    dozen reference-agent samples each) and, with ``render_attestation``, one WeasyPrint PDF."""
    teams = {k: TeamFactory(name=f"Team {k}") for k in ("A", "B", "C")}
    users = _persona_users(teams)
    admin = users["admin"]
    engineer, engineer_c = users["engineer"], users["engineer_c"]
    reviewer, reviewer2, pipeline = users["reviewer"], users["reviewer2"], users["pipeline"]

    systems = {
        "a": SystemFactory(name="support-assistant", owner_team=teams["A"]),
        "a_faker": SystemFactory(
            name="triage-faker",
            owner_team=teams["A"],
            target={"kind": "reference", "agent": "faker"},
        ),
        "b": SystemFactory(name="billing-bot", owner_team=teams["B"], criticality="low"),
        "c": SystemFactory(name="hr-classifier", owner_team=teams["C"], criticality="high"),
    }
    protocols = {
        name: [ProtocolFactory(system=system, version=f"v{i}") for i in (1, 2, 3)]
        for name, system in systems.items()
    }
    suite = suite_services.suite_create(actor=engineer, text=suite_text(epochs=None), fmt="json")
    suites = [suite.pk]
    markers = {
        "Team A": f"PRIVATE-TEAM-A-{uuid.uuid4().hex}",
        "Team C": f"PRIVATE-TEAM-C-{uuid.uuid4().hex}",
    }
    a, pa = systems["a"], protocols["a"]
    changes: dict[str, ChangeRequest] = {}

    def file_a(label, **kw):
        changes[label] = _file(engineer, a, pa, title=f"{label} change", suites=suites, **kw)
        return changes[label]

    # Team A drafts: the private ones carry the marker.
    file_a("a_draft", rationale=f"Draft notes {markers['Team A']}")
    changes["a_draft"] = services.change_request_update(
        actor=engineer,
        change_request=changes["a_draft"],
        data={"title": f"Private draft {markers['Team A']}"},
    )
    file_a("a_withdrawn")
    services.change_request_withdraw(actor=engineer, change_request=changes["a_withdrawn"])
    # In flight: submitted, runs queued, never drained.
    file_a("a_evaluating")
    services.change_request_submit(actor=engineer, change_request=changes["a_evaluating"])
    # Evaluated and waiting for a reviewer.
    _submit_and_drain(file_a("a_awaiting"), engineer)
    _review(_submit_and_drain(file_a("a_changes_requested"), engineer), reviewer,
            "request_changes", "Add a rollback drill.")  # fmt: skip
    _review(_submit_and_drain(file_a("a_rejected"), engineer), reviewer, "reject", "No.")
    _review(_submit_and_drain(file_a("a_approved"), engineer), reviewer, "approve")
    deployed = _review(_submit_and_drain(file_a("a_deployed"), engineer), reviewer, "approve")
    services.change_request_deploy(actor=pipeline, change_request=deployed)
    # Based on what a_deployed put live (v2), or the deploy would be refused as stale.
    changes["a_closed"] = _file(engineer, a, pa[1:], title="a_closed change", suites=suites)
    closed = _review(_submit_and_drain(changes["a_closed"], engineer), reviewer2, "approve")
    services.change_request_deploy(actor=engineer, change_request=closed)
    services.change_request_close(actor=engineer, change_request=closed)
    # Evaluated, then edited: back to draft with runs on an older hash (and the marker).
    reverted = _submit_and_drain(file_a("a_reverted"), engineer)
    changes["a_reverted"] = services.change_request_update(
        actor=engineer,
        change_request=reverted,
        data={"title": f"Reworked {markers['Team A']}"},
    )
    # A faking target fails the gate.
    changes["a_failed"] = _submit_and_drain(
        _file(engineer, systems["a_faker"], protocols["a_faker"], title="Faker change",
              suites=suites),
        engineer,
    )  # fmt: skip
    # Team C (no persona's team): a private draft, and one awaiting review (public to reviewers).
    pc = protocols["c"]
    changes["c_draft"] = _file(
        engineer_c,
        systems["c"],
        pc,
        title=f"Team C draft {markers['Team C']}",
        rationale=f"Internal {markers['Team C']}",
        suites=suites,
    )
    changes["c_awaiting"] = _submit_and_drain(
        _file(engineer_c, systems["c"], pc, title="Team C public change", suites=suites),
        engineer_c,
    )
    for change in changes.values():
        change.refresh_from_db()
    expected = {
        "a_draft": states.DRAFT,
        "a_withdrawn": states.WITHDRAWN,
        "a_evaluating": states.EVALUATING,
        "a_awaiting": states.AWAITING_REVIEW,
        "a_changes_requested": states.CHANGES_REQUESTED,
        "a_rejected": states.REJECTED,
        "a_approved": states.APPROVED,
        "a_deployed": states.DEPLOYED,
        "a_closed": states.CLOSED,
        "a_reverted": states.DRAFT,
        "a_failed": states.EVALUATION_FAILED,
        "c_draft": states.DRAFT,
        "c_awaiting": states.AWAITING_REVIEW,
    }
    actual = {label: c.state for label, c in changes.items()}
    assert actual == expected, actual

    from attestations import services as attestation_services
    from attestations.models import Attestation

    attestations = list(Attestation.objects.order_by("id").values_list("id", flat=True))
    if render_attestation:
        newest = Attestation.objects.filter(change=changes["a_deployed"]).order_by("-version")
        attestation_services.attestation_render(attestation_id=newest.first().pk)
    del admin
    return World(
        users=users,
        teams=teams,
        systems=systems,
        protocols=protocols,
        suites=suites,
        changes=changes,
        runs=list(EvaluationRun.objects.order_by("id").values_list("id", flat=True)),
        attestations=attestations,
        markers=markers,
    )
