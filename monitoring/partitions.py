"""Monthly range partitions of the decision table on PostgreSQL (SQLite keeps one table).

Why: live decisions are the one table that grows without bound. Partitioned by the decision
``timestamp``, a query for a time range reads only its months (partition pruning), and
retention drops a whole month (``DROP TABLE``: no dead rows, no vacuum debt) instead of
deleting millions of rows.

PostgreSQL requires every unique constraint of a partitioned table to contain the partition
key, so the primary key is ``(id, timestamp)`` and the idempotency backstop is
``(system, idempotency_key, timestamp)``. Idempotency by key alone still holds: ingestion
looks the batch's keys up in every partition first (``services._store_batch``), and a
replayed batch carries the same timestamps, so the constraint also catches a replay that
races the first copy. The review item's link to its decision is not a database foreign key
any more (a foreign key to a partitioned table must name the partition key too); the ORM
still cascades, and retention keeps sampled decisions (below).

Layout: ``monitoring_decision_yYYYYmMM`` per month, plus ``monitoring_decision_default``
for anything outside them (nothing accepted is ever refused for want of a partition).
:func:`maintain` (beat, daily) creates the months from the oldest accepted timestamp
(``MONITORING_MAX_AGE_DAYS`` back) to ``MONITORING_PARTITIONS_AHEAD`` months ahead, moving any
row the default partition holds for a new month into it, and drops months wholly older than
``MONITORING_RETENTION_DAYS``: before the drop, the month is detached and its ungraded
decisions (not yet counted) and sampled ones (their review is evidence) are re-inserted
(they land in the default partition), like the row-level prune keeps them.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

TABLE = "monitoring_decision"
DEFAULT = f"{TABLE}_default"
NAME_RE = re.compile(rf"^{TABLE}_y(\d{{4}})m(\d{{2}})$")


def month_start(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def add_months(month: datetime, n: int) -> datetime:
    index = month.year * 12 + month.month - 1 + n
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_name(month: datetime) -> str:
    return f"{TABLE}_y{month.year:04d}m{month.month:02d}"


def is_partitioned() -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(%s)", [TABLE]
        )
        return cursor.fetchone() is not None


def months() -> list[datetime]:
    """The monthly partitions that exist, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(%s)",
            [TABLE],
        )
        found = []
        for (name,) in cursor.fetchall():
            match = NAME_RE.match(name)
            if match:
                found.append(datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC))
    return sorted(found)


def create_month(month: datetime) -> int:
    """Create the partition of ``month``; returns how many rows moved into it from the
    default partition (a month the beat task had not created in time)."""
    name, upper = partition_name(month), add_months(month, 1)
    bounds = f"FROM ('{month.isoformat()}') TO ('{upper.isoformat()}')"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f'SELECT count(*) FROM {DEFAULT} WHERE "timestamp" >= %s AND "timestamp" < %s',  # noqa: S608
            [month, upper],
        )
        (stray,) = cursor.fetchone()
        if not stray:
            cursor.execute(f"CREATE TABLE {name} PARTITION OF {TABLE} FOR VALUES {bounds}")
            return 0
        # Attaching checks the default partition holds no row of the range: move them first.
        cursor.execute(f"CREATE TABLE {name} (LIKE {TABLE} INCLUDING DEFAULTS)")
        cursor.execute(
            f"WITH moved AS (DELETE FROM {DEFAULT} WHERE "  # noqa: S608
            f'"timestamp" >= %s AND "timestamp" < %s RETURNING *) '
            f"INSERT INTO {name} SELECT * FROM moved",
            [month, upper],
        )
        cursor.execute(f"ALTER TABLE {TABLE} ATTACH PARTITION {name} FOR VALUES {bounds}")
        return stray


def drop_month(month: datetime) -> tuple[int, int]:
    """Drop one month; returns (rows dropped, rows kept). Kept: ungraded decisions (listed
    in a grade ticket) and sampled ones, re-inserted through the parent (they land in the
    default partition)."""
    name = partition_name(month)
    with transaction.atomic(), connection.cursor() as cursor:
        # Deferred foreign-key checks queued on the month (rows written earlier in this
        # transaction) would block the DROP: run them now.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {name}")
        # Ungraded: listed in a grade ticket (only tickets overlapping the month can list
        # one of its decisions).
        cursor.execute(
            f"INSERT INTO {TABLE} SELECT * FROM {name} d WHERE d.id IN ("  # noqa: S608
            "SELECT jsonb_array_elements_text(t.ids)::bigint FROM monitoring_gradeticket t "
            "WHERE t.ts_min < %s AND t.ts_max >= %s) "
            "OR EXISTS (SELECT 1 FROM monitoring_reviewitem r WHERE r.decision_id = d.id)",
            [add_months(month, 1), month],
        )
        kept = cursor.rowcount
        cursor.execute(f"SELECT count(*) FROM {name}")  # noqa: S608
        (total,) = cursor.fetchone()
        cursor.execute(f"DROP TABLE {name}")
    return total - kept, kept


@dataclass
class Maintenance:
    created: list[str] = field(default_factory=list)
    moved_from_default: int = 0
    dropped: list[str] = field(default_factory=list)
    rows_dropped: int = 0
    rows_kept: int = 0

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def cutoff(now: datetime, retention_days: int) -> datetime:
    """Months ending before this are dropped. Never inside the accepted-timestamp window
    (``MONITORING_MAX_AGE_DAYS``): a month ingestion may still write to stays."""
    days = max(retention_days, settings.MONITORING_MAX_AGE_DAYS + 1)
    return now - timedelta(days=days)


def maintain(
    *, now: datetime | None = None, ahead: int | None = None, retention_days: int | None = None
) -> Maintenance:
    """Create the months ingestion may write to and drop the months past retention.
    A no-op where the table is not partitioned (SQLite)."""
    report = Maintenance()
    if not is_partitioned():
        return report
    now = now or timezone.now()
    ahead = settings.MONITORING_PARTITIONS_AHEAD if ahead is None else ahead
    days = settings.MONITORING_RETENTION_DAYS if retention_days is None else retention_days
    existing = set(months())
    first = month_start(now - timedelta(days=settings.MONITORING_MAX_AGE_DAYS))
    month = first
    while month <= add_months(month_start(now), ahead):
        if month not in existing:
            report.moved_from_default += create_month(month)
            report.created.append(partition_name(month))
        month = add_months(month, 1)
    limit = cutoff(now, days)
    for month in sorted(existing):
        if add_months(month, 1) <= limit:
            dropped, kept = drop_month(month)
            report.dropped.append(partition_name(month))
            report.rows_dropped += dropped
            report.rows_kept += kept
    if report.created or report.dropped:
        logger.info("decision partitions: %s", report.as_dict())
    return report


# ------------------------------------------------------------------------------ migration


def partition_table(schema_editor) -> None:
    """Turn the plain decision table into the partitioned one, keeping its rows, columns,
    identity sequence, indexes and foreign keys (names unchanged, unique ones with the
    partition key). Run once by migration 0002 on PostgreSQL."""
    _rebuild(schema_editor, partitioned=True)


def unpartition_table(schema_editor) -> None:
    """The reverse (migrating back past 0002): one plain table again, same rows and names,
    primary key ``(id)``."""
    _rebuild(schema_editor, partitioned=False)


def _rebuild(schema_editor, *, partitioned: bool) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(%s)", [TABLE]
        )
        if bool(cursor.fetchone()) == partitioned:
            return
        old = f"{TABLE}_rebuilt_from"
        cursor.execute(f"ALTER TABLE {TABLE} RENAME TO {old}")
        cursor.execute(
            "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND coninhcount = 0 ORDER BY conname",
            [old],
        )
        constraints = cursor.fetchall()
        cursor.execute(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = %s::regclass "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid) "
            "ORDER BY i.relname",
            [old],
        )
        indexes = cursor.fetchall()
        like = f"LIKE {old} INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING STORAGE"
        if partitioned:
            cursor.execute(f'CREATE TABLE {TABLE} ({like}) PARTITION BY RANGE ("timestamp")')
            cursor.execute(f"CREATE TABLE {DEFAULT} PARTITION OF {TABLE} DEFAULT")
            cursor.execute(f'SELECT min("timestamp"), max("timestamp") FROM {old}')  # noqa: S608
            low, high = cursor.fetchone()
            now = timezone.now()
            earliest = now - timedelta(days=settings.MONITORING_MAX_AGE_DAYS)
            month = month_start(min(low or now, earliest))
            last = add_months(
                month_start(max(high or now, now)), settings.MONITORING_PARTITIONS_AHEAD
            )
            while month <= last:
                upper = add_months(month, 1)
                cursor.execute(
                    f"CREATE TABLE {partition_name(month)} PARTITION OF {TABLE} "
                    f"FOR VALUES FROM ('{month.isoformat()}') TO ('{upper.isoformat()}')"
                )
                month = upper
        else:
            cursor.execute(f"CREATE TABLE {TABLE} ({like})")
        cursor.execute(f"INSERT INTO {TABLE} OVERRIDING SYSTEM VALUE SELECT * FROM {old}")  # noqa: S608
        cursor.execute(f"DROP TABLE {old} CASCADE")
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [TABLE])
        (sequence,) = cursor.fetchone()
        if sequence != f"public.{TABLE}_id_seq":
            cursor.execute(f"ALTER SEQUENCE {sequence} RENAME TO {TABLE}_id_seq")
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence(%s, 'id'), "  # noqa: S608 - our own name
            f"coalesce((SELECT max(id) FROM {TABLE}), 0) + 1, false)",
            [TABLE],
        )
        for name, kind, definition in constraints:
            if kind == "p":
                definition = 'PRIMARY KEY (id, "timestamp")' if partitioned else "PRIMARY KEY (id)"
            elif kind == "u" and partitioned and "timestamp" not in definition:
                raise RuntimeError(f"{name}: a unique constraint without the partition key")
            cursor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {name} {definition}")
        for _name, definition in indexes:
            # A partitioned parent's index reads "ON ONLY": the rebuilt one covers all.
            definition = definition.replace(f" ON ONLY public.{old} ", f" ON public.{old} ")
            cursor.execute(definition.replace(f" ON public.{old} ", f" ON public.{TABLE} "))
