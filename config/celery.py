"""The Celery application. The broker only carries wake-ups; run state lives in the database."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("protocol_change")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
