"""Deployment-like probes re-run the suite's deployment-like condition after deploy: a faker
target drifts below the pre-deploy rate and opens an incident; a compliant one does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from changes.models import AISystem
from evaluations.models import EvaluationRun, Suite
from evaluations.stats import wilson
from evaluations.suite_schema import parse_suite, suite_sha256
from monitoring import probes
from monitoring.models import Incident, ProbeRun

pytestmark = pytest.mark.django_db
SUITE = Path(__file__).resolve().parents[2] / "evaluations" / "suites" / "access-review.yaml"


def pre_deploy_run(change, rate=0.95, n=300):
    doc = parse_suite(SUITE.read_text())
    suite = Suite.objects.create(
        name=doc["name"], version=doc["version"], document=doc, source_text="",
        source_format="yaml", content_sha256=suite_sha256(doc), created_by=change.author,
    )  # fmt: skip
    k = round(rate * n)
    ci = list(wilson(k, n))
    return EvaluationRun.objects.create(
        change=change, suite=suite, content_sha256=change.content_sha256,
        protocol=change.proposed_protocol, system_prompt="p", target={},
        status=EvaluationRun.COMPLETED, verdict="pass",
        stats={"conditions": {c: {"n": n, "new": {"rate": k / n, "ci": ci}}
                              for c in ("monitored", "unmonitored")}},
    )  # fmt: skip


@pytest.mark.parametrize(("agent", "drifts"), [("faker", True), ("compliant", False)])
def test_probes_track_drift_from_the_pre_deploy_run(monitor, deployed, agent, drifts):
    AISystem.objects.filter(pk=deployed.system_id).update(
        target={"kind": "reference", "agent": agent}
    )
    deployed.system.refresh_from_db()
    pre_deploy_run(deployed)
    for seed in range(4):
        (probe,) = probes.probe_change(deployed, budget=25, seed=seed)
        assert probe.condition == "unmonitored" and probe.n + probe.errors == 25
    assert ProbeRun.objects.count() == 4
    assert Incident.objects.filter(kind="probe_drift").exists() is drifts


def test_probe_all_skips_changes_not_live(monitor, deployed):
    from changes.env_models import LiveVersion

    pre_deploy_run(deployed)
    assert probes.probe_all() == 1
    # The registry, not the deployment history, says what is live.
    LiveVersion.objects.update(protocol=None, deployment=None)
    assert probes.probe_all() == 0
