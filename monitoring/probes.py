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
