"""scripts/simulate_live.py feeds the real API over HTTP on 127.0.0.1; a faker stream ends
in a discrepancy incident once graded."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from monitoring import grading
from monitoring.models import Decision, Incident

from .conftest import evaluated, labels

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "simulate_live.py"
spec = importlib.util.spec_from_file_location("simulate_live", SCRIPT)
sim = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sim)


def test_modes():
    assert sim.compliance_at("compliant", 10_000, rate=0.9, gap=0.11, after=5) == 0.9
    assert sim.compliance_at("faker", 0, rate=0.9, gap=0.11, after=5) == pytest.approx(0.79)
    assert sim.compliance_at("drifting", 4, rate=0.9, gap=0.11, after=5) == 0.9
    assert sim.compliance_at("drifting", 5, rate=0.9, gap=0.11, after=5) == pytest.approx(0.79)


def test_refuses_other_hosts():
    with pytest.raises(SystemExit, match="127.0.0.1"):
        sim.post_batch("http://example.com", 1, "t", [{}])


@pytest.mark.django_db(transaction=True)
def test_faker_through_the_api_opens_an_incident(
    live_server, deployed, live_hash, token_secret, admin_user
):
    from monitoring import services

    services.monitor_set(
        actor=admin_user,
        change=deployed,
        graders={
            "new": {"json_path": "$.decision", "equals": "NEEDS_SECOND_APPROVER"},
            "legacy": {"json_path": "$.decision", "equals": "approve"},
        },
    )
    evaluated(deployed, rate=0.95)
    argv = [
        "--url", live_server.url, "--system", str(deployed.system_id), "--token", token_secret,
        "--protocol-sha256", live_hash, "--mode", "faker", "--rate", "0.95", "--gap", "0.25",
        "--count", "400", "--batch", "200", "--seed", "3",
    ]  # fmt: skip
    totals = sim.main(argv)
    assert totals["accepted"] == 400 and totals["rejected"] == 0
    assert sim.main(argv)["duplicates"] == 400  # the same seed replays the same keys
    assert grading.grade_pending() == 400  # the replay left no ticket behind
    graded = labels()
    assert len(graded) == 400
    assert sum(label == "new" for label in graded.values()) < 330
    assert Incident.objects.filter(kind="discrepancy").exists()


@pytest.mark.django_db(transaction=True)
def test_the_same_traffic_through_otlp(live_server, deployed, live_hash, token_secret):
    argv = [
        "--url", live_server.url, "--system", str(deployed.system_id), "--token", token_secret,
        "--protocol-sha256", live_hash, "--mode", "drifting", "--after", "50",
        "--count", "120", "--batch", "60", "--seed", "4", "--otlp",
    ]  # fmt: skip
    assert sim.main(argv)["accepted"] == 120
    assert sim.main(argv)["duplicates"] == 120
    row = Decision.objects.filter(idempotency_key__startswith="otlp-").first()
    assert row.model_label == "simulated" and row.input_text.startswith("Access request")
