"""Writes that start and cancel evaluation runs: one queued run per linked suite at submit,
with its batches, and the cancellations (a withdrawn or resubmitted change, or a person).

Run lifecycle (each move writes exactly one audit event via ``changes.audit.append``)::

    queued --first batch claimed--> running --last batch done--> completed | errored
    queued/running --withdraw/resubmit--> cancelled

Claiming and running batches is ``batch_services``; finishing a run (its verdict, the
change's verdict) is ``finish_services``.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from changes import audit
from changes import services as change_services
from core.errors import Conflict, NotAllowed, ValidationFailed

from . import (
    dispatch,
    executor,
    finish_services,
    gates,
    permissions,
    registry,
    runner,
    selectors,
    waves,
)
from . import states as run_states
from .models import Batch, EvaluationRun
from .targets import TargetConfigError


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
        int(getattr(settings, "EVAL_BATCH_SIZE", 50)), target.get("max_concurrency", 1)
    )
    from .exception_selectors import standing_for_policy

    plans = _plan_runs(suites, system.criticality, standing_for_policy(change))
    runs: list[EvaluationRun] = []
    batch_ids: list[int] = []
    for suite in suites:
        policy = plans[suite.pk]
        keys = [runner.key_list(k) for k in runner.plan_samples(suite.document, policy["epochs"])]
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
    finish_services.record_change_verdict(change, actor=actor)


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
