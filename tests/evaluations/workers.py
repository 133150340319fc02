"""Helpers for tests that run REAL Celery worker processes on the test database.

Each test gets its own queue (``EVAL_TASK_QUEUE``), so tests sharing a broker never take each
other's messages. Workers run in their own process group, so one SIGKILL takes the parent and
its prefork children at once (no cleanup, no ack: a crash). Every worker started through the
``start_worker`` fixture is killed when the test ends, whatever happened.

Use from a conftest (``from tests.evaluations.workers import start_worker, worker_queue``)
or bind them in a test module (``start_worker = workers.start_worker``).
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

from evaluations.models import EvaluationRun

ROOT = Path(__file__).resolve().parents[2]
#: Every Celery pool the worker runs under. Not gevent (it refuses to start, see config/celery.py):
#: its greenlets share one OS thread, so one task's running event loop is seen by the next.
POOLS = ["prefork", "threads", "solo"]
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
    """A celery worker subprocess in its own process group (SIGKILL takes its children).

    ``name`` is the node name; a batch this worker leases has ``lease_owner`` containing it
    (``<task id>@<node name>:<pid>``), so a test can tell which batches a dead worker held.
    """

    def __init__(
        self, log_path: Path, queue: str, env: dict, *, concurrency: int = 2, pool: str = "prefork"
    ):
        self.log_path = log_path
        self.pool = pool
        # Short and fixed, so ``lease_owner`` (<= 100 chars) always holds it whole.
        self.name = f"{queue}-{uuid.uuid4().hex[:6]}@tests"
        self.started_at = time.monotonic()
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in kill()
        cmd = [
            str(CELERY if CELERY.exists() else "celery"), "-A", "config", "worker",
            "--pool", pool, "-c", str(concurrency), "-Q", queue, "-n", self.name,
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "info",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group and reap it. Safe to call twice."""
        # Only while the leader is unreaped is its pid (= the group id) surely still ours.
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        try:
            self.proc.wait(timeout=20)
        finally:
            if not self.log.closed:
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
def start_worker(worker_queue, tmp_path, request):
    """``start_worker(**env)`` -> a running Worker on this test's queue and database.

    The pool is prefork unless the test is parametrized with ``worker_pool`` (see POOLS), so
    a test runs under every pool with ``@pytest.mark.parametrize("worker_pool", POOLS)``.
    """
    workers: list[Worker] = []
    callspec = getattr(request.node, "callspec", None)
    # TEST_WORKER_POOL runs every worker test under another pool (`TEST_WORKER_POOL=threads
    # pytest -m worker`); a test parametrized with worker_pool picks its own.
    default_pool = os.environ.get("TEST_WORKER_POOL", "prefork")
    worker_pool = callspec.params.get("worker_pool", default_pool) if callspec else default_pool

    def start(*, concurrency: int = 2, pool: str | None = None, **extra_env) -> Worker:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings_test",
            DATABASE_URL=database_url(),
            EVAL_ALLOWED_HOSTS="127.0.0.1",
            PYTHONUNBUFFERED="1",
        )
        env.update({k: str(v) for k, v in extra_env.items()})
        log_path = tmp_path / f"worker-{len(workers)}.log"
        worker = Worker(
            log_path, worker_queue, env, concurrency=concurrency, pool=pool or worker_pool
        )
        workers.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            with contextlib.suppress(Exception):
                worker.kill()
        purge_queue(worker_queue)


def purge_queue(queue: str) -> None:
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
