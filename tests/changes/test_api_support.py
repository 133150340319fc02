"""Helpers shared by the API tests (this module holds no tests).

``snapshot()`` captures everything a refused request must leave untouched: each change's
state, content hash and revision, the row counts of every workflow table, and the number of
audit events other than ``permission.denied`` (a refusal is itself audited).
"""

from __future__ import annotations

from django.urls import reverse

from changes import hooks, services
from changes.models import (
    AISystem,
    AuditEvent,
    ChangeRequest,
    Deployment,
    ProtocolVersion,
    Review,
    Team,
)
from tests.factories import PASSWORD

PERSONAS = (
    "engineer",
    "engineer2",
    "reviewer",
    "team_a_reviewer",
    "auditor",
    "admin_user",
    "pipeline",
    "outsider",
    "anonymous",
)


def url(name: str, **kwargs) -> str:
    return reverse(f"api-{name}", kwargs=kwargs or None)


def pin_null_ports(monkeypatch) -> None:
    """The API tests drive verdicts themselves: pin the null ports whatever is registered."""
    monkeypatch.setattr(hooks, "_evaluation", hooks.EvaluationPort())
    monkeypatch.setattr(hooks, "_attestation", hooks.AttestationPort())


def denials() -> int:
    return AuditEvent.objects.filter(verb="permission.denied").count()


def snapshot() -> dict:
    return {
        "changes": {
            row["id"]: row
            for row in ChangeRequest.objects.values(
                "id", "state", "content_sha256", "revision", "title", "retrospective_pending"
            )
        },
        "live_reviews": Review.objects.filter(voided_at__isnull=True).count(),
        "counts": {
            model.__name__: model.objects.count()
            for model in (
                Team,
                AISystem,
                ProtocolVersion,
                ChangeRequest,
                Review,
                Deployment,
            )
        },
        "audit": AuditEvent.objects.exclude(verb="permission.denied").count(),
    }


def submit(change, author) -> ChangeRequest:
    """draft -> evaluating (the null engine leaves it there)."""
    services.change_request_submit(actor=author, change_request=change)
    change.refresh_from_db()
    return change


def pass_evaluation(change) -> ChangeRequest:
    """evaluating -> awaiting_review, as the evaluation engine would report it."""
    change.refresh_from_db()
    services.change_request_record_verdict(
        change_id=change.pk, content_sha256=change.content_sha256, passed=True, reasons=[]
    )
    change.refresh_from_db()
    return change


def awaiting_review(change, author) -> ChangeRequest:
    return pass_evaluation(submit(change, author))


def approve(change, reviewer) -> ChangeRequest:
    services.review_submit(
        actor=reviewer, change_request=change, decision="approve", password=PASSWORD
    )
    change.refresh_from_db()
    return change
