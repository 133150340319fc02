"""The evidence package of one change: a ZIP an auditor can check offline.

Contents and the checks the shipped script makes are described in ``evidence_kit/VERIFY.md``
(copied into every package) and docs/AUDIT.md. Everything that can fail (the newest
checkpoint, inclusion proofs, the size bound) is worked out by ``plan_evidence`` before the
response starts; ``stream_evidence`` then only reads stored bytes, one PDF at a time, and
yields the ZIP as it is written, so memory stays bounded by the largest single file.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from string import Template

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from changes import audit, checkpoints
from changes.models import AuditEvent, ChangeRequest
from core.errors import Conflict

from . import intoto
from .keys import SigningKeyError, load_signer, public_key_pem
from .models import Attestation

KIT = Path(__file__).resolve().parent / "evidence_kit"
# Per-event allowance for the size bound: the JSON line, its canonical copy and its proof.
EVENT_BYTES_ESTIMATE = 4096


@dataclass
class EvidencePlan:
    change: ChangeRequest
    generated_at: object
    checkpoint: checkpoints.Checkpoint | None
    event_lines: list[bytes]
    attestations: list[Attestation]
    keys: dict[str, bytes]
    estimated_bytes: int
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256, filled while streaming

    @property
    def filename(self) -> str:
        return f"{self.change.reference}-evidence.zip"


def change_events(change: ChangeRequest, attestation_ids: list[int]):
    """The change's own events and those about its attestations (issued, verified, ...)."""
    scope = Q(object_type=ChangeRequest._meta.label_lower, object_id=str(change.pk))
    if attestation_ids:
        scope |= Q(
            object_type=Attestation._meta.label_lower,
            object_id__in=[str(pk) for pk in attestation_ids],
        )
    return AuditEvent.objects.filter(scope).order_by("id")


def _event_line(event: AuditEvent, proof) -> bytes:
    canonical = audit.canonical_event(
        actor_id=event.actor_id,
        actor_username=event.actor_username,
        verb=event.verb,
        object_type=event.object_type,
        object_id=event.object_id,
        data=event.data,
        created_at=event.created_at,
    ).decode("utf-8")
    # The fields shown are read back from the hashed bytes, so they match them exactly
    # (times included, as the canonical RFC 3339 text).
    shown = {"id": event.pk, **json.loads(canonical)}
    shown.update(prev_hash=event.prev_hash, hash=event.hash)
    entry = {
        "event": shown,
        "canonical": canonical,
        "proof": proof.as_dict() if proof is not None else None,
    }
    return json.dumps(entry, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n"


def _signer_or_none():
    try:
        return load_signer()
    except SigningKeyError:
        return None


def _public_keys() -> dict[str, bytes]:
    keys = {}
    with suppress(checkpoints.CheckpointError):
        public = checkpoints.signing_key().public_key()
        keys["keys/audit-checkpoint-key.pem"] = public_key_pem(public)
        # The signed-note verifier key (name+hash+key), as Go's note package and C2SP
        # witnesses take it.
        origin = getattr(settings, "AUDIT_CHECKPOINT_ORIGIN", "")
        keys["keys/audit-checkpoint.vkey"] = (checkpoints.vkey(origin, public) + "\n").encode()
    with suppress(SigningKeyError):
        keys["keys/attestation-key.pem"] = public_key_pem(load_signer().public_key)
    return keys


def plan_evidence(change: ChangeRequest) -> EvidencePlan:
    """Gather everything the package needs, or raise ``Conflict`` with the reason.

    Refuses when the audit table no longer matches the newest checkpoint (proofs would be
    against a root the table does not have) and when the package would exceed
    ``EVIDENCE_MAX_BYTES``.
    """
    rows = list(
        # Every version that has a PDF, whatever its standing now (current or superseded).
        Attestation.objects.filter(change=change, pdf__isnull=False)
        .defer("pdf", "envelope", "facts", "statement")
        .order_by("version")
    )
    events = list(change_events(change, [a.pk for a in rows]))
    checkpoint = checkpoints.latest_checkpoint()
    proofs = {}
    if checkpoint is not None:
        try:
            proofs = checkpoints.inclusion_proofs([e.pk for e in events], checkpoint)
        except checkpoints.CheckpointError as exc:
            raise Conflict(
                f"The audit log contradicts its newest checkpoint ({exc}); run "
                "`manage.py verify_audit`. No evidence package is built from it.",
                code="audit_chain_broken",
            ) from None
    lines = [_event_line(event, proofs.get(event.pk)) for event in events]
    estimated = sum(a.pdf_size * 2 for a in rows) + sum(len(line) for line in lines)
    estimated += 64 * 1024
    limit = int(getattr(settings, "EVIDENCE_MAX_BYTES", 200 * 1024 * 1024))
    if estimated > limit:
        raise Conflict(
            f"The evidence package of {change.reference} would hold about "
            f"{estimated // (1024 * 1024)} MB, over the {limit // (1024 * 1024)} MB limit "
            "(EVIDENCE_MAX_BYTES). Download the attestations one by one and the audit events "
            "through /api/v1/audit/events/?format=jsonl instead.",
            code="evidence_too_large",
        )
    return EvidencePlan(
        change=change,
        generated_at=timezone.now(),
        checkpoint=checkpoint,
        event_lines=lines,
        attestations=rows,
        keys=_public_keys(),
        estimated_bytes=estimated,
    )


class _Sink:
    """A write-only stream: zipfile writes into it (data descriptors, no seeking), and the
    generator hands out what accumulated after each member."""

    def __init__(self):
        self._chunks: list[bytes] = []

    def write(self, data) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data, self._chunks = b"".join(self._chunks), []
        return data


def _verify_md(plan: EvidencePlan) -> bytes:
    def fingerprint(name):
        pem = plan.keys.get(name)
        return hashlib.sha256(pem).hexdigest() if pem else "(not configured)"

    text = Template((KIT / "VERIFY.md").read_text("utf-8")).safe_substitute(
        change=f"{plan.change.reference}: {plan.change.title}",
        generated_at=plan.generated_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        origin=getattr(settings, "AUDIT_CHECKPOINT_ORIGIN", ""),
        checkpoint_key_sha256=fingerprint("keys/audit-checkpoint-key.pem"),
        attestation_key_sha256=fingerprint("keys/attestation-key.pem"),
    )
    return text.encode("utf-8")


def _members(plan: EvidencePlan) -> Iterator[tuple[str, bytes]]:
    yield "VERIFY.md", _verify_md(plan)
    yield "verify_evidence.py", (KIT / "verify_evidence.py").read_bytes()
    yield "events.jsonl", b"".join(plan.event_lines)
    if plan.checkpoint is not None:
        cp = plan.checkpoint
        yield "checkpoint/checkpoint.txt", cp.note.encode("utf-8")
        yield "checkpoint/body.txt", cp.body.encode("utf-8")
        own = [raw for name, raw in cp.signatures if name == cp.origin]
        if own:
            yield "checkpoint/signature.bin", own[0][4:]
    yield from plan.keys.items()
    signer = _signer_or_none()
    vid = intoto.verifier_id(getattr(settings, "AUDIT_CHECKPOINT_ORIGIN", ""))
    for row in plan.attestations:
        stem = f"attestations/v{row.version}-{row.reason}"
        values = (
            Attestation.objects.filter(pk=row.pk)
            .values_list("pdf", "envelope", "statement")
            .first()
        )
        pdf, envelope, statement = values or (None, None, None)
        if pdf:
            yield f"{stem}.pdf", bytes(pdf)
        if envelope:
            yield f"{stem}.dsse.json", bytes(envelope)
        if statement and signer is not None:
            # The same facts in predicate types outside verifiers know (docs/INTOTO.md).
            statements = intoto.interop_statements(statement, verifier_id=vid)
            yield f"{stem}.intoto.jsonl", intoto.bundle(statements, signer)


def stream_evidence(plan: EvidencePlan) -> Iterator[bytes]:
    """Yield the ZIP in pieces, one member at a time; ``manifest.json`` comes last."""
    sink = _Sink()
    stamp = plan.generated_at.astimezone(UTC).timetuple()[:6]
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as package:
        for name, data in _members(plan):
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o755 if name.endswith(".py") else 0o644) << 16
            package.writestr(info, data)
            plan.files[name] = hashlib.sha256(data).hexdigest()
            yield sink.drain()
        manifest = {
            "change": plan.change.reference,
            "generated_at": plan.generated_at.astimezone(UTC).isoformat(),
            "checkpoint": plan.checkpoint.name if plan.checkpoint else None,
            "files": plan.files,
        }
        info = zipfile.ZipInfo("manifest.json", date_time=stamp)
        info.compress_type = zipfile.ZIP_DEFLATED
        package.writestr(info, json.dumps(manifest, indent=2, sort_keys=True))
    yield sink.drain()
