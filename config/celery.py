"""The Celery application. The broker only carries wake-ups; run state lives in the database."""

import os

from celery import Celery
from celery.signals import worker_process_init

from config import broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# filesystem:// (the embedded default) is the crash-safe transport in config/broker.py.
broker.register()

app = Celery("protocol_change")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _freeze_startup_heap(**_kwargs) -> None:
    # Each worker child starts with the whole project imported: keep the collector off it.
    from config.heap import freeze_startup_heap

    freeze_startup_heap()
