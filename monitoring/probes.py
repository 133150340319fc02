"""Deployment-like probes: after deploy, re-run a small slice of the change's evaluation in
its deployment-like condition against the system's target, and track drift from the
pre-deploy run with the same anytime-valid comparison as live traffic.

The slice is ``MONITORING_PROBE_BUDGET`` samples of the reference condition, drawn with a
fresh seed each time (so repeated probes cover different scenarios, cues and epochs). Results
are stored as :class:`ProbeRun` counts, never as live decisions, so probe traffic cannot
leak into the live statistics.
"""

from __future__ import annotations

import random

from django.conf import settings
from django.db.models import Sum

from evaluations import runner
from evaluations.models import EvaluationRun
from evaluations.selectors import current_runs
from evaluations.targets import build_target

from . import discrepancy, stats
from .models import Monitor, ProbeRun


def probe_change(change, *, budget: int | None = None, seed: int | None = None) -> list[ProbeRun]:
    """Probe each completed suite of ``change`` once; returns the new probe runs."""
    budget = budget or settings.MONITORING_PROBE_BUDGET
    monitor = Monitor.objects.filter(change=change).first()
    hint = monitor.evaluated_condition if monitor else ""
    rng = random.Random(seed)
    made = []
    for run in current_runs(change):
        conditions = (run.stats or {}).get("conditions") or {}
        if run.status != EvaluationRun.COMPLETED or not conditions:
            continue
        reference = discrepancy.evaluated_reference_of_run(run, hint)
        if reference is None:
            continue
        suite = run.suite.document
        keys = [k for k in runner.plan_samples(suite) if k.condition == reference["condition"]]
        keys = rng.sample(keys, min(budget, len(keys)))
        target = build_target(
            change.system.target,
            allowed_hosts=settings.EVAL_ALLOWED_HOSTS,
            max_response_bytes=settings.EVAL_MAX_RESPONSE_BYTES,
        )
        outcomes = runner.run_batch_sync(
            target, suite, keys, change.proposed_protocol.system_prompt,
            run_seed=rng.getrandbits(31),
        )  # fmt: skip
        labels = [o.label for o in outcomes]
        made.append(
            ProbeRun.objects.create(
                change=change,
                suite_name=f"{run.suite.name} {run.suite.version}",
                condition=reference["condition"],
                n=sum(lab != "error" for lab in labels),
                new=labels.count("new"),
                legacy=labels.count("legacy"),
                errors=labels.count("error"),
                reference_rate=reference["rate"],
            )
        )
    check_probe_drift(change)
    return made


def check_probe_drift(change):
    """Open a probe-drift incident when the probes' cumulative rate is shown (confidence
    sequence) to be below the evaluated lower bound."""
    from .services import incident_open

    monitor = Monitor.objects.filter(change=change).first()
    reference = discrepancy.evaluated_reference(
        change, monitor.evaluated_condition if monitor else ""
    )
    totals = ProbeRun.objects.filter(change=change).aggregate(n=Sum("n"), new=Sum("new"))
    n, s = totals["n"] or 0, totals["new"] or 0
    if reference is None or not n:
        return None
    alpha = monitor.alpha if monitor else 0.05
    if not stats.below_bound(s, n, reference["lower"], alpha):
        return None
    upper = stats.beta_binomial_cs(s, n, alpha, reference=reference["lower"])[1]
    return incident_open(
        system=change.system,
        change=change,
        kind="probe_drift",
        key=f"probe:{change.pk}",
        environment="",
        summary=(
            f"{change.reference}: deployment-like probes follow the new protocol in {s}/{n} "
            f"(at most {upper:.1%}), below the evaluated {reference['condition']} lower "
            f"bound {reference['lower']:.1%}."
        ),
        details={"n": n, "new": s, "reference": reference},
    )


#: Audit verbs after which a change's traffic moved: probe it at once (on commit). Stage 1
#: is the deploy itself (``change.deployed*`` already fired), so only later stages count.
DEPLOY_VERBS = frozenset({"change.deployed", "change.deployed_to_environment"})


def on_audit_event(event) -> None:
    """``changes.hooks`` listener: after a deploy or a stage start commits, send one probe of
    the change to the probe queue, in addition to beat's schedule."""
    if event.object_type != "changes.changerequest" or not str(event.object_id).isdigit():
        return
    stage = (event.data or {}).get("stage") if event.verb == "change.stage_started" else None
    if event.verb in DEPLOY_VERBS or (isinstance(stage, int) and stage > 1):
        from django.db import transaction

        from . import tasks

        change_id = int(event.object_id)
        transaction.on_commit(lambda: tasks.enqueue_probe(change_id), robust=True)


def probe_after_deploy(change_id: int) -> int:
    """The probe a deploy or stage start asked for: monitored changes that are still live
    somewhere (the same rule as beat's :func:`probe_all`). Returns probe runs made."""
    from changes.models import ChangeRequest

    from .live import live_map

    monitor = Monitor.objects.select_related("change__system").filter(change_id=change_id).first()
    if monitor is None:
        return 0
    change = monitor.change
    if not any(c.change and c.change.pk == change.pk for c in live_map(change.system).values()):
        return 0
    return len(probe_change(ChangeRequest.objects.select_related("system").get(pk=change.pk)))


def probe_all() -> int:
    """Probe every monitored change live in some environment (beat)."""
    from .live import live_map

    seen = set()
    for monitor in Monitor.objects.select_related("change__system"):
        system = monitor.change.system
        for current in live_map(system).values():
            if (
                current.change
                and current.change.pk == monitor.change_id
                and monitor.change_id not in seen
            ):
                seen.add(monitor.change_id)
                probe_change(monitor.change)
    return len(seen)
