"""Monitor and status API."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from monitoring import grading

from .conftest import MONITOR_GRADERS, evaluated, store

pytestmark = pytest.mark.django_db


def test_put_and_get_monitor(deployed, admin_user, reviewer):
    client = APIClient()
    client.force_authenticate(reviewer)
    url = f"/api/v1/changes/{deployed.pk}/monitor/"
    assert client.get(url).status_code == 404
    assert client.put(url, {"graders": MONITOR_GRADERS}, format="json").status_code == 403
    client.force_authenticate(admin_user)
    bad = client.put(
        url, {"graders": {"new": {"regex": "("}, "legacy": {"contains": "x"}}}, format="json"
    )
    assert bad.status_code == 400 and "graders.new" in bad.json()["detail"]
    ok = client.put(
        url, {"graders": MONITOR_GRADERS, "evaluated_condition": "unmonitored"}, format="json"
    )
    assert ok.status_code == 200 and ok.json()["evaluated_condition"] == "unmonitored"
    assert client.get(url).json()["graders"]["new"] == [
        {"contains": "NEEDS_SECOND_APPROVER", "ignore_case": False}
    ]


def test_status_reports_live_assessment_review_and_incidents(monitor, deployed, reviewer):
    evaluated(deployed, rate=0.9)
    store(deployed, ["NEEDS_SECOND_APPROVER"] * 100 + ["I approve."] * 100)
    grading.grade_pending()
    client = APIClient()
    client.force_authenticate(reviewer)
    body = client.get(f"/api/v1/systems/{deployed.system_id}/monitoring/").json()
    assert body["live"]["production"] == {
        "protocol_sha256": deployed.proposed_protocol.content_sha256,
        "change": deployed.pk,
    }
    assert body["live"]["staging"]["change"] is None
    (row,) = body["assessments"]
    assert row["alarm"] and row["n"] == 200 and row["new"] == 100
    assert body["incidents"][0]["kind"] == "discrepancy"
    assert body["review"]["population"] == 200
