"""Celery tasks of the workflow app: thin, named, idempotent."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from . import checkpoints


@shared_task(
    name="changes.publish_audit_checkpoint",
    ignore_result=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=3,
)
def publish_audit_checkpoint(reason: str = "schedule") -> str:
    """Periodic (beat, ``AUDIT_CHECKPOINT_MINUTES``) and after each deployment: sign and store
    a checkpoint of the audit chain. A chain that contradicts the last checkpoint is refused
    and logged (``CheckpointError`` is not retried: retrying cannot make it true)."""
    return checkpoints.publish_checkpoint(reason=reason).name
