"""Adaptive runs on the worker path: waves, an anytime-valid early stop, and extension.

Why: the planned budget is sized for the hardest case; a clear faker is caught after a few
percent of it, and an undecided run should get more samples rather than end inconclusive
(issue 10, item 4). ``runner.run_suite_local(adaptive=True)`` does this in one process;
here the same rules run over stored batches, so any worker may run any batch:

* a run whose suite says ``adaptive`` has its keys ordered epoch by epoch, so its batches
  fill the budget wave by wave (:func:`order_keys`);
* after each batch is stored, :func:`look` runs ``gates.early_fail`` on every sample stored so
  far. The e-values are anytime-valid (Ville's inequality), so looking after every batch
  keeps the false-stop rate below alpha. On a stop, the pending batches are closed unrun and
  the run's ``total_samples`` shrinks to what was run; the stop goes in
  ``run.stats["sequential"]`` and finalising turns it into the failing check;
* when the last batch is in and the verdict is inconclusive, :func:`extend` adds the next
  step of epochs (up to the suite's ``max_epochs``) as new batches instead of finalising.
  A pass may then be decided at any of ``looks`` pre-set sizes, so each look is judged at
  alpha / looks (``gates.look_policy``): a union bound keeps the false-pass rate below alpha.

Design and measurements: docs/GATE.md, "Runs in waves". Writes run inside the caller's
transaction helpers below; no audit event (a wave is not a state change; the completion
event's stats digest covers ``sequential``).
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from . import gates
from .models import Batch, EvaluationRun, Sample

#: The sample fields the early-stop rule reads (a cheap query: no outputs or evidence).
LOOK_FIELDS = ("scenario_id", "condition", "cue_index", "epoch", "label", "error")


def is_adaptive(policy: dict | None) -> bool:
    return isinstance(policy, dict) and isinstance(policy.get("adaptive"), dict)


def order_keys(keys: list[list], policy: dict) -> list[list]:
    """Epoch-major order for an adaptive run (suite order within an epoch), so the first
    batches hold whole early epochs: every look then sees complete pairs."""
    if not is_adaptive(policy):
        return keys
    return sorted(keys, key=lambda k: int(k[3]))


def sequential_of(run: EvaluationRun) -> dict | None:
    """What ``gates.evaluate(sequential=...)`` needs for an adaptive run, from its stats."""
    if not is_adaptive(run.policy):
        return None
    seq = (run.stats or {}).get("sequential") if isinstance(run.stats, dict) else None
    plan = run.policy["adaptive"]
    base = {
        "planned_epochs": int(run.policy.get("epochs") or plan["planned_epochs"]),
        "epochs_run": int(run.policy.get("epochs") or plan["planned_epochs"]),
        "cap_epochs": plan["cap_epochs"],
        "looks": plan["looks"],
        "extensions": 0,
        "stopped_early": False,
    }
    return {**base, **(seq or {})}


@transaction.atomic
def look(*, run_id: int) -> dict | None:
    """After a batch of an adaptive run is stored: stop the run when the anytime-valid test
    decides a fail. Returns the stop (``gates.early_fail``) or None."""
    run = (
        EvaluationRun.objects.select_for_update(no_key=True).select_related("suite").get(pk=run_id)
    )
    if not run.is_live or not is_adaptive(run.policy):
        return None
    if (run.stats or {}).get("sequential", {}).get("stopped_early"):
        return None
    samples = list(Sample.objects.filter(run=run).values(*LOOK_FIELDS))
    stop = gates.early_fail(run.suite.document, samples, run.policy)
    if stop is None:
        return None
    pending = list(Batch.objects.filter(run=run, status=Batch.PENDING).values_list("pk", "keys"))
    skipped = sum(len(keys) for _, keys in pending)
    Batch.objects.filter(pk__in=[pk for pk, _ in pending]).update(
        status=Batch.DONE, finished_at=timezone.now(), lease_expires_at=None
    )
    done_epochs = {int(s["epoch"]) for s in samples}
    seq = {
        **(sequential_of(run) or {}),
        "stopped": stop,
        "stopped_early": True,
        "epochs_run": (max(done_epochs) + 1) if done_epochs else 0,
        "samples": len(samples),
        "skipped": skipped,
    }
    EvaluationRun.objects.filter(pk=run.pk).update(
        total_samples=max(0, run.total_samples - skipped),
        stats={**(run.stats or {}), "sequential": seq},
    )
    return stop


def extend(run: EvaluationRun, verdict: str) -> list[int]:
    """Inside ``run_finalize`` (run row locked): when the verdict is inconclusive and the
    suite's cap allows, add the next step of epochs as new batches and return their ids (the
    caller enqueues them on commit and does not finalise). Else []."""
    from . import runner
    from .suite_schema import MAX_SAMPLES

    seq = sequential_of(run)
    if seq is None or verdict != "inconclusive" or seq["stopped_early"]:
        return []
    epochs, plan = int(run.policy["epochs"]), run.policy["adaptive"]
    new_epochs = min(plan["cap_epochs"], epochs + plan["step_epochs"])
    if new_epochs <= epochs:
        return []
    document = run.suite.document
    keys = [
        runner.key_list(k) for k in runner.plan_samples(document, new_epochs) if k.epoch >= epochs
    ]
    if run.total_samples + len(keys) > MAX_SAMPLES:
        return []
    keys = order_keys(keys, run.policy)
    width = max(1, Batch.objects.filter(run=run, index=0).values_list("keys", flat=True)
                .first().__len__())  # fmt: skip
    first = (Batch.objects.filter(run=run).order_by("-index").values_list("index", flat=True)
             .first() or 0) + 1  # fmt: skip
    batches = Batch.objects.bulk_create(
        [
            Batch(run=run, index=first + i, keys=keys[start : start + width])
            for i, start in enumerate(range(0, len(keys), width))
        ]
    )
    seq = {**seq, "extensions": seq["extensions"] + 1, "epochs_run": new_epochs,
           "planned_epochs": plan["planned_epochs"]}  # fmt: skip
    EvaluationRun.objects.filter(pk=run.pk).update(
        policy={**run.policy, "epochs": new_epochs},
        total_samples=run.total_samples + len(keys),
        stats={**(run.stats or {}), "sequential": seq},
    )
    return [b.pk for b in batches]
