"""The evaluation-result contract: what the gate writes to ``EvaluationRun.stats``.

``evaluations.gates.evaluate`` produces a :class:`Result` (plain JSON, ``version`` =
:data:`RESULT_VERSION`); every reader (API serializers, run pages, the attestation document)
gets it through ``evaluations.selectors.run_result`` and may index it without defensive
``.get``: :func:`load` is the one place that fills what older records lack. The meaning of each
number is in docs/GATE.md; the contract itself in docs/ARCHITECTURE.md.
"""

from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

#: Bump when a key changes meaning or disappears (adding a key is not a new version); teach
#: :func:`load` to read the old version.
RESULT_VERSION = 1

RATE_LABELS = ("new", "legacy", "other", "empty")
MISSING_KINDS = ("error", "timed_out", "oversize", "empty")


class Rate(TypedDict):
    count: int
    rate: float | None  # None when n == 0
    ci: list[float]  # Wilson [low, high]; [0, 1] when n == 0


class AFRate(Rate):
    n: int
    estimate: float | None  # weighted by the judge's sample (= rate without sampling)


class Missing(TypedDict):
    count: int
    total: int
    rate: float | None
    kinds: dict[str, int]  # every MISSING_KINDS entry


class ConditionResult(TypedDict):
    n: int  # graded samples (errors excluded)
    errors: int
    total: int
    new: Rate
    legacy: Rate
    other: Rate
    empty: Rate
    af_reasoning: AFRate
    missing: Missing


class Discordant(TypedDict):
    scenario_id: str
    cue_index: int
    epoch: int
    a: str  # the label under the pair's first condition
    b: str


class GapResult(TypedDict):
    pair: list[str]
    n_pairs: int
    clusters: int
    rate_a: float | None
    rate_b: float | None
    gap: float | None
    ci: list[float]  # union of the clustered and score intervals
    ci_clustered: list[float]
    ci_score: list[float]  # Tango
    method: str
    b: int  # pairs new only under pair[0]
    c: int  # pairs new only under pair[1]
    p_value: float  # exact McNemar
    p_holm: float
    discordant: list[Discordant]
    min_detectable_gap: float
    epochs_to_detect: int
    epochs_to_bound: int


class MissingnessResult(TypedDict):
    pair: list[str]
    a_missing: int
    a_total: int
    b_missing: int
    b_total: int
    a_rate: float | None
    b_rate: float | None
    n_pairs: int
    b: int  # pairs missing only under pair[0]
    c: int
    p_value: float
    p_holm: float


class Check(TypedDict):
    check: str
    subject: str
    outcome: str  # pass / fail / inconclusive
    message: str


class WorstGap(TypedDict):
    pair: list[str]
    gap: float | None
    ci: list[float]
    p_value: float


class WorstCase(TypedDict):
    missing: int
    verdict: str
    checks: list[Check]
    gaps: NotRequired[list[WorstGap]]  # absent when nothing was missing


class CriticalLegacy(TypedDict):
    scenario_id: str
    condition: str
    count: int
    n: int


class ReasoningFlags(TypedDict):
    max: float  # the policy's max_flagged_reasoning
    conditions: list[str]  # conditions flagged above it
    needs_acknowledgement: bool
    messages: list[str]


class Samples(TypedDict):
    total: int
    graded: int
    errors: int
    error_rate: float


class Result(TypedDict):
    version: int
    verdict: str
    policy: dict[str, Any]  # gates.policy_for (+ with_budget), with the defaults filled in
    conditions: dict[str, ConditionResult]  # in suite order
    gaps: list[GapResult]  # one per suite ``compare`` pair
    missingness: list[MissingnessResult]
    worst_case: WorstCase
    critical_legacy: list[CriticalLegacy]
    scenarios: dict[str, dict[str, dict[str, int]]]  # scenario -> condition -> counts
    samples: Samples
    checks: list[Check]
    warnings: list[str]
    sequential: NotRequired[dict[str, Any]]  # runs judged in waves
    reasoning_flags: NotRequired[ReasoningFlags]  # only when max_flagged_reasoning is set
    judge_calibration: NotRequired[dict[str, Any]]  # added by the service, not the gate


def _rate(cell: dict | None) -> Rate:
    cell = cell or {}
    return {
        "count": int(cell.get("count") or 0),
        "rate": cell.get("rate"),
        "ci": list(cell.get("ci") or [0.0, 1.0]),
    }


def _condition(raw: dict) -> ConditionResult:
    n, errors = int(raw.get("n") or 0), int(raw.get("errors") or 0)
    total = int(raw.get("total", n + errors))
    af = raw.get("af_reasoning") or {}
    missing = raw.get("missing") or {}
    kinds = {kind: int((missing.get("kinds") or {}).get(kind, 0)) for kind in MISSING_KINDS}
    if not missing:
        kinds["error"] = errors
    return {
        "n": n,
        "errors": errors,
        "total": total,
        **{label: _rate(raw.get(label)) for label in RATE_LABELS},
        "af_reasoning": {
            **_rate(af),
            "n": int(af.get("n", n) or 0),
            "estimate": af.get("estimate", af.get("rate")),
        },
        "missing": {
            "count": int(missing.get("count", errors)),
            "total": int(missing.get("total", total)),
            "rate": missing.get("rate", errors / total if total else None),
            "kinds": kinds,
        },
    }  # type: ignore[typeddict-item]


def _gap(raw: dict) -> GapResult:
    return {
        "pair": [str(p) for p in raw.get("pair") or []],
        "n_pairs": int(raw.get("n_pairs") or 0),
        "clusters": int(raw.get("clusters") or 0),
        "rate_a": raw.get("rate_a"),
        "rate_b": raw.get("rate_b"),
        "gap": raw.get("gap"),
        "ci": list(raw.get("ci") or [-1.0, 1.0]),
        "ci_clustered": list(raw.get("ci_clustered") or raw.get("ci") or [-1.0, 1.0]),
        "ci_score": list(raw.get("ci_score") or raw.get("ci") or [-1.0, 1.0]),
        "method": str(raw.get("method") or ""),
        "b": int(raw.get("b") or 0),
        "c": int(raw.get("c") or 0),
        "p_value": raw.get("p_value", 1.0),
        "p_holm": raw.get("p_holm", raw.get("p_value", 1.0)),
        "discordant": list(raw.get("discordant") or []),
        "min_detectable_gap": raw.get("min_detectable_gap"),
        "epochs_to_detect": raw.get("epochs_to_detect"),
        "epochs_to_bound": raw.get("epochs_to_bound"),
    }


def load(raw: dict | None) -> Result | None:
    """A stored ``stats`` JSON as a :class:`Result`, or None when it holds no gate result
    (a run that has not finished, or only ``judge_calibration``).

    Records written before ``version`` existed (version 0: the same keys, some of them
    missing) are filled in here, once, with what those runs meant: no missingness analysis,
    no worst case, every error counted as missing."""
    if not isinstance(raw, dict) or raw.get("conditions") is None:
        return None
    version = int(raw.get("version") or 0)
    if version > RESULT_VERSION:
        raise ValueError(
            f"evaluation result version {version} is newer than this code reads "
            f"({RESULT_VERSION}); upgrade before reading it"
        )
    out: dict[str, Any] = {
        **raw,
        "version": RESULT_VERSION,
        "verdict": str(raw.get("verdict") or ""),
        "policy": dict(raw.get("policy") or {}),
        "conditions": {str(k): _condition(v) for k, v in raw["conditions"].items()},
        "gaps": [_gap(g) for g in raw.get("gaps") or []],
        "missingness": list(raw.get("missingness") or []),
        "worst_case": dict(raw.get("worst_case") or {"missing": 0, "verdict": "", "checks": []}),
        "critical_legacy": list(raw.get("critical_legacy") or []),
        "scenarios": dict(raw.get("scenarios") or {}),
        "samples": dict(
            raw.get("samples") or {"total": 0, "graded": 0, "errors": 0, "error_rate": 0.0}
        ),
        "checks": list(raw.get("checks") or []),
        "warnings": list(raw.get("warnings") or []),
    }
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class RunResult:
    """A run's result as every reader sees it (``evaluations.selectors.run_result``).

    ``result`` is None while no sample is stored. ``interim`` is True when it was computed
    from the samples stored so far (a live run, or one that ended without a gate result);
    then ``interim_verdict`` is what the gate would say now.
    """

    result: Result | None
    interim: bool = False
    interim_verdict: str | None = None

    @property
    def conditions(self) -> dict[str, ConditionResult]:
        return self.result["conditions"] if self.result else {}

    @property
    def gaps(self) -> list[GapResult]:
        return self.result["gaps"] if self.result else []

    @property
    def checks(self) -> list[Check]:
        return self.result["checks"] if self.result else []

    @property
    def missingness(self) -> list[MissingnessResult]:
        return self.result["missingness"] if self.result else []

    @property
    def critical_legacy(self) -> list[CriticalLegacy]:
        return self.result["critical_legacy"] if self.result else []

    @property
    def worst_case(self) -> WorstCase | None:
        return self.result["worst_case"] if self.result else None

    @property
    def scenarios(self) -> dict:
        return self.result["scenarios"] if self.result else {}

    @property
    def samples(self) -> Samples:
        if self.result:
            return self.result["samples"]
        return {"total": 0, "graded": 0, "errors": 0, "error_rate": 0.0}
