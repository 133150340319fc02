"""What a newcomer's console shows: no banner repeated by every process, no duplicate lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_management_command_prints_no_axes_banner():
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="config.settings_test")
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "AXES" not in result.stdout + result.stderr
