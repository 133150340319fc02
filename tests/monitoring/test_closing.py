"""Post-implementation review (issue 13 item 7): a monitored change closes only after its
monitoring window (per criticality, or N human-reviewed decisions), with a frozen clock; the
close records the live evidence and issues a post-deployment attestation that verifies."""

# ruff: noqa: F811 - the builders' fixtures are imported by name and requested by name
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from attestations import services as attestation_services
from attestations.models import Attestation
from changes import services as change_services
from changes import states
from changes.models import AuditEvent
from core.errors import Conflict
from monitoring import grading
from monitoring import services as monitoring_services
from monitoring.models import ReviewItem
from tests.attestations.test_document_builders import (  # noqa: F401 - fixtures
    approve,
    deploy,
    enqueued,
    passing_evaluation,
    render_pending,
    signing_key,
)
from tests.factories import make_change
from tests.monitoring.conftest import MONITOR_GRADERS, store

pytestmark = pytest.mark.django_db
DEPLOYED_AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch):
    """A frozen ``timezone.now``: ``clock(moment)`` sets it, ``clock(None)`` lets it run."""
    real = timezone.now

    def set_to(moment):
        monkeypatch.setattr(timezone, "now", (lambda: moment) if moment else real)

    return set_to


@pytest.fixture
def monitored(engineer, reviewer, passing_evaluation, enqueued, settings, clock):
    """A medium-criticality change whose monitor was approved with it, deployed at
    ``DEPLOYED_AT`` with 40 graded live decisions (38 new, 2 legacy)."""
    settings.MONITORING_CLOSE_DAYS = {"low": 1, "medium": 3, "high": 7, "critical": 14}
    settings.MONITORING_CLOSE_REVIEWS = {"low": 5, "medium": 5, "high": 5, "critical": 5}
    change = make_change(author=engineer)
    monitoring_services.monitor_set(actor=engineer, change=change, graders=MONITOR_GRADERS)
    change = approve(change, author=engineer, reviewers=[reviewer])
    clock(DEPLOYED_AT)
    deploy(change, actor=engineer)
    assert change.state == states.DEPLOYED and change.deployed_at == DEPLOYED_AT
    store(change, ["NEEDS_SECOND_APPROVER"] * 38 + ["approved"] * 2, start=DEPLOYED_AT)
    grading.grade_pending()
    return change


def close(change, actor):
    change_services.change_request_close(actor=actor, change_request=change)
    change.refresh_from_db()


def test_closing_inside_the_window_is_a_409_in_words_and_writes_nothing(
    monitored, engineer, clock, client
):
    clock(DEPLOYED_AT + timedelta(days=3) - timedelta(minutes=1))
    events = AuditEvent.objects.count()
    with pytest.raises(Conflict) as refused:
        close(monitored, engineer)
    assert refused.value.code == "close_refused"
    (reason,) = refused.value.reasons
    assert "medium-criticality" in reason and "2026-03-05 09:00" in reason
    assert "5 live decisions are human-reviewed (0 so far)" in reason
    assert not monitored.incidents.exists()
    assert AuditEvent.objects.count() == events
    monitored.refresh_from_db()
    assert monitored.state == states.DEPLOYED
    # The API answers 409 with the reason; the change page states it.
    from tests.conftest import api_client_for

    answer = api_client_for(engineer).post(f"/api/v1/changes/{monitored.pk}/close/")
    assert answer.status_code == 409
    assert "2026-03-05 09:00" in " ".join(answer.json()["reasons"])
    client.force_login(engineer)
    page = client.get(f"/changes/{monitored.pk}/").content.decode()
    assert 'id="monitoring-window"' in page and "2026-03-05 09:00" in page


def test_after_the_window_the_close_records_the_evidence_and_issues_a_verified_attestation(
    monitored, engineer, engineer2, clock, signing_key
):
    clock(DEPLOYED_AT + timedelta(days=3, minutes=1))
    close(monitored, engineer)
    assert monitored.state == states.CLOSED
    event = AuditEvent.objects.get(verb="change.closed")
    evidence = event.data["post_deployment"]["monitoring"]
    assert evidence["window"]["ended_by"] == "time"
    assert evidence["window"]["started_at"] == DEPLOYED_AT.isoformat()
    (row,) = evidence["live"]
    assert (row["environment"], row["decisions"], row["new"], row["legacy"]) == (
        "production", 40, 38, 2,
    )  # fmt: skip
    assert row["live_rate"] == 0.95 and row["live_cs"][0] < 0.95 <= row["live_cs"][1]
    assert row["below_evaluated"] is False and row["evaluated_rate"] is not None
    assert evidence["incidents"] == [] and evidence["review"]["population"] == 40
    clock(None)  # the render signs with the real time
    closed = Attestation.objects.get(change=monitored, reason=Attestation.CLOSED)
    rendered = {a.pk: a for a in render_pending()}
    closed = rendered[closed.pk]
    assert closed.status == Attestation.READY, closed.error
    assert closed.facts["post_deployment"]["event"]["id"] == event.pk
    assert closed.facts["post_deployment"]["monitoring"] == evidence
    assert "post-deployment review" in closed.facts["attests"]
    result = attestation_services.verify_upload(
        actor=engineer2, pdf_bytes=bytes(closed.pdf), filename="post.pdf"
    )
    assert result["valid"] is True, result["failed"]
    import io

    from pypdf import PdfReader

    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(bytes(closed.pdf))).pages)
    assert "Post-deployment review (live evidence)" in text


def test_enough_human_reviews_end_the_window_before_the_calendar(monitored, engineer, clock):
    clock(DEPLOYED_AT + timedelta(hours=5))
    decisions = list(monitored.decisions.order_by("id")[:5])
    for d in decisions:
        ReviewItem.objects.update_or_create(  # grading may have sampled it already
            decision=d, defaults=dict(
                system=monitored.system, stratum="production|new", probability=1.0,
                verdict="agree_new", reviewer=engineer,
                reviewed_at=DEPLOYED_AT + timedelta(hours=1),
            ),
        )  # fmt: skip
    close(monitored, engineer)
    event = AuditEvent.objects.get(verb="change.closed")
    assert event.data["post_deployment"]["monitoring"]["window"]["ended_by"] == "reviews"


def test_an_open_incident_holds_the_close_after_the_window(monitored, engineer, clock):
    clock(DEPLOYED_AT + timedelta(days=30))
    incident = monitoring_services.incident_open(
        system=monitored.system, change=monitored, kind="discrepancy", key="d:1",
        environment="production", summary="Below the band.", details={},
    )  # fmt: skip
    with pytest.raises(Conflict) as refused:
        close(monitored, engineer)
    assert refused.value.reasons == [f"INC-{incident.pk} is open: resolve it before closing."]
    monitoring_services.incident_transition(actor=engineer, incident=incident, action="resolve")
    close(monitored, engineer)
    evidence = AuditEvent.objects.get(verb="change.closed").data["post_deployment"]
    assert [i["state"] for i in evidence["monitoring"]["incidents"]] == ["resolved"]


def test_an_unmonitored_change_closes_at_once_without_a_post_deployment_attestation(
    engineer, reviewer, passing_evaluation, enqueued
):
    change = approve(make_change(author=engineer), author=engineer, reviewers=[reviewer])
    deploy(change, actor=engineer)
    close(change, engineer)
    assert change.state == states.CLOSED
    assert not Attestation.objects.filter(change=change, reason=Attestation.CLOSED).exists()
    assert "post_deployment" not in AuditEvent.objects.get(verb="change.closed").data
