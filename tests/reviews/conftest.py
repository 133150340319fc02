"""Fixtures for the review-collaboration tests: Celery tasks run eagerly, ports are null."""

from __future__ import annotations

import pytest

from config import celery_app
from tests.changes.test_api_support import pin_null_ports


@pytest.fixture(autouse=True)
def _null_ports(monkeypatch):
    pin_null_ports(monkeypatch)


@pytest.fixture
def eager():
    """Run Celery tasks in-process, errors raised (eager mode is not a worker: these tests
    are about what the tasks do, not about the broker)."""
    before = (celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates)
    celery_app.conf.update(task_always_eager=True, task_eager_propagates=True)
    yield
    celery_app.conf.update(task_always_eager=before[0], task_eager_propagates=before[1])


@pytest.fixture
def committed(django_capture_on_commit_callbacks, eager):
    """``with committed(): ...`` runs the block's on-commit callbacks (the tasks) after it."""
    return lambda: django_capture_on_commit_callbacks(execute=True)
