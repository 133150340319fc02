"""Grade tickets: the pending grading work, written by ingestion with the decisions.

Why tickets and not a per-row ``graded_at``: marking a decision graded rewrote the row, and
on PostgreSQL that UPDATE cannot be HOT (the column was in the partial index that found
ungraded rows), so each decision cost a new row version and new entries in every index:
more than the whole grading budget (docs/MONITORING.md). A ticket lists the ids one
ingestion chunk stored for one change; grading deletes it in the transaction that appends
the grades, so "pending" is exactly "listed in a ticket".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from django.conf import settings

from .models import GradeTicket


def write(system_id: int, stored: Iterable[tuple[int, int | None, datetime]]) -> int:
    """One ticket per change per ``MONITORING_GRADE_BATCH`` of the ``(id, change_id,
    timestamp)`` triples just stored (in the caller's transaction: a rolled-back batch
    leaves no ticket). Decisions without a change are never graded, so get none."""
    by_change: dict[int, list[tuple[int, datetime]]] = defaultdict(list)
    for pk, change_id, timestamp in stored:
        if change_id is not None:
            by_change[change_id].append((pk, timestamp))
    size = settings.MONITORING_GRADE_BATCH
    tickets = []
    for change_id, members in by_change.items():
        members.sort()
        for start in range(0, len(members), size):
            part = members[start : start + size]
            stamps = [t for _, t in part]
            tickets.append(
                GradeTicket(
                    change_id=change_id, system_id=system_id, ids=[pk for pk, _ in part],
                    size=len(part), first_id=part[0][0], last_id=part[-1][0],
                    ts_min=min(stamps), ts_max=max(stamps),
                )
            )  # fmt: skip
    GradeTicket.objects.bulk_create(tickets)
    return len(tickets)


def pending_ids() -> set[int]:
    """Every decision id still listed in a ticket (ungraded): retention keeps these. The
    set is the grading backlog (plus decisions of changes without a monitor)."""
    pending: set[int] = set()
    for ids in GradeTicket.objects.values_list("ids", flat=True).iterator(chunk_size=500):
        pending.update(ids)
    return pending
