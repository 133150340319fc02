"""Eval-vs-live discrepancy: is the live new-protocol rate below what was evaluated?

The reference is the evaluated new-protocol rate of the change in its deployment-like
condition (the monitor's ``evaluated_condition``; else ``unmonitored``; else the condition
with the lowest rate), from the newest completed run per suite of the change's current
content; with several suites, the lowest lower bound (the least demanding reference, so an
alarm is never caused by the choice of suite). The live rate's confidence sequence
(``monitoring.stats``) is recomputed from the rollups after every grading batch, and an
alarm is raised when it lies entirely below the reference's lower bound.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.db.models import CharField, Sum
from django.db.models.functions import Cast

from evaluations.models import EvaluationRun
from evaluations.selectors import current_runs

from . import stats
from .models import Monitor, Rollup


def evaluated_reference(change, hint: str = "") -> dict | None:
    best = None
    for run in current_runs(change):
        candidate = evaluated_reference_of_run(run, hint)
        if candidate is not None and (best is None or candidate["lower"] < best["lower"]):
            best = candidate
    return best


def evaluated_reference_of_run(run, hint: str = "") -> dict | None:
    """The deployment-like condition of one completed run with its rate and interval."""
    conditions = (run.stats or {}).get("conditions") or {}
    if run.status != EvaluationRun.COMPLETED or not conditions:
        return None
    if hint in conditions:
        name = hint
    elif "unmonitored" in conditions:
        name = "unmonitored"
    else:
        name = min(conditions, key=lambda c: (conditions[c].get("new") or {}).get("rate", 1))
    new = conditions[name].get("new") or {}
    ci = new.get("ci") or [None, None]
    if new.get("rate") is None or ci[0] is None:
        return None
    return {
        "condition": name,
        "rate": new["rate"],
        "lower": ci[0],
        "upper": ci[1],
        "n": conditions[name].get("n"),
        "run": run.pk,
    }


def assess(change) -> list[dict]:
    """Per environment: live counts, the confidence sequence, the reference, the alarm."""
    monitor = Monitor.objects.filter(change=change).first()
    if monitor is None:
        return []
    reference = evaluated_reference(change, monitor.evaluated_condition)
    rows = (
        Rollup.objects.filter(change=change)
        .values("environment")
        .annotate(n=Sum("n"), new=Sum("new"), legacy=Sum("legacy"))
        .order_by("environment")
    )
    out = []
    for row in rows:
        n, s = row["n"], row["new"]
        bound = reference["lower"] if reference else 0.5
        lower, upper = stats.beta_binomial_cs(s, n, monitor.alpha, reference=bound)
        alarm = bool(reference and stats.below_bound(s, n, reference["lower"], monitor.alpha))
        out.append(
            {
                "environment": row["environment"],
                "n": n,
                "new": s,
                "legacy": row["legacy"],
                "rate": s / n if n else None,
                "cs": [lower, upper],
                "alpha": monitor.alpha,
                "reference": reference,
                "alarm": alarm,
            }
        )
    return out


#: Points on the chart at most: the confidence sequence costs two root-findings per point,
#: and a 620-pixel chart shows no more (a month of hourly windows is 720).
MAX_POINTS = 80


def series(change, environment: str, alpha: float, bound: float) -> list[dict]:
    """Cumulative live rate with its confidence sequence per window (for the chart), at
    most :data:`MAX_POINTS` windows evenly spread, always the newest."""
    cumulative = []
    s = n = 0
    # The window start comes as text and only the plotted points are parsed: turning 10,000
    # timestamps into datetimes cost more than the rest of the page (bench_monitoring_charts).
    for start, window_n, window_new in (
        Rollup.objects.filter(change=change, environment=environment)
        .order_by("window_start")
        .annotate(at=Cast("window_start", output_field=CharField()))
        .values_list("at", "n", "new")
    ):
        s += window_new
        n += window_n
        cumulative.append((start, s, n))
    if len(cumulative) > MAX_POINTS:
        step = (len(cumulative) - 1) / (MAX_POINTS - 1)
        cumulative = [cumulative[round(i * step)] for i in range(MAX_POINTS)]
    points = []
    for text, s, n in cumulative:
        at = datetime.fromisoformat(text)
        if at.tzinfo is None:  # SQLite's text has no offset: stored in UTC
            at = at.replace(tzinfo=UTC)
        lower, upper = stats.beta_binomial_cs(s, n, alpha, reference=bound)
        points.append({"at": at, "n": n, "rate": s / n if n else None, "cs": [lower, upper]})
    return points


def check_change(change_id: int) -> list[int]:
    """Open (or bump) a discrepancy incident for every environment in alarm."""
    from changes.models import ChangeRequest

    from .services import incident_open

    change = ChangeRequest.objects.select_related("system").get(pk=change_id)
    opened = []
    for row in assess(change):
        if not row["alarm"]:
            continue
        ref = row["reference"]
        incident = incident_open(
            system=change.system,
            change=change,
            kind="discrepancy",
            key=f"discrepancy:{change.pk}:{row['environment']}",
            environment=row["environment"],
            summary=(
                f"{change.reference} in {row['environment']}: the live new-protocol rate "
                f"({row['new']}/{row['n']}, at most {row['cs'][1]:.1%} with "
                f"{1 - row['alpha']:.0%} anytime confidence) is below the evaluated "
                f"{ref['condition']} rate (lower bound {ref['lower']:.1%})."
            ),
            details={k: row[k] for k in ("n", "new", "cs", "reference", "alpha")},
        )
        opened.append(incident.pk)
    return opened
