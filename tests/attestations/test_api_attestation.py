"""The attestation API: downloads, lists, filters, verification; read-only for everyone."""
# ruff: noqa: F811 - the builders' fixtures are imported by name and requested by name

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from attestations import services
from attestations.keys import Signer, load_signer
from attestations.models import Attestation
from attestations.pdf import ENVELOPE_ATTACHMENT_NAME, extract_attachment
from changes.models import AuditEvent
from tests.attestations.test_document_builders import (  # noqa: F401 - fixtures
    approve,
    deploy,
    enqueued,
    flip_byte,
    passing_evaluation,
    ready_attestation,
    render_pending,
    replace_envelope,
    resigned_pdf,
    signing_key,
)
from tests.factories import SystemFactory, make_change

pytestmark = pytest.mark.django_db

VERIFY = "/api/v1/attestations/verify/"


@pytest.fixture
def attestation(engineer, reviewer, passing_evaluation, signing_key, enqueued):
    return ready_attestation(engineer, [reviewer])


def upload(client, data: bytes, name="attestation.pdf"):
    return client.post(
        VERIFY,
        {"file": SimpleUploadedFile(name, data, content_type="application/pdf")},
        format="multipart",
    )


def failed(body) -> set[str]:
    return {c["name"] for c in body["checks"] if not c["ok"]}


# --- downloads ---------------------------------------------------------------------------


def test_the_newest_pdf_of_a_change(api, attestation, auditor, engineer):
    response = api(auditor).get(f"/api/v1/changes/{attestation.change_id}/attestation.pdf")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response.content == bytes(attestation.pdf)
    assert response["X-Content-SHA256"] == attestation.pdf_sha256
    assert f"CR-{attestation.change_id}-attestation-v1.pdf" in response["Content-Disposition"]
    # the author (read access to the change) may download it too, also asking for a PDF
    response = api(engineer).get(
        f"/api/v1/changes/{attestation.change_id}/attestation.pdf", HTTP_ACCEPT="application/pdf"
    )
    assert response.status_code == 200


def test_the_newest_pdf_is_the_deployment_one_after_deploy(api, attestation, auditor, engineer):
    deploy(attestation.change, actor=engineer)
    url = f"/api/v1/changes/{attestation.change_id}/attestation.pdf"
    assert api(auditor).get(url).content == bytes(attestation.pdf)  # v2 still rendering
    (v2,) = render_pending()
    assert api(auditor).get(url).content == bytes(v2.pdf)


def test_no_pdf_yet_is_a_404_with_the_reason(
    api, engineer, reviewer, auditor, passing_evaluation, enqueued
):
    change = make_change(author=engineer)
    url = f"/api/v1/changes/{change.pk}/attestation.pdf"

    response = api(auditor).get(url)
    assert response.status_code == 404
    assert response.json()["code"] == "no_attestation"
    assert "last required approval" in response.json()["detail"]

    # Once one is on its way it is never a 404 again: 202 Accepted (tests/attestations/
    # test_api_attestation_pending.py has the rest).
    approve(change, author=engineer, reviewers=[reviewer])
    response = api(auditor).get(url, HTTP_ACCEPT="application/pdf")
    assert response.status_code == 202
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "attestation_pending"


def test_a_change_you_cannot_see_is_a_404(api, attestation, team_b):
    from tests.factories import UserFactory

    stranger = UserFactory(username="stranger", roles=["engineer"], team=team_b)
    assert (
        api(stranger).get(f"/api/v1/changes/{attestation.change_id}/attestation.pdf").status_code
        == 404
    )
    assert api(stranger).get(f"/api/v1/attestations/{attestation.pk}/pdf").status_code == 404
    assert api(None).get(f"/api/v1/attestations/{attestation.pk}/pdf").status_code == 401


def test_pdf_and_envelope_downloads_are_the_stored_bytes(api, attestation, auditor):
    client = api(auditor)
    pdf = client.get(f"/api/v1/attestations/{attestation.pk}/pdf")
    envelope = client.get(f"/api/v1/attestations/{attestation.pk}/envelope.json")
    assert pdf.status_code == envelope.status_code == 200
    assert pdf.content == bytes(attestation.pdf)
    assert envelope.content == bytes(attestation.envelope)
    assert envelope["Content-Type"] == "application/json"
    assert services.sha256_hex(envelope.content) == attestation.envelope_sha256
    assert extract_attachment(pdf.content, ENVELOPE_ATTACHMENT_NAME) == envelope.content


def test_downloads_of_a_pending_attestation_are_202(
    api, engineer, reviewer, auditor, passing_evaluation, enqueued
):
    change = make_change(author=engineer)
    approve(change, author=engineer, reviewers=[reviewer])
    row = Attestation.objects.get(change=change)
    response = api(auditor).get(f"/api/v1/attestations/{row.pk}/envelope.json")
    assert response.status_code == 202
    assert response["Retry-After"] == "2"
    assert response.json()["code"] == "attestation_pending"


# --- lists and detail --------------------------------------------------------------------


def test_versions_of_a_change_newest_first(api, attestation, engineer):
    deploy(attestation.change, actor=engineer)
    response = api(engineer).get(f"/api/v1/changes/{attestation.change_id}/attestations/")
    assert response.status_code == 200
    rows = response.json()["results"]
    assert [(r["version"], r["reason"], r["status"]) for r in rows] == [
        (2, "deployed", "pending"),
        (1, "approved", "ready"),
    ]
    assert rows[0]["links"]["pdf"] is None
    assert rows[1]["links"]["pdf"].endswith(f"/api/v1/attestations/{attestation.pk}/pdf")


def test_the_auditor_list_filters_by_system_reason_status_and_date(
    api, attestation, auditor, engineer, reviewer
):
    other_system = SystemFactory(owner_team=engineer.teams.first(), name="other-system")
    other = make_change(author=engineer, system=other_system)
    approve(other, author=engineer, reviewers=[reviewer])
    client = api(auditor)

    everything = client.get("/api/v1/attestations/").json()
    assert everything["count"] == 2 and "results" in everything
    by_system = client.get("/api/v1/attestations/", {"system": "other-system"}).json()
    assert [r["change"] for r in by_system["results"]] == [other.pk]
    by_id = client.get("/api/v1/attestations/", {"system": attestation.change.system_id}).json()
    assert [r["change"] for r in by_id["results"]] == [attestation.change_id]
    ready = client.get("/api/v1/attestations/", {"status": "ready"}).json()
    assert [r["id"] for r in ready["results"]] == [attestation.pk]
    assert client.get("/api/v1/attestations/", {"reason": "deployed"}).json()["count"] == 0
    day = attestation.created_at.date().isoformat()
    assert client.get("/api/v1/attestations/", {"since": day, "until": day}).json()["count"] == 2
    assert client.get("/api/v1/attestations/", {"until": "2000-01-01"}).json()["count"] == 0
    bad = client.get("/api/v1/attestations/", {"since": "2030-01-02", "until": "2030-01-01"})
    assert bad.status_code == 400


def test_only_auditors_and_admins_list_every_attestation(api, attestation, engineer, admin_user):
    assert api(engineer).get("/api/v1/attestations/").status_code == 403
    assert api(admin_user).get("/api/v1/attestations/").status_code == 200


def test_detail_has_the_statement(api, attestation, auditor):
    body = api(auditor).get(f"/api/v1/attestations/{attestation.pk}/").json()
    assert body["statement"] == attestation.statement
    assert body["change_reference"] == f"CR-{attestation.change_id}"
    assert body["pdf_sha256"] == attestation.pdf_sha256
    assert body["system"]["name"] == attestation.change.system.name


def test_auditors_can_read_everything_and_change_nothing(api, attestation, auditor):
    # given: a snapshot of the attestations
    client = api(auditor)
    before = list(Attestation.objects.values_list("pk", "status", "pdf_sha256"))

    # when: they try every writing method on every attestation resource
    detail = f"/api/v1/attestations/{attestation.pk}/"
    responses = [
        client.post("/api/v1/attestations/", {}, format="json"),
        client.put(detail, {}, format="json"),
        client.patch(detail, {"status": "failed"}, format="json"),
        client.delete(detail),
        client.post(f"/api/v1/attestations/{attestation.pk}/pdf"),
        client.delete(f"/api/v1/attestations/{attestation.pk}/envelope.json"),
        client.post(f"/api/v1/changes/{attestation.change_id}/attestations/", {}, format="json"),
        client.delete(f"/api/v1/changes/{attestation.change_id}/attestation.pdf"),
        client.get(VERIFY),
    ]

    # then: every one is refused and nothing changed
    assert {r.status_code for r in responses} == {405}
    assert list(Attestation.objects.values_list("pk", "status", "pdf_sha256")) == before


# --- verification ------------------------------------------------------------------------


def test_a_valid_file_verifies(api, attestation, auditor):
    response = upload(api(auditor), bytes(attestation.pdf))
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is True, body
    assert body["change"] == attestation.change_id
    assert body["attestation"] == attestation.pk
    names = [c["name"] for c in body["checks"]]
    for expected in ("pdf_file", "envelope_attachment", "signature", "statement",
                     "record_content_hash", "record_runs", "record_approvals",
                     "audit_chain_head"):  # fmt: skip
        assert expected in names
    assert AuditEvent.objects.filter(verb="attestation.verified").count() == 1


@pytest.mark.parametrize("where", ["payload", "signature", "keyid", "first", "last"])
def test_one_flipped_byte_in_the_embedded_envelope_is_invalid(api, attestation, auditor, where):
    envelope = bytes(attestation.envelope)
    text = envelope.decode()
    index = {
        "payload": text.index('"payload":"') + 40,
        "signature": text.index('"sig":"') + 20,
        "keyid": text.index('"keyid":"') + 18,
        "first": 0,
        "last": len(envelope) - 1,
    }[where]
    tampered = replace_envelope(bytes(attestation.pdf), flip_byte(envelope, index))

    body = upload(api(auditor), tampered).json()

    assert body["valid"] is False
    assert failed(body)  # the failing check is named
    assert body["change"] is None  # nothing unauthenticated is reported


def test_another_changes_hash_resigned_with_an_untrusted_key_is_invalid(
    api, attestation, auditor, engineer
):
    other = make_change(author=engineer, title="Other")
    tampered = resigned_pdf(
        attestation, signer=Signer.generate(), content_sha256=other.content_sha256
    )
    body = upload(api(auditor), tampered).json()
    assert body["valid"] is False
    # the statement's signature fails, and so does the PDF signature over the rewritten file
    assert {"signature", "pdf_signature_intact"} <= failed(body) or "signature" in failed(body)
    assert "not trusted" in next(c for c in body["checks"] if c["name"] == "signature")["detail"]
    assert body["standing"] is None


def test_a_trusted_signature_over_statements_the_records_contradict_is_invalid(
    api, attestation, auditor, engineer
):
    other = make_change(author=engineer, title="Other")
    tampered = resigned_pdf(attestation, signer=load_signer(), content_sha256=other.content_sha256)
    body = upload(api(auditor), tampered).json()
    assert body["valid"] is False
    assert "signature" not in failed(body)
    assert {"record_attestation", "record_content_hash"} <= failed(body)
    assert body["change"] == attestation.change_id


def test_an_old_key_kept_in_the_trusted_directory_still_verifies(
    api, attestation, auditor, settings, tmp_path
):
    from pathlib import Path

    from attestations.keys import public_key_pem

    old = load_signer()
    (Path(settings.ATTESTATION_PUBLIC_KEYS_DIR) / "old.pem").write_bytes(
        public_key_pem(old.public_key)
    )
    # The rotation procedure (README): keep the old public key and the old CA certificate.
    from attestations.certs import ca_dir
    from attestations.keys import ensure_dev_key

    (Path(settings.ATTESTATION_PUBLIC_KEYS_DIR) / "old-ca.crt").write_bytes(
        (ca_dir() / "ca.cert.pem").read_bytes()
    )
    rotated, _ = ensure_dev_key(tmp_path / "rotated" / "rotated.pem")
    settings.ATTESTATION_SIGNING_KEY_FILE = str(rotated)
    assert upload(api(auditor), bytes(attestation.pdf)).json()["valid"] is True


def test_after_a_rotation_without_the_old_ca_the_old_files_are_not_valid(
    api, attestation, auditor, settings, tmp_path
):
    from pathlib import Path

    from attestations.keys import ensure_dev_key, public_key_pem

    (Path(settings.ATTESTATION_PUBLIC_KEYS_DIR) / "old.pem").write_bytes(
        public_key_pem(load_signer().public_key)
    )
    rotated, _ = ensure_dev_key(tmp_path / "rotated" / "rotated.pem")
    settings.ATTESTATION_SIGNING_KEY_FILE = str(rotated)
    body = upload(api(auditor), bytes(attestation.pdf)).json()
    assert body["valid"] is False
    assert failed(body) == {"pdf_signer"}


def test_not_a_pdf_is_invalid_not_an_error(api, auditor):
    body = upload(api(auditor), b"hello, I am not a PDF").json()
    assert body["valid"] is False and failed(body) == {"pdf_file"}


def test_no_file_is_a_400_and_a_too_large_file_is_not_valid(api, auditor, monkeypatch):
    client = api(auditor)
    response = client.post(VERIFY, {}, format="multipart")
    assert response.status_code == 400
    assert "file" in response.json()["detail"]

    assert not AuditEvent.objects.filter(verb="attestation.verified").exists()

    # A file over the limit is an answer, not an error: not valid, why, and audited.
    monkeypatch.setattr(services, "MAX_UPLOAD_BYTES", 100)
    response = upload(client, b"%PDF-" + b"x" * 200)
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is False and failed(body) == {"file_size"}
    assert "at most" in body["failed"][0]
    event = AuditEvent.objects.get(verb="attestation.verified")
    assert event.data["failed_checks"] == ["file_size"]


@pytest.mark.parametrize(
    ("header", "too_large"),
    [
        ("100", False),
        (str(30 * 1024 * 1024), True),
        ("\u00b2", False),  # "²".isdigit() is true, but int() refuses it: was a 500
        ("9" * 5000, False),  # past int()'s digit limit
        ("", False),
        ("-5", False),
    ],
)
def test_only_a_plain_number_in_content_length_counts_as_a_size(header, too_large):
    assert services.upload_declared_too_large(header) is too_large


def test_an_odd_content_length_is_never_a_500(api, auditor):
    response = api(auditor).post(VERIFY, {}, format="multipart", CONTENT_LENGTH="\u00b2")

    assert response.status_code == 400, response.content


def test_only_auditors_and_admins_verify(api, attestation, engineer, admin_user):
    assert upload(api(engineer), bytes(attestation.pdf)).status_code == 403
    assert upload(api(admin_user), bytes(attestation.pdf)).json()["valid"] is True


def test_the_schema_documents_the_attestation_api(api, auditor):
    response = api(auditor).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    schema = json.loads(response.content)
    paths = schema["paths"]
    for path in (
        "/api/v1/changes/{id}/attestation.pdf",
        "/api/v1/changes/{id}/attestations/",
        "/api/v1/attestations/",
        "/api/v1/attestations/{id}/",
        "/api/v1/attestations/{id}/pdf",
        "/api/v1/attestations/{id}/envelope.json",
        "/api/v1/attestations/verify/",
    ):
        assert path in paths, path
    verify = paths["/api/v1/attestations/verify/"]["post"]
    assert "multipart/form-data" in verify["requestBody"]["content"]
    pdf = paths["/api/v1/changes/{id}/attestation.pdf"]["get"]["responses"]["200"]
    assert "application/pdf" in pdf["content"]


def test_ids_no_row_can_have_are_404_or_empty_never_500(api, auditor):
    client = api(auditor)
    huge = "9223372036854775808"
    for url in (
        f"/api/v1/attestations/{huge}/",
        f"/api/v1/attestations/{huge}/pdf",
        f"/api/v1/changes/{huge}/attestation.pdf",
        f"/api/v1/changes/{huge}/attestations/",
    ):
        assert client.get(url).status_code == 404, url
    for params in ({"change": huge}, {"system": huge}):
        response = client.get("/api/v1/attestations/", params)
        assert response.status_code in (200, 400), params
        if response.status_code == 200:
            assert response.json()["count"] == 0
