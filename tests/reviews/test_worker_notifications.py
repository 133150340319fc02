"""A real Celery worker fans out a committed review and sends the e-mail (console backend:
it lands in the worker's log). Nothing is sent by the process that made the change."""

from __future__ import annotations

import pytest
from django.core import mail

from changes import services
from reviews.models import Notification
from tests.changes.test_api_support import awaiting_review, pin_null_ports
from tests.evaluations.workers import start_worker, wait_for, worker_queue  # noqa: F401
from tests.factories import PASSWORD, make_change

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_worker_sends_the_notification_after_commit(
    start_worker,  # noqa: F811 - fixture
    worker_queue,  # noqa: F811 - fixture
    settings,
    monkeypatch,
    engineer,
    reviewer,
):
    pin_null_ports(monkeypatch)
    settings.REVIEWS_TASK_QUEUE = worker_queue
    worker = start_worker(REVIEWS_TASK_QUEUE=worker_queue, EMAIL_URL="consolemail://")
    change = awaiting_review(make_change(author=engineer), engineer)

    services.review_submit(
        actor=reviewer,
        change_request=change,
        decision="request_changes",
        comment="Name the suite.",
        password=PASSWORD,
    )

    def sent() -> bool:
        note = Notification.objects.filter(kind="review.given").first()
        return note is not None and note.email_state == "sent"

    wait_for(sent, timeout=60, what="the worker's notification e-mail", workers=[worker])
    assert mail.outbox == []  # this process sent nothing
    wait_for(
        lambda: "To: engineer@example.com" in worker.output(),
        timeout=10,
        what="the console e-mail in the worker log",
        workers=[worker],
    )
    assert f"requested changes to {change.reference}" in worker.output()
