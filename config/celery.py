"""The Celery application. The broker only carries wake-ups; run state lives in the database."""

import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("protocol_change")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _freeze_startup_heap(**_kwargs) -> None:
    # Each worker child starts with the whole project imported: keep the collector off it.
    from config.heap import freeze_startup_heap

    freeze_startup_heap()
