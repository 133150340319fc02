"""Migrations 0005/0006 move the per-row grading state into the grade log: ungraded
decisions get tickets, graded ones grade-log rows, review items their label; then the
columns go (on PostgreSQL from every monthly partition)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("monitoring", "0004_merge_judges_and_partitions")]
AFTER = [("monitoring", "0006_decision_without_grading_state")]


@pytest.mark.django_db(transaction=True)
def test_the_grading_state_moves_to_tickets_the_grade_log_and_review_items(deployed):
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    Decision = apps.get_model("monitoring", "Decision")
    ReviewItem = apps.get_model("monitoring", "ReviewItem")
    now = datetime.now(UTC)

    def make(key, **grading):
        return Decision.objects.create(
            system_id=deployed.system_id, change_id=deployed.pk, idempotency_key=key,
            environment="production", protocol_sha256="a" * 64, timestamp=now,
            received_at=now, **grading,
        )  # fmt: skip

    new = make("g1", label="new", graded_at=now)
    error = make("g2", label="", grade_error="runaway", graded_at=now)
    legacy = make("g3", label="legacy", graded_at=now)
    pending = [make(f"u{i}") for i in range(3)]
    Decision.objects.create(
        system_id=deployed.system_id,
        idempotency_key="unapproved",
        environment="production",
        protocol_sha256="b" * 64,
        timestamp=now,
        received_at=now,
        unapproved=True,
    )  # fmt: skip - no change: never graded, no ticket
    ReviewItem.objects.create(
        decision_id=legacy.pk, system_id=deployed.system_id, stratum="production|legacy",
        probability=0.5,
    )  # fmt: skip

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    from monitoring.models import GradeTicket
    from monitoring.models import ReviewItem as Item
    from monitoring.selectors import labels_for

    (ticket,) = GradeTicket.objects.all()
    assert ticket.ids == [d.pk for d in pending] and ticket.size == 3
    assert labels_for([new.pk, error.pk, legacy.pk, *(d.pk for d in pending)]) == {
        new.pk: ("new", ""),
        error.pk: ("", "runaway"),
        legacy.pk: ("legacy", ""),
    }
    assert Item.objects.get().label == "legacy"
    with connection.cursor() as cursor:
        columns = [c.name for c in connection.introspection.get_table_description(
            cursor, "monitoring_decision")]  # fmt: skip
    assert not {"label", "grade_error", "graded_at"} & set(columns)
