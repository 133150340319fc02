"""The load test, as a pytest entry point (``pytest -m load``; ``make test`` leaves it out).

Runs ``scripts/load_test.sh``: 50 concurrent users for ``LOAD_DURATION`` (default 5m; CI may
pass less, e.g. ``LOAD_DURATION=90s``) against gunicorn with a Celery worker and PostgreSQL on
127.0.0.1, then ``manage.py verify_audit``. Passes when no request answered 5xx, none failed
to connect, and the audit chain verifies; the figures are printed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "load_test.sh"
DATABASE_URL = os.environ.get("LOAD_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/pcm_load")

pytestmark = pytest.mark.load


def seconds(duration: str) -> int:
    """Locust's run-time syntax (``90s``, ``5m``, ``1h30m``, or bare seconds) in seconds."""
    if duration.isdigit():
        return int(duration)
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)([hms])", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a duration: {duration!r}")
    return sum(int(n) * units[u] for n, u in parts)


def postgres_reachable() -> bool:
    import psycopg

    url = urlparse(DATABASE_URL)
    try:
        psycopg.connect(url._replace(path="/postgres").geturl(), connect_timeout=3).close()
    except psycopg.OperationalError:
        return False
    return True


def test_fifty_users_cause_no_server_error_and_the_audit_chain_verifies(tmp_path):
    if not postgres_reachable():
        pytest.skip(f"the load test needs PostgreSQL ({DATABASE_URL})")
    duration = os.environ.get("LOAD_DURATION", "5m")
    out = tmp_path / "load"
    env = {**os.environ, "LOAD_OUT": str(out), "LOAD_DATABASE_URL": DATABASE_URL}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # the script runs the production settings

    # when: the load runs for the configured time
    result = subprocess.run(
        ["bash", str(SCRIPT), duration],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds(duration) + 600,
        check=False,
    )

    # then: the script passed (no 5xx, no connection error, verify_audit OK)
    print(result.stdout[-6000:])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report = json.loads((out / "report.json").read_text())
    assert report["server_errors"] == 0
    assert report["connection_errors"] == 0
    assert report["page"]["requests"] > 0 and report["page"]["p95_ms"] is not None
    assert "OK:" in result.stdout  # verify_audit's verdict
