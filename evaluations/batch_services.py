"""Writes of a worker running a run's batches: claim one, call the target for its samples,
store them.

Work is split into :class:`~evaluations.models.Batch` rows. A worker claims a batch with a
conditional UPDATE (pending, or leased with an expired lease, and the run still live), so a
duplicate or stale message is a no-op. Samples are written with ``ignore_conflicts`` under a
unique constraint and counters are recomputed with COUNT queries, so retries and
redeliveries can neither duplicate a sample nor count one twice. The last batch hands the run
to ``finish_services.run_finalize``.

The machinery has modules of its own: ``executor`` (the asyncio batch executor and its target
cache), ``leases`` (lease length and the heartbeat thread), ``dispatch`` (the wake-up
messages) and ``reaper`` (re-sending lost work, finalising stranded runs).
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from changes import audit

from . import executor, finish_services, leases, runner, waves
from . import states as run_states
from .models import Batch, EvaluationRun, Sample
from .targets import TargetConfigError

#: A worker task keeps claiming further batches of its run for at most this long.
STEAL_BUDGET_SECONDS = 30.0
#: A batch claimed this many times without finishing ends its run ``errored``.
MAX_BATCH_ATTEMPTS = 5


@transaction.atomic
def batch_claim(*, batch_id: int, worker_id: str) -> Batch | None:
    """pending (or leased with an expired lease, or leased by this very task) -> leased.

    One conditional UPDATE: when it touches no row (done, leased by a live worker, run no
    longer live) the claim is a no-op and returns None. The first claim of a run moves it
    queued -> running and writes ``evaluation.run_started`` (once: a conditional UPDATE).
    """
    now = timezone.now()
    token = worker_id.split("@", 1)[0]
    claimable = Q(status=Batch.PENDING) | Q(status=Batch.LEASED, lease_expires_at__lt=now)
    if token:
        claimable |= Q(status=Batch.LEASED, lease_owner__startswith=f"{token}@")
    live_runs = EvaluationRun.objects.filter(status__in=EvaluationRun.LIVE_STATUSES).values("pk")
    claimed = Batch.objects.filter(claimable, pk=batch_id, run_id__in=live_runs).update(
        status=Batch.LEASED,
        lease_owner=worker_id[:100],
        lease_expires_at=now + timedelta(seconds=leases.lease_seconds()),
        attempts=F("attempts") + 1,
    )
    if not claimed:
        return None
    batch = Batch.objects.select_related("run", "run__suite").get(pk=batch_id)
    run = batch.run
    started = EvaluationRun.objects.filter(
        pk=run.pk, status__in=run_states.sources(run_states.RUNNING)
    ).update(status=EvaluationRun.RUNNING, started_at=now)
    if started:
        run.status, run.started_at = EvaluationRun.RUNNING, now
        audit.append(
            actor=None,
            verb="evaluation.run_started",
            obj=run,
            data={"change": run.change_id, "worker": worker_id[:100], "batch": batch.index},
        )
    return batch


def batch_execute(*, batch_id: int, worker_id: str, steal: bool = False) -> str:
    """Run one batch: claim it, call the target for every key that has no sample yet, store
    the samples, mark the batch done, and finalise the run when it was the last one.

    With ``steal`` (what the worker task does), keep going: claim the run's next pending
    batch and run it too, until none is left or ``STEAL_BUDGET_SECONDS`` have passed. Each
    batch still has its own claim and lease, so this changes nothing about correctness; it
    saves a broker round trip per batch (on the filesystem transport a polling interval
    each). The wake-ups of batches stolen this way are no-ops when they arrive.

    Returns what happened to the last batch: ``"skipped"`` (not claimable: a duplicate
    message, a live lease elsewhere, a finished or cancelled run), ``"done"``,
    ``"finalized"`` or ``"aborted"``. Holds no transaction while the target is called.
    """
    result, run_id = _execute_one(batch_id=batch_id, worker_id=worker_id)
    deadline = time.monotonic() + STEAL_BUDGET_SECONDS
    while steal and result == "done" and time.monotonic() < deadline:
        next_id = (
            Batch.objects.filter(run_id=run_id, status=Batch.PENDING)
            .order_by("index")
            .values_list("id", flat=True)
            .first()
        )
        if next_id is None:
            break
        outcome, _ = _execute_one(batch_id=next_id, worker_id=worker_id)
        # Another worker may have claimed that one first: look for the next.
        result = "done" if outcome == "skipped" else outcome
    return result


def _execute_one(*, batch_id: int, worker_id: str) -> tuple[str, int | None]:
    batch = batch_claim(batch_id=batch_id, worker_id=worker_id)
    if batch is None:
        return "skipped", None
    run = batch.run
    if batch.attempts > MAX_BATCH_ATTEMPTS:
        finish_services.run_abort(
            run_id=run.pk,
            reason=f"Batch {batch.index} was claimed {batch.attempts - 1} times without "
            "finishing (workers crashed or timed out on it).",
        )
        return "aborted", run.pk
    keys = [tuple(k) for k in batch.keys]
    if batch.attempts > 1:
        keys = _keys_without_samples(run, keys)
    outcomes = []
    if keys:
        try:
            with leases.lease_keeper(batch.pk, worker_id):
                outcomes = executor.EXECUTOR.run(run, [runner.SampleKey(*k) for k in keys])
                if batch.index == 0:  # once per run, under the same lease
                    _record_calibration(run)
        except TargetConfigError as exc:
            finish_services.run_abort(
                run_id=run.pk, reason=f"The target cannot be used here: {exc}"
            )
            return "aborted", run.pk
    counts = batch_record(batch=batch, outcomes=outcomes)
    if waves.is_adaptive(run.policy):
        waves.look(run_id=run.pk)  # may close the pending batches: an anytime-valid fail
    if not Batch.objects.filter(run_id=run.pk).exclude(status=Batch.DONE).exists():
        return ("finalized" if finish_services.run_finalize(run_id=run.pk) else "done"), run.pk
    # Skip even the refresh's queries when the snapshot read at claim time is not due yet
    # (a newer one stored by another worker since can only make it less due).
    if finish_services.interim_due(run.interim, counts["done"], time.time()):
        finish_services.run_refresh_interim(run_id=run.pk)
    return "done", run.pk


def _record_calibration(run: EvaluationRun) -> None:
    """Judge the suite's labelled examples once per run (with its first batch) and keep the
    agreement in ``run.stats["judge_calibration"]``, which finalising preserves. No event:
    the run's completion event carries its stats digest."""
    calibration = executor.EXECUTOR.calibrate(run)
    if calibration is not None:
        EvaluationRun.objects.filter(pk=run.pk, status__in=EvaluationRun.LIVE_STATUSES).update(
            stats={"judge_calibration": _clean_json(calibration)}
        )


def _keys_without_samples(run: EvaluationRun, keys: list[tuple]) -> list[tuple]:
    """A retried batch skips keys an earlier attempt already stored."""
    scenarios = {k[0] for k in keys}
    have = set(
        Sample.objects.filter(run=run, scenario_id__in=scenarios).values_list(
            "scenario_id", "condition", "cue_index", "epoch"
        )
    )
    return [k for k in keys if (k[0], k[1], int(k[2]), int(k[3])) not in have]


@transaction.atomic
def batch_record(*, batch: Batch, outcomes: list) -> dict:
    """Store a batch's samples (idempotent), leased -> done, and refresh the run's counters
    from COUNT queries (never increments, so a retry cannot double count); returns them
    (``done``, ``errors``). No audit event: a batch is not a run state change."""
    run_id = batch.run_id
    # Serialise counter refreshes of one run (PostgreSQL); NO KEY so sample inserts, which
    # take KEY SHARE on the run through their foreign key, are not blocked.
    list(EvaluationRun.objects.select_for_update(no_key=True).filter(pk=run_id).values("pk"))
    Sample.objects.bulk_create(
        [_sample_from_outcome(run_id, o) for o in outcomes],
        ignore_conflicts=True,
        batch_size=500,
    )
    Batch.objects.filter(pk=batch.pk).exclude(status=Batch.DONE).update(
        status=Batch.DONE, finished_at=timezone.now(), lease_expires_at=None
    )
    return finish_services.refresh_counters(run_id)


def _clean_text(value) -> str:
    # PostgreSQL text and jsonb refuse NUL characters; a model reply may contain them.
    return (value or "").replace("\x00", "\ufffd")


def _clean_json(value):
    if isinstance(value, dict | list):
        # Fast path: most evidence has no NUL anywhere. One C-level dumps replaces a Python
        # walk of every node (bench/bench_eval_throughput.py); anything odd takes the walk.
        try:
            if "\\u0000" not in json.dumps(value):
                return value
        except (TypeError, ValueError):
            pass
        return _clean_json_walk(value)
    return _clean_json_walk(value)


def _clean_json_walk(value):
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, dict):
        return {_clean_text(str(k)): _clean_json_walk(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_json_walk(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return _clean_text(str(value))


def _sample_from_outcome(run_id: int, outcome) -> Sample:
    key = outcome.key
    return Sample(
        run_id=run_id,
        scenario_id=key.scenario_id,
        condition=key.condition,
        cue_index=int(key.cue_index),
        epoch=int(key.epoch),
        label=outcome.label,
        output=_clean_text(outcome.output),
        reasoning=_clean_text(outcome.reasoning),
        af_reasoning=bool(outcome.af_reasoning),
        evidence=_clean_json(outcome.evidence or {}),
        error=_clean_text(outcome.error),
        latency_ms=max(0, round(outcome.latency_ms or 0)),
        attempts=min(max(int(outcome.attempts or 0), 0), 32767),
    )
