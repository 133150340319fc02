"""The import contracts in .importlinter hold, and break when a forbidden import is added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("core", "changes", "evaluations", "attestations", "reviews", "monitoring", "pcm")


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


@pytest.mark.parametrize(
    ("module", "forbidden_import", "contract"),
    [
        # the platform layer reaching up into a domain app
        ("core/ui.py", "import changes.models", "core imports no domain app"),
        # the evaluation API borrowing the workflow's API module instead of core.api
        (
            "evaluations/apis.py",
            "import changes.apis",
            "evaluations imports no other app's web layer",
        ),
        # the attestation records parsing ids with the workflow's filters (issue 11)
        (
            "attestations/records.py",
            "import changes.filters",
            "attestations imports no other app's web layer",
        ),
        # a sibling importing a sibling
        ("monitoring/services.py", "import reviews.models", "apps import downwards only"),
        # the workflow reaching up into a later app
        ("changes/services.py", "import reviews.models", "apps import downwards only"),
        # the CLI importing the server's code
        ("pcm/cli.py", "import core.roles", "pcm imports no app"),
    ],
)
def test_each_new_contract_breaks_on_its_forbidden_import(
    tmp_path, module, forbidden_import, contract
):
    # given: one forbidden import added to an otherwise clean copy
    _copy_packages(tmp_path)
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{forbidden_import}  # noqa\n")

    result = _lint(tmp_path)

    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert len(broken) >= 1 and any(contract in line for line in broken), result.stdout
