"""Batch leases: how long a claim lasts, and the heartbeat thread that keeps a long batch's
lease alive while its target is slow (so it is not mistaken for a dead worker's).

``batch_services`` claims and records batches under these leases.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from .models import Batch

log = logging.getLogger(__name__)


def lease_seconds() -> int:
    return max(1, int(getattr(settings, "EVAL_LEASE_SECONDS", 60)))


@contextmanager
def lease_keeper(batch_id: int, worker_id: str):
    """Extend the lease while a long batch runs, so a slow target is not mistaken for a
    dead worker. A daemon thread with its own database connection, closed on exit."""
    lease = lease_seconds()
    stop = threading.Event()

    def beat():
        try:
            while not stop.wait(max(0.5, lease / 3)):
                kept = Batch.objects.filter(
                    pk=batch_id, status=Batch.LEASED, lease_owner=worker_id[:100]
                ).update(lease_expires_at=timezone.now() + timedelta(seconds=lease))
                if not kept:
                    log.info("lease on batch %s lost to another worker", batch_id)
                    return
        except Exception:  # noqa: BLE001 - a missed heartbeat only risks a duplicate attempt
            log.warning("lease heartbeat for batch %s failed", batch_id, exc_info=True)
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name=f"lease-{batch_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
