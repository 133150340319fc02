"""The Celery application. The broker only carries wake-ups; run state lives in the database."""

import logging
import os

from celery import Celery
from celery.signals import after_setup_logger, worker_init, worker_process_init

from config import broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# filesystem:// (the embedded default) is the crash-safe transport in config/broker.py.
broker.register()

app = Celery("protocol_change")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _refuse_green_pools(sender=None, **_kwargs) -> None:
    # Evaluation batches run on asyncio. gevent and eventlet run every task on one OS thread,
    # so one task's running event loop is visible to the next ("Cannot run the event loop
    # while another loop is running") and every batch would fail: refuse to start instead.
    pool = getattr(sender, "pool_cls", None)
    name = f"{getattr(pool, '__module__', '')}.{getattr(pool, '__name__', pool)}".lower()
    if "gevent" in name or "eventlet" in name:
        raise SystemExit(
            "This worker cannot run with the gevent or eventlet pool: evaluation batches use "
            "asyncio. Use --pool prefork (the default), threads or solo."
        )


@worker_process_init.connect
def _freeze_startup_heap(**_kwargs) -> None:
    # Each worker child starts with the whole project imported: keep the collector off it.
    from config.heap import freeze_startup_heap

    freeze_startup_heap()


#: Periodic housekeeping (beat, every 15-60 s): its "sending", "received" and "succeeded" lines
#: buried the console. The tasks log themselves when they actually do something, and their
#: warnings and errors still show.
HOUSEKEEPING_TASKS = ("evaluations.reap_expired_leases", "attestations.requeue_stalled")


class QuietHousekeeping(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        message = record.getMessage()
        return not any(name in message for name in HOUSEKEEPING_TASKS)


@after_setup_logger.connect
def _quiet_housekeeping(logger=None, **_kwargs) -> None:
    for handler in getattr(logger, "handlers", []):
        handler.addFilter(QuietHousekeeping())
