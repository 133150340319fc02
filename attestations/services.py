"""Every write about attestations: issue, render, retry, verify.

Issue runs inside the transaction that approved or deployed the change; rendering runs on a
worker (``attestations.render``) and is idempotent: a row is claimed ``pending -> rendering``
by a conditional UPDATE and filled ``rendering -> ready`` once, by the same claim. Every
status change goes through :func:`_move` (the graph of ``attestations/states.py``, one audit
event per move).
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from changes import audit, checkpoints
from changes.models import ChangeRequest
from core.errors import Conflict, NotAllowed, ValidationFailed

from . import document, selectors
from . import permissions as rules
from . import states as att_states
from .certs import signing_identity, trusted_ca_certificates
from .checks import check, failure_text
from .dsse import envelope_bytes, sign_envelope
from .keys import load_signer, trusted_public_keys
from .models import Attestation
from .pades import embed_and_sign
from .pdf import ENVELOPE_ATTACHMENT_NAME, page_digests, render_pdf
from .records import change_id_of, record_checks
from .statement import (
    bind_pages,
    build_statement,
    canonical_bytes,
    sha256_hex,
    with_audit_checkpoint,
)
from .verify import verify_pdf

logger = logging.getLogger(__name__)

REASONS = {Attestation.APPROVED, Attestation.DEPLOYED, Attestation.CLOSED}
MAX_ATTEMPTS = selectors.MAX_ATTEMPTS
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# Multipart framing around the file: a request this much over the file limit is refused
# from its header alone.
_UPLOAD_OVERHEAD_BYTES = 64 * 1024


def upload_declared_too_large(content_length: str | None) -> bool:
    """Whether a request's ``Content-Length`` already says its upload is over the limit.

    Checked before the body is parsed, so an oversized upload is refused without reading
    it. Only plain ASCII digits count as a length: ``"²".isdigit()`` is true but ``int``
    refuses it, which was a 500; any other header is left to the parser, which enforces the
    limit on the file itself.
    """
    text = content_length or ""
    if not re.fullmatch(r"[0-9]{1,20}", text):
        return False
    return int(text) > MAX_UPLOAD_BYTES + _UPLOAD_OVERHEAD_BYTES


ERROR_CHARS = 2000
# A pending row older than this was probably never enqueued (broker down at commit time).
PENDING_GRACE = timedelta(seconds=60)


def _time_limit() -> int:
    return int(getattr(settings, "ATTESTATION_RENDER_TIME_LIMIT", 120))


def _stale_claim_cutoff():
    # A claim older than the hard time limit (plus margin) belongs to a dead worker.
    return timezone.now() - timedelta(seconds=_time_limit() + 30)


def _move(
    row: Attestation,
    target: str,
    *,
    actor=None,
    where: Q | None = None,
    data: dict | None = None,
    **fields,
) -> str | None:
    """One status change: a conditional UPDATE from :func:`states.sources` of ``target``
    (narrowed by ``where``) and, when it moved the row, the move's audit event on the change,
    in one transaction. Returns the status the row left, or None when it did not move.

    The status it left is read under the row's lock first, so the audit event names the
    move that happened (a claim and the reclaim of a dead worker's claim are both
    ``-> rendering``)."""
    with transaction.atomic():
        qs = Attestation.objects.filter(pk=row.pk, status__in=att_states.sources(target))
        if where is not None:
            qs = qs.filter(where)
        current = qs.select_for_update().values_list("status", flat=True).first()
        if current is None:
            return None
        verb = att_states.audit_verb(current, target)
        if not qs.filter(status=current).update(status=target, **fields):
            return None
        audit.append(
            actor=actor,
            verb=verb,
            obj=row.change,
            data={"attestation": row.pk, "version": row.version, "from": current, **(data or {})},
        )
    return current


# --- issue -------------------------------------------------------------------------------


def attestation_issue(*, change: ChangeRequest, reason: str) -> Attestation:
    """Create the next version's ``pending`` row, with the facts of this moment.

    Called inside the approve/deploy transaction, with the change row locked (so versions are
    allocated one at a time; the unique (change, version) constraint backs that up). Reads the
    audit chain head, which is the transition's own event. Schedules the render on commit.
    Writes no audit event of its own: the transition wrote one; ``attestation.issued`` follows
    when the PDF is ready. If the facts cannot be gathered, the row is stored ``failed`` with
    the reason rather than failing the approval or the deployment.
    """
    if reason not in REASONS:
        raise ValidationFailed(f"reason: must be one of {', '.join(sorted(REASONS))}.")
    version = (change.attestations.aggregate(v=Max("version"))["v"] or 0) + 1
    head = audit.head()
    issued_at = timezone.now()
    facts, error = None, ""
    try:
        with transaction.atomic():
            facts = document.gather_facts(
                change, reason=reason, version=version, audit_head=head, issued_at=issued_at
            )
    except Exception as exc:  # noqa: BLE001 - an attestation bug must not block the workflow
        logger.exception("Could not gather attestation facts for %s", change.reference)
        error = f"Could not gather the facts: {type(exc).__name__}: {exc}"[:ERROR_CHARS]
    attestation = Attestation.objects.create(
        change=change,
        version=version,
        reason=reason,
        status=Attestation.PENDING if facts is not None else Attestation.FAILED,
        content_sha256=change.content_sha256,
        facts=facts,
        audit_head_id=getattr(head, "pk", None),
        audit_head_hash=getattr(head, "hash", ""),
        error=error,
    )
    if facts is not None:
        transaction.on_commit(lambda: enqueue_render(attestation.pk))
    return attestation


def enqueue_render(attestation_id: int) -> bool:
    """Send ``attestations.render`` for one row; a broker error is logged, never raised.

    The row stays ``pending`` and ``attestations.requeue_stalled`` (or a retry) picks it up.
    """
    from .tasks import render_attestation

    limit = _time_limit()
    # Optional: a queue of its own, so PDF rendering never waits behind evaluation batches.
    queue = getattr(settings, "ATTESTATION_TASK_QUEUE", None)
    try:
        render_attestation.apply_async(
            args=[attestation_id],
            soft_time_limit=limit,
            time_limit=limit + 15,
            **({"queue": queue} if queue else {}),
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
    except Exception:  # noqa: BLE001 - the broker only carries wake-ups
        logger.exception("Could not enqueue the render of attestation %s", attestation_id)
        return False
    return True


# --- render ------------------------------------------------------------------------------


def _claim(attestation_id: int) -> tuple[bool, object]:
    """pending -> rendering, or the reclaim of a dead worker's claim (rendering past the
    time limit). Writes ``attestation.rendering`` with the attempt number."""
    now = timezone.now()
    row = (
        Attestation.objects.select_related("change")
        .defer("pdf", "envelope")
        .filter(pk=attestation_id)
        .first()
    )
    if row is None:
        return False, now
    moved = _move(
        row,
        att_states.RENDERING,
        where=Q(status=att_states.PENDING)
        | Q(status=att_states.RENDERING, claimed_at__lt=_stale_claim_cutoff()),
        data={"attempt": row.attempts + 1},
        claimed_at=now,
        attempts=F("attempts") + 1,
    )
    return moved is not None, now


def build_artifacts(
    facts: dict,
    *,
    content_sha256: str,
    signer=None,
    timings=None,
    audit_checkpoint: dict | None = None,
) -> dict:
    """Statement, signed envelope and signed PDF for a set of facts. No database access.

    1. render the pages (WeasyPrint, PDF/A-3b) from the facts alone;
    2. digest each page's content (``pdf.page_digests_of``) and bind the digests into the
       statement;
    3. sign the statement (DSSE, Ed25519);
    4. embed the envelope and sign the whole file (PAdES) in one incremental update.

    Shared by the render service and the benchmark, so the benchmark measures the real path;
    ``timings`` (a dict), when given, receives ``render_s`` (step 1) and ``sign_s`` (2-4).
    ``audit_checkpoint`` is the newest signed audit checkpoint, embedded in the statement.
    """
    import time

    signer = signer or load_signer()
    identity = signing_identity(signer)
    started = time.perf_counter()
    context = document.pdf_context(
        facts,
        key_id=signer.key_id,
        facts_sha256=sha256_hex(canonical_bytes(facts)),
        certificate_fingerprint=identity.fingerprint,
    )
    pages_pdf = render_pdf(document.render_html(context))
    rendered = time.perf_counter()
    digests = page_digests(pages_pdf)
    if digests is None:
        raise ValueError("the rendered PDF's pages cannot be read back")
    statement = bind_pages(
        build_statement(
            change_name=facts["change"]["reference"],
            content_sha256=content_sha256,
            run_digests=document.run_digests(facts),
            predicate=with_audit_checkpoint(facts, audit_checkpoint),
        ),
        digests,
    )
    payload = canonical_bytes(statement)
    envelope = envelope_bytes(sign_envelope(payload, signer))
    pdf = embed_and_sign(
        pages_pdf,
        identity=identity,
        attachments=[(ENVELOPE_ATTACHMENT_NAME, envelope, "Signed DSSE envelope (in-toto)")],
    )
    if timings is not None:
        timings["render_s"] = rendered - started
        timings["sign_s"] = time.perf_counter() - rendered
    return {
        "statement": statement,
        "statement_sha256": sha256_hex(payload),
        "envelope": envelope,
        "envelope_sha256": sha256_hex(envelope),
        "pdf": pdf,
        "pdf_sha256": sha256_hex(pdf),
        "key_id": signer.key_id,
        "certificate_sha256": identity.fingerprint,
    }


def _audit_checkpoint() -> dict | None:
    """The newest signed audit checkpoint, or None. A store that cannot be read must not stop
    an attestation: the statement then says none was available (and verify_audit fails)."""
    try:
        checkpoint = checkpoints.latest_checkpoint()
    except Exception:  # noqa: BLE001 - logged; the attestation is still issued
        logger.exception("Could not read the newest audit checkpoint")
        return None
    return checkpoint.as_dict() if checkpoint else None


def attestation_render(*, attestation_id: int) -> Attestation | None:
    """pending -> rendering -> ready (or failed). Idempotent; runs on a worker.

    A ready, failed or freshly claimed row is left alone (returns it unchanged). On success
    writes ``attestation.issued`` on the change; on failure ``attestation.failed`` with the
    error, and the row keeps the reason.

    Never issues an attestation whose facts no longer hold (issue 15): the facts are checked
    before rendering and again at the end, in the filling transaction with the change row
    locked (every path that voids an approval or edits the change takes that lock first). If
    an approval was voided, the content edited or the change sent back meanwhile, the row
    becomes ``void`` with the reason, and ``attestation.voided`` is written instead.
    """
    claimed, claimed_at = _claim(attestation_id)
    if not claimed:
        return Attestation.objects.filter(pk=attestation_id).defer("pdf", "envelope").first()
    row = Attestation.objects.select_related("change").get(pk=attestation_id)
    if _void_if_facts_moved(row, claimed_at, lock=False):
        return Attestation.objects.defer("pdf", "envelope").get(pk=attestation_id)
    try:
        if row.facts is None:
            raise ValueError("the row has no facts to attest")
        artifacts = build_artifacts(
            row.facts, content_sha256=row.content_sha256, audit_checkpoint=_audit_checkpoint()
        )
    except Exception as exc:  # noqa: BLE001 - recorded on the row; SoftTimeLimitExceeded too
        logger.exception("Rendering attestation %s failed", attestation_id)
        _fail(row, claimed_at, f"{type(exc).__name__}: {exc}")
        return Attestation.objects.defer("pdf", "envelope").get(pk=attestation_id)
    with transaction.atomic():
        if _void_if_facts_moved(row, claimed_at, lock=True):
            return Attestation.objects.defer("pdf", "envelope").get(pk=attestation_id)
        _move(
            row,
            att_states.READY,
            where=Q(claimed_at=claimed_at),
            data={
                "reason": row.reason,
                "content_sha256": row.content_sha256,
                "pdf_sha256": artifacts["pdf_sha256"],
                "envelope_sha256": artifacts["envelope_sha256"],
                "key_id": artifacts["key_id"],
            },
            statement=artifacts["statement"],
            statement_sha256=artifacts["statement_sha256"],
            envelope=artifacts["envelope"],
            envelope_sha256=artifacts["envelope_sha256"],
            pdf=artifacts["pdf"],
            pdf_sha256=artifacts["pdf_sha256"],
            pdf_size=len(artifacts["pdf"]),
            key_id=artifacts["key_id"],
            rendered_at=timezone.now(),
            error="",
        )
    return Attestation.objects.defer("pdf", "envelope").get(pk=attestation_id)


def _void_if_facts_moved(row: Attestation, claimed_at, *, lock: bool) -> bool:
    """Mark a claimed row ``void`` when its facts no longer hold; True when it did.

    With ``lock`` (inside the filling transaction) the change row is locked first, so no
    edit or void can commit between this check and the fill.
    """
    from .standing import facts_problems

    changes = ChangeRequest.objects.select_for_update() if lock else ChangeRequest.objects
    change = changes.get(pk=row.change_id)
    causes = facts_problems(row, change)
    if not causes:
        return False
    why = "; ".join(c.why for c in causes)
    _move(
        row,
        att_states.VOID,
        where=Q(claimed_at=claimed_at),
        data={"reason": row.reason, "why": [c.code for c in causes]},
        error=f"Not issued: its facts no longer held when it was rendered ({why})."[:ERROR_CHARS],
    )
    return True


def _fail(row: Attestation, claimed_at, message: str) -> None:
    _move(
        row,
        att_states.FAILED,
        where=Q(claimed_at=claimed_at),
        data={"error": message[:500]},
        error=message[:ERROR_CHARS],
    )


def attestation_requeue_stalled() -> list[int]:
    """Re-enqueue rows that lost their wake-up: pending past a grace period, rendering with a
    dead worker's claim, or failed with attempts left (set back to pending). Periodic.

    Each ``failed -> pending`` is the same move as an admin's retry and writes the same
    ``attestation.retried`` event, with no actor and ``"by": "reaper"``."""
    now = timezone.now()
    retryable = (
        Attestation.objects.filter(selectors.RETRYABLE)
        .select_related("change")
        .defer("pdf", "envelope", "facts", "statement")
    )
    for row in retryable:
        _move(
            row,
            att_states.PENDING,
            where=selectors.RETRYABLE,
            data={"by": "reaper", "attempts": row.attempts},
        )
    ids = list(
        Attestation.objects.filter(
            Q(status=Attestation.PENDING, created_at__lt=now - PENDING_GRACE)
            | Q(status=Attestation.RENDERING, claimed_at__lt=_stale_claim_cutoff())
        ).values_list("pk", flat=True)
    )
    for pk in ids:
        enqueue_render(pk)
    return ids


@transaction.atomic
def attestation_retry(*, actor, attestation: Attestation) -> Attestation:
    """failed -> pending (admin), then render again. Writes ``attestation.retried``."""
    if not rules.can_retry(actor):
        raise NotAllowed("Only admins retry an attestation render.")
    moved = _move(
        attestation,
        att_states.PENDING,
        actor=actor,
        where=Q(facts__isnull=False),
        data={"by": "admin"},
        error="",
    )
    if moved is None:
        raise Conflict(
            "Only a failed attestation with recorded facts can be retried.", code="not_failed"
        )
    transaction.on_commit(lambda: enqueue_render(attestation.pk))
    return Attestation.objects.defer("pdf", "envelope").get(pk=attestation.pk)


# --- verify ------------------------------------------------------------------------------


def verify_upload(*, actor, pdf_bytes: bytes, filename: str = "", source: str = "api") -> dict:
    """Verify an attestation PDF: the whole file, its statement, its pages and the records.

    Returns ``{"valid", "checks", "failed", "change", "attestation", "envelope_sha256",
    "pdf_sha256", "standing", "standing_detail"}``. ``valid`` says the file is intact, signed
    by this deployment and issued by it; ``standing`` (``current``/``superseded``, or None for
    an invalid file) whether its facts are still the latest word. Bad input of any kind (not a
    PDF, empty, too large, encrypted, damaged) is a ``valid: false`` answer with the reason,
    never an exception. Every attempt writes ``attestation.verified`` with the outcome and the
    failed checks in words.
    """
    data = bytes(pdf_bytes or b"")
    pdf_sha256 = sha256_hex(data)
    if len(data) > MAX_UPLOAD_BYTES:
        size = check(
            "file_size",
            False,
            f"the file is {len(data) / 2**20:.1f} MB; an attestation is at most "
            f"{MAX_UPLOAD_BYTES // 2**20} MB",
        )
        result = {"valid": False, "checks": [size], "statement": None}
    elif not data:
        result = {
            "valid": False,
            "checks": [check("pdf_file", False, "the file is empty")],
            "statement": None,
        }
    else:
        result = verify_pdf(
            data,
            trusted_public_keys(),
            trusted_cas=trusted_ca_certificates(),
            record_checker=record_checks,
        )
    return _record_outcome(
        actor=actor, result=result, pdf_sha256=pdf_sha256, filename=filename, source=source
    )


def refuse_upload(*, actor, size: int, filename: str = "", source: str = "api") -> dict:
    """The answer for an upload refused from its declared size, before its body is read."""
    size_check = check(
        "file_size",
        False,
        f"the upload is {size / 2**20:.1f} MB; an attestation is at most "
        f"{MAX_UPLOAD_BYTES // 2**20} MB",
    )
    return _record_outcome(
        actor=actor,
        result={"valid": False, "checks": [size_check], "statement": None},
        pdf_sha256="",
        filename=filename,
        source=source,
    )


def _issued_file_check(checks: list, pdf_sha256: str, change_id, version) -> Attestation | None:
    """Append ``record_file``: the upload's SHA-256 is the one recorded when it was issued."""
    row = (
        Attestation.objects.filter(pdf_sha256=pdf_sha256, status=Attestation.READY)
        .defer("pdf", "envelope")
        .first()
        if pdf_sha256
        else None
    )
    if row is None:
        checks.append(
            check(
                "record_file",
                False,
                "unknown: this deployment never issued a file with this SHA-256 "
                f"({pdf_sha256[:16]}…)",
            )
        )
        return None
    if (change_id, version) != (row.change_id, row.version):
        checks.append(
            check(
                "record_file",
                False,
                f"this file was issued as v{row.version} of CR-{row.change_id}, not as the "
                "attestation its statement names",
            )
        )
        return None
    checks.append(check("record_file", True, f"issued as v{row.version} of CR-{row.change_id}"))
    return row


def _record_outcome(*, actor, result: dict, pdf_sha256: str, filename: str, source: str) -> dict:
    from .standing import standing_of

    checks = list(result["checks"])
    statement = result.get("statement")
    change_id = change_id_of(statement) if statement else None
    if change_id is not None and not ChangeRequest.objects.filter(pk=change_id).exists():
        change_id = None
    version = ((statement or {}).get("predicate") or {}).get("attestation", {}).get("version")
    row = None
    if statement is not None:
        row = _issued_file_check(checks, pdf_sha256, change_id, version)
    attestation_id = row.pk if row is not None else None
    if attestation_id is None and change_id is not None and isinstance(version, int):
        attestation_id = (
            Attestation.objects.filter(change_id=change_id, version=version)
            .values_list("pk", flat=True)
            .first()
        )
    valid = bool(result["valid"]) and all(c["ok"] for c in checks)
    standing = standing_of(row) if valid and row is not None else None
    failed = [c for c in checks if not c["ok"]]
    outcome = {
        "valid": valid,
        "checks": checks,
        "failed": [failure_text(c) for c in failed],
        "change": change_id,
        "attestation": attestation_id,
        "envelope_sha256": result.get("envelope_sha256"),
        "pdf_sha256": pdf_sha256,
        "standing": standing.standing if standing else None,
        "standing_detail": standing.as_dict() if standing else None,
    }
    audit.append(
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        verb="attestation.verified",
        object_type=Attestation._meta.label_lower,
        object_id=attestation_id or "",
        data={
            "valid": valid,
            "outcome": "valid"
            if valid
            else f"not valid ({len(failed)} check{'s' if len(failed) != 1 else ''} failed)",
            "standing": outcome["standing"],
            "change": change_id,
            "failed_checks": [c["name"] for c in failed],
            "failed": [c["label"] for c in failed[:12]],
            "failed_detail": [failure_text(c)[:300] for c in failed[:12]],
            "pdf_sha256": pdf_sha256,
            "filename": (filename or "")[:200],
            "source": source,
        },
    )
    return outcome
