"""With a REAL Celery worker process on the configured broker and the test database:
a submitted change's run completes; a worker killed with SIGKILL mid-run is recovered by the
lease and the reaper, and the run ends with exactly the expected samples, none twice.

Run with ``pytest -m worker``. The worker gets its own queue (``EVAL_TASK_QUEUE``) so tests
sharing a broker never take each other's messages; every subprocess is killed in ``finally``.
"""

from __future__ import annotations

import contextlib
import subprocess
import time

import pytest
from django.db.models import Count

from changes import audit, states
from changes import services as change_services
from evaluations import reaper
from evaluations.models import Batch, EvaluationRun, Sample
from tests.evaluations import workers
from tests.evaluations.openai_stub import OpenAIStub
from tests.evaluations.workers import status_of, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# The shared worker fixtures, bound here so pytest finds them for this module's tests.
worker_queue = workers.worker_queue
start_worker = workers.start_worker


@pytest.mark.parametrize("worker_pool", workers.POOLS)
def test_a_submitted_change_is_evaluated_by_a_real_worker(
    start_worker, submitted_change, worker_pool
):
    worker = start_worker()
    assert worker.pool == worker_pool

    change = submitted_change("compliant")
    run = EvaluationRun.objects.get(change=change)

    wait_for(lambda: status_of(run) == EvaluationRun.COMPLETED, timeout=90,
             what="the run to complete", workers=[worker])  # fmt: skip
    run.refresh_from_db()
    change.refresh_from_db()
    assert run.verdict == "pass"
    assert Sample.objects.filter(run=run).count() == run.total_samples
    assert change.state == states.AWAITING_REVIEW
    assert audit.verify_chain()[1] is None


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(
    start_worker, make_suite, system_for, engineer, monkeypatch
):
    from tests.factories import make_change

    # Lost messages (taken by the killed worker) are re-sent after 5 s instead of 30 s.
    monkeypatch.setattr(reaper, "REQUEUE_AFTER_SECONDS", 5.0)
    # The stub's reply follows the new protocol (redacted) so the change can pass.
    with OpenAIStub(reply="Ticket summary: the export crashes. Reporter: [redacted].",
                    latency=0.05) as stub:  # fmt: skip
        target = {"kind": "openai", "base_url": stub.url, "model": "stub-model",
                  "max_concurrency": 1, "timeout": 10}  # fmt: skip
        suite = make_suite(epochs=20)  # 3 scenarios x 4 cues x 20 = 240 samples, 24 batches
        change = make_change(author=engineer, system=system_for(target), suites=[suite.pk])
        first = start_worker(EVAL_LEASE_SECONDS=3)
        change_services.change_request_submit(actor=engineer, change_request=change)
        run = EvaluationRun.objects.get(change=change)

        def mid_run() -> bool:
            samples = Sample.objects.filter(run=run).count()
            leased = Batch.objects.filter(run=run, status=Batch.LEASED).exists()
            return 20 <= samples < run.total_samples - 40 and leased

        try:
            wait_for(mid_run, timeout=60, what="samples mid-run", workers=[first])
            leased_at_kill = set(
                Batch.objects.filter(run=run, status=Batch.LEASED).values_list("id", flat=True)
            )
        finally:
            first.kill()  # SIGKILL to the whole process group: no cleanup, no ack
        assert leased_at_kill
        killed_at = Sample.objects.filter(run=run).count()
        assert killed_at < run.total_samples

        second = start_worker(EVAL_LEASE_SECONDS=3)
        last_reap = [0.0]

        def reap_every_second() -> None:
            if time.monotonic() - last_reap[0] >= 1.0:
                last_reap[0] = time.monotonic()
                reaper.leases_reap()

        wait_for(lambda: status_of(run) != EvaluationRun.RUNNING, timeout=120,
                 what="the run to finish after the kill", workers=[second],
                 tick=reap_every_second)  # fmt: skip

    run.refresh_from_db()
    change.refresh_from_db()
    assert run.status == EvaluationRun.COMPLETED, run.status_reason
    assert Sample.objects.filter(run=run).count() == run.total_samples == 240
    dupes = (
        Sample.objects.filter(run=run)
        .values("scenario_id", "condition", "cue_index", "epoch")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    assert list(dupes) == []
    assert run.done_samples == run.total_samples
    assert not Batch.objects.filter(run=run).exclude(status=Batch.DONE).exists()
    assert all(b.attempts >= 2 for b in Batch.objects.filter(pk__in=leased_at_kill)), (
        "the batches the killed worker held were claimed again"
    )
    assert change.state == states.AWAITING_REVIEW
    assert audit.verify_chain()[1] is None


def test_a_gevent_worker_refuses_to_start_instead_of_failing_every_batch(start_worker):
    pytest.importorskip("gevent")
    worker = start_worker(pool="gevent")
    with contextlib.suppress(subprocess.TimeoutExpired):  # still running: reported below
        worker.proc.wait(timeout=60)
    assert worker.proc.returncode == 1, worker.output()
    assert "cannot run with the gevent or eventlet pool" in worker.output()
