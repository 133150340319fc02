"""Online grading of live decisions with the change's monitor (the suite grader kinds).

Exactly once, even when a task is re-run or two workers race: a batch is selected with
``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL (a second worker takes the next rows),
and each label group is written with a conditional UPDATE (``graded_at IS NULL``), whose row
count (not the batch size) is what the rollups are incremented by, in the same transaction.
A worker killed mid-batch rolls back: the decisions stay ungraded and beat's sweep re-sends
the wake-up. See docs/MONITORING.md.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from evaluations import graders

from .models import Decision, Monitor, Rollup

#: Online grading uses the local kinds only: a judge per live decision has a cost and a
#: latency of its own, so judges run on a sample after commit (``monitoring.judging``).
LIVE_KINDS = graders.CHEAP_KINDS


def window_start(moment: datetime) -> datetime:
    minutes = settings.MONITORING_WINDOW_MINUTES
    epoch = int(moment.timestamp()) // (minutes * 60) * (minutes * 60)
    return datetime.fromtimestamp(epoch, tz=UTC)


def label_for(monitor_graders: dict, output: str) -> tuple[str, str]:
    """(label, error) for one output; a runaway suite regex is an error, not a crash."""
    try:
        label, _evidence = graders.grade(monitor_graders, output)
    except graders.GraderError as error:
        return "", str(error)[:200]
    return label, ""


@dataclass(slots=True)
class Claimed:
    """The fields grading needs of one decision (no model instance: it is a hot loop)."""

    pk: int
    change_id: int
    environment: str
    timestamp: datetime
    output_text: str
    is_probe: bool
    system_id: int
    label: str = ""
    grade_error: str = ""


CLAIM_FIELDS = ("id", "change_id", "environment", "timestamp", "output_text", "is_probe",
                "system_id")  # fmt: skip


def _claim(system_id: int | None, size: int) -> list[Claimed]:
    """Up to ``size`` ungraded decisions of monitored changes, locked (PostgreSQL: rows
    another grader holds are skipped). One change at a time, so each query walks the
    partial index ``decision_ungraded`` (change_id, id WHERE graded_at IS NULL)."""
    monitored = Monitor.objects.order_by("change_id")
    if system_id is not None:
        monitored = monitored.filter(change__system_id=system_id)
    rows: list[Claimed] = []
    for change_id in monitored.values_list("change_id", flat=True):
        qs = Decision.objects.filter(change_id=change_id, graded_at__isnull=True).order_by("id")
        if connection.features.has_select_for_update_skip_locked:
            qs = qs.select_for_update(skip_locked=True)
        rows.extend(
            Claimed(*values) for values in qs.values_list(*CLAIM_FIELDS)[: size - len(rows)]
        )
        if len(rows) >= size:
            break
    return rows


def _bump_rollup(change_id: int, environment: str, start: datetime, label: str, n: int) -> None:
    counts = {"n": F("n") + n, label: F(label) + n}
    updated = Rollup.objects.filter(
        change_id=change_id, environment=environment, window_start=start
    ).update(**counts)
    if updated:
        return
    try:
        with transaction.atomic():
            Rollup.objects.create(
                change_id=change_id,
                environment=environment,
                window_start=start,
                n=n,
                **{label: n},
            )
    except IntegrityError:  # created by a concurrent grader since our UPDATE
        Rollup.objects.filter(
            change_id=change_id, environment=environment, window_start=start
        ).update(**counts)


def grade_batch(system_id: int | None = None, size: int | None = None) -> list[Claimed]:
    """Grade one batch in one transaction; return the decisions this call graded."""
    size = size or settings.MONITORING_GRADE_BATCH
    with transaction.atomic():
        rows = _claim(system_id, size)
        if not rows:
            return []
        monitors = {
            m.change_id: m
            for m in Monitor.objects.filter(change_id__in={r.change_id for r in rows})
        }
        groups: dict[tuple, list[Claimed]] = defaultdict(list)
        for row in rows:
            label, error = label_for(monitors[row.change_id].graders, row.output_text)
            row.label, row.grade_error = label, error
            groups[
                (
                    label,
                    error,
                    row.change_id,
                    row.environment,
                    row.is_probe,
                    window_start(row.timestamp),
                )
            ].append(row)
        now = timezone.now()
        graded: list[Claimed] = []
        for (label, error, change_id, env, probe, start), members in groups.items():
            ids = [m.pk for m in members]
            done = Decision.objects.filter(pk__in=ids, graded_at__isnull=True).update(
                label=label, grade_error=error, graded_at=now
            )
            if done != len(ids):
                # Someone graded part of this group since we read it: keep only ours.
                mine = set(
                    Decision.objects.filter(pk__in=ids, graded_at=now).values_list("pk", flat=True)
                )
                members = [m for m in members if m.pk in mine]
                done = len(members)
            if done and label and not probe:
                _bump_rollup(change_id, env, start, label, done)
            graded.extend(members)
        from . import judging, review

        review.sample(graded)
        judging.after_grading(graded, monitors)
        return graded


def grade_pending(*, system_id: int | None = None, max_batches: int = 100) -> int:
    """Grade until nothing is left (or ``max_batches``); then check the discrepancy of every
    change that got new grades. Returns how many decisions this call graded."""
    total = 0
    changes: set[int] = set()
    for _ in range(max_batches):
        graded = grade_batch(system_id)
        if not graded:
            break
        total += len(graded)
        changes.update(d.change_id for d in graded)
    if changes:
        from . import discrepancy

        for change_id in sorted(changes):
            discrepancy.check_change(change_id)
    return total


def window_bounds(start: datetime) -> tuple[datetime, datetime]:
    return start, start + timedelta(minutes=settings.MONITORING_WINDOW_MINUTES)
