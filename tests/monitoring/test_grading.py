"""Monitors reuse the suite graders; grading is exactly-once and keeps per-window rollups."""

from __future__ import annotations

from unittest import mock

import psycopg
import pytest
from django.db import DatabaseError, connection
from django.db.models import Sum

from core.errors import NotAllowed, ValidationFailed
from monitoring import grading, services, tasks
from monitoring.models import GradeBatch, GradeTicket, Rollup
from monitoring.selectors import labels_for

from .conftest import MONITOR_GRADERS, decision, jsonl, labels, post_jsonl, store

pytestmark = pytest.mark.django_db

OUTPUTS = ["NEEDS_SECOND_APPROVER"] * 6 + ["I approve this."] * 3 + ["no idea"]


def test_grading_labels_with_the_suite_graders_and_rolls_up(monitor, deployed):
    made = store(deployed, OUTPUTS)
    assert grading.grade_pending() == 10
    got = labels(made)
    assert [got[d.pk] for d in made] == ["new"] * 6 + ["legacy"] * 3 + ["other"]
    assert not GradeTicket.objects.exists()  # nothing left pending
    assert GradeBatch.objects.count() == 1  # one grade-log row per change and batch
    rollup = Rollup.objects.get()
    assert (rollup.n, rollup.new, rollup.legacy, rollup.other) == (10, 6, 3, 1)


def test_rerun_grades_nothing_twice(monitor, deployed):
    store(deployed, OUTPUTS)
    grading.grade_pending()
    before = list(GradeBatch.objects.values_list("id", "ids", "labels"))
    assert grading.grade_pending() == 0
    assert list(GradeBatch.objects.values_list("id", "ids", "labels")) == before
    assert Rollup.objects.aggregate(n=Sum("n"))["n"] == 10


def test_a_concurrent_grader_cannot_double_count(monitor, deployed):
    """Another grader finishes the same tickets between our claim and our write (SQLite has
    no row locks): deleting the tickets finds them gone, so we append no grades and the
    rollups count each decision once."""
    made = store(deployed, OUTPUTS)
    real = grading.label_all
    raced = []

    def racing(labellers, rows):
        if not raced:
            raced.append(True)
            assert len(grading.grade_batch()) == 10  # the "other worker", same tickets
        return real(labellers, rows)

    with mock.patch.object(grading, "label_all", side_effect=racing):
        assert grading.grade_batch() == []
    assert raced
    assert len(labels(made)) == 10 and not GradeTicket.objects.exists()
    assert GradeBatch.objects.count() == 1
    assert Rollup.objects.aggregate(n=Sum("n"))["n"] == 10


def test_a_failure_after_labelling_leaves_the_tickets_and_no_grades(monitor, deployed):
    made = store(deployed, OUTPUTS)
    tickets_before = list(GradeTicket.objects.values_list("id", "ids"))
    with (
        mock.patch.object(grading, "_append_log", side_effect=RuntimeError("killed")),
        pytest.raises(RuntimeError),
    ):
        grading.grade_batch()
    assert list(GradeTicket.objects.values_list("id", "ids")) == tickets_before
    assert not GradeBatch.objects.exists() and not Rollup.objects.exists()
    assert grading.grade_pending() == 10  # the next task grades them, once
    assert len(labels(made)) == 10


def test_a_write_the_database_refuses_rolls_the_whole_batch_back(monitor, deployed):
    """The batch's writes go without waiting for each answer (PostgreSQL pipeline mode): a
    statement the server refuses must still undo the batch, the ticket deletion included."""
    made = store(deployed, OUTPUTS)
    tickets_before = list(GradeTicket.objects.values_list("id", "ids"))
    broken = grading._ROLLUP_SQL.replace("monitoring_rollup\n", "monitoring_no_such_table\n", 1)
    assert broken != grading._ROLLUP_SQL
    refused = (DatabaseError, psycopg.Error)  # raw psycopg cursors raise psycopg's own
    with mock.patch.object(grading, "_ROLLUP_SQL", broken), pytest.raises(refused):
        if connection.vendor == "postgresql":
            grading.grade_batch()
        else:  # SQLite writes rollups through the ORM: refuse the same step there
            with mock.patch.object(grading, "_bump_rollup", side_effect=DatabaseError("no")):
                grading.grade_batch()
    assert list(GradeTicket.objects.values_list("id", "ids")) == tickets_before
    assert not GradeBatch.objects.exists() and not Rollup.objects.exists()
    assert grading.grade_pending() == 10
    assert len(labels(made)) == 10


def test_batches_are_bounded(monitor, deployed, settings):
    settings.MONITORING_GRADE_BATCH = 3
    store(deployed, OUTPUTS)
    assert GradeTicket.objects.count() == 4  # tickets of at most 3 ids
    assert len(grading.grade_batch()) == 3
    assert grading.grade_pending() == 7


def test_probes_are_graded_but_not_counted(monitor, deployed):
    made = store(deployed, ["NEEDS_SECOND_APPROVER"] * 2, probe=True)
    made += store(deployed, ["NEEDS_SECOND_APPROVER"])
    grading.grade_pending()
    assert list(labels(made).values()) == ["new"] * 3
    assert Rollup.objects.get().n == 1


def test_decisions_without_a_monitor_wait(deployed):
    store(deployed, OUTPUTS)
    assert grading.grade_pending() == 0
    assert GradeTicket.objects.count() == 1


def test_a_grader_error_is_logged_with_its_message(monitor, deployed):
    made = store(deployed, ["NEEDS_SECOND_APPROVER", "boom"])

    def labeller(text):
        if text == "boom":
            raise grading.graders.GraderError("runaway")
        return "new"

    with mock.patch.object(grading.graders, "labeller", return_value=labeller):
        assert grading.grade_pending() == 2
    assert labels_for([d.pk for d in made]) == {
        made[0].pk: ("new", ""),
        made[1].pk: ("", "runaway"),
    }
    assert GradeBatch.objects.get().labels == "ne"
    rollup = Rollup.objects.get()
    assert (rollup.n, rollup.new, rollup.errors) == (1, 1, 1)


def test_a_backtracking_pattern_grades_in_linear_time_without_errors(deployed, admin_user):
    # Graders run on RE2 (evaluations/graders.py): a pattern that backtracks exponentially in
    # a backtracking engine is linear here, so the worker neither hangs nor errors.
    services.monitor_set(
        actor=admin_user,
        change=deployed,
        graders={"new": {"regex": "(a|a)*$"}, "legacy": {"contains": "zzz"}},
    )
    made = store(deployed, ["a" * 5000 + "b", "fine"])
    assert grading.grade_pending() == 2
    assert labels_for([d.pk for d in made]) == {d.pk: ("new", "") for d in made}
    assert Rollup.objects.get().n == 2


def test_monitor_validation_and_permissions(deployed, admin_user, reviewer):
    with pytest.raises(ValidationFailed, match="unknown grader kind"):
        services.monitor_set(
            actor=admin_user,
            change=deployed,
            graders={"new": {"nope": 1}, "legacy": {"contains": "x"}},
        )
    with pytest.raises(ValidationFailed, match="judge"):
        services.monitor_set(
            actor=admin_user,
            change=deployed,
            graders={"new": {"judge": "ok?"}, "legacy": {"contains": "x"}},
        )
    with pytest.raises(NotAllowed):
        services.monitor_set(actor=reviewer, change=deployed, graders=MONITOR_GRADERS)
    services.monitor_set(actor=admin_user, change=deployed, graders=MONITOR_GRADERS)
    with pytest.raises(NotAllowed):  # fixed once set on a deployed change
        services.monitor_set(actor=admin_user, change=deployed, graders=MONITOR_GRADERS)


def test_ingestion_wakes_a_grader_on_the_monitoring_queue(
    ingest_client, deployed, live_hash, settings, django_capture_on_commit_callbacks
):
    settings.MONITORING_TASK_QUEUE = "monitoring-test"
    with (
        mock.patch.object(tasks.grade_pending, "apply_async") as send,
        django_capture_on_commit_callbacks(execute=True),
    ):
        post_jsonl(ingest_client, deployed.system_id, jsonl([decision(live_hash)]))
    send.assert_called_once()
    assert send.call_args.kwargs["queue"] == "monitoring-test"


def test_lost_wake_up_is_not_an_error(deployed):
    with mock.patch.object(tasks.grade_pending, "apply_async", side_effect=OSError("down")):
        tasks.enqueue_grading(deployed.system_id)
