"""Online grading of live decisions with the change's monitor (the suite grader kinds).

Insert-only: pending work is a :class:`GradeTicket` (written by ingestion with the
decisions), a grade is a :class:`GradeBatch` row (the grade log), and the decision row is
never rewritten. One batch is one transaction: claim tickets (``SELECT ... FOR UPDATE SKIP
LOCKED`` on PostgreSQL, so a second grader takes other tickets), read and label their
decisions, delete the tickets (keeping only those this transaction deleted: the exactly-once
step), append one grade-log row per change, bump the rollups, draw the review sample and
hand the judge sample over on commit. A worker killed mid-batch rolls back: the tickets
stay and the next task grades them; nothing is graded twice. See docs/MONITORING.md.
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

from .models import LABEL_CODES, Decision, GradeBatch, GradeTicket, Monitor, Rollup

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


@dataclass(slots=True)
class Ticket:
    pk: int
    change_id: int
    system_id: int
    ids: list[int]
    ts_min: datetime
    ts_max: datetime


TICKET_FIELDS = ("id", "change_id", "system_id", "ids", "ts_min", "ts_max")
#: Tickets locked per query at most (their size is only known once read).
MAX_TICKET_PAGE = 64


def _claim(system_id: int | None, size: int) -> list[Ticket]:
    """Tickets of monitored changes, oldest first, until they list about ``size``
    decisions; locked (PostgreSQL: tickets another grader holds are skipped). Pages grow
    with the tickets' average size, so a few large tickets cost a query each and many small
    ones are taken 64 at a time, and no more tickets are locked than are graded."""
    qs = GradeTicket.objects.filter(change_id__in=Monitor.objects.values("change_id"))
    if system_id is not None:
        qs = qs.filter(system_id=system_id)
    if connection.features.has_select_for_update_skip_locked:
        qs = qs.select_for_update(skip_locked=True)
    qs = qs.order_by("id")
    claimed: list[Ticket] = []
    total, page, after = 0, 1, 0
    while total < size:
        found = [Ticket(*v) for v in qs.filter(id__gt=after).values_list(*TICKET_FIELDS)[:page]]
        claimed.extend(found)
        total += sum(len(t.ids) for t in found)
        if len(found) < page:
            break
        after = found[-1].pk
        average = max(1, total // len(claimed))
        page = max(1, min(MAX_TICKET_PAGE, -(-(size - total) // average)))
    return claimed


#: The decisions of one change's claimed tickets, binary results (psycopg's C loaders:
#: Django's text-mode datetime parsing showed in profiles); the timestamp range lets
#: PostgreSQL read only the months the tickets cover.
_READ_SQL = """
SELECT id, environment, "timestamp", output_text, is_probe FROM monitoring_decision
 WHERE id = ANY(%b::bigint[]) AND "timestamp" BETWEEN %b AND %b
"""


def _read(tickets: list[Ticket]) -> list[Claimed]:
    """The claimed tickets' decisions, ordered by change and id. A listed decision that is
    gone (deleted with its system's data) is simply not graded."""
    by_change: dict[int, list[Ticket]] = defaultdict(list)
    for ticket in tickets:
        by_change[ticket.change_id].append(ticket)
    rows: list[Claimed] = []
    for change_id, group in sorted(by_change.items()):
        ids = sorted({pk for t in group for pk in t.ids})
        low, high = min(t.ts_min for t in group), max(t.ts_max for t in group)
        system = group[0].system_id
        if connection.vendor == "postgresql":
            import psycopg

            with psycopg.Cursor(connection.connection) as cursor:
                cursor.execute(_READ_SQL, [ids, low, high], binary=True)
                found = cursor.fetchall()
            found.sort()
        else:
            found = list(
                Decision.objects.filter(pk__in=ids)
                .order_by("id")
                .values_list("id", "environment", "timestamp", "output_text", "is_probe")
            )
        rows.extend(
            Claimed(pk, change_id, env, ts, text, probe, system)
            for pk, env, ts, text, probe in found
        )
    return rows


def label_all(labellers: dict, rows: list[Claimed]) -> None:
    """Label every claimed decision in place with its change's compiled labeller; a
    grader error (e.g. a runaway suite regex) is stored as the error, never a crash."""
    error_type = graders.GraderError
    for row in rows:
        labeller = labellers[row.change_id]
        if callable(labeller):
            try:
                row.label = labeller(row.output_text)
            except error_type as error:
                row.label, row.grade_error = "", str(error)[:200]
        else:
            row.label, row.grade_error = label_for(labeller, row.output_text)


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


def _take(tickets: list[Ticket]) -> set[int]:
    """Delete the claimed tickets; the ids of those this transaction deleted. On
    PostgreSQL that is all of them (they are locked); on SQLite, a grader that raced us
    (one writer at a time, no row locks) may have deleted some first: their decisions are
    that grader's, not ours."""
    if not tickets:
        return set()
    marks = ", ".join(["%s"] * len(tickets))
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM monitoring_gradeticket WHERE id IN ({marks}) RETURNING id",  # noqa: S608
            [t.pk for t in tickets],
        )
        return {pk for (pk,) in cursor.fetchall()}


def grade_batch(system_id: int | None = None, size: int | None = None) -> list[Claimed]:
    """Grade one batch in one transaction; return the decisions this call graded."""
    size = size or settings.MONITORING_GRADE_BATCH
    with transaction.atomic():
        tickets = _claim(system_id, size)
        if not tickets:
            return []
        rows = _read(tickets)
        monitors = {
            m.change_id: m
            for m in Monitor.objects.filter(change_id__in={t.change_id for t in tickets})
        }
        # Normalised and compiled once per monitor and batch, not per decision.
        labellers = {c: graders.labeller(m.graders) or m.graders for c, m in monitors.items()}
        label_all(labellers, rows)
        taken = _take(tickets)
        if len(taken) != len(tickets):
            mine = {pk for t in tickets if t.pk in taken for pk in t.ids}
            rows = [r for r in rows if r.pk in mine]
        if not rows:
            return []
        now = timezone.now()
        _append_log(rows, now)
        if connection.vendor == "postgresql":
            _rollups_postgresql(rows)
        else:
            for (change_id, env, start), by_label in _rollup_counts(rows).items():
                _bump_rollup(change_id, env, start, by_label)
        from . import judging, review

        review.sample(rows)
        judging.after_grading(rows, monitors)
        return rows


def _append_log(rows: list[Claimed], now: datetime) -> None:
    """One grade-log row per change of the batch (``rows`` are ordered by change and id)."""
    by_change: dict[int, list[Claimed]] = defaultdict(list)
    for row in rows:
        by_change[row.change_id].append(row)
    codes = LABEL_CODES
    GradeBatch.objects.bulk_create(
        GradeBatch(
            change_id=change_id, graded_at=now, first_id=members[0].pk,
            last_id=members[-1].pk, ids=[m.pk for m in members],
            labels="".join([codes.get(m.label, "e") for m in members]),
            errors={str(m.pk): m.grade_error for m in members if m.grade_error},
        )
        for change_id, members in by_change.items()
    )  # fmt: skip


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


def _rollups_postgresql(graded: list[Claimed]) -> None:
    import psycopg

    # A server-side-binding cursor on Django's connection (same transaction): parameters go
    # as binary arrays, not quoted into the SQL text.
    counts = _rollup_counts(graded)
    if not counts:
        return
    keys = list(counts)
    with psycopg.Cursor(connection.connection) as cursor:
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
