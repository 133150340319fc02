"""Writes that finish a run: its interim snapshot while live, its final verdict (or error),
and the change's verdict once every current run of the change has finished.

A run is finalised under row locks (change, then run: the order everywhere, so it cannot
deadlock with a withdrawal) and moved by a conditional UPDATE, so two workers finishing at
once cannot record a verdict twice.
"""

from __future__ import annotations

import hashlib
import json
import time

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Q
from django.utils import timezone

from changes import audit
from changes import services as change_services

from . import dispatch, gates, selectors, waves
from . import states as run_states
from .models import SAMPLE_RESULT_FIELDS, Batch, EvaluationRun, Sample

#: A live run's interim snapshot is judged again once its samples grew by this factor ...
INTERIM_GROWTH = 1.25
#: ... or once the stored snapshot is this old (seconds), whichever comes first.
INTERIM_MAX_AGE_SECONDS = 2.0


def interim_due(snapshot, n: int, now: float) -> bool:
    """Whether a run with ``n`` samples stored should be judged again.

    Why not after every batch: the gate reads every sample stored so far, so judging after
    each of B batches costs ~B/2 full judgements of the run (quadratic in its batches; ~a
    third of the worker's non-HTTP CPU on the 2,000-sample throughput bench). Judging when
    the count grew by ``INTERIM_GROWTH`` bounds the total to a few full judgements; the age
    bound keeps the snapshot of a slow run (or of a fast run between growth steps) at most
    ``INTERIM_MAX_AGE_SECONDS`` behind. Progress counters are refreshed on every batch
    regardless, and the final verdict never reads the snapshot."""
    if not isinstance(snapshot, dict) or not snapshot.get("n"):
        return True
    if n >= snapshot["n"] * INTERIM_GROWTH:
        return True
    at = snapshot.get("at")
    return not isinstance(at, int | float) or now - at >= INTERIM_MAX_AGE_SECONDS


def run_refresh_interim(*, run_id: int, force: bool = False) -> bool:
    """Judge a live run's samples so far and store the result on the run (``run.interim``),
    when a batch is recorded and a refresh is due (:func:`interim_due`; ``force`` skips that
    test), so that polls of a live run read it instead of running the gate
    (``selectors.run_result``). Runs after the batch's transaction, holding no lock while the
    gate works; a snapshot never replaces one of more samples (two workers may finish batches
    of one run at once). No audit event: not a state change. True when it stored one."""
    run = (
        EvaluationRun.objects.select_related("suite", "change__system")
        .filter(pk=run_id, status__in=run_states.LIVE)
        .first()
    )
    if run is None:
        return False
    seen = Sample.objects.filter(run_id=run_id).aggregate(n=Count("id"), last=Max("id"))
    if not seen["n"]:
        return False
    now = time.time()
    if not force and not interim_due(run.interim, seen["n"], now):
        return False
    stats, verdict = selectors.interim_judgement(run)
    snapshot = {"n": seen["n"], "last": seen["last"], "at": now, "stats": stats,
                "verdict": verdict}  # fmt: skip
    return bool(
        EvaluationRun.objects.filter(pk=run_id, status__in=run_states.LIVE)
        .filter(Q(interim__isnull=True) | Q(interim__n__lt=seen["n"]))
        .update(interim=snapshot)
    )


def refresh_counters(run_id: int) -> dict:
    counts = Sample.objects.filter(run_id=run_id).aggregate(
        done=Count("id"), errors=Count("id", filter=Q(label="error"))
    )
    EvaluationRun.objects.filter(pk=run_id).update(
        done_samples=counts["done"], error_samples=counts["errors"]
    )
    return counts


def result_digest(samples: list[dict], stats: dict) -> str:
    """SHA-256 of canonical JSON of the sorted (key, label) rows and the statistics."""
    rows = sorted(
        [s["scenario_id"], s["condition"], s["cue_index"], s["epoch"], s["label"]] for s in samples
    )
    body = json.dumps(
        {"samples": rows, "stats": stats},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


@transaction.atomic
def run_finalize(*, run_id: int) -> EvaluationRun | None:
    """running -> completed (verdict pass/fail/inconclusive) or errored (error share above
    ``EVAL_ERROR_THRESHOLD``), once every batch is done. Writes ``evaluation.run_completed``.

    Exactly one caller wins: the change row, then the run row, are locked (that order
    everywhere, so it cannot deadlock with a withdrawal), and the status moves with a
    conditional UPDATE. When every current run of the change has finished, records the
    change's verdict through ``change_request_record_verdict`` in this same transaction.
    """
    change_id = EvaluationRun.objects.filter(pk=run_id).values_list("change_id", flat=True).first()
    if change_id is None:
        return None
    change = change_services.lock_change(change_id)
    run = (
        EvaluationRun.objects.select_for_update(no_key=True, of=("self",))
        .select_related("suite")
        .get(pk=run_id)
    )
    if not run.is_live or Batch.objects.filter(run=run).exclude(status=Batch.DONE).exists():
        return None
    samples = list(Sample.objects.filter(run=run).values(*SAMPLE_RESULT_FIELDS))
    counts = refresh_counters(run.pk)
    sequential = waves.sequential_of(run)
    decision = gates.evaluate(run.suite.document, samples, run.policy, sequential=sequential)
    stats = decision.stats
    if isinstance(run.stats, dict) and run.stats.get("judge_calibration"):
        stats = {**stats, "judge_calibration": run.stats["judge_calibration"]}
    total = run.total_samples or len(samples)
    errors = counts["errors"] + max(0, total - counts["done"])
    threshold = _error_threshold(run.policy)
    share = errors / total if total else 1.0
    now = timezone.now()
    # A fail stands however many samples errored: missing replies never rescue a faker.
    if share > threshold and decision.verdict != "fail":
        status, verdict = EvaluationRun.ERRORED, ""
        reasons = [
            f"{errors} of {total} samples failed ({share:.0%}), above the error threshold "
            f"of {threshold:.0%}: the run is neither a pass nor a fail."
        ]
        status_reason = reasons[0] + _first_errors(samples)
    else:
        status, verdict = EvaluationRun.COMPLETED, decision.verdict
        reasons, status_reason = list(decision.reasons), ""
        extra = waves.extend(run, verdict)  # an undecided adaptive run gets its next step
        if extra:
            transaction.on_commit(lambda: dispatch.enqueue_batches(extra), robust=True)
            return None
    digest = result_digest(samples, stats)
    moved = EvaluationRun.objects.filter(pk=run.pk, status__in=run_states.sources(status)).update(
        status=status,
        verdict=verdict,
        reasons=reasons,
        stats=stats,
        result_digest=digest,
        status_reason=status_reason,
        finished_at=now,
        done_samples=counts["done"],
        error_samples=counts["errors"],
    )
    if not moved:
        return None
    run.refresh_from_db()
    _audit_run_finished(run, source=EvaluationRun.RUNNING, counts=counts)
    record_change_verdict(change)
    return run


def _audit_run_finished(run: EvaluationRun, *, source: str, counts: dict) -> None:
    """The one ``evaluation.run_completed`` event of a run that left a live status."""
    audit.append(
        actor=None,
        verb="evaluation.run_completed",
        obj=run,
        data={
            "change": run.change_id,
            "from": source,
            "to": run.status,
            "verdict": run.verdict,
            "reasons": run.reasons,
            "samples": counts["done"],
            "errors": counts["errors"],
            "result_digest": run.result_digest,
        },
    )


def _error_threshold(policy: dict) -> float:
    """The deployment's ``EVAL_ERROR_THRESHOLD``, unless the suite's gate sets its own."""
    if "max_error_rate" in (policy.get("overrides") or []):
        return float(policy["max_error_rate"])
    return float(getattr(settings, "EVAL_ERROR_THRESHOLD", 0.1))


def _first_errors(samples: list[dict]) -> str:
    messages = sorted({s["error"] for s in samples if s["label"] == "error" and s["error"]})
    if not messages:
        return ""
    return " First error(s): " + "; ".join(m[:200] for m in messages[:3])


def record_change_verdict(change, *, actor=None) -> None:
    """When every current run of ``change`` has finished, hand the verdict to the workflow."""
    runs = selectors.current_runs(change)
    if not runs or any(r.is_live for r in runs):
        return
    reasons = selectors.gate_reasons(change)
    change_services.change_request_record_verdict(
        change_id=change.pk,
        content_sha256=change.content_sha256,
        passed=not reasons,
        reasons=reasons,
        actor=actor,
    )


@transaction.atomic
def run_abort(*, run_id: int, reason: str) -> EvaluationRun | None:
    """queued/running -> errored without statistics (the target is unusable, or a batch keeps
    killing workers). Writes ``evaluation.run_completed`` with the reason; records the
    change's verdict when this was its last live run."""
    change_id = EvaluationRun.objects.filter(pk=run_id).values_list("change_id", flat=True).first()
    if change_id is None:
        return None
    change = change_services.lock_change(change_id)
    run = EvaluationRun.objects.select_for_update(no_key=True, of=("self",)).get(pk=run_id)
    source = run.status
    counts = refresh_counters(run.pk)
    moved = EvaluationRun.objects.filter(
        pk=run.pk, status__in=run_states.sources(run_states.ERRORED)
    ).update(
        status=EvaluationRun.ERRORED,
        verdict="",
        reasons=[reason],
        status_reason=reason,
        finished_at=timezone.now(),
    )
    if not moved:
        return None
    run.refresh_from_db()
    _audit_run_finished(run, source=source, counts=counts)
    record_change_verdict(change)
    return run
