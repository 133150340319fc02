"""Check a signed statement against the records: the database half of verification.

``attestations.verify`` proves the envelope was signed by a trusted key. That alone does not
prove the statement is one we issued, nor that its claims are still backed by the records, so
an authentic-looking statement is also checked here, each check named:

* ``record_change``: the change named in the subject (``CR-<id>``) exists.
* ``record_attestation``: we issued exactly this statement, as version ``N`` of that change
  (the stored row's statement hashes to the same bytes).
* ``record_content_hash``: the subject's content hash is the one the change had when the
  attestation was issued. Compared with the attestation row, the change's recorded history
  (its current hash, or a hash the audit trail says it had), not with today's content alone:
  a change that moved on since keeps its old attestations valid.
* ``record_runs``: every ``evaluation-run/<id>`` subject is a run of that change, on that
  content hash, whose stored result digest is the signed one.
* ``record_approvals``: every sign-off cited exists, is an approval of that change by that
  reviewer on that content hash, and was not already voided when the attestation was issued.
* ``audit_chain_head``: the audit log still holds the cited head event with the cited hash.

Every function returns checks and never raises on odd input: the verifier wraps it anyway.
"""

from __future__ import annotations

import re
from datetime import datetime

from changes import audit, checkpoints
from changes.models import AuditEvent, ChangeRequest, Review
from core.ids import parse_id

from .checks import Check, check
from .models import Attestation
from .statement import RUN_SUBJECT_PREFIX, canonical_bytes, sha256_hex

CHANGE_NAME = re.compile(r"CR-([1-9][0-9]{0,17})")


def _parse_time(value) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def change_id_of(statement: dict) -> int | None:
    """The change id named by the statement's first subject, or None."""
    try:
        name = statement["subject"][0]["name"]
    except (KeyError, IndexError, TypeError):
        return None
    match = CHANGE_NAME.fullmatch(name) if isinstance(name, str) else None
    return int(match.group(1)) if match else None


def _content_hash_known(change: ChangeRequest, content_sha256: str) -> bool:
    """Did the change ever have this content hash, by its records?"""
    if change.content_sha256 == content_sha256:
        return True
    events = AuditEvent.objects.filter(
        object_type=ChangeRequest._meta.label_lower, object_id=str(change.pk)
    ).values_list("data", flat=True)
    for data in events.iterator():
        if isinstance(data, dict) and content_sha256 in (
            data.get("content_sha256"),
            data.get("new_sha256"),
            data.get("old_sha256"),
        ):
            return True
    return False


def _check_runs(change: ChangeRequest, content_sha256: str, subjects: dict) -> Check:
    runs = {
        name[len(RUN_SUBJECT_PREFIX) :]: digest
        for name, digest in subjects.items()
        if name.startswith(RUN_SUBJECT_PREFIX)
    }
    if not runs:
        return check("record_runs", True, "no evaluation run is cited")
    from evaluations.models import EvaluationRun

    ids = [parse_id(r) for r in runs]
    if None in ids:
        return check("record_runs", False, "a run subject does not name a numeric run id")
    stored = {
        str(pk): (change_id, sha, digest)
        for pk, change_id, sha, digest in EvaluationRun.objects.filter(pk__in=ids).values_list(
            "pk", "change_id", "content_sha256", "result_digest"
        )
    }
    problems = []
    for run_id, digest in sorted(runs.items(), key=lambda kv: int(kv[0])):
        record = stored.get(run_id)
        if record is None:
            problems.append(f"run {run_id} does not exist")
        elif record[0] != change.pk:
            problems.append(f"run {run_id} belongs to another change")
        elif record[1] != content_sha256:
            problems.append(f"run {run_id} evaluated other content")
        elif record[2] != digest:
            problems.append(f"run {run_id}'s stored result digest differs")
    if problems:
        return check("record_runs", False, "; ".join(problems))
    return check("record_runs", True, f"{len(runs)} run digest(s) match the evaluation records")


def _check_approvals(
    change: ChangeRequest, content_sha256: str, signoffs, issued_at: datetime | None
) -> Check:
    if not isinstance(signoffs, list):
        return check("record_approvals", False, "the predicate has no sign-off list")
    if not signoffs:
        return check("record_approvals", True, "no approval is cited")
    ids = [s.get("review_id") for s in signoffs if isinstance(s, dict)]
    if len(ids) != len(signoffs) or not all(isinstance(i, int) for i in ids):
        return check("record_approvals", False, "a sign-off does not cite a review id")
    reviews = {r.pk: r for r in Review.objects.filter(pk__in=ids).select_related("reviewer")}
    problems = []
    for signoff in signoffs:
        review = reviews.get(signoff["review_id"])
        username = (signoff.get("reviewer") or {}).get("username")
        if review is None:
            problems.append(f"review {signoff['review_id']} does not exist")
        elif review.change_id != change.pk:
            problems.append(f"review {review.pk} is on another change")
        elif review.decision != "approve":
            problems.append(f"review {review.pk} is not an approval")
        elif review.reviewer.username != username:
            problems.append(f"review {review.pk} was signed by someone else")
        elif review.content_sha256 != content_sha256 or signoff.get("content_sha256") not in (
            None,
            content_sha256,
        ):
            problems.append(f"review {review.pk} signed other content")
        elif review.voided_at is not None and (issued_at is None or review.voided_at <= issued_at):
            problems.append(f"review {review.pk} was already voided")
    if problems:
        return check("record_approvals", False, "; ".join(problems))
    return check("record_approvals", True, f"{len(signoffs)} approval(s) match the review records")


def _check_audit_head(head) -> Check:
    if not isinstance(head, dict):
        return check("audit_chain_head", False, "the predicate cites no audit chain head")
    event_id, event_hash = head.get("id"), head.get("hash")
    if not isinstance(event_id, int) or not isinstance(event_hash, str) or not event_hash:
        return check("audit_chain_head", False, "the cited head has no event id and hash")
    if audit.contains(event_id, event_hash):
        # ... and the chain after it still holds what the newest checkpoint signed: deleting
        # the events after an attestation's cited head must not leave it valid (issue 15).
        anchored, why = checkpoints.anchor_holds()
        if not anchored:
            return check("audit_chain_head", False, why)
        return check(
            "audit_chain_head", True, f"event #{event_id} is in the chain with the cited hash"
        )
    return check(
        "audit_chain_head",
        False,
        f"event #{event_id} with hash {event_hash[:12]}… is not in the audit chain",
    )


def record_checks(statement: dict) -> list[Check]:
    """Every record check for a statement whose signature already verified."""
    checks: list[Check] = []
    change_id = change_id_of(statement)
    subjects = {
        s["name"]: s["digest"]["sha256"]
        for s in statement.get("subject", [])
        if isinstance(s, dict) and isinstance(s.get("digest"), dict)
    }
    name = statement.get("subject", [{}])[0].get("name")
    content_sha256 = subjects.get(name, "")
    change = ChangeRequest.objects.filter(pk=change_id).first() if change_id else None
    if change is None:
        checks.append(check("record_change", False, f"no change named {name!r} exists"))
        return checks
    checks.append(check("record_change", True, f"{change.reference} exists ({change.title})"))

    predicate = statement.get("predicate") if isinstance(statement.get("predicate"), dict) else {}
    meta = predicate.get("attestation") if isinstance(predicate.get("attestation"), dict) else {}
    version = meta.get("version")
    row = (
        Attestation.objects.filter(change=change, version=version)
        .only("pk", "version", "status", "statement_sha256", "content_sha256", "created_at")
        .first()
        if isinstance(version, int)
        else None
    )
    digest = sha256_hex(canonical_bytes(statement))
    if row is None:
        checks.append(
            check("record_attestation", False, f"{change.reference} has no attestation v{version}")
        )
    elif row.status != Attestation.READY or row.statement_sha256 != digest:
        checks.append(
            check(
                "record_attestation",
                False,
                f"the statement is not the one issued as v{row.version} of {change.reference}",
            )
        )
    else:
        checks.append(
            check("record_attestation", True, f"issued as v{row.version} of {change.reference}")
        )

    problems = []
    if row is not None and row.content_sha256 != content_sha256:
        problems.append(f"attestation v{row.version} records content {row.content_sha256[:12]}…")
    if not _content_hash_known(change, content_sha256):
        problems.append(f"{change.reference} never had content {content_sha256[:12]}…")
    if problems:
        checks.append(check("record_content_hash", False, "; ".join(problems)))
    else:
        current = "current" if change.content_sha256 == content_sha256 else "recorded earlier"
        checks.append(
            check("record_content_hash", True, f"{content_sha256[:12]}… ({current} content)")
        )

    checks.append(_check_runs(change, content_sha256, subjects))
    issued_at = row.created_at if row is not None else _parse_time(meta.get("issued_at"))
    checks.append(_check_approvals(change, content_sha256, predicate.get("signoffs"), issued_at))
    audit_facts = predicate.get("audit") if isinstance(predicate.get("audit"), dict) else {}
    checks.append(_check_audit_head(audit_facts.get("head")))
    return checks
