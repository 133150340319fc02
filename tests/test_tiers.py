"""The test tiers: ``make test-fast`` leaves out what tests/conftest.py marks by directory."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests import conftest

ROOT = Path(__file__).resolve().parent.parent


class _Item:
    def __init__(self, path: Path, marks=()):
        self.path = path
        self.marks = list(marks)

    def get_closest_marker(self, name):
        return next((m for m in self.marks if m == name), None)

    def add_marker(self, name):
        self.marks.append(name)


@pytest.mark.parametrize(("folder", "marker"), sorted(conftest.TIER_BY_DIRECTORY.items()))
def test_every_test_in_a_tier_folder_gets_its_marker(folder, marker):
    inside = _Item(ROOT / "tests" / folder / "test_x.py")
    outside = _Item(ROOT / "tests" / "changes" / "test_x.py")
    already = _Item(ROOT / "tests" / folder / "test_y.py", marks=[marker])

    conftest.pytest_collection_modifyitems(
        SimpleNamespace(rootpath=ROOT), [inside, outside, already]
    )

    assert inside.marks == [marker]
    assert outside.marks == []
    assert already.marks == [marker]


def test_the_fast_target_leaves_out_every_slow_tier_and_make_test_keeps_them():
    makefile = (ROOT / "Makefile").read_text()
    fast = re.search(r"^FAST_MARKERS := (.+)$", makefile, re.M).group(1)
    for tier in ("browser", "worker", "fuzz", "reliability", "heavy", "load"):
        assert f"not {tier}" in fast
    registered = (ROOT / "pyproject.toml").read_text()
    for tier in ("browser", "worker", "fuzz", "reliability", "heavy", "load"):
        assert f'"{tier}: ' in registered
    # make test runs the fast tiers, then the slow ones: together every marker combination
    # but load and soak (left to their own commands), each exactly once.
    slow = re.search(r"^SLOW_MARKERS := (.+)$", makefile, re.M).group(1)
    test_recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert '-m "$(FAST_MARKERS)"' in test_recipe and '-m "$(SLOW_MARKERS)"' in test_recipe
    tiers = ("browser", "worker", "fuzz", "reliability", "heavy", "load", "soak")
    for bits in itertools.product((False, True), repeat=len(tiers)):
        marks = dict(zip(tiers, bits, strict=True))
        runs = sum(bool(eval(expr, {}, marks)) for expr in (fast, slow))  # noqa: S307
        assert runs == (0 if marks["load"] or marks["soak"] else 1), marks
