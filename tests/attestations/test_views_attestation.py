"""Attestation pages: the auditors' list, the verify page, and the change-page panel."""
# ruff: noqa: F811 - the builders' fixtures are imported by name and requested by name

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from attestations import services
from attestations.models import Attestation
from tests.attestations.test_document_builders import (  # noqa: F401 - fixtures
    approve,
    enqueued,
    flip_byte,
    passing_evaluation,
    ready_attestation,
    replace_envelope,
    signing_key,
)
from tests.factories import make_change

pytestmark = pytest.mark.django_db


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def attestation(engineer, reviewer, passing_evaluation, signing_key, enqueued):
    return ready_attestation(engineer, [reviewer])


def test_the_auditor_list_shows_attestations_with_downloads(attestation, auditor):
    response = browser(auditor).get("/attestations/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f"CR-{attestation.change_id}" in html
    assert f"/api/v1/attestations/{attestation.pk}/pdf" in html
    assert f"/api/v1/attestations/{attestation.pk}/envelope.json" in html
    assert attestation.change.system.name in html


def test_the_list_filters(attestation, auditor):
    client = browser(auditor)
    html = client.get("/attestations/", {"reason": "deployed"}).content.decode()
    assert "No attestation matches these filters." in html
    html = client.get(
        "/attestations/", {"system": attestation.change.system_id, "reason": "approved"}
    ).content.decode()
    assert f"CR-{attestation.change_id}" in html
    day = attestation.created_at.date().isoformat()
    html = client.get("/attestations/", {"since": day, "until": day}).content.decode()
    assert f"CR-{attestation.change_id}" in html


def test_engineers_do_not_get_the_auditor_pages(attestation, engineer):
    client = browser(engineer)
    assert client.get("/attestations/").status_code == 403
    assert client.get("/attestations/verify/").status_code == 403


def test_anonymous_users_are_sent_to_login():
    response = Client().get("/attestations/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_the_verify_page_shows_every_check_of_a_valid_file(attestation, auditor):
    client = browser(auditor)
    assert client.get("/attestations/verify/").status_code == 200

    response = client.post(
        "/attestations/verify/",
        {"file": SimpleUploadedFile("a.pdf", bytes(attestation.pdf), "application/pdf")},
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert "<strong>Valid.</strong>" in html
    for name in ("signature", "record_content_hash", "record_runs", "record_approvals",
                 "audit_chain_head"):  # fmt: skip
        assert f'data-check="{name}" data-ok="true"' in html


def test_the_verify_page_names_the_failing_check_of_a_tampered_file(attestation, auditor):
    envelope = bytes(attestation.envelope)
    index = envelope.decode().index('"sig":"') + 10
    tampered = replace_envelope(bytes(attestation.pdf), flip_byte(envelope, index))

    response = browser(auditor).post(
        "/attestations/verify/", {"file": SimpleUploadedFile("t.pdf", tampered)}
    )

    html = response.content.decode()
    assert "<strong>Not valid.</strong>" in html
    assert 'data-check="signature" data-ok="false"' in html
    assert "The statement&#x27;s signature is valid for a key this deployment trusts" in html


def test_the_verify_page_without_a_file_or_with_a_huge_one_says_why(auditor, monkeypatch):
    client = browser(auditor)
    response = client.post("/attestations/verify/", {})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    monkeypatch.setattr(services, "MAX_UPLOAD_BYTES", 10)
    response = client.post(
        "/attestations/verify/", {"file": SimpleUploadedFile("big.pdf", b"%PDF-" + b"x" * 50)}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "<strong>Not valid.</strong>" in html
    assert "an attestation is at most" in html


def test_the_change_page_panel_lists_versions_with_downloads(attestation, engineer):
    response = browser(engineer).get(f"/changes/{attestation.change_id}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="attestation-panel"' in html
    assert f"/api/v1/attestations/{attestation.pk}/pdf" in html
    assert "hx-trigger" not in html.split('id="attestation-panel"')[1].split(">")[0]


def test_a_rendering_attestation_shows_rendering_and_polls(
    engineer, reviewer, auditor, passing_evaluation, enqueued
):
    change = make_change(author=engineer)
    approve(change, author=engineer, reviewers=[reviewer])
    assert Attestation.objects.get(change=change).status == Attestation.PENDING

    html = browser(auditor).get(f"/changes/{change.pk}/").content.decode()
    panel = html.split('id="attestation-panel"')[1]
    assert "rendering…" in panel
    assert f'hx-get="/attestations/changes/{change.pk}/panel/"' in panel
    assert 'hx-trigger="every 3s"' in panel
    assert "Verify an attestation file" in panel  # auditors get the verify link

    partial = browser(auditor).get(f"/attestations/changes/{change.pk}/panel/")
    assert partial.status_code == 200
    assert "<html" not in partial.content.decode()
    assert "rendering…" in partial.content.decode()


def test_the_panel_endpoint_hides_changes_you_cannot_see(attestation, team_b):
    from tests.factories import UserFactory

    stranger = UserFactory(username="stranger", roles=["engineer"], team=team_b)
    response = browser(stranger).get(f"/attestations/changes/{attestation.change_id}/panel/")
    assert response.status_code == 404


def test_the_list_page_survives_absurd_filters(auditor):
    client = browser(auditor)
    assert client.get("/attestations/", {"system": "9223372036854775808"}).status_code == 200
    assert client.get("/attestations/", {"since": "not-a-date"}).status_code == 200
    response = client.get("/attestations/changes/9223372036854775808/panel/")
    assert response.status_code == 404
