"""What a newcomer's console shows: no banner repeated by every process, no duplicate lines."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.heavy
def test_a_management_command_prints_no_axes_banner():
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="config.settings_test")
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "AXES" not in result.stdout + result.stderr


def _record(message: str, level=logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("celery", level, __file__, 1, message, None, None)


def test_periodic_housekeeping_lines_are_quiet_but_its_errors_and_real_work_show():
    from config.celery import QuietHousekeeping

    quiet = QuietHousekeeping()
    for line in [
        "Scheduler: Sending due task reap-expired-leases (evaluations.reap_expired_leases)",
        "Task evaluations.reap_expired_leases[8cf0] received",
        "Task attestations.requeue_stalled[8cf0] succeeded in 0.005s: 0",
    ]:
        assert not quiet.filter(_record(line)), line
    assert quiet.filter(_record("Task evaluations.execute_batch[78] succeeded in 1.6s: 'done'"))
    assert quiet.filter(_record("Task evaluations.reap_expired_leases[8c] raised", logging.ERROR))
