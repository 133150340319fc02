"""A first end-to-end pass over the core services (details live in tests/changes/)."""

import pytest

from changes import audit, selectors, services, states
from changes.models import AuditEvent
from tests.factories import PASSWORD, make_change

pytestmark = pytest.mark.django_db


def test_file_submit_and_wait_in_evaluating(engineer):
    change = make_change(author=engineer)
    assert change.state == states.DRAFT
    services.change_request_submit(actor=engineer, change_request=change)
    change.refresh_from_db()
    assert change.state == states.EVALUATING
    assert audit.verify_chain()[1] is None
    assert AuditEvent.objects.filter(verb="change.submitted").count() == 1


def test_verdict_review_and_gate(engineer, reviewer):
    change = make_change(author=engineer)
    services.change_request_submit(actor=engineer, change_request=change)
    services.change_request_record_verdict(
        change_id=change.pk, content_sha256=change.content_sha256, passed=True, reasons=[]
    )
    change.refresh_from_db()
    assert change.state == states.AWAITING_REVIEW
    services.review_submit(
        actor=reviewer, change_request=change, decision="approve", password=PASSWORD
    )
    change.refresh_from_db()
    assert change.state == states.APPROVED
    reasons = selectors.gate_reasons(change)
    assert any("evaluation" in r.lower() for r in reasons)
