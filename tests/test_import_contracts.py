"""The import contracts in .importlinter hold, and break when a forbidden import is added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("changes", "evaluations", "attestations")


def _copy_packages(dest: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            dest / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "migrations", "static*"),
        )
    shutil.copy(ROOT / ".importlinter", dest / ".importlinter")


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_contracts_hold_on_this_code(tmp_path):
    _copy_packages(tmp_path)

    result = _lint(tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_forbidden_import_breaks_a_contract(tmp_path):
    # given: the statistics engine importing the workflow app's web layer
    _copy_packages(tmp_path)
    stats = tmp_path / "evaluations" / "stats.py"
    stats.write_text(stats.read_text() + "\nimport changes.views  # noqa\n")

    result = _lint(tmp_path)

    assert result.returncode != 0
    assert "the gate, its statistics and the result contract import no app BROKEN" in (
        result.stdout
    )
