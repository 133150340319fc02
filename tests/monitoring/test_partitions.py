"""Monthly decision partitions on PostgreSQL: they exist, rows route to their month,
retention drops old months (keeping ungraded and sampled decisions), and a replayed batch
spanning a month boundary stores nothing twice. Run with
``DATABASE_URL=postgres://postgres@127.0.0.1:5432/h_ingest13``; skipped on SQLite, where
maintenance is a no-op (tested too)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from monitoring import grading, partitions, services
from monitoring.models import Decision, ReviewConfig, ReviewItem

from .conftest import decision, jsonl, post_jsonl, store

pytestmark = pytest.mark.django_db

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="declarative partitioning is PostgreSQL's"
)


def where(pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableoid::regclass::text FROM monitoring_decision WHERE id = %s", [pk]
        )
        return cursor.fetchone()[0]


def columns(table: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum",
            [table],
        )
        return [name for (name,) in cursor.fetchall()]


def test_sqlite_keeps_one_table_and_maintenance_is_a_no_op():
    if connection.vendor == "postgresql":
        assert partitions.is_partitioned()
        return
    assert not partitions.is_partitioned()
    assert partitions.maintain().as_dict()["created"] == []


@postgres_only
def test_the_months_exist_and_rows_route_to_theirs(deployed):
    now = datetime.now(UTC)
    this_month = partitions.month_start(now)
    existing = partitions.months()
    for ahead in range(0, 4):
        assert partitions.add_months(this_month, ahead) in existing
    assert partitions.month_start(now - timedelta(days=30)) in existing
    [row] = store(deployed, ["x"], start=now)
    assert where(row.pk) == partitions.partition_name(this_month)
    # Maintenance is idempotent: everything is already there.
    assert partitions.maintain(now=now).created == []


@postgres_only
def test_a_month_not_created_in_time_is_moved_out_of_the_default_partition(deployed):
    later = partitions.add_months(partitions.month_start(datetime.now(UTC)), 9)
    [row] = store(deployed, ["x"], start=later + timedelta(days=3))
    assert where(row.pk) == partitions.DEFAULT
    report = partitions.maintain(now=later)
    assert partitions.partition_name(later) in report.created
    assert report.moved_from_default == 1
    assert where(row.pk) == partitions.partition_name(later)
    # A month made with LIKE (after 0006 dropped the grading columns) matches the parent.
    assert columns(partitions.partition_name(later)) == columns(partitions.TABLE)
    assert "graded_at" not in columns(partitions.TABLE)


@postgres_only
def test_retention_drops_old_months_but_keeps_ungraded_and_sampled_decisions(deployed, monitor):
    now = datetime.now(UTC)
    month = partitions.month_start(now)
    # No random review draw: only the item made below keeps a graded decision.
    ReviewConfig.objects.create(system=deployed.system, fraction=0.0)
    graded = store(deployed, ["NEEDS_SECOND_APPROVER"] * 3, start=now)
    grading.grade_pending()
    sampled = graded[0]
    ReviewItem.objects.get_or_create(
        decision_id=sampled.pk,
        defaults={"system_id": deployed.system_id, "stratum": "production|new", "probability": 1},
    )
    monitor.delete()  # so "late" stays ungraded: listed in its grade ticket
    ungraded = store(deployed, ["late"], start=now)[0]
    assert grading.grade_pending() == 0
    # A year and a half later, with 400 days of retention: this month is past it.
    future = now + timedelta(days=550)
    report = partitions.maintain(now=future, retention_days=400)
    assert partitions.partition_name(month) in report.dropped
    assert month not in partitions.months()
    assert Decision.objects.filter(pk__in=[g.pk for g in graded[1:]]).count() == 0
    assert where(sampled.pk) == partitions.DEFAULT
    assert where(ungraded.pk) == partitions.DEFAULT
    assert ReviewItem.objects.get(decision_id=sampled.pk).decision.output_text
    assert report.rows_dropped >= 2 and report.rows_kept >= 2
    # The months ingestion may still write to are never dropped, whatever the setting.
    assert partitions.cutoff(now, 1) <= now - timedelta(days=31)


@postgres_only
def test_replay_across_a_month_boundary_is_idempotent(ingest_client, deployed, live_hash, settings):
    settings.MONITORING_MAX_AGE_DAYS = 40
    boundary = partitions.month_start(datetime.now(UTC))
    before = decision(live_hash, timestamp=(boundary - timedelta(seconds=1)).isoformat())
    after = decision(live_hash, timestamp=(boundary + timedelta(seconds=1)).isoformat())
    body = jsonl([before, after])
    first = post_jsonl(ingest_client, deployed.system_id, body).json()
    assert first["accepted"] == 2
    again = post_jsonl(ingest_client, deployed.system_id, body).json()
    assert again["accepted"] == 0 and again["duplicates"] == 2
    rows = Decision.objects.filter(idempotency_key__in=[before["idempotency_key"],
                                                        after["idempotency_key"]])  # fmt: skip
    assert rows.count() == 2
    assert {where(r.pk) for r in rows} == {
        partitions.partition_name(partitions.add_months(boundary, -1)),
        partitions.partition_name(boundary),
    }
    # The same key under another timestamp is still a duplicate (looked up in every month).
    moved = {**before, "timestamp": (boundary + timedelta(seconds=5)).isoformat()}
    third = post_jsonl(ingest_client, deployed.system_id, jsonl([moved])).json()
    assert third["accepted"] == 0 and third["duplicates"] == 1
    # A replay racing the first copy (past the key lookup) is stopped by the constraint.
    row = rows.get(idempotency_key=after["idempotency_key"])
    values = tuple(getattr(row, c.removesuffix("_id") + ("_id" if c.endswith("_id") else ""))
                   for c in services.DECISION_COLUMNS)  # fmt: skip
    assert services._insert([values]) == []
    assert Decision.objects.filter(idempotency_key=after["idempotency_key"]).count() == 1
