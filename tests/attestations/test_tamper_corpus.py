"""Issue 15: a verified attestation means every byte is what was signed.

A corpus of tampered copies of genuine attestations (``tamper_corpus.variants``: byte flips
in fonts and everywhere else, overlays as incremental updates and as rewritten content,
pages deleted/inserted/reordered, metadata, swapped statements, other keys, two signatures,
byte-range games, truncation, junk, thousands of attachments, encryption...) must be 100%
"not valid" through the API, the verify page and the command, and the genuine ones valid,
with every attempt in the audit log. Genuine PDFs are rendered once per test (two changes).
"""
# ruff: noqa: F811 - the builders' fixtures are imported by name and requested by name

from __future__ import annotations

import json
import os
import shutil
import subprocess
from io import StringIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils.html import escape

from attestations import services
from attestations.certs import signing_identity, trusted_ca_certificates
from attestations.keys import Signer, load_signer, trusted_public_keys
from attestations.models import Attestation
from attestations.verify import verify_pdf
from changes.models import AuditEvent
from tests.attestations import tamper_corpus
from tests.attestations.test_document_builders import (  # noqa: F401 - fixtures
    enqueued,
    passing_evaluation,
    ready_attestation,
    signing_key,
)

pytestmark = [pytest.mark.heavy, pytest.mark.django_db]

VERIFY_API = "/api/v1/attestations/verify/"
VERIFY_PAGE = "/attestations/verify/"


@pytest.fixture
def genuine(engineer, reviewer, passing_evaluation, signing_key, enqueued):
    """Two changes' genuine attestations (A, B)."""
    first = ready_attestation(engineer, [reviewer])
    second = ready_attestation(engineer, [reviewer], title="Another change")
    return first, second


@pytest.fixture
def one(engineer, reviewer, passing_evaluation, signing_key, enqueued):
    """One genuine attestation, for the tests that need no second change."""
    return ready_attestation(engineer, [reviewer])


@pytest.fixture
def foreign(settings, tmp_path):
    """Another deployment: its own Ed25519 key and its own CA."""
    previous = getattr(settings, "ATTESTATION_CA_DIR", "")
    settings.ATTESTATION_CA_DIR = str(tmp_path / "foreign-ca")
    signer = Signer.generate()
    identity = signing_identity(signer)
    settings.ATTESTATION_CA_DIR = previous
    return signer, identity


def _foreign_attestation(row: Attestation, signer, settings, tmp_path) -> bytes:
    """The same facts rendered and signed end to end by another deployment."""
    previous = getattr(settings, "ATTESTATION_CA_DIR", "")
    settings.ATTESTATION_CA_DIR = str(tmp_path / "foreign-ca")
    try:
        artifacts = services.build_artifacts(
            row.facts, content_sha256=row.content_sha256, signer=signer
        )
    finally:
        settings.ATTESTATION_CA_DIR = previous
    return artifacts["pdf"]


def via_api(client, data: bytes) -> dict:
    response = client.post(
        VERIFY_API,
        {"file": SimpleUploadedFile("a.pdf", data, content_type="application/pdf")},
        format="multipart",
    )
    assert response.status_code == 200, response.content[:300]
    return response.json()


def via_page(client, data: bytes) -> dict:
    response = client.post(
        VERIFY_PAGE, {"file": SimpleUploadedFile("a.pdf", data, content_type="application/pdf")}
    )
    assert response.status_code == 200, response.content[:300]
    result = response.context["result"]
    html = response.content.decode()
    assert ("Not valid." in html) is (not result["valid"])
    for line in result["failed"]:
        assert escape(line.split(":")[0]) in html  # each failure is named on the page, in words
    return result


def via_command(tmp_path, data: bytes) -> dict:
    path = tmp_path / "upload.pdf"
    path.write_bytes(data)
    out = StringIO()
    try:
        call_command("verify_attestation", str(path), "--json", stdout=out)
        code = 0
    except SystemExit as exc:
        code = exc.code
    result = json.loads(out.getvalue())
    assert code == (0 if result["valid"] else 1)
    return result


def test_the_corpus_is_not_valid_and_genuine_files_are_valid_everywhere(
    genuine, foreign, auditor, api, client, settings, tmp_path
):
    first, second = genuine
    foreign_signer, foreign_identity = foreign
    corpus = tamper_corpus.variants(
        bytes(first.pdf),
        bytes(second.pdf),
        foreign_identity=foreign_identity,
        own_identity=signing_identity(load_signer()),
    )
    corpus["rendered and signed by another deployment"] = _foreign_attestation(
        first, foreign_signer, settings, tmp_path
    )
    corpus["not a PDF"] = b"Hello, this is not a PDF at all.\n" * 10
    corpus["empty"] = b""
    corpus["PDF header only"] = b"%PDF-1.7\n%%EOF\n"
    assert len(corpus) >= 60, len(corpus)
    assert all(data != bytes(first.pdf) for data in corpus.values())

    # Offline, without the records (what an auditor's own verifier sees): the file checks
    # alone catch every variant, not only the "was this exact file issued" lookup.
    keys, cas = trusted_public_keys(), trusted_ca_certificates()
    offline_valid = [
        name for name, data in corpus.items() if verify_pdf(data, keys, trusted_cas=cas)["valid"]
    ]
    assert not offline_valid, offline_valid
    assert verify_pdf(bytes(first.pdf), keys, trusted_cas=cas)["valid"]

    api_client = api(auditor)
    client.force_login(auditor)
    before = AuditEvent.objects.filter(verb="attestation.verified").count()
    wrongly_valid, unexplained = [], []
    paths = {
        "api": lambda data: via_api(api_client, data),
        "page": lambda data: via_page(client, data),
        "command": lambda data: via_command(tmp_path, data),
    }
    # Every variant goes through the whole stack (records, audit) once, by one of the three
    # entry points in turn, so each entry point sees a third of the corpus: they are thin
    # wrappers of the same service, and the offline check above already ran every variant.
    # TAMPER_CORPUS_EVERY_PATH=1 sends each variant through all three (3x the time).
    every_path = os.environ.get("TAMPER_CORPUS_EVERY_PATH") == "1"
    checked = 0
    for i, (name, data) in enumerate(corpus.items()):
        names = list(paths) if every_path else [list(paths)[i % len(paths)]]
        for path, result in ((p, paths[p](data)) for p in names):
            checked += 1
            if result["valid"] or result["standing"] is not None:
                wrongly_valid.append(f"{name} ({path})")
            if not result["failed"] or not all(line.strip() for line in result["failed"]):
                unexplained.append(f"{name} ({path})")
    assert not wrongly_valid, wrongly_valid
    assert not unexplained, unexplained

    for row in (first, second):
        for result in (
            via_api(api_client, bytes(row.pdf)),
            via_page(client, bytes(row.pdf)),
            via_command(tmp_path, bytes(row.pdf)),
        ):
            assert result["valid"], result["failed"]
            assert result["attestation"] == row.pk
            assert result["standing"] == "current"

    events = AuditEvent.objects.filter(verb="attestation.verified").order_by("id")[before:]
    assert checked == (3 if every_path else 1) * len(corpus)
    assert len(events) == checked + 3 * 2
    invalid = [e for e in events if not e.data["valid"]]
    assert len(invalid) == checked
    assert all(e.data["failed_checks"] and e.data["failed"] for e in invalid)
    assert {e.data["source"] for e in events} == {"api", "web", "command"}


def test_the_signature_covers_the_whole_file_by_pdfsig(one, tmp_path):
    pdfsig = shutil.which("pdfsig")
    if pdfsig is None:  # pragma: no cover - poppler-utils is part of the dev image
        pytest.skip("pdfsig (poppler-utils) is not installed")
    first = one
    path = tmp_path / "genuine.pdf"
    path.write_bytes(bytes(first.pdf))
    report = subprocess.run([pdfsig, str(path)], capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, report.stderr
    out = report.stdout
    assert out.count("Signature #") == 1
    assert "Signature Validation: Signature is Valid." in out
    assert "Total document signed" in out
    size = len(bytes(first.pdf))
    assert f"- {size}]" in out.replace(" ]", "]")  # the second range ends at the last byte
    # And a flipped byte is caught by pdfsig too, not only by us.
    path.write_bytes(tamper_corpus.flip(bytes(first.pdf), size // 3))
    tampered = subprocess.run([pdfsig, str(path)], capture_output=True, text=True, timeout=60)
    assert "Signature is Valid." not in tampered.stdout


def test_a_50_mb_upload_is_not_valid_with_the_reason_and_audited(auditor, api, client, tmp_path):
    big = b"%PDF-1.7\n" + b"0" * (50 * 2**20)
    before = AuditEvent.objects.filter(verb="attestation.verified").count()
    api_result = via_api(api(auditor), big)
    client.force_login(auditor)
    page_result = via_page(client, big)
    command_result = via_command(tmp_path, big)
    for result in (api_result, page_result, command_result):
        assert result["valid"] is False
        assert result["checks"][0]["name"] == "file_size"
        assert "at most 20 MB" in result["failed"][0]
    events = AuditEvent.objects.filter(verb="attestation.verified").order_by("id")[before:]
    assert [e.data["failed_checks"] for e in events] == [["file_size"]] * 3


def test_failed_checks_are_named_in_words_not_identifiers(one, auditor, api):
    first = one
    body = via_api(api(auditor), bytes(first.pdf) + b"junk")
    assert body["valid"] is False
    texts = " ".join(body["failed"])
    assert "Nothing was added after the end of the PDF" in texts
    assert "The digital signature covers the whole file" in texts
    assert "_" not in " ".join(line.split(":")[0] for line in body["failed"])


def test_verification_attempts_are_shown_on_the_audit_page_with_outcome_and_failures(
    one, auditor, api, client
):
    first = one
    via_api(api(auditor), bytes(first.pdf) + b"junk")
    via_api(api(auditor), bytes(first.pdf))
    client.force_login(auditor)
    html = client.get("/audit/", {"verb": "attestation.verified"}).content.decode()
    assert "attestation.verified" in html
    assert 'outcome:</span> <span title="not valid (4 checks failed)">' in html  # end, file...
    assert escape("Nothing was added after the end of the PDF") in html
    assert 'outcome:</span> <span title="valid">valid</span>' in html
    assert 'standing:</span> <span title="current">current</span>' in html
