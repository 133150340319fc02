"""Downloads of an attestation that is on its way: 202 with ``Retry-After``, never a 404.

404 only when no attestation was ever issued for the change; 409 when the only one failed for
good. A newer version on its way is named while the older ready one is served.
"""
# ruff: noqa: F811 - the builders' fixtures are imported by name and requested by name

from __future__ import annotations

import json

import pytest

from attestations import selectors
from attestations.models import Attestation
from tests.attestations.test_document_builders import (  # noqa: F401 - fixtures
    approve,
    deploy,
    enqueued,
    passing_evaluation,
    ready_attestation,
    render_pending,
    signing_key,
)
from tests.factories import make_change

pytestmark = pytest.mark.django_db


@pytest.fixture
def pending(engineer, reviewer, passing_evaluation, signing_key, enqueued) -> Attestation:
    change = make_change(author=engineer)
    approve(change, author=engineer, reviewers=[reviewer])
    return Attestation.objects.get(change=change)


def pdf_url(row: Attestation) -> str:
    return f"/api/v1/changes/{row.change_id}/attestation.pdf"


def set_row(row: Attestation, **fields) -> None:
    Attestation.objects.filter(pk=row.pk).update(**fields)


def assert_202(response, *, status: str, retry_after: int, row: Attestation) -> dict:
    assert response.status_code == 202, response.content
    assert response["Retry-After"] == str(retry_after)
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == "attestation_pending"
    assert body["status"] == status
    assert body["retry_after"] == retry_after
    assert (body["attestation"], body["version"], body["reason"]) == (row.pk, 1, "approved")
    assert f"CR-{row.change_id}" in body["detail"]
    return body


@pytest.mark.parametrize("accept", ["application/json", "application/pdf", "*/*"])
def test_pending_is_202_with_retry_after_then_the_pdf(api, auditor, pending, accept):
    client = api(auditor)
    response = client.get(pdf_url(pending), HTTP_ACCEPT=accept)
    assert_202(response, status="pending", retry_after=2, row=pending)

    (row,) = render_pending()
    response = client.get(pdf_url(pending), HTTP_ACCEPT=accept)
    assert response.status_code == 200
    assert response.content == bytes(row.pdf)
    assert response["X-Attestation-Version"] == "1"
    assert "X-Attestation-Newer-Version" not in response


def test_rendering_is_202(api, auditor, pending):
    set_row(pending, status=Attestation.RENDERING, attempts=1)
    assert_202(api(auditor).get(pdf_url(pending)), status="rendering", retry_after=2, row=pending)


def test_a_failed_render_with_attempts_left_is_still_on_its_way(api, auditor, pending):
    set_row(pending, status=Attestation.FAILED, attempts=1, error="boom")
    response = api(auditor).get(pdf_url(pending))
    body = assert_202(response, status="retrying", retry_after=30, row=pending)
    assert "boom" not in json.dumps(body)  # the internal error stays internal


@pytest.mark.parametrize(
    "fields",
    [
        {"status": Attestation.FAILED, "attempts": 3, "error": "gave up"},
        {"status": Attestation.FAILED, "attempts": 0, "facts": None, "error": "no facts"},
    ],
    ids=["attempts-exhausted", "no-facts"],
)
def test_a_render_that_gave_up_is_a_409_not_a_404(api, auditor, pending, fields):
    set_row(pending, **fields)
    for url in (pdf_url(pending), f"/api/v1/attestations/{pending.pk}/pdf"):
        response = api(auditor).get(url, HTTP_ACCEPT="application/pdf")
        assert response.status_code == 409, url
        assert response["Content-Type"] == "application/json"
        assert response.json()["code"] == "attestation_failed"
        assert "admin" in response.json()["detail"]


def test_the_reaper_rule_and_the_202_rule_are_one_rule(pending):
    # What the API calls "on its way" is exactly what requeue_stalled sets back to pending.
    from attestations import services

    set_row(pending, status=Attestation.FAILED, attempts=2)
    assert selectors.is_on_its_way(Attestation.objects.get(pk=pending.pk))
    services.attestation_requeue_stalled()
    assert Attestation.objects.get(pk=pending.pk).status == Attestation.PENDING
    set_row(pending, status=Attestation.FAILED, attempts=3)
    assert not selectors.is_on_its_way(Attestation.objects.get(pk=pending.pk))
    services.attestation_requeue_stalled()
    assert Attestation.objects.get(pk=pending.pk).status == Attestation.FAILED


def test_per_id_downloads_are_202_while_on_their_way(api, auditor, pending):
    client = api(auditor)
    for suffix in ("pdf", "envelope.json"):
        response = client.get(
            f"/api/v1/attestations/{pending.pk}/{suffix}", HTTP_ACCEPT="application/pdf"
        )
        assert_202(response, status="pending", retry_after=2, row=pending)


def test_after_deploy_the_ready_one_is_served_and_the_newer_one_named(
    api, auditor, engineer, reviewer, passing_evaluation, signing_key, enqueued
):
    v1 = ready_attestation(engineer, [reviewer])
    deploy(v1.change, actor=engineer)
    response = api(auditor).get(pdf_url(v1))
    assert response.status_code == 200
    assert response.content == bytes(v1.pdf)
    assert response["X-Attestation-Version"] == "1"
    assert response["X-Attestation-Newer-Version"] == "2"

    (v2,) = render_pending()
    response = api(auditor).get(pdf_url(v1))
    assert response.content == bytes(v2.pdf)
    assert response["X-Attestation-Version"] == "2"
    assert "X-Attestation-Newer-Version" not in response


def test_none_ever_issued_is_the_only_404(api, auditor, engineer):
    change = make_change(author=engineer)
    response = api(auditor).get(f"/api/v1/changes/{change.pk}/attestation.pdf")
    assert response.status_code == 404
    assert response.json()["code"] == "no_attestation"


def test_a_stranger_learns_nothing_about_a_pending_attestation(api, pending, team_b):
    from tests.factories import UserFactory

    stranger = UserFactory(username="stranger", roles=["engineer"], team=team_b)
    assert api(stranger).get(pdf_url(pending)).status_code == 404
    assert api(stranger).get(f"/api/v1/attestations/{pending.pk}/pdf").status_code == 404
    assert api(None).get(pdf_url(pending)).status_code == 401


def test_the_schema_documents_202_and_retry_after(api, auditor):
    response = api(auditor).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    paths = json.loads(response.content)["paths"]
    for path in (
        "/api/v1/changes/{id}/attestation.pdf",
        "/api/v1/attestations/{id}/pdf",
        "/api/v1/attestations/{id}/envelope.json",
    ):
        responses = paths[path]["get"]["responses"]
        assert "Retry-After" in responses["202"]["headers"], path
        assert "application/json" in responses["202"]["content"], path
        assert "409" in responses, path
