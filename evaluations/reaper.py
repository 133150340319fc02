"""The reaper: re-sends wake-ups for batches whose lease expired or whose message was lost,
and finalises runs whose finaliser was lost. Periodic (``evaluations.reap_expired_leases``).

The finalising itself is ``finish_services.run_finalize``.
"""

from __future__ import annotations

import logging

from django.utils import timezone

from . import finish_services, selectors
from .dispatch import enqueue_batches

log = logging.getLogger(__name__)

#: A pending batch whose message may have been lost is re-sent after this many seconds.
REQUEUE_AFTER_SECONDS = 30.0


def leases_reap(*, now=None) -> dict:
    """Re-send wake-ups for batches whose lease expired or whose message was lost, and
    finalise runs whose finaliser was lost. Idempotent; safe to run on any schedule."""
    now = now or timezone.now()
    batch_ids = selectors.batches_to_requeue(now=now, requeue_after=REQUEUE_AFTER_SECONDS)
    sent = enqueue_batches(batch_ids) if batch_ids else 0
    finalized = 0
    for run_id in selectors.runs_awaiting_finalize():
        if finish_services.run_finalize(run_id=run_id):
            finalized += 1
    if batch_ids or finalized:
        log.info("reaper: %d batch(es) re-sent, %d run(s) finalised", sent, finalized)
    return {"requeued": sent, "finalized": finalized}
