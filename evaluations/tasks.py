"""Celery tasks: thin wrappers (ids in, one service call, explicit names).

Idempotent by construction: ``execute_batch`` claims its batch with a conditional UPDATE, so a
duplicate, late or redelivered message is a no-op; ``reap_expired_leases`` only re-sends
wake-ups. Only transient database errors are retried (a locked SQLite file, a PostgreSQL
deadlock or dropped connection); target failures are recorded per sample, not retried here.
"""

from __future__ import annotations

import os

from celery import shared_task
from django.db import InterfaceError, OperationalError

from . import batch_services, reaper

TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)


@shared_task(
    name="evaluations.execute_batch",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT_DB_ERRORS,
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=5,
)
def execute_batch(self, batch_id: int) -> str:
    """Execute one batch of an evaluation run, then further pending batches of the same run
    while time allows (see ``batch_services.batch_execute``)."""
    # The task id comes first: a retry of this task (same id) may re-claim its own lease.
    worker_id = f"{self.request.id or 'local'}@{self.request.hostname or 'local'}:{os.getpid()}"
    return batch_services.batch_execute(batch_id=int(batch_id), worker_id=worker_id, steal=True)


@shared_task(
    name="evaluations.reap_expired_leases",
    acks_late=True,
    autoretry_for=TRANSIENT_DB_ERRORS,
    retry_backoff=1,
    max_retries=3,
    # Beat sends one every 15 s: a reaper stuck behind a backlog is useless once the next
    # one is due.
    expires=60,
)
def reap_expired_leases() -> dict:
    """Re-send batches with an expired lease or a lost message; finalise stranded runs."""
    return reaper.leases_reap()
