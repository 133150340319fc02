"""Celery tasks: ids in, one service call, explicit names, idempotent."""

from __future__ import annotations

import logging
import smtplib

from celery import shared_task
from django.conf import settings
from django.db import OperationalError

from . import services

logger = logging.getLogger(__name__)
TRANSIENT = (OperationalError, OSError, smtplib.SMTPException)


def queue_options() -> dict:
    """``{"queue": REVIEWS_TASK_QUEUE}`` when set (tests give each run a private queue; an
    operator may give notifications a queue of their own), else the default queue."""
    queue = getattr(settings, "REVIEWS_TASK_QUEUE", "")
    return {"queue": queue} if queue else {}


def enqueue_fan_out(event_id: int) -> None:
    """Send the fan-out wake-up for one audit event; a broker error is logged, not raised
    (the transition it follows has committed and must not fail)."""
    try:
        fan_out_event.apply_async(args=[event_id], retry=False, **queue_options())
    except Exception:  # noqa: BLE001 - the broker only carries wake-ups
        logger.exception("Could not enqueue the fan-out of audit event %s", event_id)


@shared_task(
    name="reviews.fan_out",
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def fan_out_event(event_id: int) -> list[int]:
    """Notifications and webhook deliveries for one audit event (a re-run adds nothing)."""
    return services.fan_out(event_id=int(event_id))


@shared_task(
    name="reviews.send_email",
    acks_late=True,
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=services.MAX_EMAIL_ATTEMPTS,
)
def send_notification_email(notification_id: int) -> str:
    """E-mail one notification; the claim in the service makes a retry or a duplicate safe."""
    return services.notification_send_email(notification_id=int(notification_id))


@shared_task(name="reviews.deliver_webhook", acks_late=True, bind=True, max_retries=None)
def deliver_webhook(self, delivery_id: int) -> str:
    """One attempt at a webhook delivery; a failed attempt retries with exponential backoff
    (the attempt count lives on the row, so a lost wake-up never resets it)."""
    from . import webhooks

    try:
        return webhooks.delivery_attempt(delivery_id=int(delivery_id))
    except webhooks.DeliveryFailed as exc:
        attempts = webhooks.m.WebhookDelivery.objects.filter(pk=delivery_id).values_list(
            "attempts", flat=True
        )
        raise self.retry(exc=exc, countdown=webhooks.backoff_seconds(attempts.first() or 1))


@shared_task(name="reviews.requeue_stalled", ignore_result=True)
def requeue_stalled() -> dict:
    """Periodic: re-send lost wake-ups of fan-outs, e-mails and webhook deliveries."""
    return services.requeue_stalled()
