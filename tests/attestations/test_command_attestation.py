"""``manage.py verify_attestation FILE.pdf``: every check printed; exit 0 valid, 1 invalid."""
# ruff: noqa: F811 - the builders' fixtures are imported by name and requested by name

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from attestations.checks import label_for
from attestations.keys import load_signer
from changes.models import AuditEvent
from tests.attestations.test_document_builders import (  # noqa: F401 - fixtures
    enqueued,
    flip_byte,
    passing_evaluation,
    ready_attestation,
    replace_envelope,
    resigned_pdf,
    signing_key,
)
from tests.factories import make_change

pytestmark = pytest.mark.django_db


@pytest.fixture
def attestation(engineer, reviewer, passing_evaluation, signing_key, enqueued):
    return ready_attestation(engineer, [reviewer])


def run(path, *args) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("verify_attestation", str(path), *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code), out.getvalue()
    return 0, out.getvalue()


def test_a_valid_file_exits_0_and_prints_every_check(attestation, tmp_path):
    path = tmp_path / "a.pdf"
    path.write_bytes(bytes(attestation.pdf))

    code, out = run(path)

    assert code == 0
    assert f"VALID (CR-{attestation.change_id})" in out
    names = [
        "pdf_file",
        "pdf_signature_coverage",
        "pdf_signature_intact",
        "pdf_signer",
        "envelope_attachment",
        "signature",
        "same_key",
        "page_binding",
        "record_attestation",
        "record_file",
        "record_content_hash",
        "record_runs",
        "record_approvals",
        "audit_chain_head",
    ]
    for name in names:
        assert f"[PASS] {label_for(name)}" in out  # in words, not identifiers
    assert "CURRENT: its facts still hold." in out
    event = AuditEvent.objects.get(verb="attestation.verified")
    assert event.actor_id is None and event.data["source"] == "command"


def test_a_tampered_file_exits_1_and_names_the_failing_check(attestation, tmp_path):
    envelope = bytes(attestation.envelope)
    index = envelope.decode().index('"payload":"') + 30
    path = tmp_path / "t.pdf"
    path.write_bytes(replace_envelope(bytes(attestation.pdf), flip_byte(envelope, index)))

    code, out = run(path)

    assert code == 1
    assert "NOT VALID" in out and "[FAIL]" in out
    assert f"  - {label_for('pdf_signature_intact')}" in out or "  - " in out


def test_records_that_contradict_a_trusted_signature_exit_1(attestation, engineer, tmp_path):
    other = make_change(author=engineer, title="Other")
    path = tmp_path / "r.pdf"
    path.write_bytes(
        resigned_pdf(attestation, signer=load_signer(), content_sha256=other.content_sha256)
    )

    code, out = run(path)

    assert code == 1
    assert f"[PASS] {label_for('signature')}" in out
    assert f"[FAIL] {label_for('record_content_hash')}" in out


def test_json_output(attestation, tmp_path):
    import json

    path = tmp_path / "a.pdf"
    path.write_bytes(bytes(attestation.pdf))
    code, out = run(path, "--json")
    assert code == 0
    assert json.loads(out)["valid"] is True


def test_a_missing_file_is_a_command_error(db, tmp_path):
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("verify_attestation", str(tmp_path / "missing.pdf"))
