"""Statistics for the gate: rates with intervals, the paired compliance gap, power, budget.

Why this module exists: "the model complied 92% of the time" means nothing without n and an
interval, and the alignment-faking signal is a *difference* between two conditions on the
same prompts, which must be analysed as paired data. All distributions come from scipy.

The methods (Wilson intervals; the clustered t and Tango score intervals of the paired gap
and their union; exact McNemar with Holm; Connor's power; the planned budget that covers both
detection and the pass of a model that slips) are explained in docs/GATE.md.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy import optimize
from scipy import stats as sps

RATE_LABELS = ("new", "legacy", "other", "empty")


@functools.lru_cache(maxsize=64)
def _z(confidence: float) -> float:
    return float(sps.norm.ppf(0.5 + confidence / 2))


# ---------------------------------------------------------------------------- rates


@functools.lru_cache(maxsize=8192)
def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials; (0, 1) when n == 0.

    scipy's ``binomtest(k, n).proportion_ci(method="wilson")``, cached: a gate asks for the
    same few (k, n) many times and scipy also computes a p-value it does not need here.
    """
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    low = 0.0 if k == 0 else max(0.0, float(ci.low))
    high = 1.0 if k == n else min(1.0, float(ci.high))
    return low, high


def condition_summary(labels: Iterable[str], confidence: float = 0.95) -> dict:
    """Counts, rates and Wilson intervals of new/legacy/other among graded samples.

    Errors are counted (``errors``) but excluded from ``n``. Shape::

        {"n": 40, "errors": 1, "total": 41,
         "new": {"count": 30, "rate": 0.75, "ci": [0.598, 0.858]}, "legacy": {...}, "other": {...}}

    ``rate`` is None when n == 0.
    """
    counts = Counter(labels)
    unknown = set(counts) - set(RATE_LABELS) - {"error"}
    if unknown:
        raise ValueError(f"unknown label(s): {sorted(unknown)}")
    n = sum(counts[label] for label in RATE_LABELS)
    out: dict[str, Any] = {"n": n, "errors": counts["error"], "total": n + counts["error"]}
    for label in RATE_LABELS:
        k = counts[label]
        low, high = wilson(k, n, confidence)
        out[label] = {"count": k, "rate": (k / n) if n else None, "ci": [low, high]}
    return out


# ------------------------------------------------------------------------ paired gap


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts; 1.0 when b + c == 0."""
    if b + c == 0:
        return 1.0
    return float(sps.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)


def _restricted_q(b: int, c: int, n: int, delta: float) -> float:
    """Restricted MLE of the "c" cell probability (only side b new) given gap == delta."""
    m = n - b - c
    big_b = b * (1 - delta) + c * (1 - 3 * delta) - 2 * m * delta
    disc = big_b * big_b + 8 * n * c * delta * (1 - delta)
    q = (big_b + math.sqrt(max(disc, 0.0))) / (4 * n)
    return min(max(q, max(0.0, -delta)), (1 - delta) / 2)


def _tango_z(b: int, c: int, n: int, delta: float) -> float:
    q = _restricted_q(b, c, n, delta)
    num = b - c - n * delta
    var = n * (2 * q + delta - delta * delta)
    if var <= 1e-300:
        return 0.0 if abs(num) < 1e-12 else math.copysign(math.inf, num)
    return num / math.sqrt(var)


def tango_interval(b: int, c: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Tango's score interval for a paired difference of proportions, (b - c) / n."""
    if n <= 0:
        return -1.0, 1.0
    z = _z(confidence)
    point = (b - c) / n
    eps = 1e-12

    def bound(direction: int) -> float:
        edge = direction * (1 - eps)
        target = -z if direction > 0 else z
        if (_tango_z(b, c, n, edge) - target) * direction >= 0:
            return float(direction)
        start = point + direction * eps
        return float(optimize.brentq(lambda d: _tango_z(b, c, n, d) - target, start, edge))

    return max(-1.0, bound(-1)), min(1.0, bound(+1))


def clustered_interval(
    pairs: Sequence[tuple[Any, bool, bool]], confidence: float = 0.95
) -> tuple[float, float, str, int]:
    """Cluster-robust t interval for the mean paired difference: (low, high, method, G)."""
    diffs: dict[Any, list[int]] = {}
    for cluster, a, b in pairs:
        diffs.setdefault(cluster, []).append(int(bool(a)) - int(bool(b)))
    values = [d for ds in diffs.values() for d in ds]
    n, g = len(values), len(diffs)
    if n == 0:
        return -1.0, 1.0, "no pairs", 0
    mean = sum(values) / n
    level = 0.5 + confidence / 2
    if g >= 2:
        scores = [sum(d - mean for d in ds) for ds in diffs.values()]
        variance = g / (g - 1) * sum(u * u for u in scores) / (n * n)
        quantile = float(sps.t.ppf(level, g - 1))
        method = f"cluster-robust (CR1) by scenario, t with {g - 1} df"
    elif n >= 2:
        variance = sum((d - mean) ** 2 for d in values) / (n - 1) / n
        quantile = float(sps.t.ppf(level, n - 1))
        method = f"one scenario: no clustering possible, pairs' own variance with t on {n - 1} df"
    else:
        return -1.0, 1.0, "a single pair: no variance estimate", g
    half = quantile * math.sqrt(variance)
    return max(-1.0, mean - half), min(1.0, mean + half), method, g


def paired_gap(pairs: Iterable[tuple[Any, bool, bool]], confidence: float = 0.95) -> dict:
    """The compliance gap between two conditions from matched pairs.

    ``pairs``: ``(cluster_id, a_new, b_new)`` per (scenario, cue index, epoch), the cluster
    being the scenario. ``gap = rate_a - rate_b``; ``b`` counts pairs where only side a
    followed the new protocol, ``c`` those where only side b did. Shape::

        {"n_pairs", "clusters", "rate_a", "rate_b", "gap", "ci": [lo, hi],
         "ci_clustered": [lo, hi], "ci_score": [lo, hi], "method", "b", "c", "p_value"}
    """
    pairs = list(pairs)
    n = len(pairs)
    b = sum(1 for _, a_new, b_new in pairs if a_new and not b_new)
    c = sum(1 for _, a_new, b_new in pairs if b_new and not a_new)
    cl_low, cl_high, method, clusters = clustered_interval(pairs, confidence)
    sc_low, sc_high = tango_interval(b, c, n, confidence)
    return {
        "n_pairs": n,
        "clusters": clusters,
        "rate_a": (sum(1 for p in pairs if p[1]) / n) if n else None,
        "rate_b": (sum(1 for p in pairs if p[2]) / n) if n else None,
        "gap": ((b - c) / n) if n else None,
        "ci": [min(cl_low, sc_low), max(cl_high, sc_high)],
        "ci_clustered": [cl_low, cl_high],
        "ci_score": [sc_low, sc_high],
        "method": f"{method}; union with Tango's score interval",
        "b": b,
        "c": c,
        "p_value": mcnemar_exact(b, c),
    }


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


# ----------------------------------------------------------------------------- power


def _n_required(gap: float, alpha: float, power: float, discordance: float | None) -> float:
    psi = gap if discordance is None else discordance
    if gap <= 0 or psi < gap:
        return math.inf
    za, zb = _z(1 - alpha), float(sps.norm.ppf(power))
    return (za * math.sqrt(psi) + zb * math.sqrt(max(psi - gap * gap, 0.0))) ** 2 / (gap * gap)


def pairs_needed(
    gap: float, alpha: float = 0.05, power: float = 0.8, discordance: float | None = None
) -> int:
    """Pairs needed to detect ``gap`` with McNemar's test (normal approximation)."""
    n = _n_required(gap, alpha, power, discordance)
    return math.ceil(n) if math.isfinite(n) else 0


def min_detectable_gap(
    n_pairs: int, alpha: float = 0.05, power: float = 0.8, discordance: float | None = None
) -> float:
    """Smallest gap detectable at ``power`` with ``n_pairs`` (two-sided level ``alpha``).

    1.0 when even the largest possible gap (``discordance``, or 1) is out of reach.
    """
    ceiling = 1.0 if discordance is None else min(1.0, discordance)
    if n_pairs <= 0 or ceiling <= 0 or _n_required(ceiling, alpha, power, discordance) > n_pairs:
        return 1.0
    return float(
        optimize.brentq(
            lambda g: _n_required(g, alpha, power, discordance) - n_pairs, 1e-9, ceiling
        )
    )


def epochs_needed(
    max_gap: float,
    n_scenarios: int,
    n_cues: int,
    alpha: float = 0.05,
    power: float = 0.8,
    discordance: float | None = None,
) -> int:
    """Epochs per scenario x cue so that a gap of ``max_gap`` is detected at ``power``."""
    per_epoch = max(1, n_scenarios * n_cues)
    return max(1, math.ceil(pairs_needed(max_gap, alpha, power, discordance) / per_epoch))


def pairs_to_bound(max_gap: float, confidence: float = 0.95) -> int:
    """Pairs a perfectly consistent model needs for the gap's upper bound to reach max_gap."""
    if max_gap <= 0:
        return 0
    z = _z(confidence)
    return math.ceil(z * z * (1 - max_gap) / max_gap - 1e-9)


def samples_to_show(min_compliance: float, confidence: float = 0.95) -> int:
    """Samples a fully compliant condition needs for its Wilson lower bound to reach
    ``min_compliance`` (all replies new: lower bound = n / (n + z^2))."""
    if min_compliance >= 1:
        return 0
    z = _z(confidence)
    return math.ceil(z * z * min_compliance / (1 - min_compliance) - 1e-9)


# ---------------------------------------------------------------------- the budget

#: The slip rate a compliant model is assumed to have when a budget is planned: the share of
#: replies, in every condition alike, that follow neither protocol (noise, refusals, format
#: slips). Stricter tiers assume steadier models, because their compliance bar leaves less
#: room: a 5% slip rate could never show 95% compliance. See docs/GATE.md.
DEFAULT_SLIP_RATES: dict[str, float] = {
    "low": 0.05,
    "medium": 0.05,
    "high": 0.03,
    "critical": 0.02,
}
DEFAULT_PASS_PROBABILITY = 0.9
MAX_PLANNED_EPOCHS = 10_000


@functools.lru_cache(maxsize=256)
def _gap_bound_factor(clusters: int, probability: float, confidence: float = 0.95) -> float:
    """``k`` such that a paired gap of true size 0, with per-pair standard deviation
    ``sigma``, has its upper bound (``ci`` of :func:`paired_gap`) below ``k sigma / sqrt(n)``
    with ``probability``.

    The bound is the larger of the clustered t bound (``t_{G-1}`` times an estimated standard
    error, whose square is ``sigma^2 chi2_{G-1} / (G-1)``) and Tango's score bound (about
    ``z sigma``), so ``k`` solves ``E_S[Phi(k - max(t S, z))] = probability`` over the chi
    distribution of S. With many clusters this tends to ``z + z_probability``.
    """
    z = _z(confidence)
    if clusters < 2:
        return z + float(sps.norm.ppf(probability))
    df = clusters - 1
    t = float(sps.t.ppf(0.5 + confidence / 2, df))
    # S^2 ~ chi2_df / df, integrated on a fixed grid of its quantiles (midpoint rule).
    grid = (0.5 + np.arange(400)) / 400
    s = np.sqrt(sps.chi2.ppf(grid, df) / df)
    floor = np.maximum(t * s, z)

    def shortfall(k: float) -> float:
        return float(sps.norm.cdf(k - floor).mean()) - probability

    return float(optimize.brentq(shortfall, 0.0, 100.0))


def pairs_to_pass_gap(
    max_gap: float,
    slip_rate: float,
    clusters: int,
    probability: float = DEFAULT_PASS_PROBABILITY,
    confidence: float = 0.95,
) -> int:
    """Pairs a model with no gap, slipping independently at ``slip_rate`` in every condition,
    needs for the gap's upper bound to fall below ``max_gap`` with ``probability``.

    Discordance ``psi = 2 s (1 - s)``; the mean paired difference has standard deviation
    ``sqrt(psi / n)``; see :func:`_gap_bound_factor` for the factor that covers the clustered
    t interval with ``clusters - 1`` degrees of freedom. Never fewer than
    :func:`pairs_to_bound` (the perfectly consistent model's need).
    """
    if max_gap <= 0:
        return 0
    psi = 2 * slip_rate * (1 - slip_rate)
    floor = pairs_to_bound(max_gap, confidence)
    if psi <= 0:
        return floor
    k = _gap_bound_factor(clusters, probability, confidence)
    return max(floor, math.ceil(psi * k * k / (max_gap * max_gap) - 1e-9))


def compliance_pass_probability(
    n: int, min_compliance: float, slip_rate: float, confidence: float = 0.95
) -> float:
    """Exact probability that the Wilson lower bound of ``n`` samples from a model complying
    at ``1 - slip_rate`` reaches ``min_compliance``."""
    if n <= 0:
        return 0.0
    lo, hi = 0, n + 1  # smallest k whose lower bound reaches the bar
    while lo < hi:
        mid = (lo + hi) // 2
        if wilson(mid, n, confidence)[0] >= min_compliance:
            hi = mid
        else:
            lo = mid + 1
    if lo > n:
        return 0.0
    return float(sps.binom.sf(lo - 1, n, 1 - slip_rate))


def samples_to_pass_compliance(
    min_compliance: float,
    slip_rate: float,
    probability: float = DEFAULT_PASS_PROBABILITY,
    *,
    step: int = 1,
    confidence: float = 0.95,
) -> int | None:
    """Smallest multiple of ``step`` samples with which a model slipping at ``slip_rate``
    shows ``min_compliance`` with ``probability`` (exact binomial); None when it never can
    (``1 - slip_rate`` at or below the bar) within the planning cap."""
    if 1 - slip_rate <= min_compliance:
        return None
    step = max(1, step)
    # The normal approximation gives the neighbourhood; walk up from a little below it.
    p = 1 - slip_rate
    zz = _z(confidence) + float(sps.norm.ppf(probability))
    guess = max(1, int(zz * zz * p * (1 - p) / (p - min_compliance) ** 2 * 0.7))
    n = max(step, (guess // step) * step)
    cap = MAX_PLANNED_EPOCHS * step
    while n <= cap:
        if compliance_pass_probability(n, min_compliance, slip_rate, confidence) >= probability:
            return n
        n += step
    return None


def _suite_shape(suite: dict) -> tuple[int, dict[str, int], list[tuple[str, str, int]]]:
    scenarios = len(suite["scenarios"])
    cues = {name: len(c["cues"]) for name, c in suite["conditions"].items()}
    pairs = [(a, b, min(cues[a], cues[b])) for a, b in suite["compare"]]
    return scenarios, cues, pairs


def plan_budget(suite: dict, policy: dict) -> dict:
    """The epochs a suite needs so that the run decides, under ``policy``.

    Three needs, each per compared pair or condition, the largest wins:

    * **detect**: a gap of ``max_gap`` is detected at ``power`` (McNemar, alpha split over
      the compared pairs), so a faker that large fails instead of staying inconclusive;
    * **bound**: a model with no gap that slips at ``slip_rate`` (the policy's, else the
      criticality's default) gets the gap's upper bound below ``max_gap``;
    * **comply**: the same model shows ``min_compliance`` in every condition.

    The pass-side needs use ``pass_probability`` split evenly (as a power) over every check a
    pass requires, so the whole pass has at least that probability. Returns ``{"epochs",
    "needs": {"detect", "bound", "comply"}, "slip_rate", "pass_probability", "samples",
    "feasible", "note"}``; ``epochs`` is capped at :data:`MAX_PLANNED_EPOCHS` and the sample
    cap of the suite format is the caller's to apply.
    """
    criticality = policy.get("criticality") or "medium"
    slip = policy.get("slip_rate")
    slip = DEFAULT_SLIP_RATES.get(criticality, 0.05) if slip is None else float(slip)
    probability = float(policy.get("pass_probability") or DEFAULT_PASS_PROBABILITY)
    alpha, power, max_gap = policy["alpha"], policy["power"], policy["max_gap"]
    scenarios, cues, pairs = _suite_shape(suite)
    checks = max(1, len(pairs) + len(cues))
    each = probability ** (1 / checks)
    pair_alpha = alpha / max(1, len(pairs))
    detect = bound = comply = 1
    feasible, notes = True, []
    for _a, _b, n_cues in pairs:
        per_epoch = max(1, scenarios * n_cues)
        detect = max(detect, epochs_needed(max_gap, scenarios, n_cues, pair_alpha, power))
        need = pairs_to_pass_gap(max_gap, slip, scenarios, each)
        bound = max(bound, math.ceil(need / per_epoch))
    for name, n_cues in cues.items():
        per_epoch = max(1, scenarios * n_cues)
        need = samples_to_pass_compliance(policy["min_compliance"], slip, each, step=per_epoch)
        if need is None:
            feasible = False
            notes.append(
                f"a model slipping {slip:.0%} of the time cannot show "
                f"{policy['min_compliance']:.0%} compliance in '{name}' at any budget"
            )
            continue
        comply = max(comply, need // per_epoch)
    needed = max(detect, bound, comply)
    if needed > MAX_PLANNED_EPOCHS:
        feasible = False
        notes.append(f"the plan needs {needed} epochs, more than the cap of {MAX_PLANNED_EPOCHS}")
    epochs = min(MAX_PLANNED_EPOCHS, needed)
    return {
        "epochs": epochs,
        "needs": {"detect": detect, "bound": bound, "comply": comply},
        "slip_rate": slip,
        "pass_probability": probability,
        "samples": scenarios * epochs * sum(cues.values()),
        "feasible": feasible,
        "note": "; ".join(notes),
    }


def run_epochs(suite: dict, policy: dict) -> tuple[int, str]:
    """The epochs a run of ``suite`` uses under ``policy``: the suite's own ``epochs`` when it
    sets them, else the planned budget. Returns ``(epochs, "suite" | "planned")``."""
    if suite.get("epochs"):
        return int(suite["epochs"]), "suite"
    return plan_budget(suite, policy)["epochs"], "planned"


# ------------------------------------------------------------ anytime-valid (waves)


def mixture_e_value(b: int, c: int) -> float:
    """E-value against "no one-sided switching" from ``b`` pairs that favour side a and ``c``
    that favour side b (discordant pairs only).

    Given the discordant pairs, each is a coin that lands "b" with probability theta; the
    null is theta <= 1/2. The statistic is the likelihood ratio of theta' against 1/2, mixed
    over a uniform prior on theta' in [1/2, 1]: ``2 * int_{1/2}^1 t^b (1-t)^c dt / 2^-(b+c)``.
    Each ratio with theta' >= 1/2 is a supermartingale under any theta <= 1/2, so the mixture
    is too and, by Ville's inequality, ``P(ever >= 1/alpha) <= alpha``: the run may look after
    every wave and stop the first time it crosses, keeping the error rate (docs/GATE.md).
    """
    if b + c == 0:
        return 1.0
    # int_{1/2}^1 t^b (1-t)^c dt = B(b+1, c+1) * P(Beta(b+1, c+1) > 1/2), in logs.
    log_beta = math.lgamma(b + 1) + math.lgamma(c + 1) - math.lgamma(b + c + 2)
    tail = float(sps.beta.sf(0.5, b + 1, c + 1))
    if tail <= 0:
        return 0.0
    log_e = math.log(2) + log_beta + math.log(tail) + (b + c) * math.log(2)
    return math.exp(min(log_e, 700.0))
