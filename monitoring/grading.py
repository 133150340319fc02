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


def label_for(monitor_graders, output: str) -> tuple[str, str]:
    """(label, error) for one output; a runaway suite regex is an error, not a crash.
    ``monitor_graders`` is the monitor's graders, or better ``graders.labeller(graders)``
    built once per monitor and batch (the same label without the evidence, for a fraction
    of the cost per decision)."""
    try:
        if callable(monitor_graders):
            return monitor_graders(output), ""
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


def _bump_rollup(change_id: int, environment: str, start: datetime, by_label: dict) -> None:
    """Add one window's counts (``{"new", "legacy", "other", "errors"}``) to its rollup."""
    increments = {**by_label, "n": by_label["new"] + by_label["legacy"] + by_label["other"]}
    counts = {name: F(name) + value for name, value in increments.items() if value}
    where = {"change_id": change_id, "environment": environment, "window_start": start}
    if Rollup.objects.filter(**where).update(**counts):
        return
    try:
        with transaction.atomic():
            Rollup.objects.create(**where, **increments)
    except IntegrityError:  # created by a concurrent grader since our UPDATE
        Rollup.objects.filter(**where).update(**counts)


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
        # Normalised and compiled once per monitor and batch, not per decision.
        labellers = {c: graders.labeller(m.graders) or m.graders for c, m in monitors.items()}
        for row in rows:
            row.label, row.grade_error = label_for(labellers[row.change_id], row.output_text)
        now = timezone.now()
        if connection.vendor == "postgresql":
            graded = _write_postgresql(rows, now)
        else:
            graded = _write_orm(rows, now)
        from . import judging, review

        review.sample(graded)
        judging.after_grading(graded, monitors)
        return graded


def _rollup_counts(graded: list[Claimed]) -> dict[tuple, dict[str, int]]:
    """Per (change, environment, window): graded counts by label, and grading errors apart
    (not a live rate, but part of the review sampling population). Probes never enter."""
    counts: dict[tuple, dict[str, int]] = defaultdict(
        lambda: {"new": 0, "legacy": 0, "other": 0, "errors": 0}
    )
    # window_start's arithmetic inline, with the setting read once: per decision it showed.
    step = settings.MONITORING_WINDOW_MINUTES * 60
    starts: dict[int, datetime] = {}
    for row in graded:
        if not row.is_probe:
            epoch = int(row.timestamp.timestamp()) // step * step
            start = starts.get(epoch)
            if start is None:
                start = starts[epoch] = datetime.fromtimestamp(epoch, tz=UTC)
            counts[(row.change_id, row.environment, start)][row.label or "errors"] += 1
    return counts


#: One statement per (label, error) group, usually 2-3 per batch. Why: ``WHERE id IN (...)``
#: with ~1,000 ids bound client-side cost more than the grading itself; one binary array
#: parameter does not. A single ``UPDATE ... FROM unnest(...)`` over the whole batch was
#: tried and planned as a hash join over every ungraded row (slower once a backlog builds).
#: ``graded_at IS NULL`` keeps it exactly-once, and RETURNING says which rows were ours; the
#: timestamp range lets PostgreSQL prune the monthly partitions.
_UPDATE_SQL = """
UPDATE monitoring_decision SET label = %b, grade_error = %b, graded_at = %b
 WHERE id = ANY(%b::bigint[]) AND "timestamp" BETWEEN %b AND %b AND graded_at IS NULL
RETURNING id
"""

#: All the batch's rollup increments in one upsert (the unique window constraint arbitrates
#: concurrent graders).
_ROLLUP_SQL = """
INSERT INTO monitoring_rollup
       (change_id, environment, window_start, n, "new", legacy, other, errors)
SELECT * FROM unnest(%b::bigint[], %b::varchar[], %b::timestamptz[], %b::int[], %b::int[],
                     %b::int[], %b::int[], %b::int[])
ON CONFLICT (change_id, environment, window_start) DO UPDATE
   SET n = monitoring_rollup.n + EXCLUDED.n,
       errors = monitoring_rollup.errors + EXCLUDED.errors,
       "new" = monitoring_rollup."new" + EXCLUDED."new",
       legacy = monitoring_rollup.legacy + EXCLUDED.legacy,
       other = monitoring_rollup.other + EXCLUDED.other
"""


def _write_postgresql(rows: list[Claimed], now: datetime) -> list[Claimed]:
    import psycopg

    # A server-side-binding cursor on Django's connection (same transaction): parameters go
    # as binary arrays, not quoted into the SQL text (Django's cursors bind client-side,
    # which for 4,000 values cost about a third of the write).
    groups: dict[tuple[str, str], list[Claimed]] = defaultdict(list)
    for row in rows:
        groups[(row.label, row.grade_error)].append(row)
    mine: set[int] = set()
    with psycopg.Cursor(connection.connection) as cursor:
        for (label, error), members in groups.items():
            stamps = [m.timestamp for m in members]
            cursor.execute(
                _UPDATE_SQL,
                [label, error, now, [m.pk for m in members], min(stamps), max(stamps)],
            )
            mine.update(pk for (pk,) in cursor.fetchall())
        graded = rows if len(mine) == len(rows) else [r for r in rows if r.pk in mine]
        counts = _rollup_counts(graded)
        if counts:
            keys = list(counts)
            cursor.execute(
                _ROLLUP_SQL,
                [
                    [k[0] for k in keys],
                    [k[1] for k in keys],
                    [k[2] for k in keys],
                    [counts[k]["new"] + counts[k]["legacy"] + counts[k]["other"] for k in keys],
                    [counts[k]["new"] for k in keys],
                    [counts[k]["legacy"] for k in keys],
                    [counts[k]["other"] for k in keys],
                    [counts[k]["errors"] for k in keys],
                ],
            )
    return graded


def _write_orm(rows: list[Claimed], now: datetime) -> list[Claimed]:
    """SQLite (tests, small installs): a conditional UPDATE per label group."""
    groups: dict[tuple[str, str], list[Claimed]] = defaultdict(list)
    for row in rows:
        groups[(row.label, row.grade_error)].append(row)
    graded: list[Claimed] = []
    for (label, error), members in groups.items():
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
        graded.extend(members)
    for (change_id, env, start), by_label in _rollup_counts(graded).items():
        _bump_rollup(change_id, env, start, by_label)
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
