"""Monitors reuse the suite graders; grading is exactly-once and keeps per-window rollups."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db.models import Sum

from core.errors import NotAllowed, ValidationFailed
from monitoring import grading, services, tasks
from monitoring.models import Decision, Rollup

from .conftest import MONITOR_GRADERS, decision, jsonl, post_jsonl, store

pytestmark = pytest.mark.django_db

OUTPUTS = ["NEEDS_SECOND_APPROVER"] * 6 + ["I approve this."] * 3 + ["no idea"]


def test_grading_labels_with_the_suite_graders_and_rolls_up(monitor, deployed):
    store(deployed, OUTPUTS)
    assert grading.grade_pending() == 10
    labels = list(Decision.objects.order_by("id").values_list("label", flat=True))
    assert labels == ["new"] * 6 + ["legacy"] * 3 + ["other"]
    rollup = Rollup.objects.get()
    assert (rollup.n, rollup.new, rollup.legacy, rollup.other) == (10, 6, 3, 1)


def test_rerun_grades_nothing_twice(monitor, deployed):
    store(deployed, OUTPUTS)
    grading.grade_pending()
    before = list(Decision.objects.values_list("id", "graded_at"))
    assert grading.grade_pending() == 0
    assert list(Decision.objects.values_list("id", "graded_at")) == before
    assert Rollup.objects.aggregate(n=Sum("n"))["n"] == 10


def test_a_concurrent_grader_cannot_double_count(monitor, deployed):
    """Another grader finishes the same rows between our read and our write: the conditional
    UPDATE writes none of them again and the rollups count each decision once."""
    store(deployed, OUTPUTS)
    real = grading.label_for
    raced = []

    def racing(graders, output):
        if not raced:
            raced.append(True)
            grading.grade_batch()  # the "other worker", same rows, finishes first
        return real(graders, output)

    with mock.patch.object(grading, "label_for", side_effect=racing):
        grading.grade_batch()
    assert Decision.objects.filter(graded_at__isnull=True).count() == 0
    assert Rollup.objects.aggregate(n=Sum("n"))["n"] == 10


def test_batches_are_bounded(monitor, deployed, settings):
    settings.MONITORING_GRADE_BATCH = 3
    store(deployed, OUTPUTS)
    assert len(grading.grade_batch()) == 3
    assert grading.grade_pending() == 7


def test_probes_are_graded_but_not_counted(monitor, deployed):
    store(deployed, ["NEEDS_SECOND_APPROVER"] * 2, probe=True)
    store(deployed, ["NEEDS_SECOND_APPROVER"])
    grading.grade_pending()
    assert Decision.objects.filter(label="new").count() == 3
    assert Rollup.objects.get().n == 1


def test_decisions_without_a_monitor_wait(deployed):
    store(deployed, OUTPUTS)
    assert grading.grade_pending() == 0


def test_a_backtracking_pattern_grades_in_linear_time_without_errors(deployed, admin_user):
    # Graders run on RE2 (evaluations/graders.py): a pattern that backtracks exponentially in
    # a backtracking engine is linear here, so the worker neither hangs nor errors.
    services.monitor_set(
        actor=admin_user,
        change=deployed,
        graders={"new": {"regex": "(a|a)*$"}, "legacy": {"contains": "zzz"}},
    )
    store(deployed, ["a" * 5000 + "b", "fine"])
    assert grading.grade_pending() == 2
    assert not Decision.objects.exclude(grade_error="").exists()
    assert set(Decision.objects.values_list("label", flat=True)) == {"new"}
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
