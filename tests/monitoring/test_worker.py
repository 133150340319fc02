"""A real Celery worker grades on its own queue; SIGKILLed mid-stream, it leaves no decision
ungraded (after the next wake-up) and none counted twice. Run with ``pytest -m worker``."""

from __future__ import annotations

import contextlib
import os
import uuid

import pytest
from django.db.models import Sum

from monitoring import tasks
from monitoring.models import GradeBatch, GradeTicket, ReviewConfig, ReviewItem, Rollup
from tests.evaluations.workers import Worker, database_url, purge_queue, wait_for

from .conftest import labels, store

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
N = 4000


@pytest.fixture
def monitoring_queue(settings):
    queue = f"montest-{uuid.uuid4().hex[:10]}"
    settings.MONITORING_TASK_QUEUE = queue
    yield queue
    purge_queue(queue)


@pytest.fixture
def start_worker(monitoring_queue, tmp_path):
    """A real worker listening only on this test's monitoring queue; killed at the end."""
    workers: list[Worker] = []

    def start() -> Worker:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings_test",
            DATABASE_URL=database_url(),
            MONITORING_TASK_QUEUE=monitoring_queue,
            MONITORING_GRADE_BATCH="40",
            PYTHONUNBUFFERED="1",
        )
        worker = Worker(tmp_path / f"worker-{len(workers)}.log", monitoring_queue, env)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        with contextlib.suppress(Exception):
            worker.kill()


def test_sigkilled_grader_loses_nothing_and_counts_nothing_twice(
    monitor, deployed, monitoring_queue, start_worker, settings
):
    ReviewConfig.objects.create(system=deployed.system, fraction=0.1)
    settings.MONITORING_GRADE_BATCH = 40  # tickets of 40, so the worker's batches are 40
    store(
        deployed, ["NEEDS_SECOND_APPROVER", "I approve.", "hmm", "NEEDS_SECOND_APPROVER"] * (N // 4)
    )
    first = start_worker()
    tasks.grade_pending.apply_async(args=[deployed.system_id], queue=monitoring_queue)
    wait_for(lambda: Rollup.objects.exists(), timeout=90, what="grading to start", workers=[first])
    first.kill()
    graded_at_kill = len(labels())
    assert graded_at_kill < N, "the worker finished before the kill: make N larger"
    assert GradeTicket.objects.exists()

    second = start_worker()
    tasks.grade_pending.apply_async(args=[deployed.system_id], queue=monitoring_queue)
    wait_for(
        lambda: not GradeTicket.objects.exists(),
        timeout=120, what="every decision graded", workers=[second],
    )  # fmt: skip
    assert Rollup.objects.aggregate(n=Sum("n"))["n"] == N
    assert len(labels()) == N  # each decision in the grade log once
    logged = [pk for ids in GradeBatch.objects.values_list("ids", flat=True) for pk in ids]
    assert len(logged) == len(set(logged)) == N
    totals = Rollup.objects.aggregate(new=Sum("new"), legacy=Sum("legacy"), other=Sum("other"))
    assert totals == {"new": N // 2, "legacy": N // 4, "other": N // 4}
    assert ReviewItem.objects.count() == len(
        set(ReviewItem.objects.values_list("decision_id", flat=True))
    )
