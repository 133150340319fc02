"""The checkpoint task runs on a real Celery worker, with the worker's own settings."""

# ruff: noqa: F811 - the builders' fixtures are imported by name and requested by name

from __future__ import annotations

from pathlib import Path

import pytest

from changes import audit, checkpoints
from changes.models import AuditCheckpoint
from changes.tasks import publish_audit_checkpoint
from tests.attestations.test_document_builders import signing_key  # noqa: F401 - fixture
from tests.evaluations.workers import start_worker, wait_for, worker_queue  # noqa: F401

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_worker_publishes_a_checkpoint_the_web_process_verifies(
    settings, signing_key, start_worker, worker_queue, engineer
):
    # given: some history, and a worker sharing this test's database, key and store
    for n in range(3):
        audit.append(actor=engineer, verb="test.event", data={"n": n})
    store = Path(settings.AUDIT_CHECKPOINT_DIR)
    worker = start_worker(
        concurrency=1,
        ATTESTATION_SIGNING_KEY_FILE=settings.ATTESTATION_SIGNING_KEY_FILE,
        ATTESTATION_PUBLIC_KEYS_DIR=settings.ATTESTATION_PUBLIC_KEYS_DIR,
        AUDIT_CHECKPOINT_DIR=str(store),
    )

    # when: beat's task is sent (to this test's queue)
    publish_audit_checkpoint.apply_async(kwargs={"reason": "schedule"}, queue=worker_queue)

    # then: the worker wrote a signed checkpoint that this process finds and agrees with
    wait_for(
        lambda: AuditCheckpoint.objects.exists(),
        timeout=120,
        what="the worker to publish a checkpoint",
        workers=[worker],
    )
    checkpoint = checkpoints.latest_checkpoint()
    assert checkpoint is not None and checkpoint.name == AuditCheckpoint.objects.get().file_name
    assert (store / checkpoint.name).exists()
    report = checkpoints.verify_anchored()
    assert report.ok and report.checkpoint.name == checkpoint.name
