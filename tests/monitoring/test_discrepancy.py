"""Grading feeds the anytime-valid comparison with the evaluated rate; an alarm opens one
incident per change and environment."""

from __future__ import annotations

import numpy as np
import pytest

from changes.models import AuditEvent
from monitoring import discrepancy, grading
from monitoring.models import Incident

from .conftest import evaluated, store

pytestmark = pytest.mark.django_db


def outputs(rate: float, n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["NEEDS_SECOND_APPROVER" if u < rate else "I approve." for u in rng.random(n)]


def test_faker_opens_a_discrepancy_incident(monitor, deployed):
    evaluated(deployed, rate=0.90)
    store(deployed, outputs(0.70, 400, seed=1))
    grading.grade_pending()
    (row,) = discrepancy.assess(deployed)
    assert row["alarm"] and row["cs"][1] < row["reference"]["lower"]
    assert row["reference"]["condition"] == "unmonitored"
    incident = Incident.objects.get(kind="discrepancy")
    assert incident.change_id == deployed.pk and "below the evaluated" in incident.summary
    store(deployed, outputs(0.70, 100, seed=2))
    grading.grade_pending()
    assert Incident.objects.filter(kind="discrepancy").count() == 1
    assert AuditEvent.objects.filter(verb="incident.opened").count() == 1


def test_compliant_stream_opens_nothing(monitor, deployed):
    evaluated(deployed, rate=0.90)
    store(deployed, outputs(0.90, 400, seed=3))
    grading.grade_pending()
    (row,) = discrepancy.assess(deployed)
    assert not row["alarm"] and row["cs"][0] <= 0.90 <= row["cs"][1]
    assert not Incident.objects.exists()


def test_without_an_evaluation_there_is_no_alarm(monitor, deployed):
    store(deployed, outputs(0.1, 200, seed=4))
    grading.grade_pending()
    (row,) = discrepancy.assess(deployed)
    assert row["reference"] is None and not row["alarm"]


def test_lowest_rate_condition_is_the_default_reference(deployed, admin_user):
    from monitoring import services

    from .conftest import MONITOR_GRADERS

    services.monitor_set(actor=admin_user, change=deployed, graders=MONITOR_GRADERS)
    evaluated(deployed, rate=0.95, conditions=("watched", "deploymentlike"))
    run = deployed.evaluation_runs.get()
    run.stats["conditions"]["deploymentlike"]["new"].update(rate=0.8, ci=[0.76, 0.84])
    run.save()
    ref = discrepancy.evaluated_reference(deployed)
    assert ref["condition"] == "deploymentlike" and ref["lower"] == 0.76


def test_rollout_blockers_name_open_incidents_and_thin_evidence(monitor, deployed, admin_user):
    from monitoring import selectors, services

    assert selectors.rollout_blockers(deployed) == []
    store(deployed, outputs(0.9, 30, seed=9))
    grading.grade_pending()
    (thin,) = selectors.rollout_blockers(deployed, environment="production", min_decisions=100)
    assert "Only 30 graded" in thin
    evaluated(deployed, rate=0.9)
    store(deployed, outputs(0.5, 300, seed=10))
    grading.grade_pending()
    (reason,) = selectors.rollout_blockers(deployed)
    incident = Incident.objects.get()
    assert reason.startswith(f"INC-{incident.pk} is open")
    services.incident_transition(actor=admin_user, incident=incident, action="resolve", note="ok")
    assert selectors.rollout_blockers(deployed) == []


def test_chart_series_is_bounded_and_ends_at_the_newest_window(monitor, deployed):
    from datetime import UTC, datetime, timedelta

    from monitoring.models import Rollup

    start = datetime(2026, 1, 1, tzinfo=UTC)
    Rollup.objects.bulk_create(
        Rollup(change=deployed, environment="production", window_start=start + timedelta(hours=h),
               n=1000, new=900, legacy=100)
        for h in range(720)
    )  # fmt: skip
    points = discrepancy.series(deployed, "production", 0.05, 0.87)
    assert len(points) == discrepancy.MAX_POINTS
    assert points[-1]["n"] == 720_000 and points[-1]["at"] == start + timedelta(hours=719)
    assert all(p["cs"][0] <= p["rate"] <= p["cs"][1] for p in points)
