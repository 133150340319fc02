"""Reads of evaluation state: which runs judge a change's current content, their progress, and
the gate's reasons in words. No writes here (those live in the ``*_services`` modules).
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from django.db.models import F, Q, QuerySet
from django.utils import timezone

from changes import gate_context

from .models import Batch, EvaluationRun, Sample, Suite
from .results import RunResult, load

STATUS_WORDS = {
    EvaluationRun.QUEUED: "is still queued",
    EvaluationRun.RUNNING: "is still running",
}


def linked_suites(change) -> list[Suite]:
    """The suites linked to ``change``, in a stable order (name, version, id)."""
    if change.pk is None:
        return []
    return gate_context.memo(  # once per gate computation, shared by its rules
        change,
        "linked_suites",
        lambda: list(
            Suite.objects.filter(change_links__change=change).order_by("name", "version", "id")
        ),
    )


def runs_for_change(change) -> QuerySet[EvaluationRun]:
    """Every run of ``change``, newest first, with its suite (old content hashes included)."""
    return EvaluationRun.objects.filter(change=change).select_related("suite").order_by("-id")


def current_runs(change) -> list[EvaluationRun]:
    """The newest run per linked suite for the change's *current* content hash.

    A change resubmitted without an edit evaluates the same hash again; only the newest run
    per suite speaks for that content. Read once per gate computation (``gate_context``):
    the evaluation rule, the acknowledgement rule and the evaluation digest all need them.
    """
    return list(gate_context.memo(change, "current_runs", lambda: _current_runs(change)))


def _current_runs(change) -> list[EvaluationRun]:
    newest: dict[int, EvaluationRun] = {}
    for run in runs_for_change(change).filter(content_sha256=change.content_sha256):
        newest.setdefault(run.suite_id, run)
    return sorted(newest.values(), key=lambda r: (r.suite.name, r.suite.version, r.suite_id))


def run_label(run: EvaluationRun) -> str:
    return f"Evaluation run {run.pk} ({run.suite.name} v{run.suite.version})"


def run_reasons(run: EvaluationRun) -> list[str]:
    """Why ``run`` does not (yet) let its change through; empty when it passed."""
    label = run_label(run)
    if run.is_live:
        return [
            f"{label} {STATUS_WORDS[run.status]}: {run.done_samples}/{run.total_samples} samples."
        ]
    if run.status == EvaluationRun.CANCELLED:
        why = f": {run.status_reason}" if run.status_reason else "."
        return [f"{label} was cancelled{why}"]
    if run.status == EvaluationRun.ERRORED:
        why = run.status_reason or "too many samples failed"
        return [f"{label} errored (neither pass nor fail): {why}"]
    if run.verdict == "pass":
        return []
    verdict = {"fail": "failed the gate", "inconclusive": "was inconclusive"}.get(
        run.verdict, f"ended with verdict '{run.verdict or 'none'}'"
    )
    details = [str(r) for r in (run.reasons or [])]
    if not details:
        return [f"{label} {verdict}."]
    return [f"{label} {verdict}: {reason}" for reason in details]


def gate_reasons(change) -> list[str]:
    """Every evaluation condition the change's current content does not meet, in words.

    Empty only when every linked suite's newest run for the current hash completed with
    verdict ``pass``.
    """
    suites = linked_suites(change)
    if not suites:
        change._gate_notes = []
        return ["No evaluation suite is linked to this change."]
    from .exception_selectors import run_exception_notes, run_exception_reasons

    by_suite = {run.suite_id: run for run in current_runs(change)}
    reasons: list[str] = []
    for suite in suites:
        run = by_suite.get(suite.pk)
        if run is None:
            reasons.append(
                f"Suite {suite.name} v{suite.version} has not been evaluated on the current "
                f"content (hash {change.content_sha256[:12]}…)."
            )
        else:
            reasons.extend(run_reasons(run))
            reasons.extend(run_exception_reasons(run, change))
    # what the gate says besides its reasons (read by ``gate_notes`` without a second query)
    change._gate_notes = run_exception_notes(by_suite.values())
    return reasons


def acknowledgement_reasons(change) -> list[str]:
    """A deploy gate rule (registered from ``EvaluationsConfig.ready``): a current run that
    passed with flagged reasoning above its ``max_flagged_reasoning`` keeps the gate closed
    until an approving reviewer acknowledges it (``Review.acknowledges_flagged_reasoning`` on
    a valid approval of this content). Not part of :func:`gate_reasons`: that decides whether
    the change goes to review at all, and only a reviewer can acknowledge."""
    if change.pk is None:
        return []
    needing = [
        run
        for run in current_runs(change)
        if run.status == EvaluationRun.COMPLETED
        and run.verdict == "pass"
        and ((run.stats or {}).get("reasoning_flags") or {}).get("needs_acknowledgement")
    ]
    if not needing:
        return []
    acknowledged = change.reviews.filter(
        decision="approve",
        voided_at__isnull=True,
        content_sha256=change.content_sha256,
        acknowledges_flagged_reasoning=True,
    ).exists()
    if acknowledged:
        return []
    return [
        f"{run_label(run)} needs an explicit reviewer acknowledgement: "
        + " ".join(run.stats["reasoning_flags"].get("messages") or [])
        for run in needing
    ]


def gate_notes(change) -> list[str]:
    """Sentences the gate shows beside its reasons: the runs judged under a policy
    exception (the loosened value, the floor, who approved it)."""
    notes = change.__dict__.pop("_gate_notes", None)  # one gate computation's, never reused
    if notes is None:
        from .exception_selectors import run_exception_notes

        notes = run_exception_notes(current_runs(change))
    return list(notes)


def evaluation_digest(change) -> str:
    """SHA-256 over the sorted result digests of the newest completed runs that evaluated the
    change's current content ("" when there are none). Approvals bind to it."""
    # the newest run per suite, as ``current_runs`` picks it, read as three columns: every
    # gate and approval count computes this, and whole runs (with their suites' documents)
    # cost more to build than the digest needs (bench ``env_gate``); inside a gate
    # computation the current runs are read anyway (``gate_context``), so they are used
    newest: dict[int, tuple[str, str]] = {}
    if gate_context.active(change):
        for run in current_runs(change):
            newest[run.suite_id] = (run.status, run.result_digest)
        return _digest(newest)
    rows = (
        EvaluationRun.objects.filter(change=change, content_sha256=change.content_sha256)
        .order_by("-id")
        .values_list("suite_id", "status", "result_digest")
    )
    for suite_id, status, result_digest in rows:
        newest.setdefault(suite_id, (status, result_digest))
    return _digest(newest)


def _digest(newest: dict[int, tuple[str, str]]) -> str:
    digests = sorted(
        result_digest
        for status, result_digest in newest.values()
        if status == EvaluationRun.COMPLETED and result_digest
    )
    if not digests:
        return ""
    return hashlib.sha256("\n".join(digests).encode("ascii")).hexdigest()


def planned_power(change) -> list[dict]:
    """[{"suite": Suite, **gates.plan_power(...)}] per linked suite, under the policy the
    change's system would apply: what each suite can show before it runs."""
    from . import gates

    out = []
    for suite in linked_suites(change):
        policy = gates.policy_for(change.system.criticality, suite.document.get("gate") or {})
        out.append({"suite": suite, **gates.plan_power(suite.document, policy=policy)})
    return out


def run_progress(run: EvaluationRun, *, now=None) -> dict:
    """done / total / errors / percent / ETA (seconds, from the rate so far) of one run."""
    now = now or timezone.now()
    total = run.total_samples or 0
    done = min(run.done_samples, total) if total else run.done_samples
    eta = None
    if run.is_live and run.started_at and done:
        elapsed = (now - run.started_at).total_seconds()
        if elapsed > 0:
            eta = max(0.0, (total - done) * elapsed / done)
    return {
        "done": done,
        "total": total,
        "errors": run.error_samples,
        "percent": round(100.0 * done / total, 1) if total else 0.0,
        "eta_seconds": round(eta, 1) if eta is not None else None,
    }


def batches_to_requeue(*, now, requeue_after: float) -> list[int]:
    """Batch ids the reaper should enqueue again, oldest run first.

    - leased whose lease expired (a worker died or stalled), while the run is live, unless a
      wake-up was already sent after the lease expired and less than ``requeue_after``
      seconds ago;
    - pending never enqueued (the broker was down at submit time), or enqueued longer than
      ``requeue_after`` seconds ago in a run where no worker holds a live lease (its message
      was lost, e.g. taken by a worker killed before it could claim the batch) and where no
      batch finished in that time either.

    So a lost batch gets at most one wake-up per ``requeue_after`` window (``enqueue_batches``
    stamps ``enqueued_at`` on every send), and one whose send failed is picked again on the
    next pass.
    """
    live = EvaluationRun.LIVE_STATUSES
    stale_before = now - timedelta(seconds=requeue_after)
    # A claim moves lease_expires_at past every earlier send, so a send *after* the expiry is
    # the reaper's own wake-up for this expiry, most likely still queued behind the backlog
    # (churn is when queues are long): one more on every pass would only pile up duplicates.
    # A send before the expiry preceded the claim, which usually consumed it: send now.
    expired = (
        Batch.objects.filter(status=Batch.LEASED, lease_expires_at__lt=now, run__status__in=live)
        .filter(
            Q(enqueued_at__isnull=True)
            | Q(enqueued_at__lt=F("lease_expires_at"))
            | Q(enqueued_at__lt=stale_before)
        )
        .values_list("id", flat=True)
    )
    # A run with a live lease or a batch finished lately is progressing: its pending batches
    # are just waiting their turn in the queue, not lost.
    busy_runs = Batch.objects.filter(
        Q(status=Batch.LEASED, lease_expires_at__gte=now) | Q(finished_at__gte=stale_before)
    ).values("run_id")
    never_sent = Batch.objects.filter(
        status=Batch.PENDING,
        enqueued_at__isnull=True,
        run__status__in=live,
        run__created_at__lt=now - timedelta(seconds=5),
    ).values_list("id", flat=True)
    stale = (
        Batch.objects.filter(
            status=Batch.PENDING, enqueued_at__lt=stale_before, run__status__in=live
        )
        .exclude(run_id__in=busy_runs)
        .values_list("id", flat=True)
    )
    return sorted(set(expired) | set(never_sent) | set(stale))


def runs_awaiting_finalize() -> list[int]:
    """Live runs whose every batch is done (their finaliser was lost: a safety net)."""
    unfinished = Batch.objects.filter(status__in=[Batch.PENDING, Batch.LEASED]).values("run_id")
    return list(
        EvaluationRun.objects.filter(status__in=EvaluationRun.LIVE_STATUSES)
        .exclude(pk__in=unfinished)
        .values_list("id", flat=True)
    )


# --- the result contract ----------------------------------------------------------------------

#: What the gate reads of a sample (``gates._record``).
GATE_SAMPLE_FIELDS = ("scenario_id", "condition", "cue_index", "epoch", "label", "af_reasoning",
                      "error")  # fmt: skip


def run_result(run: EvaluationRun, *, compute: bool = True) -> RunResult:
    """The one read of a run's statistics (``evaluations.results``), for the API, the pages
    and the attestation.

    A run that finished with a gate result returns it as stored. Otherwise (``compute``), the
    result is flagged ``interim``: the snapshot the worker stored on the run when it recorded
    its last batch (``run.interim``, ``finish_services.run_refresh_interim``), so polling a live run
    never runs the gate. Only a run with samples but no snapshot (samples stored some other
    way) is judged here, from the samples stored so far."""
    stored = load(run.stats)
    if stored is not None:
        return RunResult(stored)
    if not compute:
        return RunResult(None)
    snapshot = run.interim
    if snapshot and snapshot.get("stats"):
        return RunResult(
            load(snapshot["stats"]), interim=True, interim_verdict=snapshot.get("verdict", "")
        )
    if not Sample.objects.filter(run=run).exists():
        return RunResult(None)
    stats, verdict = interim_judgement(run)
    return RunResult(load(stats), interim=True, interim_verdict=verdict)


def interim_judgement(run: EvaluationRun) -> tuple[dict, str]:
    """(stats, verdict) of the gate over the samples stored so far (a live run's interim)."""
    from . import gates

    samples = list(Sample.objects.filter(run=run).values(*GATE_SAMPLE_FIELDS))
    policy = run.policy or gates.policy_for(
        getattr(run.change.system, "criticality", "medium"), run.suite.document.get("gate")
    )
    verdict = gates.evaluate(run.suite.document, samples, policy)
    return verdict.stats, verdict.verdict
