"""The evaluation-result contract (evaluations.results) and its one reader
(evaluations.selectors.run_result)."""

from __future__ import annotations

import pytest

from evaluations import batch_services, finish_services, gates, results, selectors
from evaluations.models import EvaluationRun

from .conftest import suite_document


def _outcomes(suite: dict, *, faking: bool) -> list[dict]:
    rows = []
    for scenario in suite["scenarios"]:
        for condition in suite["conditions"]:
            for epoch in range(4):
                watched = condition == "monitored"
                label = "new" if (watched or not faking) else "legacy"
                rows.append({"scenario_id": scenario["id"], "condition": condition,
                             "cue_index": 0, "epoch": epoch, "label": label})  # fmt: skip
    return rows


def _suite() -> dict:
    from evaluations.suite_schema import normalise_suite

    return normalise_suite(suite_document())


def test_the_gate_writes_the_current_version_and_every_contract_key():
    suite = _suite()
    verdict = gates.evaluate(suite, _outcomes(suite, faking=True), gates.policy_for("high", {}))

    stats = verdict.stats
    assert stats["version"] == results.RESULT_VERSION
    required = {k for k in results.Result.__required_keys__}
    assert required <= set(stats)
    for condition in stats["conditions"].values():
        assert set(results.ConditionResult.__required_keys__) <= set(condition)
    for gap in stats["gaps"]:
        assert set(results.GapResult.__required_keys__) <= set(gap)
    # what load hands the readers is what the gate wrote: nothing re-derived
    assert results.load(stats) == stats


def test_a_record_from_before_the_version_key_is_filled_in_once():
    suite = _suite()
    stats = gates.evaluate(suite, _outcomes(suite, faking=False), {}).stats
    old = {k: v for k, v in stats.items() if k not in ("version", "missingness", "worst_case")}
    for c in old["conditions"].values():
        c.pop("missing")

    loaded = results.load(old)

    assert loaded["version"] == results.RESULT_VERSION
    assert loaded["missingness"] == []
    name = next(iter(loaded["conditions"]))
    assert loaded["conditions"][name]["missing"]["count"] == old["conditions"][name]["errors"]
    assert loaded["gaps"] == stats["gaps"]


def test_no_result_and_a_newer_version():
    assert results.load({}) is None
    assert results.load({"judge_calibration": {"agreement": 1.0}}) is None
    with pytest.raises(ValueError, match="newer than this code reads"):
        results.load({"version": results.RESULT_VERSION + 1, "conditions": {}})


def test_a_live_run_is_judged_when_a_batch_is_recorded_never_when_it_is_polled(
    submitted_change, small_batches, monkeypatch
):
    change = submitted_change("faker")
    run = change.evaluation_runs.get()
    calls = []
    real = gates.evaluate
    monkeypatch.setattr(gates, "evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = run.batches.order_by("index").first()
    batch_services.batch_execute(batch_id=first.pk, worker_id="t@h")
    assert len(calls) == 1  # the worker judged the samples so far, once
    run.refresh_from_db()
    assert run.interim["n"] == run.done_samples

    one = selectors.run_result(run)
    two = selectors.run_result(EvaluationRun.objects.get(pk=run.pk))

    assert one.interim and one.result is not None and two.result == one.result
    assert one.interim_verdict == run.interim["verdict"]
    assert len(calls) == 1  # polling read the snapshot
    second = run.batches.order_by("index")[1]
    batch_services.batch_execute(batch_id=second.pk, worker_id="t@h")
    assert len(calls) == 2
    run.refresh_from_db()
    three = selectors.run_result(run)
    assert len(calls) == 2
    assert three.samples["total"] > one.samples["total"]
    assert selectors.run_result(run, compute=False).result is None


def test_an_older_snapshot_never_replaces_a_newer_one(submitted_change, small_batches):
    change = submitted_change("faker")
    run = change.evaluation_runs.get()
    first, second = run.batches.order_by("index")[:2]
    batch_services.batch_execute(batch_id=first.pk, worker_id="t@h")
    batch_services.batch_execute(batch_id=second.pk, worker_id="t@h")
    run.refresh_from_db()
    newest = run.interim
    EvaluationRun.objects.filter(pk=run.pk).update(interim={**newest, "n": newest["n"] + 1})

    assert finish_services.run_refresh_interim(run_id=run.pk) is False  # fewer samples than stored
    run.refresh_from_db()
    assert run.interim["n"] == newest["n"] + 1
    EvaluationRun.objects.filter(pk=run.pk).update(interim=None)
    assert finish_services.run_refresh_interim(run_id=run.pk) is True
    run.refresh_from_db()
    assert run.interim["at"] >= newest["at"]  # when it was judged
    assert {**run.interim, "at": 0} == {**newest, "at": 0}


def test_the_interim_snapshot_is_judged_again_on_growth_or_age_not_on_every_batch(
    submitted_change, small_batches, monkeypatch
):
    # given: a live run of 10 batches of 10 samples, snapshots never too old
    monkeypatch.setattr(finish_services, "INTERIM_MAX_AGE_SECONDS", 3600.0)
    change = submitted_change("faker")
    run = change.evaluation_runs.get()
    batches = list(run.batches.order_by("index"))
    calls = []
    real = gates.evaluate
    monkeypatch.setattr(gates, "evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))
    # when: five batches are recorded (10 -> 50 samples, each step at least 25% more)
    for batch in batches[:5]:
        batch_services.batch_execute(batch_id=batch.pk, worker_id="t@h")
    # then: each was judged
    assert len(calls) == 5
    # when: a sixth (50 -> 60 samples: 20% more, the snapshot is fresh)
    batch_services.batch_execute(batch_id=batches[5].pk, worker_id="t@h")
    run.refresh_from_db()
    # then: not judged again; the progress counters moved, the snapshot says 50
    assert len(calls) == 5
    assert run.done_samples == 60 and run.interim["n"] == 50
    assert selectors.run_result(run).samples["total"] == 50
    assert finish_services.run_refresh_interim(run_id=run.pk) is False  # not due
    # when: the snapshot is old enough, the next batch is judged (70 samples)
    monkeypatch.setattr(finish_services, "INTERIM_MAX_AGE_SECONDS", 0.0)
    batch_services.batch_execute(batch_id=batches[6].pk, worker_id="t@h")
    run.refresh_from_db()
    assert len(calls) == 6 and run.interim["n"] == 70
    # and a forced refresh never waits
    monkeypatch.setattr(finish_services, "INTERIM_MAX_AGE_SECONDS", 3600.0)
    batch_services.batch_execute(batch_id=batches[7].pk, worker_id="t@h")
    assert len(calls) == 6
    assert finish_services.run_refresh_interim(run_id=run.pk, force=True) is True
    run.refresh_from_db()
    assert run.interim["n"] == 80 and len(calls) == 7
