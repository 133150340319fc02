"""The attestation's two self-contained blocks added for issues 12 and 16.2: the rollout
stages started per environment (who, when, which stage, what share) and the policy
exceptions (threshold, floor, why, approvers, whether it stood)."""

from __future__ import annotations

import pytest

from attestations import document
from changes import env_services, services
from evaluations import exception_services
from tests.attestations.test_document_attestation import _minimal_facts
from tests.changes.env_support import approve, system_with
from tests.factories import change_fields, make_change

pytestmark = pytest.mark.django_db


def _html(**extra) -> str:
    facts = {**_minimal_facts(), "evaluation": {"verdict": "none", "digest": "", "runs": []}}
    facts.update(extra)
    return document.render_html(document.pdf_context(facts, key_id="k"))


def test_stage_starts_are_listed_per_environment_with_who_when_and_share(
    engineer, reviewer, team_a, monkeypatch
):
    monkeypatch.setattr("changes.hooks.evaluation", lambda: _Passing())
    system, v = system_with(team_a, "v1", "v2")
    change = services.change_request_create(
        actor=engineer, system=system, base_protocol=v["v1"], proposed_protocol=v["v2"],
        **change_fields(),
    )  # fmt: skip
    env_services.change_request_set_stages(
        actor=engineer, change_request=change, stages=[5, 25, 100]
    )
    approve(change, engineer, reviewer)
    for number in (1, 2):
        env_services.stage_start(
            actor=engineer, change_request=change, environment="staging", number=number
        )
    env_services.stage_start(
        actor=engineer, change_request=change, environment="production", number=1
    )
    facts = document.stage_start_facts(change)
    assert [(f["environment"], f["stage"], f["percent"]) for f in facts] == [
        ("production", 1, 5),
        ("staging", 1, 5),
        ("staging", 2, 25),
    ]
    assert all(f["started_by"]["username"] == "engineer" and f["at"] for f in facts)
    html = _html(deployments=[{"environment": "staging", "deployed_by": {}, "at": "t",
                               "content_sha256": "x"}], stage_starts=facts)  # fmt: skip
    assert "Rollout stages started" in html
    assert html.count('<td class="num">25%</td>') == 1


def test_no_stage_block_without_stages():
    assert "Rollout stages started" not in _html()
    assert "Policy exceptions" not in _html()


def test_policy_exceptions_get_their_own_block(engineer, admin_user, reviewer, make_suite_for):
    change = make_suite_for(engineer)
    exc = exception_services.policy_exception_request(
        actor=engineer, change_request=change, key="max_gap", value=0.2, reason="Pilot <b>x</b>"
    )
    exception_services.policy_exception_approve(actor=admin_user, exception=exc, as_role="admin")
    facts = document.policy_exception_facts(change)
    (fact,) = facts
    assert fact["reference"] == exc.reference and fact["status"] == "pending"
    assert fact["floor"] == 0.05 and fact["admin_approver"]["username"] == "admin"
    assert fact["reviewer_approver"] is None
    html = _html(policy_exceptions=facts)
    assert "Policy exceptions" in html and exc.reference in html
    assert "max_gap 0.2" in html and "high floor 0.05" in html
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html


def test_an_exception_in_effect_reads_in_effect(engineer, admin_user, reviewer, make_suite_for):
    change = make_suite_for(engineer)
    exc = exception_services.policy_exception_request(
        actor=engineer, change_request=change, key="max_gap", value=0.2, reason="Pilot."
    )
    for actor, role in ((admin_user, "admin"), (reviewer, "reviewer")):
        exc = exception_services.policy_exception_approve(actor=actor, exception=exc, as_role=role)
    facts = document.policy_exception_facts(change)
    assert [f["status"] for f in facts] == ["in_effect"]
    html = _html(policy_exceptions=facts)
    assert '<span class="ok">in effect</span>' in html and "ineffect" not in html


class _Passing:
    """The evaluation port with every gate condition met (as ``passing_evaluations``)."""

    def __getattr__(self, name):
        from changes.hooks import EvaluationPort

        return getattr(EvaluationPort(), name)

    def gate_reasons(self, change):
        return []

    def start(self, change, *, actor):
        return []


@pytest.fixture
def make_suite_for(team_a):
    from tests.factories import SystemFactory

    def make(author):
        system = SystemFactory(owner_team=team_a, criticality="high")
        return make_change(author=author, system=system)

    return make
