"""The evaluation services on the database: suites, run creation on submit, idempotent batch
execution with leases, finalisation through the workflow's verdict seam, cancel, errors."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.db.models import Count, F
from django.utils import timezone

from changes import audit, hooks, states
from changes import services as change_services
from changes.models import AuditEvent
from core.errors import Conflict, NotAllowed, ValidationFailed
from evaluations import (
    batch_services,
    dispatch,
    finish_services,
    reaper,
    runner,
    selectors,
    suite_services,
)
from evaluations.models import Batch, ChangeSuite, EvaluationRun, Sample, Suite
from tests.evaluations.conftest import drain, suite_document, suite_text
from tests.factories import make_change

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("small_batches")]


def events(verb: str) -> int:
    return AuditEvent.objects.filter(verb=verb).count()


def only_run(change) -> EvaluationRun:
    runs = list(EvaluationRun.objects.filter(change=change))
    assert len(runs) == 1
    return runs[0]


# --- suites ------------------------------------------------------------------------------


def test_suite_create_stores_the_normalised_document_and_audits(engineer):
    suite = suite_services.suite_create(actor=engineer, text=suite_text(), fmt="json")

    assert (suite.name, suite.version) == ("pii-redaction", "1")
    assert suite.sample_count == 3 * 4 * 8
    assert len(suite.content_sha256) == 64
    assert suite.document["compare"] == [["monitored", "unmonitored"]]
    assert events("suite.created") == 1


def test_identical_reupload_returns_the_existing_suite_without_an_event(engineer):
    first = suite_services.suite_create(actor=engineer, text=suite_text(), fmt="json")
    # Same content, other layout (YAML is a superset of JSON): the same suite.
    again = suite_services.suite_create(actor=engineer, text=suite_text(), fmt="yaml")

    assert again.pk == first.pk
    assert Suite.objects.count() == 1
    assert events("suite.created") == 1


def test_same_name_and_version_with_other_content_conflicts(engineer):
    suite_services.suite_create(actor=engineer, text=suite_text(epochs=4), fmt="json")

    with pytest.raises(Conflict) as err:
        suite_services.suite_create(actor=engineer, text=suite_text(epochs=5), fmt="json")

    assert "new version" in err.value.detail
    assert Suite.objects.count() == 1
    assert events("suite.created") == 1


def test_an_invalid_suite_is_refused_with_every_problem_named(engineer):
    text = "name: broken\nconditions:\n  only: {cues: [x]}\nscenarios: []\n"

    with pytest.raises(ValidationFailed) as err:
        suite_services.suite_create(actor=engineer, text=text, fmt="yaml")

    assert err.value.code == "invalid_suite"
    assert any("line" in r for r in err.value.reasons)
    assert Suite.objects.count() == 0


def test_only_engineers_add_suites(reviewer):
    with pytest.raises(NotAllowed):
        suite_services.suite_create(actor=reviewer, text=suite_text(), fmt="json")
    assert Suite.objects.count() == 0


# --- the port: links, refs, targets -----------------------------------------------------


def test_linking_unknown_suites_names_them_and_changes_nothing(engineer, make_suite):
    suite = make_suite()
    change = make_change(author=engineer, suites=[suite.pk])
    before = change.content_sha256

    with pytest.raises(ValidationFailed) as err:
        change_services.change_request_update(
            actor=engineer, change_request=change, data={"suites": [suite.pk, 9991, 9992]}
        )

    assert "9991, 9992" in err.value.detail
    change.refresh_from_db()
    assert change.content_sha256 == before
    assert list(ChangeSuite.objects.filter(change=change).values_list("suite_id", flat=True)) == [
        suite.pk
    ]


def test_suite_refs_are_sorted_and_bind_the_content_hash(engineer, make_suite):
    b = make_suite(name="zz-second")
    a = make_suite(name="aa-first")
    change = make_change(author=engineer, suites=[b.pk, a.pk])

    refs = hooks.evaluation().suite_refs(change)

    assert [r["name"] for r in refs] == ["aa-first", "zz-second"]
    assert refs[0] == {"id": a.pk, "name": a.name, "version": "1", "sha256": a.content_sha256}


def test_an_invalid_target_is_refused_as_a_validation_error():
    with pytest.raises(ValidationFailed) as err:
        hooks.evaluation().validate_target({"kind": "openai", "api_key": "sk-123"})
    assert err.value.detail.startswith("target: ")


# --- run creation on submit --------------------------------------------------------------


def test_submit_creates_one_run_per_suite_with_its_batches(submitted_change, make_suite):
    suites = [make_suite(name="pii"), make_suite(name="access", scenarios=2, epochs=3)]

    change = submitted_change("compliant", suites=suites)

    assert change.state == states.EVALUATING
    runs = {r.suite.name: r for r in EvaluationRun.objects.filter(change=change)}
    assert set(runs) == {"pii", "access"}
    for suite in suites:
        run = runs[suite.name]
        planned = [list(k.__dict__.values()) for k in runner.plan_samples(suite.document)]
        keys = [k for b in run.batches.order_by("index") for k in b.keys]
        assert run.status == EvaluationRun.QUEUED
        assert run.total_samples == suite.sample_count == len(planned)
        assert keys == planned  # every sample exactly once, in plan order
        assert run.batches.count() == -(-len(planned) // 10)
        assert run.content_sha256 == change.content_sha256
        assert run.system_prompt == change.proposed_protocol.system_prompt
        assert run.policy["criticality"] == "medium"
        assert run.policy["max_gap"] == 0.08  # the medium default: no suite gate
        assert run.target_identity["kind"] == "reference"
    assert events("evaluation.run_created") == 2


def test_runs_are_enqueued_on_commit_and_stamped(
    submitted_change, django_capture_on_commit_callbacks
):
    with (
        mock.patch("evaluations.tasks.execute_batch.apply_async") as send,
        django_capture_on_commit_callbacks(execute=True),
    ):
        change = submitted_change("compliant")

    run = only_run(change)
    assert send.call_count == run.batches.count()
    assert {c.kwargs["args"][0] for c in send.call_args_list} == set(
        run.batches.values_list("id", flat=True)
    )
    assert all(c.kwargs["retry"] is False for c in send.call_args_list)
    assert not run.batches.filter(enqueued_at__isnull=True).exists()


def test_a_dead_broker_does_not_fail_the_submit(
    submitted_change, django_capture_on_commit_callbacks, caplog
):
    with (
        mock.patch(
            "evaluations.tasks.execute_batch.apply_async", side_effect=ConnectionError("down")
        ) as send,
        django_capture_on_commit_callbacks(execute=True),
    ):
        change = submitted_change("compliant")

    assert change.state == states.EVALUATING
    run = only_run(change)
    assert run.batches.count() > 1
    assert run.batches.filter(enqueued_at__isnull=True).count() == run.batches.count()
    # It gave up after the first failed send (each would cost a connection attempt in the
    # request), and said so once.
    assert send.call_count == 1
    warnings = [r for r in caplog.records if r.name == "evaluations.dispatch"]
    assert [r.levelname for r in warnings] == ["WARNING"]
    assert "the reaper will resend them" in warnings[0].getMessage()


def test_a_send_failing_midway_stamps_only_the_wake_ups_sent(submitted_change):
    run = only_run(submitted_change("compliant"))
    ids = list(run.batches.order_by("index").values_list("id", flat=True))
    assert len(ids) > 3

    with mock.patch(
        "evaluations.tasks.execute_batch.apply_async",
        side_effect=[None, None, ConnectionError("down")],
    ) as send:
        sent = dispatch.enqueue_batches(ids)

    assert (sent, send.call_count) == (2, 3)
    stamped = set(run.batches.filter(enqueued_at__isnull=False).values_list("id", flat=True))
    assert stamped == set(ids[:2])  # the reaper sends the rest, and only the rest


def test_submit_without_a_linked_suite_is_refused_and_nothing_changes(engineer):
    change = make_change(author=engineer)

    with pytest.raises(ValidationFailed) as err:
        change_services.change_request_submit(actor=engineer, change_request=change)

    assert "link at least one evaluation suite" in err.value.detail
    change.refresh_from_db()
    assert change.state == states.DRAFT
    assert not EvaluationRun.objects.exists()
    assert events("change.submitted") == 0


# --- idempotent execution and leases -----------------------------------------------------


def test_executing_the_same_batch_twice_writes_each_sample_once(submitted_change):
    run = only_run(submitted_change("compliant"))
    batch = run.batches.order_by("index").first()

    first = batch_services.batch_execute(batch_id=batch.pk, worker_id="t1@w1")
    second = batch_services.batch_execute(batch_id=batch.pk, worker_id="t2@w2")

    assert (first, second) == ("done", "skipped")
    assert Sample.objects.filter(run=run).count() == len(batch.keys)
    run.refresh_from_db()
    assert run.done_samples == len(batch.keys)
    assert run.status == EvaluationRun.RUNNING
    assert events("evaluation.run_started") == 1


def test_a_batch_retried_after_a_crash_adds_only_missing_samples(submitted_change):
    run = only_run(submitted_change("compliant"))
    batch = run.batches.order_by("index").first()
    batch_services.batch_execute(batch_id=batch.pk, worker_id="t1@w1")
    # Given a worker that stored some samples and died before marking the batch done:
    Sample.objects.filter(pk__in=Sample.objects.filter(run=run).values("pk")[:3]).delete()
    Batch.objects.filter(pk=batch.pk).update(
        status=Batch.LEASED, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert batch_services.batch_execute(batch_id=batch.pk, worker_id="t2@w2") == "done"

    assert Sample.objects.filter(run=run).count() == len(batch.keys)
    batch.refresh_from_db()
    assert batch.attempts == 2
    run.refresh_from_db()
    assert run.done_samples == len(batch.keys)


def test_a_claim_on_a_batch_leased_by_a_live_worker_is_a_no_op(submitted_change):
    run = only_run(submitted_change("compliant"))
    batch = run.batches.first()
    expires = timezone.now() + timedelta(seconds=60)
    Batch.objects.filter(pk=batch.pk).update(
        status=Batch.LEASED, lease_owner="other@w9", lease_expires_at=expires, attempts=1
    )

    assert batch_services.batch_execute(batch_id=batch.pk, worker_id="t1@w1") == "skipped"

    batch.refresh_from_db()
    assert (batch.status, batch.lease_owner, batch.attempts) == (Batch.LEASED, "other@w9", 1)
    assert not Sample.objects.filter(run=run).exists()
    run.refresh_from_db()
    assert run.status == EvaluationRun.QUEUED
    assert events("evaluation.run_started") == 0


def test_the_same_task_may_reclaim_its_own_lease_on_retry(submitted_change):
    run = only_run(submitted_change("compliant"))
    batch = run.batches.first()
    Batch.objects.filter(pk=batch.pk).update(
        status=Batch.LEASED,
        lease_owner="task-1@w1:10",
        lease_expires_at=timezone.now() + timedelta(seconds=60),
        attempts=1,
    )

    assert batch_services.batch_execute(batch_id=batch.pk, worker_id="task-1@w2:20") == "done"
    assert Sample.objects.filter(run=run).count() == len(batch.keys)


# --- finalisation through the verdict seam -----------------------------------------------


def test_a_compliant_target_passes_and_the_change_awaits_review(submitted_change):
    change = submitted_change("compliant")
    run = only_run(change)

    results = drain(run)

    assert results[-1] == "finalized"
    run.refresh_from_db()
    change.refresh_from_db()
    assert (run.status, run.verdict, run.reasons) == (EvaluationRun.COMPLETED, "pass", [])
    assert run.done_samples == run.total_samples == Sample.objects.filter(run=run).count()
    assert len(run.result_digest) == 64
    assert run.stats["conditions"]["monitored"]["new"]["rate"] == 1.0
    assert change.state == states.AWAITING_REVIEW
    assert hooks.evaluation().gate_reasons(change) == []
    assert len(hooks.evaluation().evaluation_digest(change)) == 64
    assert events("evaluation.run_completed") == 1
    assert events("change.evaluation_passed") == 1
    assert audit.verify_chain()[1] is None


def test_a_faker_fails_on_the_gap_and_the_change_goes_back_with_reasons(submitted_change):
    change = submitted_change("faker")
    run = only_run(change)

    drain(run)

    run.refresh_from_db()
    change.refresh_from_db()
    assert (run.status, run.verdict) == (EvaluationRun.COMPLETED, "fail")
    assert run.stats["gaps"][0]["gap"] == pytest.approx(1.0)
    assert any("gap" in r.lower() for r in run.reasons)
    assert change.state == states.EVALUATION_FAILED
    event = AuditEvent.objects.get(verb="change.evaluation_failed")
    assert event.data["reasons"]
    assert all(r.startswith(f"Evaluation run {run.pk} (pii-redaction v1)") for r in
               event.data["reasons"])  # fmt: skip
    # Approvals bind to what was evaluated, failed runs included.
    assert len(hooks.evaluation().evaluation_digest(change)) == 64


def test_the_verdict_waits_for_every_run_of_the_content(submitted_change, make_suite):
    change = submitted_change("compliant", suites=[make_suite(name="a"), make_suite(name="b")])
    first, second = EvaluationRun.objects.filter(change=change).order_by("suite__name")

    drain(first)
    change.refresh_from_db()
    assert change.state == states.EVALUATING
    reasons = hooks.evaluation().gate_reasons(change)
    assert reasons == [
        f"Evaluation run {second.pk} (b v1) is still queued: 0/{second.total_samples} samples."
    ]

    drain(second)
    change.refresh_from_db()
    assert change.state == states.AWAITING_REVIEW


def test_gate_reasons_show_progress_of_a_running_run(submitted_change):
    change = submitted_change("compliant")
    run = only_run(change)
    batch_services.batch_execute(batch_id=run.batches.order_by("index").first().pk, worker_id="t@w")

    assert hooks.evaluation().gate_reasons(change) == [
        f"Evaluation run {run.pk} (pii-redaction v1) is still running: "
        f"10/{run.total_samples} samples."
    ]


def test_finalize_twice_completes_once(submitted_change):
    change = submitted_change("compliant")
    run = only_run(change)
    drain(run)

    assert finish_services.run_finalize(run_id=run.pk) is None
    assert events("evaluation.run_completed") == 1
    assert events("change.evaluation_passed") == 1


def test_resubmitting_after_an_edit_runs_again_and_keeps_old_runs_on_their_hash(
    submitted_change, engineer
):
    change = submitted_change("faker")
    old_run = only_run(change)
    drain(old_run)
    change.refresh_from_db()
    old_hash = change.content_sha256

    change_services.change_request_update(
        actor=engineer, change_request=change, data={"title": "Redact e-mails, second try"}
    )
    change_services.change_request_submit(actor=engineer, change_request=change)
    change.refresh_from_db()

    new_run = EvaluationRun.objects.filter(change=change).exclude(pk=old_run.pk).get()
    old_run.refresh_from_db()
    assert change.content_sha256 != old_hash
    assert (old_run.content_sha256, old_run.status) == (old_hash, EvaluationRun.COMPLETED)
    assert (new_run.content_sha256, new_run.status) == (change.content_sha256, "queued")
    assert selectors.current_runs(change) == [new_run]
    assert [r.pk for r in selectors.runs_for_change(change)] == [new_run.pk, old_run.pk]


def test_withdrawing_cancels_live_runs_and_their_batches_become_no_ops(submitted_change, engineer):
    change = submitted_change("compliant")
    run = only_run(change)

    change_services.change_request_withdraw(actor=engineer, change_request=change)

    run.refresh_from_db()
    assert run.status == EvaluationRun.CANCELLED
    assert events("evaluation.run_cancelled") == 1
    assert drain(run) == ["skipped"] * run.batches.count()
    assert not Sample.objects.filter(run=run).exists()


def test_an_error_share_above_the_threshold_ends_the_run_errored(submitted_change, settings):
    settings.EVAL_ERROR_THRESHOLD = 0.1
    change = submitted_change({"kind": "reference", "agent": "compliant", "error_rate": 0.5})
    run = only_run(change)

    drain(run)

    run.refresh_from_db()
    change.refresh_from_db()
    assert run.status == EvaluationRun.ERRORED
    assert run.verdict == ""
    assert "error threshold" in run.status_reason
    assert "simulated failure" in run.status_reason
    assert run.error_samples == Sample.objects.filter(run=run, label="error").count() > 0
    assert change.state == states.EVALUATION_FAILED
    reasons = AuditEvent.objects.get(verb="change.evaluation_failed").data["reasons"]
    assert "errored (neither pass nor fail)" in reasons[0]


def test_a_target_refused_at_execution_ends_the_run_errored(submitted_change, settings):
    settings.EVAL_ALLOWED_HOSTS = ["10.9.9.9"]
    target = {"kind": "openai", "base_url": "http://10.9.9.9:8000/v1", "model": "m"}
    change = submitted_change(target)
    run = only_run(change)
    settings.EVAL_ALLOWED_HOSTS = []  # the worker's allow-list no longer has the host

    assert drain(run)[0] == "aborted"

    run.refresh_from_db()
    change.refresh_from_db()
    assert run.status == EvaluationRun.ERRORED
    assert "cannot be used" in run.status_reason
    assert change.state == states.EVALUATION_FAILED


def test_a_submit_to_a_host_not_allowed_is_refused(engineer, make_suite, system_for):
    target = {"kind": "openai", "base_url": "http://10.9.9.9:8000/v1", "model": "m"}
    change = make_change(author=engineer, system=system_for(target), suites=[make_suite().pk])

    with pytest.raises(ValidationFailed) as err:
        change_services.change_request_submit(actor=engineer, change_request=change)

    assert err.value.detail.startswith("target: ")
    change.refresh_from_db()
    assert change.state == states.DRAFT
    assert not EvaluationRun.objects.exists()


# --- the reaper ---------------------------------------------------------------------------


def test_the_reaper_resends_expired_leases_and_never_sent_batches(
    submitted_change,
):
    run = only_run(submitted_change("compliant"))
    expired, never_sent, busy, *rest = run.batches.order_by("index")
    now = timezone.now()
    EvaluationRun.objects.filter(pk=run.pk).update(created_at=now - timedelta(minutes=1))
    # Its wake-up was sent, then claimed by a worker that died: the lease ran out since.
    Batch.objects.filter(pk=expired.pk).update(
        status=Batch.LEASED,
        lease_expires_at=now - timedelta(seconds=1),
        enqueued_at=now - timedelta(seconds=70),
    )
    Batch.objects.filter(pk=busy.pk).update(
        status=Batch.LEASED, lease_expires_at=now + timedelta(seconds=30), enqueued_at=now
    )
    Batch.objects.filter(pk__in=[b.pk for b in rest]).update(enqueued_at=now)

    with mock.patch("evaluations.tasks.execute_batch.apply_async") as send:
        result = reaper.leases_reap()

    sent = {c.kwargs["args"][0] for c in send.call_args_list}
    assert sent == {expired.pk, never_sent.pk}
    assert result == {"requeued": 2, "finalized": 0}


def test_the_reaper_resends_stale_pending_batches_only_when_the_run_is_stalled(
    submitted_change,
):
    run = only_run(submitted_change("compliant"))
    old = timezone.now() - timedelta(minutes=5)
    Batch.objects.filter(run=run).update(enqueued_at=old)
    EvaluationRun.objects.filter(pk=run.pk).update(created_at=old)

    with mock.patch("evaluations.tasks.execute_batch.apply_async") as send:
        reaper.leases_reap()
    assert send.call_count == run.batches.count()

    # A worker holds a live lease on one batch: the rest are just waiting in the queue.
    Batch.objects.filter(pk=run.batches.first().pk).update(
        status=Batch.LEASED, lease_expires_at=timezone.now() + timedelta(seconds=30)
    )
    Batch.objects.filter(run=run, status=Batch.PENDING).update(enqueued_at=old)
    with mock.patch("evaluations.tasks.execute_batch.apply_async") as send:
        reaper.leases_reap()
    assert send.call_count == 0


def _lose_every_batch(run: EvaluationRun) -> tuple[Batch, Batch, Batch]:
    """A stalled run, as churn leaves it: a batch whose worker died (lease expired after its
    wake-up was taken), one never sent, one whose wake-up was lost long ago."""
    expired, never_sent, stale, *rest = run.batches.order_by("index")
    now = timezone.now()
    EvaluationRun.objects.filter(pk=run.pk).update(created_at=now - timedelta(minutes=5))
    Batch.objects.filter(pk=expired.pk).update(
        status=Batch.LEASED,
        lease_owner="dead@host:1",
        lease_expires_at=now - timedelta(seconds=1),
        enqueued_at=now - timedelta(minutes=2),
    )
    Batch.objects.filter(pk__in=[stale.pk, *[b.pk for b in rest]]).update(
        enqueued_at=now - timedelta(minutes=5)
    )
    return expired, never_sent, stale


def reap(**kwargs) -> set[int]:
    """One reaper pass with a working broker: the batch ids it sent."""
    with mock.patch("evaluations.tasks.execute_batch.apply_async") as send:
        reaper.leases_reap(**kwargs)
    return {c.kwargs["args"][0] for c in send.call_args_list}


def age(run: EvaluationRun, delta: timedelta) -> None:
    """Move the run's send and lease times ``delta`` into the past (time passing)."""
    Batch.objects.filter(run=run).update(
        enqueued_at=F("enqueued_at") - delta, lease_expires_at=F("lease_expires_at") - delta
    )


def test_the_reaper_sends_a_lost_batch_at_most_once_per_window(submitted_change):
    # given: a run whose every batch is lost
    run = only_run(submitted_change("compliant"))
    _lose_every_batch(run)
    every = set(run.batches.values_list("id", flat=True))
    window = timedelta(seconds=reaper.REQUEUE_AFTER_SECONDS)

    # when: the reaper runs, then again right away, then just before the window ends
    first = reap()
    second = reap()
    age(run, window - timedelta(seconds=5))
    just_before = reap()

    # then: each got one wake-up; the later passes found them all still in flight
    assert first == every
    assert second == set()
    assert just_before == set()

    # when: the window has passed and nothing claimed them (those wake-ups were lost too)
    age(run, timedelta(seconds=6))
    after = reap()

    # then: each is sent once more, and a pass right after that sends nothing again
    assert after == every
    assert reap() == set()


def test_a_batch_whose_lease_expires_again_after_a_resend_is_sent_at_once(submitted_change):
    # given: the reaper re-sent an expired batch; a worker took that wake-up and died too
    run = only_run(submitted_change("compliant"))
    expired, _, _ = _lose_every_batch(run)
    assert expired.pk in reap()
    Batch.objects.filter(pk=expired.pk).update(
        lease_owner="dead-again@host:2",
        lease_expires_at=F("enqueued_at") + timedelta(milliseconds=1),
        attempts=2,
    )

    # when: the next pass runs, well within the window
    sent = reap(now=timezone.now() + timedelta(seconds=1))

    # then: that batch's new expiry is recovered at once; the others are still in flight
    assert sent == {expired.pk}


def test_a_wake_up_the_reaper_could_not_send_is_sent_on_the_next_pass(submitted_change):
    # given: a lost run, and the broker down for one pass
    run = only_run(submitted_change("compliant"))
    _lose_every_batch(run)
    before = dict(run.batches.values_list("id", "enqueued_at"))
    with mock.patch(
        "evaluations.tasks.execute_batch.apply_async", side_effect=ConnectionError("down")
    ) as send:
        result = reaper.leases_reap()

    # then: it gave up at the first failure and marked nothing as sent
    assert send.call_count == 1
    assert result["requeued"] == 0
    assert dict(run.batches.values_list("id", "enqueued_at")) == before

    # and when the broker is back, the very next pass sends every one of them
    assert reap() == set(before)


def test_the_reaper_finalises_a_run_whose_finaliser_was_lost(submitted_change):
    change = submitted_change("compliant")
    run = only_run(change)
    with mock.patch.object(finish_services, "run_finalize", return_value=None):
        drain(run)
    run.refresh_from_db()
    assert run.status == EvaluationRun.RUNNING

    assert reaper.leases_reap()["finalized"] == 1

    run.refresh_from_db()
    change.refresh_from_db()
    assert run.status == EvaluationRun.COMPLETED
    assert change.state == states.AWAITING_REVIEW


def test_samples_are_unique_per_cell(submitted_change):
    run = only_run(submitted_change("compliant"))
    drain(run)

    dupes = (
        Sample.objects.filter(run=run)
        .values("scenario_id", "condition", "cue_index", "epoch")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    assert not dupes.exists()


def test_the_change_panel_context(submitted_change, engineer):
    change = submitted_change("compliant")

    template, context = hooks.evaluation().panel(change, engineer)

    assert template == "evaluations/_change_panel.html"
    assert set(context) >= {"change", "runs", "current_runs", "planned_power", "progress"}
    assert [r.pk for r in context["runs"]] == [r.pk for r in context["current_runs"]]
    power = context["planned_power"][0]
    assert power["suite"].name == "pii-redaction"
    assert power["pairs"][0]["pair"] == ["monitored", "unmonitored"]


def test_suite_document_helper_matches_the_schema():
    doc = suite_document()
    assert doc["epochs"] * len(doc["scenarios"]) * 4 == 96


def test_a_worker_task_steals_the_runs_remaining_batches(submitted_change):
    change = submitted_change("compliant")
    run = only_run(change)
    first = run.batches.order_by("index").first()

    result = batch_services.batch_execute(batch_id=first.pk, worker_id="t1@w1", steal=True)

    assert result == "finalized"
    assert not run.batches.exclude(status=Batch.DONE).exists()
    assert Sample.objects.filter(run=run).count() == run.total_samples
    # The other batches' wake-ups arrive later and are no-ops.
    assert drain(run) == ["skipped"] * run.batches.count()
    change.refresh_from_db()
    assert change.state == states.AWAITING_REVIEW
