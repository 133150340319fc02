"""Every write of the evaluation engine, one transaction each.

Run lifecycle (each move writes exactly one audit event via ``changes.audit.append``)::

    queued --first batch claimed--> running --last batch done--> completed | errored
    queued/running --withdraw/resubmit--> cancelled

Work is split into :class:`~evaluations.models.Batch` rows. A worker claims a batch with a
conditional UPDATE (pending, or leased with an expired lease, and the run still live), so a
duplicate or stale message is a no-op. Samples are written with ``ignore_conflicts`` under a
unique constraint, counters are recomputed with COUNT queries, and the run is finalised under
row locks (change, then run), so retries, redeliveries and two workers finishing at once can
neither duplicate a sample nor record a verdict twice.

Only the writes live here. Their machinery has modules of its own: ``executor`` (the asyncio
batch executor and its target cache), ``leases`` (lease length and the heartbeat thread),
``dispatch`` (the wake-up messages) and ``reaper`` (re-sending lost work, finalising stranded
runs).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Max, Q
from django.utils import timezone

from changes import audit
from changes import services as change_services
from core.errors import Conflict, NotAllowed, ValidationFailed

from . import dispatch, executor, gates, leases, permissions, registry, runner, selectors, waves
from . import states as run_states
from .models import SAMPLE_RESULT_FIELDS, Batch, ChangeSuite, EvaluationRun, Sample, Suite
from .suite_schema import SuiteError, parse_suite, suite_sha256
from .targets import TargetConfigError

#: A worker task keeps claiming further batches of its run for at most this long.
STEAL_BUDGET_SECONDS = 30.0
#: A batch claimed this many times without finishing ends its run ``errored``.
MAX_BATCH_ATTEMPTS = 5


def _setting(name: str, default):
    return getattr(settings, name, default)


# --- suites ------------------------------------------------------------------------------


@transaction.atomic
def suite_create(*, actor, text: str, fmt: str = "yaml") -> Suite:
    """Store a suite document (engineer). Writes ``suite.created``.

    Suites are immutable and identified by name + version: re-uploading identical content
    returns the stored suite (no event); the same name + version with other content is a
    conflict (bump the version).
    """
    if not permissions.can_add_suites(actor):
        raise NotAllowed("Only engineers add evaluation suites.")
    fmt = (fmt or "yaml").lower()
    if fmt not in ("yaml", "json"):
        raise ValidationFailed("format: a suite is YAML or JSON.")
    try:
        document = parse_suite(text, fmt)
    except SuiteError as exc:
        raise ValidationFailed(
            exc.errors[0] if exc.errors else "Invalid suite document.",
            code="invalid_suite",
            reasons=exc.errors,
            fields={"suite": exc.errors},
        ) from None
    # The source text is stored and shown as uploaded: comments included.
    registry.refuse_protected_values(text if isinstance(text, str) else text.decode(), "suite")
    registry.suite_judge_validate(document)
    sha = suite_sha256(document)
    existing = Suite.objects.filter(name=document["name"], version=document["version"]).first()
    if existing is not None:
        return _same_or_conflict(existing, sha)
    suite = Suite(
        name=document["name"],
        version=document["version"],
        description=document.get("description", ""),
        document=document,
        source_text=text if isinstance(text, str) else text.decode("utf-8"),
        source_format=fmt,
        content_sha256=sha,
        created_by=actor,
    )
    try:
        with transaction.atomic():
            suite.save()
    except IntegrityError:  # a concurrent upload of the same name + version won the race
        return _same_or_conflict(Suite.objects.get(name=suite.name, version=suite.version), sha)
    audit.append(
        actor=actor,
        verb="suite.created",
        obj=suite,
        data={
            "name": suite.name,
            "version": suite.version,
            "sha256": sha,
            "samples": suite.sample_count,
        },
    )
    return suite


def _same_or_conflict(existing: Suite, sha: str) -> Suite:
    if existing.content_sha256 == sha:
        return existing
    raise Conflict(
        f"Suite {existing.name} v{existing.version} already exists with different content; "
        "suites are immutable, so upload it under a new version.",
        code="duplicate",
    )


# --- links and targets (called through the port, inside the workflow's transactions) -----


def change_suites_set(*, change, suite_ids: Iterable) -> None:
    """Replace the suites linked to ``change`` (no event: the change's own edit event records
    the move of its content hash). Unknown ids are refused, all named."""
    try:
        wanted = {int(s) for s in suite_ids}
    except (TypeError, ValueError):
        raise ValidationFailed("suites: a list of suite ids is expected.") from None
    found = set(Suite.objects.filter(pk__in=wanted).values_list("id", flat=True))
    unknown = sorted(wanted - found)
    if unknown:
        raise ValidationFailed(
            f"suites: unknown suite id(s): {', '.join(map(str, unknown))}.",
            fields={"suites": [f"Unknown suite id {i}." for i in unknown]},
        )
    _refuse_unsafe_links(change, wanted)
    ChangeSuite.objects.filter(change=change).exclude(suite_id__in=wanted).delete()
    have = set(ChangeSuite.objects.filter(change=change).values_list("suite_id", flat=True))
    ChangeSuite.objects.bulk_create(
        [ChangeSuite(change=change, suite_id=s) for s in sorted(wanted - have)]
    )


def _refuse_unsafe_links(change, suite_ids: set) -> None:
    """A suite whose ``new`` grader silence satisfies may not be linked to a change of a high
    or critical system (the same rule is applied again at submit)."""
    from .suite_schema import suite_refusals

    system = getattr(change, "system", None)
    criticality = getattr(system, "criticality", None)
    if not permissions.is_strict(criticality):
        return
    problems = []
    for suite in Suite.objects.filter(pk__in=suite_ids).order_by("name", "version"):
        problems += suite_refusals(suite.document, criticality)
    if problems:
        raise ValidationFailed(
            problems[0], code="unsafe_suite", reasons=problems, fields={"suites": problems}
        )


def target_validate(target: dict) -> dict:
    """The normalised target config for storing (every write path of a system's target), or
    ValidationFailed("target: ..."): no ``*_env`` field, no secret value, only registered
    secret names (see :mod:`evaluations.registry`)."""
    return registry.target_validate(target)


def _target_for_submit(config: dict, *, system_name: str) -> tuple[dict, dict]:
    """(normalised config, identity) of a system's target, refused with the reason when it
    cannot be used here (unknown fields, a secret inside or not granted to the system, a host
    not allowed). A stored config from before the registry comes back naming secrets."""
    try:
        config, secrets = registry.target_for_system(config, system_name=system_name)
        target = executor.build_target(config, secrets)
    except TargetConfigError as exc:
        raise ValidationFailed(f"target: {exc}", fields={"target": [str(exc)]}) from None
    # describe() names kind, model and host: never a key (keys are read at call time).
    return config, target.describe()


# --- runs --------------------------------------------------------------------------------


def runs_start(*, change, actor) -> list[EvaluationRun]:
    """Create one queued run per linked suite for the change's current content, with its
    batches, in the caller's transaction. Writes ``evaluation.run_created`` per run;
    schedules the batches' wake-ups on commit.

    Raises ValidationFailed when no suite is linked or the system's target is invalid.
    """
    suites = selectors.linked_suites(change)
    if not suites:
        raise ValidationFailed(
            "suites: link at least one evaluation suite before submitting",
            fields={"suites": ["Link at least one evaluation suite."]},
        )
    # A live run of an older submission can only exist if a verdict never arrived; the new
    # submission supersedes it (and the database allows one live run per change and suite).
    runs_cancel(change=change, actor=actor, reason="Superseded by a new submission.")
    system = change.system
    target, identity = _target_for_submit(system.target or {}, system_name=system.name)
    protocol = change.proposed_protocol
    batch_size = runner.batch_size_for(
        int(_setting("EVAL_BATCH_SIZE", 50)), target.get("max_concurrency", 1)
    )
    from .exception_selectors import standing_for_policy

    plans = _plan_runs(suites, system.criticality, standing_for_policy(change))
    runs: list[EvaluationRun] = []
    batch_ids: list[int] = []
    for suite in suites:
        policy = plans[suite.pk]
        keys = [_key_list(k) for k in runner.plan_samples(suite.document, policy["epochs"])]
        keys = waves.order_keys(keys, policy)  # adaptive runs fill their budget wave by wave
        run = EvaluationRun.objects.create(
            change=change,
            suite=suite,
            content_sha256=change.content_sha256,
            protocol=protocol,
            system_prompt=protocol.system_prompt,
            target=target,
            target_identity=identity,
            policy=policy,
            seed=secrets.randbits(62),
            total_samples=len(keys),
        )
        batches = Batch.objects.bulk_create(
            [
                Batch(run=run, index=i, keys=keys[start : start + batch_size])
                for i, start in enumerate(range(0, len(keys), batch_size))
            ]
        )
        # bulk_create returns primary keys on PostgreSQL and SQLite >= 3.35.
        batch_ids += [b.pk for b in batches]
        audit.append(
            actor=actor,
            verb="evaluation.run_created",
            obj=run,
            data={
                "change": change.pk,
                "suite": {"id": suite.pk, "name": suite.name, "version": suite.version},
                "content_sha256": run.content_sha256,
                "target": identity,
                "total_samples": run.total_samples,
                "batches": len(batches),
                "seed": run.seed,
                "policy": run.policy,
            },
        )
        runs.append(run)
    transaction.on_commit(lambda: dispatch.enqueue_batches(batch_ids), robust=True)
    return runs


def _plan_runs(suites, criticality: str, exceptions: list[dict] | None = None) -> dict:
    """{suite id: the run's policy with its budget}, or ValidationFailed naming every suite
    that may not gate a system of this criticality (a ``new`` grader that silence satisfies,
    for high and critical systems) or whose planned budget exceeds the sample cap."""
    from .suite_schema import MAX_SAMPLES, suite_refusals

    plans, problems = {}, []
    for suite in suites:
        problems += suite_refusals(suite.document, criticality)
        policy = gates.with_budget(
            gates.policy_for(criticality, suite.document.get("gate") or {}, exceptions),
            suite.document,
        )
        cues = sum(len(c["cues"]) for c in suite.document["conditions"].values())
        samples = len(suite.document["scenarios"]) * cues * policy["epochs"]
        budget = policy["budget"]
        if policy["epochs_source"] == "planned" and not budget["feasible"]:
            problems.append(
                f"suite {suite.name} v{suite.version} sets no epochs and no budget can decide "
                f"it for a {criticality} system: {budget['note']}; add scenarios or cues, or "
                "set epochs"
            )
        elif samples > MAX_SAMPLES:
            problems.append(
                f"suite {suite.name} v{suite.version}: its planned budget of {policy['epochs']} "
                f"epochs is {samples} samples, more than the limit of {MAX_SAMPLES}; add "
                "scenarios or cues, or set epochs"
            )
        plans[suite.pk] = policy
    if problems:
        raise ValidationFailed(
            problems[0], code="unsafe_suite", reasons=problems, fields={"suites": problems}
        )
    return plans


def runs_cancel(*, change, actor, reason: str = "The change was withdrawn.") -> list[int]:
    """queued/running -> cancelled for every live run of ``change``. Writes
    ``evaluation.run_cancelled`` per run. Workers holding its batches finish as no-ops."""
    cancelled = []
    live = EvaluationRun.objects.filter(change=change, status__in=EvaluationRun.LIVE_STATUSES)
    for run in live.select_related("suite").order_by("id"):
        moved = EvaluationRun.objects.filter(
            pk=run.pk, status__in=run_states.sources(run_states.CANCELLED)
        ).update(status=EvaluationRun.CANCELLED, status_reason=reason, finished_at=timezone.now())
        if moved:
            audit.append(
                actor=actor,
                verb="evaluation.run_cancelled",
                obj=run,
                data={"change": change.pk, "from": run.status, "reason": reason},
            )
            cancelled.append(run.pk)
    return cancelled


@transaction.atomic
def run_cancel(*, actor, run: EvaluationRun) -> None:
    """One queued/running run -> cancelled (the change's author or an admin; 409 once it has
    finished). Writes ``evaluation.run_cancelled``. When no run for the change's current
    content is left live, the change gets its verdict (a cancelled run is not a pass), so it
    leaves ``evaluating`` instead of waiting forever. Locks the change, then the run: the
    same order as finalisation."""
    if not permissions.can_cancel_runs_of(actor, run.change):
        raise NotAllowed("Only the change's author or an admin can cancel its evaluation runs.")
    change = change_services.lock_change(run.change_id)
    live = EvaluationRun.objects.select_for_update().filter(pk=run.pk).first()
    if live is None or not run_states.can_transition(live.status, run_states.CANCELLED):
        state = live.get_status_display().lower() if live else "gone"
        raise Conflict(
            f"Evaluation run {run.pk} has already finished ({state}); only a queued or "
            "running run can be cancelled.",
            code="run_finished",
        )
    reason = f"Cancelled by {actor.get_username()}."
    EvaluationRun.objects.filter(pk=live.pk).update(
        status=EvaluationRun.CANCELLED, status_reason=reason, finished_at=timezone.now()
    )
    audit.append(
        actor=actor,
        verb="evaluation.run_cancelled",
        obj=live,
        data={"change": change.pk, "from": live.status, "reason": reason},
    )
    _record_change_verdict(change, actor=actor)


# --- execution ---------------------------------------------------------------------------


def _key_list(key) -> list:
    return [key.scenario_id, key.condition, int(key.cue_index), int(key.epoch)]


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
        run_abort(
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
            run_abort(run_id=run.pk, reason=f"The target cannot be used here: {exc}")
            return "aborted", run.pk
    counts = batch_record(batch=batch, outcomes=outcomes)
    if waves.is_adaptive(run.policy):
        waves.look(run_id=run.pk)  # may close the pending batches: an anytime-valid fail
    if not Batch.objects.filter(run_id=run.pk).exclude(status=Batch.DONE).exists():
        return ("finalized" if run_finalize(run_id=run.pk) else "done"), run.pk
    # Skip even the refresh's queries when the snapshot read at claim time is not due yet
    # (a newer one stored by another worker since can only make it less due).
    if _interim_due(run.interim, counts["done"], time.time()):
        run_refresh_interim(run_id=run.pk)
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
    return _refresh_counters(run_id)


#: A live run's interim snapshot is judged again once its samples grew by this factor ...
INTERIM_GROWTH = 1.25
#: ... or once the stored snapshot is this old (seconds), whichever comes first.
INTERIM_MAX_AGE_SECONDS = 2.0


def _interim_due(snapshot, n: int, now: float) -> bool:
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
    when a batch is recorded and a refresh is due (:func:`_interim_due`; ``force`` skips that
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
    if not force and not _interim_due(run.interim, seen["n"], now):
        return False
    stats, verdict = selectors.interim_judgement(run)
    snapshot = {"n": seen["n"], "last": seen["last"], "at": now, "stats": stats,
                "verdict": verdict}  # fmt: skip
    return bool(
        EvaluationRun.objects.filter(pk=run_id, status__in=run_states.LIVE)
        .filter(Q(interim__isnull=True) | Q(interim__n__lt=seen["n"]))
        .update(interim=snapshot)
    )


def _refresh_counters(run_id: int) -> dict:
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
    counts = _refresh_counters(run.pk)
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
    _record_change_verdict(change)
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
    return float(_setting("EVAL_ERROR_THRESHOLD", 0.1))


def _first_errors(samples: list[dict]) -> str:
    messages = sorted({s["error"] for s in samples if s["label"] == "error" and s["error"]})
    if not messages:
        return ""
    return " First error(s): " + "; ".join(m[:200] for m in messages[:3])


def _record_change_verdict(change, *, actor=None) -> None:
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
    counts = _refresh_counters(run.pk)
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
    _record_change_verdict(change)
    return run
