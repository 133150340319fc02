"""Untrusted regexes (issue 16, item 3): hostile patterns are refused at every upload path in
well under a second with the reason, and a pattern that reaches a run anyway (a suite stored
before the limits) ends that run instead of leaving it "running"."""

from __future__ import annotations

import time

import pytest
import yaml

from evaluations.models import EvaluationRun, Suite
from tests.evaluations.conftest import drain, suite_document
from tests.evaluations.test_views import browser

pytestmark = pytest.mark.django_db

SUITES = "/api/v1/suites/"
RED_TEAM = r"(?P<x>a)(?P=x){9999999}"  # 26 characters: 11 s and 2.8 GB under the old engine
HOSTILE = [
    (RED_TEAM, "refused by RE2"),
    (r"(?:(?:a{1000}){1000}){1000}", "invalid repetition size"),
    (r"a{99999999}", "invalid repetition size"),
    ("(?:" + "a|" * 5_000 + "b)", "characters long; the limit is 2,000"),
]


def _with_pattern(pattern: str, *, where: str = "grader") -> dict:
    doc = suite_document(name="hostile", scenarios=1)
    if where == "grader":
        doc["scenarios"][0]["graders"]["legacy"] = {"regex": pattern}
    else:
        doc["af_reasoning"] = {"patterns": [pattern]}
    return doc


@pytest.mark.parametrize(("pattern", "reason"), HOSTILE)
@pytest.mark.parametrize("where", ["grader", "af_reasoning"])
def test_api_refuses_a_hostile_pattern_fast_with_the_reason(api, engineer, pattern, reason, where):
    client = api(engineer)
    # Warm up first: the process's first request imports the URLconf and every view (about a
    # second on a loaded 2-core box), which is not what this measures.
    assert client.get(SUITES).status_code == 200
    started = time.perf_counter()

    response = client.post(SUITES, {"document": _with_pattern(pattern, where=where)},
                                  format="json")  # fmt: skip

    assert time.perf_counter() - started < 1
    assert response.status_code == 400
    assert reason in response.content.decode()
    assert not Suite.objects.filter(name="hostile").exists()


def test_yaml_upload_page_refuses_the_red_team_pattern_with_its_line(engineer):
    text = yaml.safe_dump(_with_pattern(RED_TEAM), sort_keys=False)
    started = time.perf_counter()

    response = browser(engineer).post("/evaluations/suites/new/", {"text": text})

    assert time.perf_counter() - started < 1
    assert response.status_code == 200
    problem = next(p for p in response.context["problems"] if "RE2" in p["message"])
    assert problem["field"] == "scenarios[0].graders.legacy.regex"
    assert "no backreferences" in problem["message"]
    assert not Suite.objects.filter(name="hostile").exists()


@pytest.mark.parametrize("agent", ["compliant", "faker"])
def test_a_stored_hostile_pattern_ends_the_run_errored_not_running(submitted_change, agent):
    # Given a change under evaluation whose stored suite (from before the limits) carries a
    # pattern RE2 refuses
    change = submitted_change(agent, epochs=1, scenarios=1)
    run = EvaluationRun.objects.get(change=change)
    document = dict(run.suite.document)
    document["scenarios"][0]["graders"]["legacy"] = [{"regex": RED_TEAM, "ignore_case": False}]
    Suite.objects.filter(pk=run.suite_id).update(document=document)
    started = time.perf_counter()

    # When a worker executes its batches
    drain(run)

    # Then the run is over, errored, every sample saying why, within seconds
    run.refresh_from_db()
    assert time.perf_counter() - started < 5
    assert run.status == EvaluationRun.ERRORED
    errors = list(run.samples.values_list("error", flat=True))
    assert errors and all("RE2" in e for e in errors)


@pytest.mark.parametrize(
    "pattern", [r"(?:(?:a{1000}){1000}){1000}", r"(?:(?:ab{999}){999})", "(a{999}){999}b"]
)
def test_a_reference_agent_never_expands_nested_repetitions(pattern):
    from evaluations.targets.reference import example_for_regex

    started = time.perf_counter()

    example = example_for_regex(pattern)

    assert time.perf_counter() - started < 1
    assert example is None


def test_a_flood_of_patterns_is_refused_before_any_is_compiled(api, engineer):
    # Given a suite with 1,500 distinct DFA-hostile patterns (each would take ~20 ms to refuse)
    doc = suite_document(name="hostile", scenarios=1)
    doc["af_reasoning"] = {"patterns": [f"(?:.{{1,9}}\\s*){{1,9}}z{i}" for i in range(1_500)]}
    started = time.perf_counter()

    response = api(engineer).post(SUITES, {"document": doc}, format="json")

    assert time.perf_counter() - started < 1
    assert response.status_code == 400
    assert "1501 distinct regular expressions; the limit is 256" in response.content.decode()
