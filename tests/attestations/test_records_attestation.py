"""The record checks: a signed statement against what the database says, each check named."""
# ruff: noqa: F811 - the builders' fixtures are imported by name and requested by name

from __future__ import annotations

import copy

import pytest

from attestations import services
from attestations.models import Attestation
from attestations.records import record_checks
from changes import services as change_services
from evaluations.models import EvaluationRun
from tests.attestations.test_document_builders import (  # noqa: F401 - fixtures
    deploy,
    enqueued,
    passing_evaluation,
    ready_attestation,
    render_pending,
    signing_key,
)
from tests.factories import make_change

pytestmark = pytest.mark.django_db

NAMES = [
    "record_change",
    "record_attestation",
    "record_content_hash",
    "record_runs",
    "record_approvals",
    "audit_chain_head",
]


def by_name(checks) -> dict:
    return {c["name"]: c for c in checks}


def failing(checks) -> set[str]:
    return {c["name"] for c in checks if not c["ok"]}


@pytest.fixture
def attestation(engineer, reviewer, passing_evaluation, signing_key, enqueued):
    return ready_attestation(engineer, [reviewer])


def test_an_issued_statement_passes_every_record_check(attestation):
    checks = record_checks(attestation.statement)
    assert [c["name"] for c in checks] == NAMES
    assert failing(checks) == set()
    assert "current content" in by_name(checks)["record_content_hash"]["detail"]


def test_an_unknown_change_fails_at_the_first_check(attestation):
    statement = copy.deepcopy(attestation.statement)
    statement["subject"][0]["name"] = "CR-999999"
    checks = record_checks(statement)
    assert [(c["name"], c["ok"]) for c in checks] == [("record_change", False)]


def test_another_changes_content_hash_fails_the_statement_and_content_checks(attestation, engineer):
    other = make_change(author=engineer, title="Another change")
    statement = copy.deepcopy(attestation.statement)
    statement["subject"][0]["digest"]["sha256"] = other.content_sha256

    checks = record_checks(statement)

    assert failing(checks) == {"record_attestation", "record_content_hash", "record_runs",
                               "record_approvals"}  # fmt: skip
    assert "never had content" in by_name(checks)["record_content_hash"]["detail"]


def test_a_run_digest_that_differs_from_the_run_record_fails_record_runs(attestation):
    statement = copy.deepcopy(attestation.statement)
    statement["subject"][1]["digest"]["sha256"] = "f" * 64
    checks = record_checks(statement)
    assert {"record_runs", "record_attestation"} <= failing(checks)
    assert "result digest differs" in by_name(checks)["record_runs"]["detail"]


def test_a_run_record_changed_after_signing_fails_record_runs(attestation):
    run = attestation.change.evaluation_runs.first()
    EvaluationRun.objects.filter(pk=run.pk).update(result_digest="e" * 64)
    checks = record_checks(attestation.statement)
    assert failing(checks) == {"record_runs"}


def test_an_approval_claimed_for_someone_else_fails_record_approvals(attestation):
    statement = copy.deepcopy(attestation.statement)
    statement["predicate"]["signoffs"][0]["reviewer"]["username"] = "mallory"
    checks = record_checks(statement)
    assert {"record_approvals", "record_attestation"} <= failing(checks)
    assert "signed by someone else" in by_name(checks)["record_approvals"]["detail"]


def test_an_audit_head_that_is_not_in_the_chain_fails_audit_chain_head(attestation):
    statement = copy.deepcopy(attestation.statement)
    statement["predicate"]["audit"]["head"]["hash"] = "0" * 64
    checks = record_checks(statement)
    assert {"audit_chain_head", "record_attestation"} <= failing(checks)


def test_a_statement_for_a_version_never_issued_fails_record_attestation(attestation):
    statement = copy.deepcopy(attestation.statement)
    statement["predicate"]["attestation"]["version"] = 7
    checks = record_checks(statement)
    assert failing(checks) == {"record_attestation"}
    assert "no attestation v7" in by_name(checks)["record_attestation"]["detail"]


def test_old_attestations_still_verify_after_the_change_moves_on(attestation, engineer):
    # given: the change is deployed (v2) after v1 was issued
    deploy(attestation.change, actor=engineer)
    render_pending()

    # then: v1's statement still matches the records
    assert failing(record_checks(attestation.statement)) == set()
    v2 = Attestation.objects.get(change=attestation.change, version=2)
    assert failing(record_checks(v2.statement)) == set()


def test_an_edit_after_approval_keeps_the_old_attestation_valid(attestation, engineer, reviewer):
    # given: the approved change is edited (back to draft; approvals voided; new hash)
    change = attestation.change
    change_services.change_request_update(
        actor=engineer, change_request=change, data={"rationale": "A different rationale."}
    )
    change.refresh_from_db()
    assert change.content_sha256 != attestation.content_sha256

    # then: v1 still checks out against the records of that moment
    checks = record_checks(attestation.statement)
    assert failing(checks) == set()
    assert "recorded earlier" in by_name(checks)["record_content_hash"]["detail"]


def test_verify_upload_audits_the_outcome(attestation, auditor):
    result = services.verify_upload(actor=auditor, pdf_bytes=bytes(attestation.pdf))
    assert result["valid"] is True
    assert result["change"] == attestation.change_id
    assert result["attestation"] == attestation.pk
    from changes.models import AuditEvent

    event = AuditEvent.objects.filter(verb="attestation.verified").get()
    assert event.actor_username == "auditor"
    assert event.data["valid"] is True and event.data["failed_checks"] == []
    assert event.object_id == str(attestation.pk)
