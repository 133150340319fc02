"""The evidence package: ``GET /api/v1/changes/{id}/evidence.zip``, checked offline by the script
it ships (run here in a subprocess, as an auditor would), and refused on any tampering."""
# ruff: noqa: F811 - the builders' fixtures are imported by name and requested by name

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import zipfile

import pytest
from django.urls import reverse

from attestations.models import Attestation
from changes import audit, checkpoints
from changes.models import AuditEvent
from tests.attestations.test_document_builders import (  # noqa: F401 - fixtures
    deploy,
    enqueued,
    passing_evaluation,
    ready_attestation,
    render_pending,
    signing_key,
)
from tests.factories import make_change

pytestmark = pytest.mark.django_db

TABLE = "changes_auditevent"


def evidence_url(change_id: int) -> str:
    return reverse("api-change-evidence", kwargs={"pk": change_id})


def _download(client, change_id: int) -> bytes:
    response = client.get(evidence_url(change_id))
    assert response.status_code == 200, response.content[:500]
    assert response.streaming
    assert response["Content-Type"] == "application/zip"
    return b"".join(response.streaming_content)


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as package:
        return {name: package.read(name) for name in package.namelist()}


def _repack(members: dict[str, bytes], *, keep_manifest=False) -> dict[str, bytes]:
    """The members with manifest.json recomputed, as a careful forger would."""
    members = dict(members)
    if not keep_manifest:
        manifest = json.loads(members["manifest.json"])
        manifest["files"] = {
            name: hashlib.sha256(data).hexdigest()
            for name, data in members.items()
            if name != "manifest.json"
        }
        members["manifest.json"] = json.dumps(manifest).encode()
    return members


def _run_script(tmp_path, members: dict[str, bytes], name="evidence.zip"):
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as package:
        for member, data in members.items():
            package.writestr(member, data)
    script = tmp_path / f"{name}.verify_evidence.py"
    script.write_bytes(members["verify_evidence.py"])
    return subprocess.run(
        [sys.executable, str(script), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


def _edit_event_lines(members, edit):
    lines = members["events.jsonl"].decode().splitlines()
    entries = [json.loads(line) for line in lines]
    edit(entries)
    members = dict(members)
    members["events.jsonl"] = "".join(json.dumps(e) + "\n" for e in entries).encode()
    return members


@pytest.fixture
def two_attestations(engineer, reviewer, passing_evaluation, signing_key, enqueued):
    """v1 (approved) rendered after a checkpoint, v2 (deployed), then a newer checkpoint."""
    v1 = ready_attestation(engineer, [reviewer])
    first = checkpoints.publish_checkpoint()
    deploy(v1.change, actor=engineer)
    (v2,) = render_pending()
    assert v2.status == Attestation.READY, v2.error
    checkpoints.publish_checkpoint()
    return v1.change, v1, v2, first


def test_the_package_verifies_offline_and_every_tampering_fails(
    tmp_path, client, auditor, two_attestations
):
    change, v1, v2, first = two_attestations
    client.force_login(auditor)

    # when: the auditor downloads the package
    members = _members(_download(client, change.pk))

    # then: it holds every attestation, the events, the checkpoint, the keys and the kit
    assert {
        "VERIFY.md", "verify_evidence.py", "events.jsonl", "manifest.json",
        "checkpoint/checkpoint.txt", "checkpoint/body.txt", "checkpoint/signature.bin",
        "keys/audit-checkpoint-key.pem", "keys/attestation-key.pem",
        "keys/audit-checkpoint.vkey",
        "attestations/v1-approved.pdf", "attestations/v1-approved.dsse.json",
        "attestations/v2-deployed.pdf", "attestations/v2-deployed.dsse.json",
    } <= set(members)  # fmt: skip
    assert members["attestations/v1-approved.pdf"] == bytes(Attestation.objects.get(pk=v1.pk).pdf)
    events = [json.loads(line) for line in members["events.jsonl"].decode().splitlines()]
    verbs = [e["event"]["verb"] for e in events]
    assert verbs.count("attestation.issued") == 2 and "change.deployed" in verbs
    assert all(e["proof"] is not None for e in events)  # the last checkpoint covers them all
    assert b"python3 verify_evidence.py" in members["VERIFY.md"]
    assert change.reference.encode() in members["VERIFY.md"]
    # ... and v2's signed statement embeds the checkpoint that was newest when it rendered
    embedded = Attestation.objects.get(pk=v2.pk).statement["predicate"]["audit_checkpoint"]
    assert embedded["note"] == first.note and embedded["tree_size"] == first.size
    assert checkpoints.signature_valid(
        checkpoints.parse_note(embedded["note"]), checkpoints.trusted_keys()
    )

    # ... and each attestation restated as standard in-toto statements, signed
    from attestations import intoto
    from attestations.dsse import verify_envelope
    from attestations.keys import trusted_public_keys

    lines = members["attestations/v2-deployed.intoto.jsonl"].splitlines()
    payloads = []
    for line in lines:
        valid, payload, _ = verify_envelope(line, trusted_public_keys())
        assert valid
        payloads.append(json.loads(payload))
    assert [p["predicateType"] for p in payloads] == (
        [intoto.TEST_RESULT] * 2 + [intoto.HUMAN_REVIEW] + [intoto.VSA]
    )
    vsa = payloads[-1]["predicate"]
    assert vsa["verificationResult"] == "PASSED"
    assert payloads[-1]["subject"][0]["digest"]["sha256"] == change.content_sha256

    # when: the shipped script checks the untouched package
    result = _run_script(tmp_path, members)
    # then: it passes every check
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("VALID")
    assert "FAIL" not in result.stdout

    def forge_verb(entries):
        entries[1]["event"]["verb"] = "change.approved_by_ciso"

    def forge_and_rehash(entries):
        # content and hash changed together: the proof no longer leads to the root
        entry = entries[2]
        canonical = json.loads(entry["canonical"])
        canonical["data"] = {"forged": True}
        entry["canonical"] = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
        entry["event"]["data"] = canonical["data"]
        entry["event"]["hash"] = hashlib.sha256(
            (entry["event"]["prev_hash"] + entry["canonical"]).encode()
        ).hexdigest()

    def move_proof(entries):
        entries[0]["proof"]["leaf_index"] += 1

    pdf = bytearray(members["attestations/v2-deployed.pdf"])
    pdf[len(pdf) // 2] ^= 0x01
    note = members["checkpoint/checkpoint.txt"].decode().split("\n")
    note[1] = str(int(note[1]) + 1)
    tampered = {
        "event-field": _edit_event_lines(members, forge_verb),
        "event-rehashed": _edit_event_lines(members, forge_and_rehash),
        "proof-moved": _edit_event_lines(members, move_proof),
        "pdf-byte": {**members, "attestations/v2-deployed.pdf": bytes(pdf)},
        "checkpoint-size": {**members, "checkpoint/checkpoint.txt": "\n".join(note).encode()},
    }
    for label, variant in tampered.items():
        # when: one thing is changed (and the manifest recomputed to match)
        result = _run_script(tmp_path, _repack(variant), name=f"{label}.zip")
        # then: the script fails and says which check
        assert result.returncode == 1, (label, result.stdout)
        assert "NOT VALID" in result.stdout and "FAIL" in result.stdout, label
    # a package without one of the attestations fails: its issued event names it
    dropped = {k: v for k, v in members.items() if not k.startswith("attestations/v1-")}
    result = _run_script(tmp_path, _repack(dropped), name="dropped.zip")
    assert result.returncode == 1 and "FAIL  attestation v1 (event #" in result.stdout
    # a changed file with the manifest left alone fails on the manifest too
    result = _run_script(tmp_path, _edit_event_lines(members, forge_verb), name="m.zip")
    assert result.returncode == 1 and "FAIL  manifest: events.jsonl" in result.stdout


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_the_checkpoint_signature_checks_with_openssl(
    tmp_path, client, auditor, engineer, signing_key
):
    # given: a package for a change, after a checkpoint
    change = make_change(author=engineer)
    checkpoints.publish_checkpoint()
    client.force_login(auditor)
    members = _members(_download(client, change.pk))
    for name in (
        "checkpoint/body.txt",
        "checkpoint/signature.bin",
        "keys/audit-checkpoint-key.pem",
    ):
        (tmp_path / name.replace("/", "_")).write_bytes(members[name])
    command = [
        "openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "keys_audit-checkpoint-key.pem",
        "-rawin", "-in", "checkpoint_body.txt", "-sigfile", "checkpoint_signature.bin",
    ]  # fmt: skip

    # when/then: VERIFY.md's openssl command accepts it, and refuses an edited body
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert result.returncode == 0 and "Signature Verified Successfully" in result.stdout
    body = tmp_path / "checkpoint_body.txt"
    body.write_bytes(body.read_bytes().replace(b"\n", b"\n\n", 1))
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert result.returncode != 0


def test_events_newer_than_the_checkpoint_are_listed_without_a_proof(
    tmp_path, client, engineer, signing_key
):
    change = make_change(author=engineer)
    checkpoints.publish_checkpoint()
    audit.append(actor=engineer, verb="change.noted", obj=change)
    client.force_login(engineer)
    members = _members(_download(client, change.pk))
    entries = [json.loads(line) for line in members["events.jsonl"].decode().splitlines()]
    assert entries[0]["proof"] is not None and entries[-1]["proof"] is None
    result = _run_script(tmp_path, members)
    assert result.returncode == 0, result.stdout
    assert "newer than the checkpoint" in result.stdout


def test_only_those_who_may_read_the_change_get_its_package(
    client, api, engineer, outsider, reviewer, signing_key
):
    # given: a draft (reviewers see a change only once it left draft)
    change = make_change(author=engineer)
    before = AuditEvent.objects.count()
    assert api(outsider).get(evidence_url(change.pk)).status_code == 404
    assert api(reviewer).get(evidence_url(change.pk)).status_code == 404
    assert api(None).get(evidence_url(change.pk)).status_code in (401, 403)
    assert api(outsider).get(evidence_url(999_999)).status_code == 404
    # the author may (token auth streams the same package)
    assert api(engineer).get(evidence_url(change.pk)).status_code == 200
    assert AuditEvent.objects.count() >= before


def test_a_broken_chain_gets_409_not_a_package(api, auditor, engineer, signing_key):
    # given: a checkpoint, then the newest event deleted behind the application's back
    change = make_change(author=engineer)
    checkpoints.publish_checkpoint()
    from django.db import connection

    newest = AuditEvent.objects.order_by("-id").first()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER audit_event_no_delete")
        else:
            cursor.execute("DROP TRIGGER audit_event_no_delete")
        cursor.execute(f"DELETE FROM {TABLE} WHERE id = %s", [newest.pk])

    # when/then: the API refuses with the reason, as JSON
    response = api(auditor).get(evidence_url(change.pk))
    assert response.status_code == 409
    assert response.json()["code"] == "audit_chain_broken"
    assert "checkpoint" in response.json()["detail"]


def test_an_oversized_package_is_refused_before_streaming(api, auditor, engineer, settings):
    change = make_change(author=engineer)
    settings.EVIDENCE_MAX_BYTES = 1024
    response = api(auditor).get(evidence_url(change.pk))
    assert response.status_code == 409
    assert response.json()["code"] == "evidence_too_large"
    assert "EVIDENCE_MAX_BYTES" in response.json()["detail"]


def test_the_change_page_has_the_download_button(client, engineer):
    from changes import hooks

    change = make_change(author=engineer)
    client.force_login(engineer)
    panel = hooks.attestation().panel(change, engineer)
    if panel is None:  # the attestation app registers the panel; without it there is no button
        pytest.skip("attestation port not registered")
    html = client.get(reverse("change-detail", args=[change.pk])).content.decode()
    assert f'href="{evidence_url(change.pk)}"' in html
    assert "evidence package" in html.lower()


def test_deleting_the_events_after_an_attestations_head_makes_it_invalid(
    engineer, reviewer, auditor, passing_evaluation, signing_key, enqueued
):
    # given: a rendered attestation, and a checkpoint published after it
    from attestations import services

    v1 = ready_attestation(engineer, [reviewer])
    pdf = bytes(Attestation.objects.get(pk=v1.pk).pdf)
    checkpoint = checkpoints.publish_checkpoint()
    assert services.verify_upload(actor=auditor, pdf_bytes=pdf)["valid"] is True

    # when: a table owner deletes every event after the attestation's cited head
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER audit_event_no_delete")
        else:
            cursor.execute("DROP TRIGGER audit_event_no_delete")
        cursor.execute(f"DELETE FROM {TABLE} WHERE id > %s", [v1.audit_head_id])

    # then: the attestation no longer verifies, and the failed check names the checkpoint
    outcome = services.verify_upload(actor=auditor, pdf_bytes=pdf)
    assert outcome["valid"] is False
    (head_check,) = [c for c in outcome["checks"] if c["name"] == "audit_chain_head"]
    assert head_check["ok"] is False
    assert (
        checkpoint.name in head_check["detail"] and "truncated or rewritten" in head_check["detail"]
    )
