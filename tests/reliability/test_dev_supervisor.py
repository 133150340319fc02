"""``make run``'s supervisor (scripts/dev.py) with its real web, worker and beat.

The stack runs on the test database and a private ``VAR_DIR`` (so a private broker folder);
the change is submitted through its web API, so every wake-up goes through that broker.
SIGKILL to the worker: it must be back within 10 s, web must keep answering, the evaluation
that was in flight must complete, and Ctrl-C (SIGINT) must still stop everything.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from evaluations import suite_services
from evaluations.models import EvaluationRun, Sample
from tests.conftest import token_for
from tests.evaluations.conftest import suite_text
from tests.evaluations.workers import ROOT, database_url, status_of
from tests.factories import SystemFactory, make_change

pytestmark = [pytest.mark.worker, pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

#: Slow enough that the run is still going when the worker is killed.
TARGET = {"kind": "reference", "agent": "compliant", "latency_ms": 150, "max_concurrency": 2}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(predicate, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}\n{log.read_text()[-4000:]}")


def _get(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - 127.0.0.1
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _post(url: str, token: str) -> int:
    request = urllib.request.Request(url, method="POST", data=b"")
    request.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - 127.0.0.1
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_sigkilled_worker_is_restarted_and_the_run_in_flight_completes(
    engineer, team_a, tmp_path
):
    text = suite_text(name="supervised", epochs=8, scenarios=3)
    suite = suite_services.suite_create(actor=engineer, fmt="json", text=text)
    system = SystemFactory(owner_team=team_a, target=dict(TARGET))
    change = make_change(author=engineer, system=system, suites=[suite.pk])
    token = token_for(engineer)

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings_test",
        DATABASE_URL=database_url(),
        VAR_DIR=str(tmp_path / "var"),
        EVAL_BATCH_SIZE="4",
        EVAL_LEASE_SECONDS="5",
    )
    console = tmp_path / "console.log"
    state_file = tmp_path / "var" / "log" / "supervisor.json"
    with console.open("wb") as out:
        stack = subprocess.Popen(
            [sys.executable, "scripts/dev.py", "--skip-setup", "--port", str(port),
             "--web-workers", "1"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        _wait(lambda: console.read_text().count("Celery worker is ready") >= 1, 90,
              "the worker", console)  # fmt: skip
        _wait(lambda: _get(f"{base}/healthz") == 200, 60, "web", console)

        # An evaluation in flight, submitted through the stack's own API.
        assert _post(f"{base}/api/v1/changes/{change.pk}/submit/", token) == 200
        run = EvaluationRun.objects.get(change=change)
        _wait(lambda: Sample.objects.filter(run=run).exists(), 60, "the first samples", console)
        assert status_of(run) == EvaluationRun.RUNNING, "still in flight when killed"

        before = json.loads(state_file.read_text())["children"]["worker"]
        os.kill(before["pid"], signal.SIGKILL)
        killed_at = time.monotonic()

        def restarted():
            worker = json.loads(state_file.read_text())["children"]["worker"]
            return worker if worker["restarts"] == 1 and worker["running"] else None

        after = _wait(restarted, 10, "the worker to be restarted", console)
        assert after["pid"] != before["pid"]
        left = 10 - (time.monotonic() - killed_at)
        _wait(lambda: console.read_text().count("Celery worker is ready") >= 2, left,
              "the restarted worker to be ready", console)  # fmt: skip
        assert f"worker (pid {before['pid']}) was killed by SIGKILL" in console.read_text()
        assert _get(f"{base}/healthz") == 200, "web kept serving"

        _wait(lambda: status_of(run) == EvaluationRun.COMPLETED, 120, "the run to complete",
              console)  # fmt: skip
        run.refresh_from_db()
        assert Sample.objects.filter(run=run).count() == run.total_samples
        state = json.loads(state_file.read_text())
        assert state["children"]["web"]["restarts"] == 0
        assert state["children"]["beat"]["restarts"] == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stack.pid, signal.SIGINT)
        try:
            stack.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)
            stack.wait()
    assert stack.returncode == 0, console.read_text()[-3000:]
    assert "[dev] stopped" in console.read_text()
    assert not json.loads(state_file.read_text())["children"]["worker"]["running"]


def _dev_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("dev_supervisor", ROOT / "scripts" / "dev.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _FakeProc:
    def __init__(self, pid: int, status=None):
        self.pid, self.status = pid, status

    def poll(self):
        return self.status


class _FakeChild:
    """Stands in for dev.Child: a process that dies as soon as it is started."""

    def __init__(self, name: str):
        self.name, self.restarts, self.started_at, self.pids = name, 0, 0.0, iter(range(100, 200))
        self.proc = _FakeProc(next(self.pids), status=-9)

    def start(self):
        self.proc = _FakeProc(next(self.pids), status=-9)
        self.started_at = time.monotonic()

    def poll(self):
        return self.proc.poll()

    def kill(self):
        pass


def test_a_child_that_keeps_dying_is_restarted_with_a_doubling_backoff(tmp_path, monkeypatch):
    dev = _dev_module()
    lines: list[str] = []
    monkeypatch.setattr(dev, "say", lines.append)
    clock = [1000.0]
    monkeypatch.setattr(dev.time, "monotonic", lambda: clock[0])
    child = _FakeChild("worker")
    supervisor = dev.Supervisor([child], tmp_path / "supervisor.json")

    delays = []
    for _ in range(7):
        supervisor.tick()  # notices the death, schedules the restart
        delays.append(supervisor.restart_at["worker"] - clock[0])
        clock[0] = supervisor.restart_at["worker"]
        supervisor.tick()  # restarts it (and it dies again at once)

    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert child.restarts == 7
    assert "worker (pid 100) was killed by SIGKILL: restarting it in 1s" in lines[0]
    state = json.loads((tmp_path / "supervisor.json").read_text())
    assert state["restarts"] == 7 and state["children"]["worker"]["restarts"] == 7

    # A child that then ran for over a minute starts again from the first backoff.
    child.proc.status = None
    clock[0] += 120
    supervisor.tick()
    child.proc.status = 1
    supervisor.tick()
    assert supervisor.restart_at["worker"] - clock[0] == 1
    assert "exited with status 1" in lines[-1]
