"""Dispatch: the wake-up messages that tell workers a batch is waiting.

The broker only carries wake-ups; the rows are the truth (a lost message is re-sent by
``evaluations.reaper``). It writes nothing but the ``enqueued_at`` stamp the reaper reads.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.utils import timezone

from .models import Batch

log = logging.getLogger(__name__)


def enqueue_batches(batch_ids: list[int]) -> int:
    """Send one wake-up per batch and stamp ``enqueued_at`` on those sent.

    Never raises: with the broker down the web request that committed the work must still
    succeed; unsent batches keep their ``enqueued_at`` (empty after a submit) and the reaper
    sends them later. The first failed send ends the call: the rest would fail the same way,
    each costing a connection attempt inside the request, and the broker settings make that
    one attempt fail fast (``CELERY_BROKER_TRANSPORT_OPTIONS``). Only the wake-ups actually
    sent are stamped, so the reaper neither skips an unsent batch nor doubles a sent one.
    """
    from .tasks import execute_batch

    # EVAL_TASK_QUEUE (optional) routes the wake-ups to a dedicated queue, e.g. one per test
    # session so parallel runs sharing a broker never take each other's messages.
    options = {"queue": queue} if (queue := getattr(settings, "EVAL_TASK_QUEUE", None)) else {}
    sent: list[int] = []
    for batch_id in batch_ids:
        try:
            execute_batch.apply_async(args=[batch_id], retry=False, **options)
        except Exception as exc:  # noqa: BLE001 - any broker failure: log, the reaper recovers
            # One line, not a traceback: while the broker is down this fires on every submit
            # and every reaper pass. DEBUG logging adds the traceback.
            log.warning(
                "could not send %d of %d batch wake-ups (%s: %s); the reaper will resend them",
                len(batch_ids) - len(sent),
                len(batch_ids),
                type(exc).__name__,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            break
        sent.append(batch_id)
    if sent:
        try:
            Batch.objects.filter(pk__in=sent).update(enqueued_at=timezone.now())
        except Exception:  # noqa: BLE001 - only bookkeeping for the reaper
            log.warning("could not stamp enqueued_at on %d batches", len(sent), exc_info=True)
    return len(sent)
