"""Record-independent verification of attestation PDFs."""

import json

import pytest

from attestations.checks import check
from attestations.dsse import envelope_bytes, sign_envelope
from attestations.keys import Signer
from attestations.pdf import ENVELOPE_ATTACHMENT_NAME, render_pdf
from attestations.statement import canonical_bytes
from attestations.verify import verify_envelope_bytes, verify_pdf_envelope


def names(result, *, ok=None):
    return [c["name"] for c in result["checks"] if ok is None or c["ok"] is ok]


def test_a_genuine_attestation_verifies(attestation_pdf, trusted, statement, envelope):
    result = verify_pdf_envelope(attestation_pdf, trusted)
    assert result["valid"] is True
    assert result["statement"] == statement
    assert names(result) == [
        "pdf_file",
        "envelope_attachment",
        "envelope_parses",
        "envelope_fields",
        "payload_type",
        "payload_base64",
        "signature",
        "statement",
    ]
    assert names(result, ok=False) == []
    assert json.dumps(result["checks"])  # JSON-ready for the API


def test_record_checks_are_appended_and_decide_validity(attestation_pdf, trusted):
    seen = []

    def record_checker(statement):
        seen.append(statement["subject"][0]["name"])
        return [check("content_hash", True, "matches"), check("approvals", False, "voided")]

    result = verify_pdf_envelope(attestation_pdf, trusted, record_checker=record_checker)
    assert seen == ["change/42"]
    assert names(result)[-2:] == ["content_hash", "approvals"]
    assert result["valid"] is False
    assert names(result, ok=False) == ["approvals"]


def test_a_record_checker_that_raises_makes_the_file_invalid_not_an_error(attestation_pdf, trusted):
    def record_checker(statement):
        raise LookupError("change 42 does not exist")

    result = verify_pdf_envelope(attestation_pdf, trusted, record_checker=record_checker)
    assert result["valid"] is False
    assert names(result, ok=False) == ["record_checks"]


def test_record_checks_do_not_run_on_an_unauthenticated_statement(attestation_pdf):
    calls = []
    other = Signer.generate()
    result = verify_pdf_envelope(
        attestation_pdf,
        {other.key_id: other.public_key},
        record_checker=lambda s: calls.append(s) or [],
    )
    assert result["valid"] is False
    assert result["statement"] is None
    assert calls == []
    assert names(result, ok=False) == ["signature"]


@pytest.mark.parametrize("data", [b"", b"hello", b"PK\x03\x04zipfile", "not bytes"])
def test_non_pdf_input_is_invalid(data, trusted):
    result = verify_pdf_envelope(data, trusted)
    assert result == {
        "valid": False,
        "checks": [
            {
                "name": "pdf_file",
                "ok": False,
                "detail": "not a PDF file",
                "label": "The file is a PDF",
            }
        ],
        "statement": None,
    }


def test_a_pdf_without_the_envelope_is_invalid(trusted):
    result = verify_pdf_envelope(render_pdf("<p>no envelope</p>"), trusted)
    assert result["valid"] is False
    assert names(result, ok=False) == ["envelope_attachment"]


def test_a_pdf_with_two_envelopes_is_invalid(envelope, trusted):
    pdf = render_pdf(
        "<p>x</p>",
        attachments=[
            (ENVELOPE_ATTACHMENT_NAME, envelope, ""),
            (ENVELOPE_ATTACHMENT_NAME, b"{}", ""),
        ],
    )
    result = verify_pdf_envelope(pdf, trusted)
    assert result["valid"] is False
    assert "2 attachments" in result["checks"][-1]["detail"]


def test_a_pdf_carrying_a_tampered_envelope_is_invalid(envelope, trusted):
    # given the genuine envelope with one byte of its signature changed
    position = envelope.index(b'"sig":"') + 10
    tampered = envelope[:position] + bytes([envelope[position] ^ 0x01]) + envelope[position + 1 :]
    pdf = render_pdf("<p>x</p>", attachments=[(ENVELOPE_ATTACHMENT_NAME, tampered, "")])
    # then
    result = verify_pdf_envelope(pdf, trusted)
    assert result["valid"] is False
    assert result["statement"] is None
    assert names(result, ok=False) in (["signature"], ["envelope_parses"])


def test_a_validly_signed_payload_that_is_not_our_statement_is_invalid(signer, trusted):
    for payload in (b"not json", canonical_bytes({"_type": "x"}), canonical_bytes([1])):
        envelope = envelope_bytes(sign_envelope(payload, signer))
        result = verify_envelope_bytes(envelope, trusted)
        assert result["valid"] is False
        assert names(result, ok=False) == ["statement"]
        assert result["statement"] is None


def test_the_standalone_envelope_verifies_with_its_digest(envelope, trusted, statement):
    result = verify_envelope_bytes(envelope, trusted)
    assert result["valid"] is True
    assert result["statement"] == statement
    assert len(result["envelope_sha256"]) == 64
