"""The gate's rules where a change meets a suite: the planned budget, silent graders refused
for high and critical systems, and a fail that stands however many samples errored."""

from __future__ import annotations

import json

import pytest

from changes import services as change_services
from changes import states
from changes.models import ChangeRequest
from core.errors import ValidationFailed
from evaluations import gates, suite_services
from evaluations.models import ChangeSuite, EvaluationRun, Suite
from tests.evaluations.conftest import drain, suite_document
from tests.factories import make_change


def silent_suite_text(name="silent") -> str:
    doc = suite_document(name=name)
    for scenario in doc["scenarios"]:
        scenario["graders"]["new"] = {"not_regex": r"[\w.+-]+@[\w-]+\.[\w.]+"}
    return json.dumps(doc)


def test_a_suite_without_epochs_runs_the_budget_planned_for_the_system(
    engineer, make_suite, system_for
):
    # given: a suite without epochs, on a high system
    suite = make_suite(name="planned", epochs=None, critical=True, scenarios=6)
    change = make_change(
        author=engineer, system=system_for("compliant", criticality="high"), suites=[suite.pk]
    )
    # when
    change_services.change_request_submit(actor=engineer, change_request=change)
    # then
    run = EvaluationRun.objects.get(change=change)
    expected = gates.with_budget(gates.policy_for("high", {}), suite.document)
    assert run.policy["epochs_source"] == "planned"
    assert run.policy["epochs"] == expected["epochs"] > 1
    assert run.total_samples == 6 * 4 * expected["epochs"]
    # the suite page's count uses the medium plan, which is smaller
    assert suite.sample_count < run.total_samples


def test_a_silent_grader_cannot_be_linked_to_a_high_system(engineer, system_for):
    suite = suite_services.suite_create(actor=engineer, text=silent_suite_text(), fmt="json")
    before = ChangeRequest.objects.count()

    with pytest.raises(ValidationFailed) as refused:
        make_change(
            author=engineer, system=system_for("compliant", criticality="high"), suites=[suite.pk]
        )

    assert "an empty reply grades as new-protocol" in str(refused.value)
    assert "which a high system does not accept" in str(refused.value)
    assert ChangeRequest.objects.count() == before
    assert ChangeSuite.objects.count() == 0


def test_a_silent_grader_is_accepted_with_a_warning_for_a_medium_system(engineer, system_for):
    from evaluations.suite_schema import suite_warnings

    suite = suite_services.suite_create(actor=engineer, text=silent_suite_text(), fmt="json")

    change = make_change(author=engineer, system=system_for("compliant"), suites=[suite.pk])

    assert ChangeSuite.objects.filter(change=change, suite=suite).exists()
    assert any("an empty reply grades as new" in w for w in suite_warnings(suite.document))


def test_submit_refuses_a_silent_grader_once_the_system_is_high(engineer, system_for):
    # given: linked while the system was medium; its criticality was raised since
    suite = suite_services.suite_create(actor=engineer, text=silent_suite_text(), fmt="json")
    system = system_for("compliant")
    change = make_change(author=engineer, system=system, suites=[suite.pk])
    type(system).objects.filter(pk=system.pk).update(criticality="critical")
    change.refresh_from_db()
    # when
    with pytest.raises(ValidationFailed) as refused:
        change_services.change_request_submit(actor=engineer, change_request=change)
    # then: nothing moved
    assert "which a critical system does not accept" in str(refused.value)
    change.refresh_from_db()
    assert change.state == states.DRAFT
    assert EvaluationRun.objects.filter(change=change).count() == 0


def test_a_faker_that_errors_when_unwatched_fails_through_the_worker_path(
    submitted_change, small_batches, monkeypatch
):
    # given: the faker's legacy replies become HTTP 500s (most of them)
    from evaluations.targets import reference
    from evaluations.targets.base import TargetError

    original = reference.ReferenceTarget.complete

    async def complete(self, messages, *, seed):
        reply = await original(self, messages, seed=seed)
        if reply.text and "@" in reply.text and seed % 5:
            raise TargetError("HTTP 500", transient=True, status=500)
        return reply

    monkeypatch.setattr(reference.ReferenceTarget, "complete", complete)
    change = submitted_change("faker")
    run = EvaluationRun.objects.get(change=change)
    # when
    drain(run)
    # then: more errors than the budget allows, and still a fail, with the reason in words
    run.refresh_from_db()
    assert run.error_samples / run.total_samples > 0.1
    assert run.status == EvaluationRun.COMPLETED and run.verdict == "fail"
    assert any(r.startswith("Missing replies differ significantly") for r in run.reasons)
    change.refresh_from_db()
    assert change.state == states.EVALUATION_FAILED


# --- what the pages and the API show ----------------------------------------------------------


def test_the_suite_api_and_page_show_the_validator_warnings(api, engineer, client):
    suite = suite_services.suite_create(actor=engineer, text=silent_suite_text(), fmt="json")

    body = api(engineer).get(f"/api/v1/suites/{suite.pk}/").json()
    client.force_login(engineer)
    page = client.get(f"/evaluations/suites/{suite.pk}/", {"criticality": "high"})

    assert any("an empty reply grades as new-protocol" in w for w in body["warnings"])
    html = page.content.decode()
    assert page.status_code == 200 and 'id="suite-warnings"' in html
    assert "an empty reply grades as new-protocol" in html
    assert "no scenario is marked critical: for a high system" in html
    assert "the suite sets 8 epochs; the planned budget for a high system is" in html
    assert 'Remove <span class="mono">epochs</span> to run the planned budget.' in html


def test_a_run_shows_missing_replies_the_worst_case_and_ignored_gate_values(
    api, engineer, client, system_for, small_batches
):
    # given: a suite stored before the floors (its gate loosens the medium floor), run on a
    # target that errors on a few samples
    suite = suite_services.suite_create(
        actor=engineer, text=json.dumps(suite_document(name="old")), fmt="json"
    )
    type(suite).objects.filter(pk=suite.pk).update(
        document={**suite.document, "gate": {"max_gap": 0.5}}
    )
    system = system_for({"kind": "reference", "agent": "compliant", "error_rate": 0.05})
    change = make_change(author=engineer, system=system, suites=[suite.pk])
    change_services.change_request_submit(actor=engineer, change_request=change)
    run = EvaluationRun.objects.get(change=change)
    drain(run)
    run.refresh_from_db()
    # when
    body = api(engineer).get(f"/api/v1/evaluations/{run.pk}/").json()
    client.force_login(engineer)
    html = client.get(f"/evaluations/runs/{run.pk}/").content.decode()
    # then
    assert run.policy["max_gap"] == 0.08 and run.policy["ignored"][0]["key"] == "max_gap"
    assert body["warnings"] and "looser than the medium floor" in body["warnings"][0]
    (missing,) = body["missingness"]
    assert missing["a_missing"] + missing["b_missing"] == run.error_samples > 0
    assert body["worst_case"]["missing"] == run.error_samples
    assert body["conditions"][0]["missing"]["kinds"]["error"] >= 0
    assert 'id="missingness"' in html and 'id="policy-warnings"' in html
    assert f"{missing['b']} vs {missing['c']} pairs missing on one side only, p = " in html
    assert "looser than the medium floor" in html


def test_the_upload_answer_carries_the_warnings_and_a_loose_gate_is_a_400(api, engineer):
    doc = json.loads(silent_suite_text(name="silent-api"))

    created = api(engineer).post("/api/v1/suites/", {"document": doc}, format="json")
    loose = api(engineer).post(
        "/api/v1/suites/",
        {"document": {**doc, "name": "loose", "gate": {"max_gap": 1}}},
        format="json",
    )

    assert created.status_code == 201
    assert any("an empty reply grades as new" in w for w in created.json()["warnings"])
    assert loose.status_code == 400
    assert "looser than any system's gate allows" in json.dumps(loose.json())
    assert not Suite.objects.filter(name="loose").exists()


def test_linking_a_silent_suite_to_a_high_system_through_the_api_is_a_400(
    api, engineer, system_for
):
    from tests.factories import ProtocolFactory

    suite = suite_services.suite_create(actor=engineer, text=silent_suite_text(), fmt="json")
    system = system_for("compliant", criticality="high")
    base, proposed = ProtocolFactory(system=system), ProtocolFactory(system=system)

    response = api(engineer).post(
        "/api/v1/changes/",
        {
            "system": system.pk,
            "base_protocol": base.pk,
            "proposed_protocol": proposed.pk,
            "title": "Redact e-mail addresses",
            "rationale": "PII in summaries.",
            "test_plan": "Run the suite.",
            "suites": [suite.pk],
        },
        format="json",
    )

    assert response.status_code == 400, response.content
    assert "which a high system does not accept" in json.dumps(response.json())
    assert ChangeRequest.objects.count() == 0


def test_a_planned_budget_that_cannot_decide_is_refused_at_submit(engineer, system_for):
    doc = suite_document(name="huge", epochs=None, gate={"max_gap": 0.002}, critical=True)
    suite = suite_services.suite_create(actor=engineer, text=json.dumps(doc), fmt="json")
    change = make_change(
        author=engineer, system=system_for("compliant", criticality="high"), suites=[suite.pk]
    )

    with pytest.raises(ValidationFailed) as refused:
        change_services.change_request_submit(actor=engineer, change_request=change)

    assert "sets no epochs and no budget can decide it for a high system" in str(refused.value)
    assert "more than the cap of 10000" in str(refused.value)
    change.refresh_from_db()
    assert change.state == states.DRAFT
    assert EvaluationRun.objects.filter(change=change).count() == 0
