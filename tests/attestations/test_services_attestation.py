"""Issuing and rendering: versions on approve and deploy, the on-commit wake-up, the idempotent
worker task, failures recorded on the row, retries."""
# ruff: noqa: F811 - the builders' fixtures are imported by name and requested by name

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from attestations import document, services, tasks
from attestations.models import Attestation
from changes import hooks
from changes.models import AuditEvent
from core.errors import Conflict, NotAllowed
from tests.attestations.test_document_builders import (  # noqa: F401 - fixtures
    approve,
    approved_change,
    deploy,
    enqueued,
    passing_evaluation,
    ready_attestation,
    render_pending,
    signing_key,
)
from tests.factories import make_change

pytestmark = pytest.mark.django_db


def test_approval_creates_a_pending_v1_and_wakes_the_worker_on_commit(
    engineer,
    reviewer,
    passing_evaluation,
    signing_key,
    enqueued,
    django_capture_on_commit_callbacks,
):
    # given: a change waiting for its last approval
    change = make_change(author=engineer)

    # when: it is approved (commit callbacks captured and run)
    with django_capture_on_commit_callbacks(execute=True):
        approve(change, author=engineer, reviewers=[reviewer])

    # then: one pending v1 row with the facts of the moment, and one wake-up for it
    row = Attestation.objects.get(change=change)
    assert (row.version, row.reason, row.status) == (1, "approved", Attestation.PENDING)
    assert row.content_sha256 == change.content_sha256
    assert row.facts["change"]["state"] == "approved"
    assert row.pdf is None and row.statement is None
    assert enqueued == [row.pk]


def test_nothing_is_enqueued_when_the_approval_rolls_back(
    engineer, reviewer, passing_evaluation, enqueued, django_capture_on_commit_callbacks
):
    change = make_change(author=engineer)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        approve(change, author=engineer, reviewers=[reviewer])
    # the callback is registered for commit, not run inside the transaction
    assert enqueued == []
    assert len(callbacks) >= 1


def test_approve_then_deploy_produces_versions_1_and_2_without_overwriting(
    engineer, reviewer, passing_evaluation, signing_key, enqueued
):
    # given: an approved change whose v1 is rendered
    v1 = ready_attestation(engineer, [reviewer])
    v1_pdf, v1_statement = bytes(v1.pdf), v1.statement

    # when: it is deployed and the worker renders again
    deploy(v1.change, actor=engineer)
    (v2,) = render_pending()

    # then: v2 is a new row about the deployment; v1 is untouched
    assert (v2.version, v2.reason, v2.status) == (2, "deployed", Attestation.READY)
    assert v2.facts["change"]["state"] == "deployed"
    assert v2.facts["deployments"][0]["environment"] == "production"
    v1.refresh_from_db()
    assert bytes(v1.pdf) == v1_pdf and v1.statement == v1_statement
    assert v1.facts["change"]["state"] == "approved"
    assert list(
        Attestation.objects.filter(change=v1.change)
        .order_by("version")
        .values_list("version", "reason")
    ) == [(1, "approved"), (2, "deployed")]


def test_the_render_task_fills_the_row_once_and_audits_it(
    engineer, reviewer, passing_evaluation, signing_key, enqueued
):
    approved_change(engineer, [reviewer])
    row = Attestation.objects.get()

    status = tasks.render_attestation(row.pk)

    row.refresh_from_db()
    assert status == Attestation.READY
    assert row.attempts == 1 and row.rendered_at is not None and row.error == ""
    assert row.key_id == signing_key.key_id
    assert row.pdf_sha256 == services.sha256_hex(bytes(row.pdf))
    assert row.envelope_sha256 == services.sha256_hex(bytes(row.envelope))
    assert row.statement_sha256 == services.sha256_hex(services.canonical_bytes(row.statement))
    event = AuditEvent.objects.get(verb="attestation.issued")
    assert event.object_id == str(row.change_id)
    assert event.data["pdf_sha256"] == row.pdf_sha256
    assert event.data["envelope_sha256"] == row.envelope_sha256


def test_rendering_a_ready_row_again_is_a_no_op(
    engineer, reviewer, passing_evaluation, signing_key, enqueued
):
    row = ready_attestation(engineer, [reviewer])
    before = (bytes(row.pdf), row.pdf_sha256, row.attempts, row.rendered_at)
    events = AuditEvent.objects.count()

    status = tasks.render_attestation(row.pk)

    row.refresh_from_db()
    assert status == Attestation.READY
    assert (bytes(row.pdf), row.pdf_sha256, row.attempts, row.rendered_at) == before
    assert AuditEvent.objects.count() == events


def test_a_row_claimed_by_a_live_worker_is_left_alone_but_a_dead_claim_is_taken_over(
    engineer, reviewer, passing_evaluation, signing_key, enqueued
):
    approved_change(engineer, [reviewer])
    row = Attestation.objects.get()
    Attestation.objects.filter(pk=row.pk).update(
        status=Attestation.RENDERING, claimed_at=timezone.now(), attempts=1
    )

    assert tasks.render_attestation(row.pk) == Attestation.RENDERING

    Attestation.objects.filter(pk=row.pk).update(
        claimed_at=timezone.now() - timedelta(seconds=services._time_limit() + 60)
    )
    assert tasks.render_attestation(row.pk) == Attestation.READY
    row.refresh_from_db()
    assert row.attempts == 2


def test_the_wake_up_carries_the_render_time_limits_and_swallows_broker_errors(
    engineer, settings, monkeypatch, caplog
):
    settings.ATTESTATION_RENDER_TIME_LIMIT = 42
    calls = []

    def apply_async(**kwargs):
        calls.append(kwargs)
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.render_attestation, "apply_async", apply_async)

    with caplog.at_level(logging.ERROR, logger="attestations.services"):
        assert services.enqueue_render(12345) is False

    assert calls[0]["args"] == [12345]
    assert calls[0]["soft_time_limit"] == 42
    assert calls[0]["time_limit"] > 42
    assert tasks.render_attestation.name == "attestations.render"
    assert "Could not enqueue" in caplog.text


def test_a_broker_outage_does_not_block_approval_and_the_row_is_requeued_later(
    engineer, reviewer, passing_evaluation, signing_key, monkeypatch,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    # given: a broker that refuses every message
    def refuse(**kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.render_attestation, "apply_async", refuse)
    change = make_change(author=engineer)

    # when: the change is approved
    with django_capture_on_commit_callbacks(execute=True):
        approve(change, author=engineer, reviewers=[reviewer])

    # then: the approval stands and the row waits, pending
    change.refresh_from_db()
    assert change.state == "approved"
    row = Attestation.objects.get(change=change)
    assert row.status == Attestation.PENDING

    # and when the periodic requeue runs after the grace period, with the broker back
    sent = []
    monkeypatch.setattr(
        tasks.render_attestation, "apply_async", lambda **kw: sent.append(kw["args"][0])
    )
    assert services.attestation_requeue_stalled() == []  # still within the grace period
    Attestation.objects.filter(pk=row.pk).update(
        created_at=timezone.now() - services.PENDING_GRACE - timedelta(seconds=1)
    )
    assert tasks.requeue_stalled() == [row.pk]
    assert sent == [row.pk]


def test_a_render_failure_is_recorded_and_an_admin_can_retry(
    engineer, reviewer, admin_user, passing_evaluation, signing_key, enqueued, settings,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    # given: a pending attestation and no readable signing key
    approved_change(engineer, [reviewer])
    row = Attestation.objects.get()
    settings.ATTESTATION_SIGNING_KEY_FILE = "/nonexistent/key.pem"

    # when: the worker renders it
    status = tasks.render_attestation(row.pk)

    # then: failed, with the reason on the row and in the audit log
    row.refresh_from_db()
    assert status == Attestation.FAILED
    assert "signing key" in row.error
    assert row.pdf is None
    assert AuditEvent.objects.filter(verb="attestation.failed").count() == 1

    # and: a reviewer may not retry; an admin may, once the key is back
    with pytest.raises(NotAllowed):
        services.attestation_retry(actor=reviewer, attestation=row)
    settings.ATTESTATION_SIGNING_KEY_FILE = str(signing_key_path(settings))
    with django_capture_on_commit_callbacks(execute=True):
        services.attestation_retry(actor=admin_user, attestation=row)
    assert enqueued == [row.pk]
    assert tasks.render_attestation(row.pk) == Attestation.READY
    with pytest.raises(Conflict):
        services.attestation_retry(actor=admin_user, attestation=row)


def signing_key_path(settings):
    from pathlib import Path

    return Path(settings.ATTESTATION_PUBLIC_KEYS_DIR).parent / "signing.pem"


def test_the_soft_time_limit_ends_as_a_failed_row(
    engineer, reviewer, passing_evaluation, signing_key, enqueued, monkeypatch
):
    from celery.exceptions import SoftTimeLimitExceeded

    approved_change(engineer, [reviewer])
    row = Attestation.objects.get()

    def too_slow(*args, **kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(services, "render_pdf", too_slow)
    assert tasks.render_attestation(row.pk) == Attestation.FAILED
    row.refresh_from_db()
    assert "SoftTimeLimitExceeded" in row.error


def test_a_fact_gathering_bug_never_blocks_the_approval(
    engineer, reviewer, passing_evaluation, enqueued, monkeypatch
):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(document, "gather_facts", broken)
    change = make_change(author=engineer)

    approve(change, author=engineer, reviewers=[reviewer])

    change.refresh_from_db()
    assert change.state == "approved"
    row = Attestation.objects.get(change=change)
    assert row.status == Attestation.FAILED and "boom" in row.error
    assert row.facts is None


def test_without_an_attestation_port_nothing_is_issued(
    engineer, reviewer, passing_evaluation, monkeypatch
):
    monkeypatch.setattr(hooks, "_attestation", hooks.AttestationPort())
    change = make_change(author=engineer)
    approve(change, author=engineer, reviewers=[reviewer])
    assert not Attestation.objects.exists()


def test_the_registered_port_is_ours():
    from attestations.port import Attestations

    assert isinstance(hooks.attestation(), Attestations)


def test_an_unknown_reason_is_refused(engineer):
    from core.errors import ValidationFailed

    change = make_change(author=engineer)
    with pytest.raises(ValidationFailed):
        services.attestation_issue(change=change, reason="retired")
    assert not Attestation.objects.exists()
