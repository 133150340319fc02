"""Celery tasks: ids in, one service call, explicit names, idempotent."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from . import services


@shared_task(
    name="attestations.render",
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=3,
)
def render_attestation(attestation_id: int) -> str | None:
    """Sign and render one pending attestation (a ready one is a no-op).

    Time limits come from ``ATTESTATION_RENDER_TIME_LIMIT`` at enqueue time; the soft limit
    surfaces as an exception inside the render, which records the row as failed. Only a
    database that is briefly unreachable is retried; the claim makes a retry safe.
    """
    row = services.attestation_render(attestation_id=int(attestation_id))
    return row.status if row is not None else None


@shared_task(name="attestations.requeue_stalled", ignore_result=True)
def requeue_stalled() -> list[int]:
    """Periodic: wake rows whose render was never enqueued or whose worker died."""
    return services.attestation_requeue_stalled()
