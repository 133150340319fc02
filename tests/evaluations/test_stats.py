"""Statistics against hand-computed values and scipy."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from scipy import optimize
from scipy.stats import binomtest

from evaluations import gates
from evaluations import stats as st
from evaluations.suite_schema import normalise_suite

Z = 1.959963984540054

# ----------------------------------------------------------------------------- Wilson


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        # The textbook example: 81 of 263 -> (0.2553, 0.3662).
        (81, 263, 0.2553, 0.3662),
        # k = 5, n = 10 by hand: p = .5, denom = 1 + z^2/n = 1.38415,
        # half = z * sqrt(.025 + z^2/400) / denom = 1.96 * 0.186023 / 1.38415 = 0.26341.
        (5, 10, 0.2366, 0.7634),
        # k = 0: upper = z^2 / (n + z^2) = 3.8415 / 13.8415 = 0.2775.
        (0, 10, 0.0, 0.2775),
        # k = n: lower = n / (n + z^2) = 10 / 13.8415 = 0.7225.
        (10, 10, 0.7225, 1.0),
        (1, 1, 0.2065, 1.0),
    ],
)
def test_wilson_known_values(k, n, low, high):
    got = st.wilson(k, n)

    assert got[0] == pytest.approx(low, abs=5e-5)
    assert got[1] == pytest.approx(high, abs=5e-5)


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        # Newcombe RG (1998), "Two-sided confidence intervals for the single proportion:
        # comparison of seven methods", Statistics in Medicine 17:857-872, Table I, method 3
        # (Wilson score interval without continuity correction), printed to 4 decimals.
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0000, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_matches_newcombe_1998_table_i(k, n, low, high):
    got = st.wilson(k, n)

    assert round(got[0], 4) == low
    assert round(got[1], 4) == high


def _closed_form_wilson(k: int, n: int) -> tuple[float, float]:
    """The closed-form interval the engine used before it asked scipy (kept as the oracle that
    the switch changed no stored result beyond the last bits of a double)."""
    p = k / n
    denom = 1 + Z * Z / n
    centre = (p + Z * Z / (2 * n)) / denom
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / denom
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def test_wilson_from_scipy_equals_the_former_closed_form():
    # every (k, n) up to n = 40, then a fixed sample of larger runs (scipy takes ~1 ms a call)
    rng = random.Random(1998)
    small = [(k, n) for n in range(1, 41) for k in range(n + 1)]
    large = [(k, n) for n in rng.sample(range(41, 5000), 150) for k in (0, 1, rng.randint(0, n), n)]
    for k, n in small + large:
        got, old = st.wilson(k, n), _closed_form_wilson(k, n)
        assert got[0] == pytest.approx(old[0], abs=1e-14), (k, n)
        assert got[1] == pytest.approx(old[1], abs=1e-14), (k, n)
    assert st.wilson(0, 20)[0] == 0.0 and st.wilson(20, 20)[1] == 1.0


def test_wilson_edge_cases():
    assert st.wilson(0, 0) == (0.0, 1.0)
    low99, high99 = st.wilson(81, 263, confidence=0.99)
    assert low99 < 0.2553 and high99 > 0.3662
    with pytest.raises(ValueError):
        st.wilson(5, 4)


def test_condition_summary_excludes_errors_from_n():
    labels = ["new"] * 30 + ["legacy"] * 8 + ["other"] * 2 + ["error"] * 3

    summary = st.condition_summary(labels)

    assert summary["n"] == 40 and summary["errors"] == 3 and summary["total"] == 43
    assert summary["new"]["count"] == 30
    assert summary["new"]["rate"] == 0.75
    assert summary["new"]["ci"] == list(st.wilson(30, 40))
    assert summary["legacy"]["rate"] == 0.2
    assert summary["other"]["count"] == 2
    json.dumps(summary, allow_nan=False)


def test_condition_summary_of_nothing():
    summary = st.condition_summary(["error", "error"])

    assert summary["n"] == 0 and summary["errors"] == 2
    assert summary["new"]["rate"] is None
    assert summary["new"]["ci"] == [0.0, 1.0]
    with pytest.raises(ValueError, match="unknown label"):
        st.condition_summary(["maybe"])


# ---------------------------------------------------------------------------- McNemar


@pytest.mark.parametrize(("b", "c"), [(10, 0), (3, 1), (7, 7), (12, 3), (0, 5), (40, 31)])
def test_mcnemar_exact_matches_scipy_binomtest(b, c):
    assert st.mcnemar_exact(b, c) == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-12)


def test_mcnemar_by_hand():
    # b = 10, c = 0: 2 * 0.5^10 = 0.001953125.
    assert st.mcnemar_exact(10, 0) == pytest.approx(0.001953125)
    # b = 3, c = 1: 2 * (C(4,0) + C(4,1)) / 2^4 = 10 / 16.
    assert st.mcnemar_exact(3, 1) == pytest.approx(0.625)
    assert st.mcnemar_exact(0, 0) == 1.0


def test_mcnemar_matches_a_published_example():
    # Fagerland MW, Lydersen S, Laake P (2013), "The McNemar test for binary matched-pairs
    # data: mid-p and asymptotic are better than exact conditional", BMC Medical Research
    # Methodology 13:91: airway hyper-responsiveness before/after stem cell transplantation
    # (Bentur et al. 2009), discordant pairs 1 and 7, exact conditional p = 0.070
    # (= 2 * (1 + 8) / 2^8 = 0.0703125).
    assert round(st.mcnemar_exact(1, 7), 3) == 0.070
    assert st.mcnemar_exact(7, 1) == pytest.approx(0.0703125, abs=1e-12)


# ----------------------------------------------------------------- clustered interval

# Three scenarios (clusters), d = a_new - b_new per pair:
#   s1: 1, 1, 0, 0     s2: 0, 0, 0, 0     s3: 1, 0, 0, -1
# n = 12, mean = 2/12 = 1/6.
# Cluster score u_g = sum(d - mean): s1: 2 - 4/6 = 4/3; s2: -4/6 = -2/3; s3: 0 - 4/6 = -2/3.
# sum u^2 = 16/9 + 4/9 + 4/9 = 8/3.  CR1 variance = G/(G-1) * sum u^2 / n^2
#   = 3/2 * (8/3) / 144 = 1/36, so SE = 1/6.
# t(0.975, df = G - 1 = 2) = 4.302653; interval = 1/6 +- 4.302653/6 = [-0.55044, 0.88378].
KNOWN_PAIRS = [
    ("s1", True, False),
    ("s1", True, False),
    ("s1", False, False),
    ("s1", True, True),
    ("s2", False, False),
    ("s2", True, True),
    ("s2", True, True),
    ("s2", False, False),
    ("s3", True, False),
    ("s3", False, False),
    ("s3", True, True),
    ("s3", False, True),
]


def test_clustered_interval_on_a_hand_computed_dataset():
    low, high, method, clusters = st.clustered_interval(KNOWN_PAIRS)

    assert clusters == 3
    assert low == pytest.approx(1 / 6 - 4.302653 / 6, abs=1e-5)
    assert high == pytest.approx(1 / 6 + 4.302653 / 6, abs=1e-5)
    assert "t with 2 df" in method


def test_paired_gap_on_the_known_dataset():
    result = st.paired_gap(KNOWN_PAIRS)

    assert result["n_pairs"] == 12
    assert result["gap"] == pytest.approx(1 / 6)
    assert result["b"] == 3 and result["c"] == 1
    assert result["rate_a"] == pytest.approx(7 / 12)
    assert result["rate_b"] == pytest.approx(5 / 12)
    assert result["p_value"] == pytest.approx(0.625)
    assert result["ci_clustered"] == pytest.approx([-0.55044, 0.88378], abs=1e-5)
    # The reported interval is the union of the clustered and the score interval.
    assert result["ci"][0] == min(result["ci_clustered"][0], result["ci_score"][0])
    assert result["ci"][1] == max(result["ci_clustered"][1], result["ci_score"][1])
    json.dumps(result, allow_nan=False)


def test_one_cluster_falls_back_to_the_pairs_variance_and_says_so():
    # d = 1, 1, 0, 0: mean 0.5, s^2 = (4 * 0.25) / 3 = 1/3, SE = sqrt(1/12) = 0.288675;
    # t(0.975, 3) = 3.182446 -> half width 0.918693, clipped to [-0.418693, 1].
    pairs = [("only", True, False)] * 2 + [("only", True, True)] * 2

    low, high, method, clusters = st.clustered_interval(pairs)

    assert clusters == 1
    assert low == pytest.approx(0.5 - 0.918693, abs=1e-5)
    assert high == 1.0
    assert method.startswith("one scenario")


def test_all_concordant_pairs_do_not_claim_certainty():
    pairs = [(f"s{i % 4}", True, True) for i in range(40)]

    result = st.paired_gap(pairs)

    assert result["ci_clustered"] == [0.0, 0.0]  # the sandwich collapses...
    bound = Z * Z / (40 + Z * Z)  # ...the score interval does not: z^2 / (n + z^2)
    assert result["ci"] == pytest.approx([-bound, bound], abs=1e-6)
    assert result["p_value"] == 1.0


def test_no_pairs():
    result = st.paired_gap([])

    assert result["gap"] is None and result["ci"] == [-1.0, 1.0] and result["p_value"] == 1.0


# ------------------------------------------------------------------ Tango score interval


def _brute_restricted_q(b, c, n, delta):
    m = n - b - c

    def nll(q):
        terms = [(b, q + delta), (c, q), (m, 1 - 2 * q - delta)]
        return -sum(k * math.log(p) for k, p in terms if k)

    low, high = max(0.0, -delta) + 1e-12, (1 - delta) / 2 - 1e-12
    return optimize.minimize_scalar(nll, bounds=(low, high), method="bounded").x


def test_restricted_mle_matches_brute_force():
    rng = random.Random(7)
    for _ in range(200):
        n = rng.randint(2, 60)
        b = rng.randint(0, n)
        c = rng.randint(0, n - b)
        delta = rng.uniform(-0.95, 0.95)
        q, brute = st._restricted_q(b, c, n, delta), _brute_restricted_q(b, c, n, delta)
        assert q == pytest.approx(brute, abs=1e-4), (b, c, n, delta)


@pytest.mark.parametrize(("b", "c", "n"), [(5, 2, 40), (12, 3, 60), (0, 4, 20), (9, 0, 30)])
def test_score_interval_endpoints_solve_the_score_equation(b, c, n):
    low, high = st.tango_interval(b, c, n)

    assert low < (b - c) / n < high
    if low > -1:
        assert st._tango_z(b, c, n, low) == pytest.approx(Z, abs=1e-6)
    if high < 1:
        assert st._tango_z(b, c, n, high) == pytest.approx(-Z, abs=1e-6)


def test_score_interval_with_all_pairs_discordant_one_way():
    # b = n: the score statistic is sqrt(n (1 - d) / (1 + d)); = z at d = (n - z^2)/(n + z^2).
    low, high = st.tango_interval(10, 0, 10)

    assert high == 1.0
    assert low == pytest.approx((10 - Z * Z) / (10 + Z * Z), abs=1e-6)


# ----------------------------------------------------------------------------- Holm


def test_holm_by_hand():
    # sorted: .01 * 3 = .03; .03 * 2 = .06; .04 * 1 = .04 -> monotone .06.
    assert st.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert st.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert st.holm([0.002]) == [0.002]
    assert st.holm([]) == []


# ----------------------------------------------------------------------------- power


def test_pairs_needed_by_hand():
    # gap 0.05, discordance = gap: n = (1.95996 sqrt(.05) + 0.841621 sqrt(.05 - .0025))^2 / .0025
    #   = (0.438261 + 0.183433)^2 / 0.0025 = 154.6 -> 155.
    assert st.pairs_needed(0.05) == 155
    # With 20% discordance: (1.95996 * .447214 + .841621 * .444410)^2 / .0025
    #   = (0.876522 + 0.374025)^2 / 0.0025 = 625.5 -> 626.
    assert st.pairs_needed(0.05, discordance=0.2) == 626


def test_min_detectable_gap_inverts_pairs_needed():
    for n in (10, 40, 155, 1000):
        gap = st.min_detectable_gap(n)
        assert st.pairs_needed(gap) == pytest.approx(n, abs=1)
    assert st.min_detectable_gap(155) == pytest.approx(0.05, abs=5e-4)
    assert st.min_detectable_gap(0) == 1.0
    assert st.min_detectable_gap(2) == 1.0  # even a 100-point gap needs 4 pairs
    assert st.min_detectable_gap(100, discordance=0.3) > st.min_detectable_gap(100)


def test_epochs_needed_and_bounds():
    # 155 pairs over 3 scenarios x 2 cues = 6 pairs per epoch -> 26 epochs.
    assert st.epochs_needed(0.05, 3, 2) == 26
    # A consistent model's upper bound z^2/(n+z^2) <= .05 needs n >= z^2 * .95 / .05 = 72.99.
    assert st.pairs_to_bound(0.05) == 73
    assert Z * Z / (73 + Z * Z) <= 0.05 < Z * Z / (72 + Z * Z)
    # All-new lower bound n/(n+z^2) >= .9 needs n >= 9 z^2 = 34.57.
    assert st.samples_to_show(0.9) == 35


def test_plan_power_before_a_run():
    suite = normalise_suite(
        {
            "name": "p",
            "epochs": 5,
            "conditions": {
                "monitored": {"cues": ["a", "b"]},
                "unmonitored": {"cues": ["c", "d"]},
            },
            "scenarios": [
                {
                    "id": f"s{i}",
                    "messages": [{"role": "user", "content": "q"}],
                    "graders": {"new": {"contains": "x"}, "legacy": {"contains": "y"}},
                }
                for i in range(3)
            ],
            "gate": {"max_gap": 0.05},
        }
    )

    plan = gates.plan_power(suite, criticality="high")

    pair = plan["pairs"][0]
    assert plan["max_gap"] == 0.05 and plan["min_compliance"] == 0.9
    assert plan["samples_total"] == 3 * 5 * 4
    assert pair["n_pairs"] == 30
    assert pair["epochs_to_detect"] == 26
    assert pair["epochs_to_bound"] == 13  # ceil(73 / 6)
    assert pair["min_detectable_gap"] == pytest.approx(st.min_detectable_gap(30))
    assert plan["conditions"]["monitored"] == {
        "samples": 30,
        "samples_to_show_compliance": 35,
        "enough": False,
    }
    assert plan["adequate"] is False
    assert "normal approximation" in plan["assumptions"]
    json.dumps(plan, allow_nan=False)


# ------------------------------------------------------------------------ properties


@given(hs.integers(1, 500).flatmap(lambda n: hs.tuples(hs.integers(0, n), hs.just(n))))
def test_wilson_contains_the_estimate(kn):
    k, n = kn
    low, high = st.wilson(k, n)

    assert 0.0 <= low <= k / n <= high <= 1.0


@settings(max_examples=60, deadline=None)
@given(
    hs.lists(
        hs.tuples(hs.sampled_from(["s1", "s2", "s3", "s4"]), hs.booleans(), hs.booleans()),
        min_size=1,
        max_size=80,
    )
)
def test_paired_gap_interval_contains_the_gap(pairs):
    result = st.paired_gap(pairs)

    low, high = result["ci"]
    assert -1.0 <= low <= result["gap"] + 1e-9
    assert result["gap"] - 1e-9 <= high <= 1.0
    assert 0.0 <= result["p_value"] <= 1.0
    assert result["b"] + result["c"] <= result["n_pairs"] == len(pairs)


@given(hs.lists(hs.floats(0, 1), max_size=12))
def test_holm_is_monotone_and_conservative(pvalues):
    adjusted = st.holm(pvalues)

    assert all(p <= a <= 1.0 for p, a in zip(pvalues, adjusted, strict=True))
    ranked = sorted(zip(pvalues, adjusted, strict=True))
    assert all(a1 <= a2 for (_, a1), (_, a2) in zip(ranked, ranked[1:], strict=False))


# ---------------------------------------------------------------------- the budget


def budget_suite(*, scenarios=10, cues=2, epochs=None, gate=None) -> dict:
    doc = {
        "name": "budget",
        "conditions": {
            "monitored": {"cues": [f"logged {i}" for i in range(cues)]},
            "unmonitored": {"cues": [f"live {i}" for i in range(cues)]},
        },
        "scenarios": [
            {
                "id": f"s{i}",
                "messages": [{"role": "user", "content": "q"}],
                "graders": {"new": {"contains": "x"}, "legacy": {"contains": "y"}},
            }
            for i in range(scenarios)
        ],
        "gate": gate or {},
    }
    if epochs:
        doc["epochs"] = epochs
    return normalise_suite(doc)


def test_the_gap_bound_factor_tends_to_z_plus_z_power_with_many_clusters():
    many = st._gap_bound_factor(100_000, 0.9)
    few = st._gap_bound_factor(5, 0.9)

    assert many == pytest.approx(Z + 1.2815515655446004, abs=0.01)
    assert few > st._gap_bound_factor(10, 0.9) > st._gap_bound_factor(30, 0.9) > many


def test_pairs_to_pass_gap_is_checked_by_simulating_the_gate_interval():
    # given: 10 scenarios, a model with no gap slipping 5% of the time in each condition
    clusters, slip, max_gap, probability = 10, 0.05, 0.08, 0.9
    n = st.pairs_to_pass_gap(max_gap, slip, clusters, probability)
    per_cluster = -(-n // clusters)
    rng = random.Random(11)
    passes = 0
    runs = 300
    # when: the gate's own interval is computed on simulated pairs
    for _ in range(runs):
        pairs = [
            (g, rng.random() >= slip, rng.random() >= slip)
            for g in range(clusters)
            for _ in range(per_cluster)
        ]
        passes += st.paired_gap(pairs)["ci"][1] <= max_gap
    # then: the planned pairs give at least the planned pass probability (within noise)
    assert passes / runs >= probability - 0.04
    # and the plan is not wildly generous: a third of the pairs would not do
    assert st.pairs_to_pass_gap(max_gap, slip, clusters, 0.5) < n


def test_a_consistent_model_needs_only_the_bound():
    assert st.pairs_to_pass_gap(0.05, 0.0, 10) == st.pairs_to_bound(0.05) == 73


def test_compliance_pass_probability_is_exact():
    # 50 samples at 95%: the Wilson bound reaches 85% from k = 48 on
    assert st.wilson(48, 50)[0] >= 0.85 > st.wilson(47, 50)[0]
    expected = binom_sf(47, 50, 0.95)
    assert st.compliance_pass_probability(50, 0.85, 0.05) == pytest.approx(expected)
    assert st.compliance_pass_probability(0, 0.85, 0.05) == 0.0


def binom_sf(k, n, p):
    return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k + 1, n + 1))


def test_samples_to_pass_compliance_is_the_smallest_step_that_does():
    n = st.samples_to_pass_compliance(0.85, 0.05, 0.9, step=20)

    assert n % 20 == 0
    assert st.compliance_pass_probability(n, 0.85, 0.05) >= 0.9
    assert st.compliance_pass_probability(n - 20, 0.85, 0.05) < 0.9
    # a model slipping as often as the bar allows can never show it
    assert st.samples_to_pass_compliance(0.95, 0.05) is None


def test_plan_budget_covers_detection_the_bound_and_compliance():
    from evaluations.gates import policy_for

    suite = budget_suite()
    medium = st.plan_budget(suite, policy_for("medium", {}))
    high = st.plan_budget(suite, policy_for("high", {}))
    steady = st.plan_budget(suite, policy_for("medium", {"slip_rate": 0.0}))

    assert medium["slip_rate"] == 0.05 and high["slip_rate"] == 0.03
    assert medium["epochs"] == max(medium["needs"].values())
    assert high["epochs"] > medium["epochs"]
    # a model assumed perfectly steady needs only the consistent model's bound and detection
    assert steady["epochs"] < medium["epochs"]
    assert medium["samples"] == 10 * 4 * medium["epochs"]
    assert medium["feasible"] is True


def test_plan_budget_says_when_no_budget_can_show_compliance():
    from evaluations.gates import policy_for

    plan = st.plan_budget(budget_suite(), policy_for("critical", {"slip_rate": 0.05}))

    assert plan["feasible"] is False
    assert "cannot show 95% compliance" in plan["note"]


def test_plan_power_reports_the_planned_epochs_for_a_suite_without_epochs():
    plan = gates.plan_power(budget_suite(), criticality="medium")

    assert plan["epochs_source"] == "planned"
    assert plan["epochs"] == plan["budget"]["epochs"]
    assert plan["adequate"] is True
    fixed = gates.plan_power(budget_suite(epochs=2), criticality="medium")
    assert fixed["epochs"] == 2 and fixed["epochs_source"] == "suite"
    assert fixed["adequate"] is False
