"""One-minute smoke run of ``scripts/soak.sh`` (the soak test of ``make run``).

Not in the default run (marker ``soak``, excluded by ``addopts`` like ``load``): it starts the
whole stack in a fresh folder (migrate, seed, collectstatic) and takes two to four minutes.
Run with ``pytest -m soak``; ``SOAK_MINUTES`` makes it longer.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.soak, pytest.mark.reliability, pytest.mark.worker]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_stack_survives_a_short_soak_with_nothing_lost(tmp_path):
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(SOAK_MINUTES=os.environ.get("SOAK_MINUTES", "1"), SOAK_PORT=str(_free_port()),
               SOAK_DIR=str(tmp_path / "soak"), SOAK_FINISH_SECONDS="240")  # fmt: skip
    result = subprocess.run(["bash", "scripts/soak.sh"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=1200, check=False)  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "[soak] PASS" in output
    assert "restarts during this run: web 0, worker 0, beat 0" in output
    soak_log = (tmp_path / "soak" / "soak.log").read_text()
    assert " 0 5xx" in soak_log and "FAIL" not in soak_log
