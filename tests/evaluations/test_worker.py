"""With a REAL Celery worker process on the configured broker and the test database:
a submitted change's run completes; a worker killed with SIGKILL mid-run is recovered by the
lease and the reaper, and the run ends with exactly the expected samples, none twice.

Run with ``pytest -m worker``. The worker gets its own queue (``EVAL_TASK_QUEUE``) so tests
sharing a broker never take each other's messages; every subprocess is killed in ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection
from django.db.models import Count

from changes import audit, states
from changes import services as change_services
from evaluations import services
from evaluations.models import Batch, EvaluationRun, Sample
from tests.evaluations.openai_stub import OpenAIStub

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
CELERY = ROOT / ".venv" / "bin" / "celery"


def database_url() -> str:
    """The URL of the database this test process uses (the *test* database)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    if connection.vendor == "postgresql":
        auth = quote(db.get("USER") or "", safe="")
        if db.get("PASSWORD"):
            auth += ":" + quote(db["PASSWORD"], safe="")
        host = db.get("HOST") or "127.0.0.1"
        port = db.get("PORT") or 5432
        return f"postgres://{auth}@{host}:{port}/{db['NAME']}"
    pytest.skip(f"no worker test support for {connection.vendor}")


class Worker:
    """A celery worker subprocess in its own process group (SIGKILL takes its children)."""

    def __init__(self, log_path: Path, queue: str, env: dict):
        self.log_path = log_path
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in kill()
        cmd = [str(CELERY if CELERY.exists() else "celery"), "-A", "config", "worker",
               "--pool", "prefork", "-c", "2", "-Q", queue, "--without-gossip",
               "--without-mingle", "--without-heartbeat", "-l", "info",
               "-n", f"{queue}-{uuid.uuid4().hex[:6]}@%h"]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        try:
            self.proc.wait(timeout=20)
        finally:
            self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture
def worker_queue(settings):
    queue = f"evaltest-{uuid.uuid4().hex[:10]}"
    settings.EVAL_TASK_QUEUE = queue
    settings.EVAL_BATCH_SIZE = 10
    settings.EVAL_ALLOWED_HOSTS = ["127.0.0.1"]  # the stub; the worker gets the same by env
    return queue


@pytest.fixture
def start_worker(worker_queue, tmp_path):
    """``start_worker(**env)`` -> a running Worker on this test's queue and database."""
    workers: list[Worker] = []

    def start(**extra_env) -> Worker:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings_test",
            DATABASE_URL=database_url(),
            EVAL_ALLOWED_HOSTS="127.0.0.1",
            PYTHONUNBUFFERED="1",
        )
        env.update({k: str(v) for k, v in extra_env.items()})
        worker = Worker(tmp_path / f"worker-{len(workers)}.log", worker_queue, env)
        workers.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            worker.kill()
        _purge(worker_queue)


def _purge(queue: str) -> None:
    from config.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(queue)
            if hasattr(conn.default_channel, "queue_delete"):
                conn.default_channel.queue_delete(queue)
    except Exception:  # noqa: BLE001 - best effort: the queue is unique to this test anyway
        pass


def wait_for(predicate: Callable[[], bool], *, timeout: float, what: str, workers=(), tick=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        for worker in workers:
            assert worker.proc.poll() is None, f"worker exited:\n{worker.output()}"
        if tick is not None:
            tick()
        time.sleep(0.1)
    logs = "\n".join(w.output() for w in workers)
    pytest.fail(f"timed out after {timeout}s waiting for {what}\n{logs}")


def status_of(run: EvaluationRun) -> str:
    return EvaluationRun.objects.values_list("status", flat=True).get(pk=run.pk)


def test_a_submitted_change_is_evaluated_by_a_real_worker(start_worker, submitted_change):
    worker = start_worker()

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
    monkeypatch.setattr(services, "REQUEUE_AFTER_SECONDS", 5.0)
    with OpenAIStub(latency=0.05) as stub:
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
                services.leases_reap()

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
