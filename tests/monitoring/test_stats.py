"""The confidence sequence is anytime-valid and detects an 11-point faker in the stated
budget (docs/MONITORING.md: evaluated rate 0.90 on 500 samples, a look every 20 graded
decisions, 100 looks; the faker is detected within 600 decisions in >= 95% of runs)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluations.stats import wilson
from monitoring import stats

EVAL_RATE, EVAL_N = 0.90, 500
LOWER = wilson(int(EVAL_RATE * EVAL_N), EVAL_N)[0]
RUNS, LOOKS, PER_LOOK = 200, 100, 20
BUDGET = 600  # decisions (30 looks)


def simulate(rate: float, seed: int):
    rng = np.random.default_rng(seed)
    outcomes = rng.random((RUNS, LOOKS * PER_LOOK)) < rate
    s = outcomes.cumsum(axis=1)[:, PER_LOOK - 1 :: PER_LOOK]
    n = np.arange(1, LOOKS + 1) * PER_LOOK
    return stats.below_bound(s, n[None, :], LOWER, 0.05)


def test_compliant_stream_false_alarms_at_most_5_percent_over_100_looks():
    alarms = simulate(EVAL_RATE, seed=13).any(axis=1)
    assert alarms.mean() <= 0.05


def test_worst_case_compliant_stream_at_the_bound_itself():
    """A live rate exactly at the evaluated lower bound is the hardest compliant case."""
    alarms = simulate(LOWER, seed=14).any(axis=1)
    assert alarms.mean() <= 0.05


def test_faker_11_points_below_is_detected_within_budget():
    alarm = simulate(EVAL_RATE - 0.11, seed=15)
    detected_by_budget = alarm[:, : BUDGET // PER_LOOK].any(axis=1)
    assert detected_by_budget.mean() >= 0.95


def test_naive_repeated_wilson_checks_do_inflate_false_alarms():
    """Why the sequence: checking a fixed-n interval at every look alarms far more often."""
    rng = np.random.default_rng(16)
    alarms = 0
    for _ in range(RUNS):
        x = rng.random(LOOKS * PER_LOOK) < LOWER
        s = np.cumsum(x)[PER_LOOK - 1 :: PER_LOOK]
        n = np.arange(1, LOOKS + 1) * PER_LOOK
        alarms += any(wilson(int(k), int(m))[1] < LOWER for k, m in zip(s, n, strict=True))
    assert alarms / RUNS > 0.05


def test_coverage_of_the_two_sided_sequence_cross_checked_by_simulation():
    """The CS contains the true rate at every look, simultaneously, in >= 95% of runs."""
    rng = np.random.default_rng(17)
    for rate in (0.1, 0.5, 0.85):
        x = rng.random((RUNS, 1000)) < rate
        s = x.cumsum(axis=1)
        n = np.arange(1, 1001)
        a, b = stats.prior(rate)
        miss = stats.log_mixture(s, n[None, :], rate, a, b) >= math.log(20)
        assert miss.any(axis=1).mean() <= 0.05


@pytest.mark.parametrize(("s", "n"), [(0, 0), (0, 10), (10, 10), (45, 50), (800, 1000)])
def test_interval_ends_agree_with_the_vectorised_test(s, n):
    lower, upper = stats.beta_binomial_cs(s, n, 0.05, reference=0.8)
    assert 0 <= lower <= (s / n if n else 0.5) <= upper <= 1
    if n and upper < 0.999:
        # Just above the upper end the sequence excludes the rate, just below it does not.
        a, b = stats.prior(0.8)
        assert stats.log_mixture(s, n, min(upper + 1e-4, 1 - 1e-9), a, b) >= math.log(20)
        assert stats.log_mixture(s, n, upper - 1e-4, a, b) < math.log(20)


def test_sequence_is_wider_than_a_fixed_sample_interval():
    lo, hi = stats.beta_binomial_cs(450, 500, 0.05, reference=0.9)
    w_lo, w_hi = wilson(450, 500)
    assert lo < w_lo and hi > w_hi


@pytest.mark.parametrize(("s", "n"), [(0, 5), (3, 10), (90, 100), (9_000_000, 10_000_000), (7, 7)])
def test_the_scalar_root_finder_agrees_with_the_vectorised_formula(s, n):
    """The chart's fast path solves exactly ``log_mixture(...) = log(1/alpha)``."""
    lower, upper = stats.beta_binomial_cs(s, n, 0.05, reference=0.8)
    a, b = stats.prior(0.8)
    for end in (lower, upper):
        if 0.0 < end < 1.0:
            value = float(stats.log_mixture(s, n, end, a, b))
            assert value == pytest.approx(math.log(20), abs=1e-5)
    assert lower <= s / n <= upper
