"""The render runs on a real Celery worker process, not in the web request."""

# ruff: noqa: F811 - the builders' fixtures are imported by name and requested by name

from __future__ import annotations

import uuid

import pytest

from attestations import services
from attestations.models import Attestation
from tests.attestations.test_document_builders import (  # noqa: F401 - fixtures
    approve,
    passing_evaluation,
    signing_key,
)
from tests.evaluations.workers import purge_queue, start_worker, wait_for  # noqa: F401
from tests.factories import make_change

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker_queue(settings):
    """Overrides the evaluation helper's fixture: a queue for this test's render tasks."""
    queue = f"attesttest-{uuid.uuid4().hex[:10]}"
    settings.ATTESTATION_TASK_QUEUE = queue
    yield queue
    purge_queue(queue)


def test_approval_is_rendered_by_a_worker(
    engineer, reviewer, auditor, passing_evaluation, signing_key, settings, start_worker
):
    # given: a real worker on this test's queue, with the same signing key
    worker = start_worker(
        concurrency=1,
        ATTESTATION_SIGNING_KEY_FILE=settings.ATTESTATION_SIGNING_KEY_FILE,
        ATTESTATION_PUBLIC_KEYS_DIR=settings.ATTESTATION_PUBLIC_KEYS_DIR,
    )
    change = make_change(author=engineer)

    # when: the change gets its last approval (the wake-up is sent on commit)
    approve(change, author=engineer, reviewers=[reviewer])

    # then: the row was pending in the request, and the worker renders it
    row = Attestation.objects.get(change=change)
    wait_for(
        lambda: Attestation.objects.filter(pk=row.pk, status=Attestation.READY).exists(),
        timeout=180,
        what="the worker to render the attestation",
        workers=[worker],
    )
    row.refresh_from_db()
    assert row.key_id == signing_key.key_id
    result = services.verify_upload(actor=auditor, pdf_bytes=bytes(row.pdf))
    assert result["valid"] is True, result["checks"]
