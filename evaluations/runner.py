"""The pure evaluation engine: plan samples, build prompts, call the target, grade.

Design notes: docs/ENGINE_NOTES.md, section ``evaluations.runner``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field, fields
from typing import Any

from . import graders as grader_mod
from . import reasoning as reasoning_mod
from .targets.base import Target, TargetError

LABELS = ("new", "legacy", "other", "empty", "error")


@dataclass(frozen=True)
class SampleKey:
    """One sample of a run: unique per (scenario, condition, cue, epoch)."""

    scenario_id: str
    condition: str
    cue_index: int
    epoch: int


def key_list(key: SampleKey) -> list:
    """A key as a batch stores it (``Batch.keys``, JSON): [scenario, condition, cue, epoch]."""
    return [key.scenario_id, key.condition, int(key.cue_index), int(key.epoch)]


@dataclass
class SampleOutcome:
    """What one sample produced. ``label`` is "error" when the call or grading failed and
    "empty" when the reply is empty or whitespace (never graded: silence is not compliance)."""

    key: SampleKey
    label: str
    output: str = ""
    reasoning: str | None = None
    af_reasoning: bool = False
    evidence: dict = field(default_factory=dict)
    error: str | None = None
    latency_ms: float = 0.0
    attempts: int = 0
    seed: int = 0
    model: str | None = None

    def to_dict(self) -> dict:
        """A flat, JSON-serialisable dict (the key's fields at the top level)."""
        # Shallow on purpose: asdict() would deep-copy the evidence of every sample.
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "key"}
        data.update(
            scenario_id=self.key.scenario_id,
            condition=self.key.condition,
            cue_index=self.key.cue_index,
            epoch=self.key.epoch,
        )
        return data


def plan_samples(suite: dict, epochs: int | None = None) -> list[SampleKey]:
    """Every sample of a suite, ordered by scenario, condition, cue, epoch (suite order).

    ``epochs`` is the run's (:func:`evaluations.gates.with_budget`); by default the suite's,
    which a suite without ``epochs`` does not have: the caller must plan its budget."""
    epochs = epochs if epochs is not None else suite.get("epochs")
    if not epochs:
        raise ValueError("this suite sets no epochs: pass the planned budget's epochs")
    return [
        SampleKey(scenario["id"], name, cue_index, epoch)
        for scenario in suite["scenarios"]
        for name, condition in suite["conditions"].items()
        for cue_index in range(len(condition["cues"]))
        for epoch in range(epochs)
    ]


def _scenario(suite: dict, scenario_id: str) -> dict:
    for scenario in suite["scenarios"]:
        if scenario["id"] == scenario_id:
            return scenario
    raise KeyError(f"no scenario {scenario_id!r} in suite {suite.get('name')!r}")


def build_messages(suite: dict, key: SampleKey, system_prompt: str) -> list[dict]:
    """The chat for one sample.

    ``placement: system``: the system message is the protocol's system prompt, a blank line,
    then the cue. ``placement: user``: the system message is the system prompt alone and the
    cue, a blank line, then the original text make up the first user turn.
    """
    condition = suite["conditions"][key.condition]
    cue = condition["cues"][key.cue_index]
    scenario = _scenario(suite, key.scenario_id)
    # A copy per message, not a deep copy: only the first user turn's content is replaced
    # (never mutated in place), and deepcopy cost ~0.8 ms a sample on the worker path.
    messages = [dict(m) for m in scenario["messages"]]
    prompt = (system_prompt or "").strip()
    if condition["placement"] == "system":
        prompt = f"{prompt}\n\n{cue}" if prompt else cue
    else:
        first_user = next(m for m in messages if m["role"] == "user")
        first_user["content"] = f"{cue}\n\n{first_user['content']}"
    return ([{"role": "system", "content": prompt}] if prompt else []) + messages


def sample_seed(run_seed: int, key: SampleKey) -> int:
    """A stable 31-bit seed (fits every API's seed field) shared by both conditions of a pair."""
    text = f"{run_seed}|{key.scenario_id}|{key.cue_index}|{key.epoch}"
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big") >> 1


def batch_size_for(requested: int, max_concurrency: int) -> int:
    """``requested`` rounded up to a whole number of the target's concurrent calls.

    A batch runs with at most ``max_concurrency`` calls in flight, so its last wave is only
    ``requested % max_concurrency`` calls wide: with 50 samples and 8 slots, 6 of the 8 slots
    idle through the seventh wave, an eighth of the batch's time. Rounding the batch up to a
    multiple of the concurrency fills every wave (56 = 7 x 8), which is what lifted the
    worker's throughput towards the raw client loop in bench/bench_eval_throughput.py.
    A batch no wider than one wave is left as asked: it has no idle wave to fill.
    """
    requested, width = max(1, int(requested)), max(1, int(max_concurrency))
    if requested <= width:
        return requested
    return -(-requested // width) * width


class _Limited(Target):
    """A judge behind its own concurrency limit, shared by all samples of a batch."""

    def __init__(self, inner: Target):
        self.inner = inner
        self.kind = getattr(inner, "kind", "judge")
        self._sem = asyncio.Semaphore(max(1, getattr(inner, "max_concurrency", 4)))

    async def complete(self, messages: list[dict], *, seed: int):
        async with self._sem:
            return await self.inner.complete(messages, seed=seed)


async def _run_one(
    target: Target,
    suite: dict,
    key: SampleKey,
    system_prompt: str,
    ctx: dict,
) -> SampleOutcome:
    seed = sample_seed(ctx["run_seed"], key)
    started = time.perf_counter()
    try:
        messages = build_messages(suite, key, system_prompt)
        async with ctx["sem"]:
            started = time.perf_counter()  # latency of the call, not of the queue
            reply = await target.complete(messages, seed=seed)
    except TargetError as exc:
        return _error(key, seed, str(exc), started, exc.attempts)
    except Exception as exc:  # one broken sample must not sink the batch
        return _error(key, seed, f"{type(exc).__name__}: {exc}", started, 1)
    outcome = SampleOutcome(
        key=key,
        label="other",
        output=reply.text,
        reasoning=reply.reasoning,
        latency_ms=(time.perf_counter() - started) * 1000,
        attempts=reply.attempts,
        seed=seed,
        model=reply.model,
    )
    if not (reply.text or "").strip():
        # Silence is no evidence of compliance, whatever a negative grader (not_regex,
        # not_contains) would say: the gate counts it as missing (docs/GATE.md).
        outcome.label = "empty"
        outcome.evidence = {"rule": "the reply is empty or whitespace", "matched_by": None}
        return outcome
    try:
        await _grade_into(outcome, _scenario(suite, key.scenario_id), ctx)
    except Exception as exc:
        outcome.label, outcome.error = "error", f"grading failed: {type(exc).__name__}: {exc}"
    return outcome


async def _grade_into(outcome: SampleOutcome, scenario: dict, ctx: dict) -> None:
    label, evidence = await grader_mod.grade_async(
        scenario["graders"], outcome.output, judge=ctx["judge"], seed=outcome.seed
    )
    flagged, evidence["af_reasoning"] = await reasoning_mod.flag_reasoning(
        outcome.reasoning,
        settings=ctx["af"],
        judge=ctx["judge"],
        seed=outcome.seed,
        patterns=ctx["af_patterns"],
    )
    outcome.label, outcome.evidence, outcome.af_reasoning = label, evidence, flagged


def _error(key: SampleKey, seed: int, message: str, started: float, attempts: int):
    return SampleOutcome(
        key=key,
        label="error",
        error=message[:2000],
        latency_ms=(time.perf_counter() - started) * 1000,
        attempts=attempts,
        seed=seed,
    )


async def run_batch(
    target: Target,
    suite: dict,
    keys: list[SampleKey],
    system_prompt: str,
    *,
    run_seed: int = 0,
    judge: Target | None = None,
    af_patterns: list[str] | None = None,
) -> list[SampleOutcome]:
    """Run ``keys`` concurrently (at most ``target.max_concurrency`` calls in flight) and
    return one outcome per key, in order. A failing sample becomes a "error" outcome.

    ``af_patterns`` overrides the suite's ``af_reasoning.patterns`` (empty -> defaults).
    """
    prepare = getattr(target, "prepare", None)  # duck-typed targets may not have the hook
    if prepare is not None:
        try:
            prepare(suite)
        except Exception as exc:
            # A suite the target cannot prepare for (a reference agent meeting a pattern that
            # cannot run): every sample fails now, with the reason, so the run finishes as
            # errored instead of its batch being retried until the lease machinery gives up.
            message = f"target could not prepare the suite: {type(exc).__name__}: {exc}"
            return [_error(key, sample_seed(run_seed, key), message, time.perf_counter(), 0)
                    for key in keys]  # fmt: skip
    af_settings = reasoning_mod.settings_of(suite)
    ctx = {
        "run_seed": run_seed,
        "sem": asyncio.Semaphore(max(1, int(getattr(target, "max_concurrency", 1)))),
        "judge": _Limited(judge) if judge is not None else None,
        "af_patterns": af_patterns or af_settings["patterns"],
        "af": af_settings,
    }
    tasks = [_run_one(target, suite, key, system_prompt, ctx) for key in keys]
    return list(await asyncio.gather(*tasks))


def run_batch_sync(
    target: Target,
    suite: dict,
    keys: list[SampleKey],
    system_prompt: str,
    **kwargs: Any,
) -> list[SampleOutcome]:
    """:func:`run_batch` from synchronous code (a Celery task, a command). Runs its own event
    loop and closes the target's and judge's connections before returning."""

    async def main() -> list[SampleOutcome]:
        try:
            return await run_batch(target, suite, keys, system_prompt, **kwargs)
        finally:
            for owner in (target, kwargs.get("judge")):
                if getattr(owner, "aclose", None) is not None:
                    await owner.aclose()

    return asyncio.run(main())


def _run_waves(
    target: Target,
    suite: dict,
    keys: list[SampleKey],
    system_prompt: str,
    policy: dict,
    *,
    run_seed: int,
    judge: Target | None,
) -> tuple[list[SampleOutcome], dict]:
    """Run ``keys`` a wave of epochs at a time, looking after each (one event loop)."""
    from . import gates

    epochs = max(1, int(policy["epochs"]))
    wave = max(1, -(-epochs // WAVES))
    state = {"waves": 0, "epochs_run": 0, "planned_epochs": epochs, "wave_epochs": wave}

    async def _extend(outcomes: list[SampleOutcome]) -> None:
        # As on the worker path (evaluations/waves.py): an undecided run gets the next step
        # of epochs up to the suite's cap, each look judged at alpha / looks.
        plan = policy.get("adaptive") or {}
        current, cap = epochs, int(plan.get("cap_epochs") or epochs)
        state.setdefault("extensions", 0)
        while "stopped" not in state and current < cap:
            judged = {**policy, "epochs": current}
            if gates.evaluate(suite, outcomes, judged).verdict != "inconclusive":
                return
            new = min(cap, current + int(plan.get("step_epochs") or 1))
            chunk = [k for k in plan_samples(suite, new) if k.epoch >= current]
            outcomes += await run_batch(
                target, suite, chunk, system_prompt, run_seed=run_seed, judge=judge
            )
            current = state["epochs_run"] = new
            state["extensions"] += 1
            stop = gates.early_fail(suite, outcomes, policy)
            if stop is not None:
                state["stopped"] = stop

    async def main() -> list[SampleOutcome]:
        outcomes: list[SampleOutcome] = []
        try:
            for start in range(0, epochs, wave):
                chunk = [k for k in keys if start <= k.epoch < start + wave]
                outcomes += await run_batch(
                    target, suite, chunk, system_prompt, run_seed=run_seed, judge=judge
                )
                state["waves"] += 1
                state["epochs_run"] = min(epochs, start + wave)
                stop = gates.early_fail(suite, outcomes, policy)
                if stop is not None:
                    state["stopped"] = stop
                    break
            await _extend(outcomes)
        finally:
            for owner in (target, judge):
                if getattr(owner, "aclose", None) is not None:
                    await owner.aclose()
        return outcomes

    outcomes = asyncio.run(main())
    state["stopped_early"] = "stopped" in state
    state["samples"] = len(outcomes)
    return outcomes, state


#: A run judged in waves looks at most this many times (one wave = planned epochs / WAVES).
WAVES = 16


def _calibrate(judge: Target | None, suite: dict, run_seed: int) -> dict | None:
    """The judge's agreement with the suite's labelled examples, on a loop of its own (the
    judge's guarded client is bound to the loop that made it and is released here)."""
    judge_doc = suite.get("judge") if isinstance(suite.get("judge"), dict) else {}
    examples = judge_doc.get("calibration") or []
    if judge is None or not examples:
        return None

    async def main() -> dict:
        try:
            return await grader_mod.calibrate_judge(
                judge, examples, votes=judge_doc.get("votes", 1), seed=run_seed
            )
        finally:
            if getattr(judge, "aclose", None) is not None:
                await judge.aclose()

    return asyncio.run(main())


def run_suite_local(
    suite: dict,
    target: Target,
    system_prompt: str,
    *,
    run_seed: int = 0,
    policy: dict | None = None,
    judge: Target | None = None,
    criticality: str = "medium",
    adaptive: bool = False,
) -> dict:
    """Run a whole suite in-process and judge it (the ``run_suite`` command).

    ``adaptive`` runs the epochs in waves and stops as soon as an anytime-valid test shows
    one-sided switching or one-sided missing replies (:func:`gates.early_fail`); a pass is
    still decided on the whole budget, so it needs exactly the samples of the fixed design.

    ``policy`` defaults to :func:`gates.policy_for(criticality, suite["gate"])`; a suite
    without ``epochs`` runs the planned budget (:func:`gates.with_budget`). Returns a
    JSON-serialisable dict: ``verdict``, ``reasons``, ``samples`` (count), ``status``
    ("completed", or "errored" when the error share exceeds ``policy["max_error_rate"]``),
    ``stats``, ``policy``, ``target`` (its ``describe()``), ``suite`` (name, version,
    sha256), ``judge_calibration`` (:func:`graders.calibrate_judge` on the suite's labelled
    examples, or None), ``outcomes``.
    """
    from . import gates
    from .suite_schema import suite_sha256

    policy = gates.with_budget(policy or gates.policy_for(criticality, suite.get("gate")), suite)
    keys = plan_samples(suite, policy["epochs"])
    calibration = _calibrate(judge, suite, run_seed)
    sequential = None
    if adaptive:
        outcomes, sequential = _run_waves(
            target, suite, keys, system_prompt, policy, run_seed=run_seed, judge=judge
        )
    else:
        outcomes = run_batch_sync(
            target, suite, keys, system_prompt, run_seed=run_seed, judge=judge
        )
    if sequential and sequential.get("extensions"):
        policy = {**policy, "epochs": sequential["epochs_run"]}
    verdict = gates.evaluate(suite, outcomes, policy, sequential=sequential)
    errors = sum(o.label == "error" for o in outcomes)
    error_rate = errors / len(outcomes) if outcomes else 0.0
    # A fail stands however many samples errored: missing replies never rescue a faker.
    errored = error_rate > policy.get("max_error_rate", 0.1) and verdict.verdict != "fail"
    return {
        "suite": {
            "name": suite["name"],
            "version": suite["version"],
            "sha256": suite_sha256(suite),
        },
        "target": target.describe(),
        "policy": policy,
        "status": "errored" if errored else "completed",
        "status_reason": (
            f"{errors} of {len(outcomes)} samples failed ({error_rate:.0%}), more than the "
            f"allowed {policy.get('max_error_rate', 0.1):.0%}"
            if errored
            else ""
        ),
        "samples": len(outcomes),
        "verdict": verdict.verdict,
        "reasons": verdict.reasons,
        "stats": verdict.stats,
        "judge_calibration": calibration,
        "outcomes": [o.to_dict() for o in outcomes],
    }
