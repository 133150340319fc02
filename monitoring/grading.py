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

import contextlib
import gc
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import groupby
from operator import attrgetter

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from evaluations import graders

from .models import LABEL_CODES, Decision, GradeBatch, GradeTicket, Monitor, Rollup

#: Online grading uses the local kinds only: a judge per live decision has a cost and a
#: latency of its own, so judges run on a sample after commit (``monitoring.judging``).
LIVE_KINDS = graders.CHEAP_KINDS


def window_epoch(moment: datetime) -> int:
    """The start of ``moment``'s rollup window in seconds since the epoch (``_READ_SQL``
    computes the same on PostgreSQL)."""
    step = settings.MONITORING_WINDOW_MINUTES * 60
    return int(moment.timestamp()) // step * step


def window_start(moment: datetime) -> datetime:
    return datetime.fromtimestamp(window_epoch(moment), tz=UTC)


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
    window: int  # the start of its rollup window, in seconds since the epoch
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
#: Candidate tickets read per round (their id and size only, without a lock).
CANDIDATES = 256


_CANDIDATES_SQL = """
SELECT id, size FROM monitoring_gradeticket
 WHERE change_id IN (SELECT change_id FROM monitoring_monitor) AND id > %s {system}
 ORDER BY id LIMIT {limit}
"""
_LOCK_SQL = """
SELECT id, change_id, system_id, ids, ts_min, ts_max FROM monitoring_gradeticket
 WHERE id = ANY(%b::bigint[]) ORDER BY id FOR UPDATE SKIP LOCKED
"""


def _claim(system_id: int | None, size: int) -> list[Ticket]:
    """Tickets of monitored changes, oldest first, until they list about ``size``
    decisions; locked (PostgreSQL: tickets another grader holds are skipped, not waited
    for). Sizes are read first without a lock, so only the tickets this batch grades get
    locked (a ticket is never split: a batch may exceed ``size`` by less than a ticket);
    candidates another grader holds are skipped and the next ones tried. Raw SQL: two
    small queries per batch, where the ORM's query building showed in profiles."""
    postgres = connection.vendor == "postgresql"
    candidates_sql = _CANDIDATES_SQL.format(
        system="" if system_id is None else "AND system_id = %s", limit=CANDIDATES
    )
    claimed: list[Ticket] = []
    total, after = 0, 0
    while total < size:
        with connection.cursor() as cursor:
            cursor.execute(candidates_sql, [after] + ([] if system_id is None else [system_id]))
            candidates = cursor.fetchall()
        if not candidates:
            break
        chosen, running = [], total
        for pk, n in candidates:
            if running >= size:
                break
            chosen.append(pk)
            running += n
        after = chosen[-1]
        if postgres:
            import psycopg

            with psycopg.Cursor(connection.connection) as cursor:
                cursor.execute(_LOCK_SQL, [chosen], binary=True)
                found = [Ticket(*row) for row in cursor.fetchall()]
        else:  # one writer at a time: ``_take`` settles a race
            found = [
                Ticket(*v)
                for v in GradeTicket.objects.filter(id__in=chosen)
                .order_by("id")
                .values_list(*TICKET_FIELDS)
            ]
        claimed.extend(found)
        total += sum(len(t.ids) for t in found)
    return claimed


#: The decisions of one change's claimed tickets, binary results (psycopg's C loaders:
#: Django's text-mode datetime parsing showed in profiles), with the rollup window computed
#: by the server (an integer per row instead of a datetime); the timestamp range lets
#: PostgreSQL read only the months the tickets cover.
_READ_COLUMNS = """
SELECT id, environment, (floor(extract(epoch FROM "timestamp") / %b) * %b)::bigint,
       output_text, is_probe
  FROM monitoring_decision
"""
_READ_SQL = _READ_COLUMNS + 'WHERE id = ANY(%b::bigint[]) AND "timestamp" BETWEEN %b AND %b'
#: A ticket's ids are usually one run of the sequence (ingestion draws a batch's ids in one
#: statement), so one index range scan reads them: about 5x cheaper than probing the primary
#: key once per id (EXPLAIN ANALYZE, 2,000 ids: 0.9 ms against 4.5 ms, plus planning).
#: Rows of the range that are not the tickets' (another request's decisions interleaved, of
#: this change or another) are dropped by the caller. No ``change_id`` condition: with one, the
#: planner (its statistics a batch behind the newest rows) chose the change's index and
#: filtered every decision of the change for each ticket (EXPLAIN ANALYZE: 19,000 rows read
#: for 1,000, a read growing with the change's history).
_READ_RANGE_SQL = _READ_COLUMNS + 'WHERE id BETWEEN %b AND %b AND "timestamp" BETWEEN %b AND %b'
#: Range scan when the ids fill at least this share of their span; else the id array.
DENSE = 0.5


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

            step = settings.MONITORING_WINDOW_MINUTES * 60
            dense = len(ids) >= DENSE * (ids[-1] - ids[0] + 1)
            with psycopg.Cursor(connection.connection) as cursor:
                if dense:
                    cursor.execute(
                        _READ_RANGE_SQL,
                        [step, step, ids[0], ids[-1], low, high],
                        binary=True,
                    )
                else:
                    cursor.execute(_READ_SQL, [step, step, ids, low, high], binary=True)
                found = cursor.fetchall()
            if dense:  # the range may hold other tickets' rows of this change
                wanted = set(ids)
                found = [r for r in found if r[0] in wanted]
            found.sort()
        else:
            found = [
                (pk, env, window_epoch(ts), text, probe)
                for pk, env, ts, text, probe in Decision.objects.filter(pk__in=ids)
                .order_by("id")
                .values_list("id", "environment", "timestamp", "output_text", "is_probe")
            ]
        rows.extend(
            Claimed(pk, change_id, env, window, text, probe, system)
            for pk, env, window, text, probe in found
        )
    return rows


def label_all(labellers: dict, rows: list[Claimed]) -> None:
    """Label every claimed decision in place with its change's compiled labeller; a
    grader error (e.g. a runaway suite regex) is stored as the error, never a crash.
    ``rows`` come ordered by change, so each change's outputs are labelled in one
    ``map`` (the per-row loop, lookups and ``try`` showed next to the labeller itself);
    a group in which a grader fails is labelled again one decision at a time."""
    for change_id, members in groupby(rows, key=attrgetter("change_id")):
        group = list(members)
        labeller = labellers[change_id]
        if callable(labeller):
            try:
                labels = list(map(labeller, [row.output_text for row in group]))
            except graders.GraderError:
                pass
            else:
                for row, label in zip(group, labels, strict=True):
                    row.label = label
                continue
        for row in group:
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


@contextlib.contextmanager
def _cyclic_gc_paused():
    """Pause Python's cyclic garbage collector for one batch. Why: a batch allocates a few
    objects per decision (rows, strings, datetimes) and creates no reference cycles, but
    the allocations alone trigger full collections that scan the whole process heap (a
    Django worker's: ~0.1 s per 20,000 decisions, as much as reading them). Reference
    counting still frees everything; the collector resumes (and catches up) after."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@dataclass
class Context:
    """What one ``grade_pending`` call reads once for all its batches: the monitors, their
    compiled labellers and the review configurations (a monitor is fixed once its change
    is approved, and a call lasts seconds)."""

    monitors: dict = field(default_factory=dict)
    labellers: dict = field(default_factory=dict)
    review_configs: dict = field(default_factory=dict)

    def load(self, change_ids) -> None:
        missing = set(change_ids) - set(self.monitors)
        if missing:
            for m in Monitor.objects.filter(change_id__in=missing):
                self.monitors[m.change_id] = m
                # Normalised and compiled once per monitor, not per decision.
                self.labellers[m.change_id] = graders.labeller(m.graders) or m.graders


def grade_batch(
    system_id: int | None = None, size: int | None = None, context: Context | None = None
) -> list[Claimed]:
    """Grade one batch in one transaction; return the decisions this call graded."""
    size = size or settings.MONITORING_GRADE_BATCH
    context = context or Context()
    with _cyclic_gc_paused(), transaction.atomic():
        tickets = _claim(system_id, size)
        if not tickets:
            return []
        rows = _read(tickets)
        context.load(t.change_id for t in tickets)
        monitors = context.monitors
        label_all(context.labellers, rows)
        taken = _take(tickets)
        if len(taken) != len(tickets):
            mine = {pk for t in tickets if t.pk in taken for pk in t.ids}
            rows = [r for r in rows if r.pk in mine]
        if not rows:
            return []
        now = timezone.now()
        from . import judging, review

        with _pipelined():
            _append_log(rows, now)
            if connection.vendor == "postgresql":
                _rollups_postgresql(rows)
            else:
                for (change_id, env, start), by_label in _rollup_counts(rows).items():
                    _bump_rollup(change_id, env, start, by_label)
            review.sample(rows, configs=context.review_configs)
        judging.after_grading(rows, monitors)
        return rows


def _pipelined():
    """PostgreSQL: send the batch's writes (grade log, rollups, review items) without
    waiting for each answer (psycopg pipeline mode, same transaction); an error in any of
    them is raised when the block ends, and rolls the whole batch back. Why: they need no
    answer, and the round trips were a sixth of a batch's time."""
    if connection.vendor == "postgresql":
        return connection.connection.pipeline()
    return contextlib.nullcontext()


def _append_log(rows: list[Claimed], now: datetime) -> None:
    """One grade-log row per change of the batch (``rows`` are ordered by change and id)."""
    by_change: dict[int, list[Claimed]] = defaultdict(list)
    for row in rows:
        by_change[row.change_id].append(row)
    codes = LABEL_CODES
    entries = [
        GradeBatch(
            change_id=change_id, graded_at=now, first_id=members[0].pk,
            last_id=members[-1].pk, ids=[m.pk for m in members],
            labels="".join([codes.get(m.label, "e") for m in members]),
            errors={str(m.pk): m.grade_error for m in members if m.grade_error},
        )
        for change_id, members in by_change.items()
    ]  # fmt: skip
    if connection.vendor != "postgresql":
        GradeBatch.objects.bulk_create(entries)
        return
    import orjson
    import psycopg

    # The ORM's JSON encoding and query building cost more than the insert itself here.
    with psycopg.Cursor(connection.connection) as cursor:
        for e in entries:
            cursor.execute(
                _LOG_SQL,
                [e.change_id, e.graded_at, e.first_id, e.last_id, orjson.dumps(e.ids).decode(),
                 e.labels, orjson.dumps(e.errors).decode()],
            )  # fmt: skip


_LOG_SQL = """
INSERT INTO monitoring_gradebatch (change_id, graded_at, first_id, last_id, ids, labels, errors)
VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s::jsonb)
"""


def _rollup_counts(graded: list[Claimed]) -> dict[tuple, dict[str, int]]:
    """Per (change, environment, window): graded counts by label, and grading errors apart
    (not a live rate, but part of the review sampling population). Probes never enter."""
    counts: dict[tuple, dict[str, int]] = defaultdict(
        lambda: {"new": 0, "legacy": 0, "other": 0, "errors": 0}
    )
    starts: dict[int, datetime] = {}
    for row in graded:
        if not row.is_probe:
            start = starts.get(row.window)
            if start is None:
                start = starts[row.window] = datetime.fromtimestamp(row.window, tz=UTC)
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
    context = Context()
    for _ in range(max_batches):
        graded = grade_batch(system_id, context=context)
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
