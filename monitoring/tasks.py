"""Celery tasks of the monitoring app, on their own ``monitoring`` queue (thin wrappers)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

logger = logging.getLogger(__name__)
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)


def enqueue_grading(system_id: int) -> None:
    """Wake a grader; a lost wake-up is harmless (beat's sweep grades what is left)."""
    try:
        grade_pending.apply_async(
            args=[system_id], queue=settings.MONITORING_TASK_QUEUE, retry=False
        )
    except Exception:  # noqa: BLE001 - broker down: the sweep picks the decisions up
        logger.warning("grading wake-up for system %s not sent; the sweep will grade it", system_id)


@shared_task(
    name="monitoring.grade_pending",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT_DB_ERRORS,
    retry_backoff=1,
    max_retries=5,
)
def grade_pending(system_id: int | None = None) -> int:
    from . import grading

    return grading.grade_pending(system_id=system_id)


@shared_task(name="monitoring.prune_decisions", acks_late=True, expires=3600)
def prune_decisions() -> int:
    from . import services

    return services.decisions_prune()


def enqueue_judging(change_id: int, decision_ids: list[int]) -> None:
    """Send sampled decisions to the judge (on commit of their grading); a lost wake-up
    leaves them unjudged (the sample is then smaller, never biased by the label)."""
    try:
        judge_decisions.apply_async(
            args=[change_id, decision_ids], queue=settings.MONITORING_TASK_QUEUE, retry=False
        )
    except Exception:  # noqa: BLE001 - the broker only carries wake-ups
        logger.warning("judge wake-up for change %s not sent", change_id)


@shared_task(
    name="monitoring.judge_decisions",
    acks_late=True,
    autoretry_for=TRANSIENT_DB_ERRORS,
    retry_backoff=1,
    max_retries=5,
)
def judge_decisions(change_id: int, decision_ids: list[int]) -> int:
    from . import judging

    return judging.judge_decisions(int(change_id), [int(i) for i in decision_ids])


def enqueue_probe(change_id: int) -> None:
    """Send the after-deploy probe of one change to the probe queue (called on commit); a
    broker error is logged, not raised: the deploy has committed, and beat probes later."""
    try:
        probe_change.apply_async(
            args=[change_id], queue=settings.MONITORING_PROBE_QUEUE, retry=False
        )
    except Exception:  # noqa: BLE001 - the broker only carries wake-ups
        logger.warning(
            "after-deploy probe of change %s not sent; beat's probe covers it", change_id
        )


@shared_task(name="monitoring.probe_change", acks_late=True, expires=3600)
def probe_change(change_id: int) -> int:
    from . import probes

    return probes.probe_after_deploy(int(change_id))


@shared_task(name="monitoring.maintain_partitions", acks_late=True, expires=3600)
def maintain_partitions() -> dict:
    from . import partitions

    return partitions.maintain().as_dict()


@shared_task(name="monitoring.run_probes", acks_late=True, expires=3600)
def run_probes() -> int:
    from . import probes

    return probes.probe_all()
