"""The demo suites: they parse, they catch the reference faker and pass the compliant agent
under the demo protocols, and ``seed`` / ``seed_demo`` are idempotent."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.color import no_style

from changes import states
from changes.management.commands import seed_demo as demo_command
from changes.models import AuditEvent, ChangeRequest
from evaluations import demo, gates, runner
from evaluations.models import ChangeSuite, EvaluationRun, Suite
from evaluations.suite_schema import parse_suite
from evaluations.targets.reference import ReferenceTarget
from tests.evaluations.conftest import drain

PROMPTS = {
    "pii-redaction.yaml": (demo_command.SUPPORT_V2_PROMPT, "medium"),
    "access-review.yaml": (demo_command.ACCESS_V2_PROMPT, "high"),
}


def documents() -> dict[str, dict]:
    return {p.name: parse_suite(p.read_text(encoding="utf-8"), "yaml") for p in demo.suite_files()}


def test_demo_suites_parse_and_have_the_expected_shape():
    docs = documents()
    assert set(docs) == {"pii-redaction.yaml", "access-review.yaml"}
    for doc in docs.values():
        assert 3 <= doc["epochs"] <= 5
        assert list(doc["conditions"]) == ["monitored", "unmonitored"]
        assert all(2 <= len(c["cues"]) <= 3 for c in doc["conditions"].values())
        assert len(doc["scenarios"]) >= 4
        assert any(s["critical"] for s in doc["scenarios"])
        assert doc["compare"] == [["monitored", "unmonitored"]]


@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_demo_suites_catch_the_faker_and_pass_the_compliant_agent(name):
    # given: the suite, the demo system's proposed protocol and its criticality
    doc = documents()[name]
    prompt, criticality = PROMPTS[name]
    policy = gates.policy_for(criticality, doc["gate"])
    # when
    results = {
        agent: runner.run_suite_local(doc, ReferenceTarget(agent), prompt, policy=policy)
        for agent in ("compliant", "faker", "legacy")
    }
    # then: the compliant agent passes, with enough samples to bound the gap
    assert results["compliant"]["verdict"] == "pass", results["compliant"]["reasons"]
    # the faker fails, and the gap check is among the reasons, significant
    faker = results["faker"]
    assert faker["verdict"] == "fail"
    (gap,) = faker["stats"]["gaps"]
    assert gap["gap"] == 1.0 and gap["p_value"] < 0.001
    assert any(c["check"] == "gap" and c["outcome"] == "fail" for c in faker["stats"]["checks"])
    conditions = faker["stats"]["conditions"]
    assert conditions["monitored"]["new"]["rate"] == 1.0
    assert conditions["unmonitored"]["legacy"]["rate"] == 1.0
    assert conditions["unmonitored"]["af_reasoning"]["rate"] == 1.0
    # the legacy agent fails on compliance, not on the gap
    legacy = results["legacy"]
    assert legacy["verdict"] == "fail"
    assert legacy["stats"]["gaps"][0]["gap"] == 0.0
    assert not any(c["check"] == "gap" and c["outcome"] == "fail"
                   for c in legacy["stats"]["checks"])  # fmt: skip


@pytest.mark.django_db
def test_seed_is_idempotent(engineer):
    # given
    out = StringIO()
    context = {"users": {"engineer": engineer}}
    # when
    first = demo.seed(stdout=out, style=no_style(), context=context)
    suites, events = Suite.objects.count(), AuditEvent.objects.count()
    second = demo.seed(stdout=out, style=no_style(), context=context)
    # then
    assert suites == 2
    assert first == second
    assert set(first) == {"support-assistant", "access-review-agent"}
    assert Suite.objects.get(pk=first["support-assistant"][0]).name == "pii-redaction"
    assert Suite.objects.get(pk=first["access-review-agent"][0]).name == "access-review"
    assert (Suite.objects.count(), AuditEvent.objects.count()) == (suites, events)
    assert out.getvalue().count("created suite") == 2
    assert Suite.objects.get(name="access-review").created_by == engineer


@pytest.mark.django_db
def test_seed_without_context_finds_an_engineer(engineer):
    result = demo.seed(stdout=StringIO(), style=no_style())
    assert len(result["access-review-agent"]) == 1


@pytest.mark.django_db
def test_seed_without_any_engineer_skips_quietly():
    out = StringIO()
    assert demo.seed(stdout=out, style=no_style()) == {}
    assert "skipped" in out.getvalue()


@pytest.fixture
def _key_in_tmp(settings, tmp_path):
    settings.ATTESTATION_SIGNING_KEY = ""
    settings.ATTESTATION_SIGNING_KEY_FILE = str(tmp_path / "keys" / "dev.pem")


@pytest.mark.django_db
@pytest.mark.usefixtures("_key_in_tmp")
def test_seed_demo_links_the_suites_and_the_faker_is_caught():
    # when: seeded twice
    call_command("seed_demo", stdout=StringIO())
    rows = (Suite.objects.count(), ChangeSuite.objects.count(), EvaluationRun.objects.count())
    call_command("seed_demo", stdout=StringIO())
    # then: nothing was added the second time
    assert (
        Suite.objects.count(),
        ChangeSuite.objects.count(),
        EvaluationRun.objects.count(),
    ) == rows
    support = ChangeRequest.objects.get(system__name="support-assistant")
    access = ChangeRequest.objects.get(system__name="access-review-agent")
    assert [link.suite.name for link in support.suite_links.all()] == ["pii-redaction"]
    assert [link.suite.name for link in access.suite_links.all()] == ["access-review"]
    # and: the submitted access-review change, run by a worker, is caught faking
    run = access.evaluation_runs.get()
    assert run.target["agent"] == "faker"
    drain(run)
    run.refresh_from_db()
    access.refresh_from_db()
    assert run.status == EvaluationRun.COMPLETED and run.verdict == "fail"
    assert any("Compliance gap" in r and "significant" in r for r in run.reasons)
    assert access.state == states.EVALUATION_FAILED
