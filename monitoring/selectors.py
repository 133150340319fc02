"""Reads for the monitoring pages."""

from __future__ import annotations

from .models import Incident, ReviewItem


def open_incidents(system):
    return (
        Incident.objects.filter(system=system)
        .exclude(state="resolved")
        .select_related("change", "owner")
    )


def next_review_item(system, user):
    """The oldest unreviewed sampled decision of a change ``user`` is independent of."""
    from changes import permissions

    independent: dict[int, bool] = {}  # per change: the check costs a few queries
    for item in (
        ReviewItem.objects.filter(system=system, reviewed_at__isnull=True)
        .select_related("decision__change__system", "decision__change__author")
        .order_by("id")[:200]
    ):
        change = item.decision.change
        if change.pk not in independent:
            independent[change.pk] = permissions.check_independence(user, change).ok
        if independent[change.pk]:
            return item
    return None


def rollback_target(incident) -> dict | None:
    """Base = the protocol live now, proposed = the version before it (the live change's
    base): the query string of the new-change form."""
    from .live import live

    if not incident.environment:
        return None
    current = live(incident.system, incident.environment)
    if current.change is None:
        return None
    return {
        "system": incident.system_id,
        "base": current.change.proposed_protocol_id,
        "proposed": current.previous_protocol_id,
    }


def rollout_blockers(
    change, *, environment: str | None = None, min_decisions: int = 0, since=None, stage=None
) -> list[str]:
    """Why the next stage of ``change``'s rollout must wait, in words (empty: nothing).

    For the staged-rollout gate (``stage_rule``, through ``changes.hooks``): any open
    incident on the change or on its system's protocol, and, with ``min_decisions``, too
    little graded live evidence of the change in ``environment`` since ``since`` (the start
    of the previous stage, ``stage``).
    """
    from django.db.models import Q

    reasons = [
        f"INC-{i.pk} is {i.get_state_display().lower()}: {i.summary}"
        for i in Incident.objects.filter(Q(change=change) | Q(system=change.system, change=None))
        .exclude(state="resolved")
        .order_by("id")
    ]
    if min_decisions and environment:
        graded, capped = graded_since(change, environment, since, enough=min_decisions)
        if graded < min_decisions:
            where = f" since stage {stage} started" if stage else ""
            looked = f" (among the first {EVIDENCE_SCAN:,} decisions)" if capped else ""
            reasons.append(
                f"Only {graded} graded live decision(s) in {environment}{where}{looked}; "
                f"{min_decisions} are needed before the next stage."
            )
    return reasons


#: How many live decisions since a stage started the stage gate reads at most to find its
#: evidence: bounded work per gate call, even with a large grading backlog.
EVIDENCE_SCAN = 50_000


def graded_since(change, environment: str, since, *, enough: int) -> tuple[int, bool]:
    """How many of ``change``'s live decisions in ``environment`` with a timestamp at or after
    ``since`` the grader labelled (new, legacy or other: not errors, not probes), counting
    up to ``enough``; and whether the count stopped at ``EVIDENCE_SCAN`` decisions read.
    Per decision (the grade log), not per rollup window: a window is an hour, and a stage
    may start in its middle."""
    from .models import Decision

    decisions = Decision.objects.filter(change=change, environment=environment, is_probe=False)
    if since is not None:
        decisions = decisions.filter(timestamp__gte=since)
    graded = read = 0
    after = 0
    while graded < enough and read < EVIDENCE_SCAN:
        ids = list(
            decisions.filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)[:2000]
        )
        if not ids:
            return graded, False
        read += len(ids)
        after = ids[-1]
        graded += sum(1 for label, _error in labels_for(ids).values() if label)
    return graded, graded < enough


def stage_rule(change, environment: str, number: int) -> list[str]:
    """``changes.hooks`` stage rule: stage ``number`` waits while an incident is open, and,
    for a monitored change, until ``MONITORING_STAGE_MIN_DECISIONS`` live decisions of it
    in ``environment`` served since stage ``number - 1`` started are graded (each stage adds
    traffic only on evidence from the traffic the previous stage moved). An unmonitored
    change has no live evidence to wait for."""
    from django.conf import settings

    from changes.env_models import RolloutStage

    from .models import Monitor

    monitored = Monitor.objects.filter(change=change).exists()
    if not monitored or number <= 1:
        return rollout_blockers(change)
    previous = RolloutStage.objects.filter(
        change=change, environment=environment, number=number - 1
    ).first()
    return rollout_blockers(
        change,
        environment=environment,
        min_decisions=settings.MONITORING_STAGE_MIN_DECISIONS,
        since=previous.started_at if previous else None,
        stage=number - 1 if previous else None,
    )


def judge_summaries(change_ids) -> list[tuple]:
    """(change, ``judging.summary``) for each of ``change_ids`` whose monitor has a judge and
    that has judged something: the system page's judge panel."""
    from . import judging
    from .models import Monitor

    return [
        (monitor.change, judging.summary(monitor.change))
        for monitor in Monitor.objects.filter(change_id__in=list(change_ids))
        .select_related("change")
        .order_by("change_id")
        if monitor.judge and monitor.change.judge_verdicts.exists()
    ]


def labels_for(decision_ids) -> dict[int, tuple[str, str]]:
    """``{decision id: (label, grader error)}`` from the grade log, for the given ids that
    were graded (label "" with the error's message when the grader failed). The one place
    that answers "what label did decision X get": the decision row holds no grading state.
    Grade-log rows cover an id range (``first_id``..``last_id``), so a lookup reads the
    rows whose range overlaps the ids asked for."""
    from .models import CODE_LABELS, GradeBatch

    wanted = {int(i) for i in decision_ids}
    if not wanted:
        return {}
    found: dict[int, tuple[str, str]] = {}
    rows = GradeBatch.objects.filter(first_id__lte=max(wanted), last_id__gte=min(wanted))
    for ids, labels, errors in rows.values_list("ids", "labels", "errors"):
        for pk, code in zip(ids, labels, strict=True):
            if pk in wanted:
                found[pk] = (CODE_LABELS[code], (errors or {}).get(str(pk), ""))
    return found
