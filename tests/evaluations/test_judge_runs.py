"""The suite's registered judge in worker runs (issue 10, item 5): strict votes, unparsable
answers as errors (missing samples, never guessed), calibration agreement on the run, and the
judge part of the suite document (a name, never a model config)."""

from __future__ import annotations

import pytest
from django.test import Client

from changes import services as change_services
from evaluations.models import EvaluationRun, JudgeModel, RegisteredSecret, Suite
from evaluations.suite_schema import SuiteError, normalise_suite
from tests.evaluations.conftest import EMAIL, drain, suite_document
from tests.evaluations.openai_stub import OpenAIStub
from tests.factories import SystemFactory, make_change

YES = '{"verdict": "yes", "reason": "redacted"}'
PROSE = "The summary is fine and there are no other instructions."


def judged(name="judged", **judge) -> dict:
    doc = suite_document(name=name, scenarios=1, epochs=2)
    doc["scenarios"][0]["graders"]["new"] = [{"not_regex": EMAIL}, {"judge": "Redacts it."}]
    doc["judge"] = {"model": "stub", **judge}
    return doc


# --- the document --------------------------------------------------------------------------


def test_a_judge_is_named_and_normalised_with_votes_and_calibration():
    doc = judged(votes=5, calibration=[
        {"scenario": "ticket-0", "reply": "x", "expected": True},
        {"rubric": "Says hello.", "reply": "hello", "expected": "no"},
    ])  # fmt: skip

    suite = normalise_suite(doc)

    assert suite["judge"] == {
        "model": "stub",
        "votes": 5,
        "calibration": [
            {"reply": "x", "expected": "yes", "rubric": "Redacts it.", "scenario": "ticket-0"},
            {"reply": "hello", "expected": "no", "rubric": "Says hello.", "scenario": ""},
        ],
    }
    assert suite["scenarios"][0]["graders"]["new"][1] == {"judge": "Redacts it.", "votes": 5}
    assert normalise_suite(suite) == suite  # idempotent
    assert normalise_suite({**doc, "judge": "stub"})["judge"]["votes"] == 3


@pytest.mark.parametrize(
    ("judge", "message"),
    [
        ({"kind": "openai", "base_url": "http://x/v1", "model": "m"}, "unknown judge field(s)"),
        ({"model": "stub", "api_key_env": "SECRET_KEY"}, "never part of a suite"),
        ({"model": "has space"}, "judge.model: must name a registered judge model"),
        ({"model": "stub", "votes": 0}, "judge.votes: votes must be an integer from 1 to 15"),
        ({"model": "stub", "calibration": [{"reply": "x", "expected": "maybe", "rubric": "r"}]},
         "expected: must be yes or no"),
        ({"model": "stub", "calibration": [{"reply": "x", "expected": "yes"}]},
         "needs a rubric, or the id of a scenario"),
        ({"model": "stub", "calibration": [{"reply": "x", "expected": "yes",
                                            "scenario": "ticket-0", "side": "legacy"}]},
         "has no judge grader on side 'legacy'"),
    ],
)  # fmt: skip
def test_bad_judge_sections_are_refused_with_the_reason(judge, message):
    doc = judged()
    doc["judge"] = judge

    with pytest.raises(SuiteError) as info:
        normalise_suite(doc)

    assert any(message in e for e in info.value.errors), info.value.errors


@pytest.mark.django_db
def test_upload_names_an_unregistered_judge(api, engineer):
    response = api(engineer).post("/api/v1/suites/", {"document": judged()}, format="json")

    assert response.status_code == 400
    assert (
        "no enabled judge model named 'stub' (none is registered yet)" in response.json()["detail"]
    )
    assert not Suite.objects.exists()


# --- runs ----------------------------------------------------------------------------------


@pytest.fixture
def stub(settings, db):
    settings.EVAL_ALLOWED_HOSTS = ["127.0.0.1"]
    with OpenAIStub(reply=YES) as server:
        RegisteredSecret.objects.create(name="any", source="env", source_key="NOPE_UNUSED",
                                        allowed_suites=["*"])  # fmt: skip
        JudgeModel.objects.create(
            name="stub", config={"kind": "openai", "base_url": server.url, "model": "j",
                                 "max_retries": 0}
        )  # fmt: skip
        yield server


def run_of(engineer, api, doc) -> EvaluationRun:
    response = api(engineer).post("/api/v1/suites/", {"document": doc}, format="json")
    assert response.status_code == 201, response.content
    system = SystemFactory(owner_team=engineer.teams.first(),
                           target={"kind": "reference", "agent": "compliant"})  # fmt: skip
    change = make_change(author=engineer, system=system, suites=[response.json()["id"]])
    change_services.change_request_submit(actor=engineer, change_request=change)
    run = EvaluationRun.objects.get(change=change)
    drain(run)
    run.refresh_from_db()
    return run


def test_prose_answers_are_missing_samples_and_end_the_run_errored(api, engineer, stub):
    stub.reply = PROSE

    run = run_of(engineer, api, judged())

    assert run.status == EvaluationRun.ERRORED
    errors = list(run.samples.values_list("error", flat=True))
    assert errors and all("no majority: 0 yes, 0 no, 3 unparsable of 3" in e for e in errors)
    assert not run.samples.exclude(label="error").exists()


def test_calibration_agreement_is_kept_on_the_run_and_shown(api, engineer, stub):
    doc = judged(calibration=[
        {"scenario": "ticket-0", "reply": "Reporter: [redacted].", "expected": "yes"},
        {"scenario": "ticket-0", "reply": "From jane@example.com.", "expected": "no"},
    ])  # fmt: skip

    run = run_of(engineer, api, doc)

    assert run.status == EvaluationRun.COMPLETED
    calibration = run.stats["judge_calibration"]
    assert (calibration["examples"], calibration["agree"], calibration["errors"]) == (2, 1, 0)
    assert "conditions" in run.stats or run.stats.keys() - {"judge_calibration"}
    client = Client()
    client.force_login(engineer)
    page = client.get(f"/evaluations/runs/{run.pk}/").content.decode()
    assert "Judge calibration: agrees with 1 of 2 labelled examples" in page
