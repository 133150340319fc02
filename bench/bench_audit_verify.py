"""Audit chain verification of 1,000,000 events on PostgreSQL.

Figure: ``verify_chain()`` wall time, against a plain streaming read of the same columns in
the same run (the floor: verification cannot be faster than reading the rows).
Target: < 10 s and < 2x the plain read. Skipped (with a note) on SQLite.
"""

from __future__ import annotations

import io
import os
import time
from datetime import UTC, datetime, timedelta

from bench.support import django_setup, figure, is_postgres

EVENTS = int(os.environ.get("BENCH_AUDIT_EVENTS", "1000000"))


def _fill(n: int) -> None:
    """Write n valid chained events with COPY (the append path is benchmarked elsewhere)."""
    import json

    from django.db import connection

    from changes import audit

    start = datetime(2026, 1, 1, tzinfo=UTC)
    prev = audit.GENESIS_HASH
    buf = io.StringIO()
    for i in range(n):
        data = {"n": i, "from": "draft", "to": "submitted"}
        created = start + timedelta(microseconds=i * 1000)
        canonical = audit.canonical_event(
            actor_id=None, actor_username="bench", verb="bench.event", object_type="bench",
            object_id=str(i % 1000), data=data, created_at=created,
        )  # fmt: skip
        digest = audit.chain_hash(prev, canonical)
        buf.write(
            "\t".join(["bench", "bench.event", "bench", str(i % 1000), json.dumps(data),
                       created.isoformat(), prev, digest]) + "\n"
        )  # fmt: skip
        prev = digest
    buf.seek(0)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE changes_auditevent RESTART IDENTITY")
        with cursor.cursor.copy(
            "COPY changes_auditevent (actor_username, verb, object_type, object_id, data, "
            "created_at, prev_hash, hash) FROM STDIN"
        ) as copy:
            copy.write(buf.read())


def _settle_wal() -> None:
    """Write out the fill's WAL now, so the checkpoint it is owed does not land inside the
    next benchmark's measurements (it showed as I/O wait and slower figures in the change-list
    and evaluation runs that followed). Needs a superuser or pg_checkpoint; skipped if not."""
    from django.db import DatabaseError, connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("CHECKPOINT")
    except DatabaseError:
        pass


def _plain_read() -> int:
    from changes import audit

    return sum(1 for _ in audit.iter_rows())


def run() -> dict:
    django_setup()
    if not is_postgres():
        return {
            "title": "Audit chain verification",
            "figures": [],
            "notes": ["Skipped: set DATABASE_URL to PostgreSQL (the target is defined there)."],
        }
    from changes import audit

    started = time.perf_counter()
    _fill(EVENTS)
    fill_s = time.perf_counter() - started
    # Warm the cache once, then measure each path.
    _plain_read()
    t0 = time.perf_counter()
    rows = _plain_read()
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    count, problem = audit.verify_chain()
    verify_s = time.perf_counter() - t0
    assert problem is None and count == rows == EVENTS, (count, rows, problem)
    ratio = verify_s / read_s
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE changes_auditevent RESTART IDENTITY")
    _settle_wal()
    return {
        "title": "Audit chain verification",
        "figures": [
            figure(
                f"verify {EVENTS:,} events",
                verify_s,
                "s",
                baseline={"name": "plain streaming read", "value": read_s, "unit": "s"},
                ratio=ratio,
                target="< 10 s and < 2x",
                met=verify_s < 10 and ratio < 2,
            )
        ],
        "notes": [f"Filled {EVENTS:,} events with COPY in {fill_s:.1f} s (not measured)."],
    }
