"""Every write of the review-collaboration app, one transaction each.

Notifications: ``fan_out`` turns one audit event into at most one notification per person
(a unique constraint, so a retried or duplicated task adds nothing) and schedules e-mails on
commit; ``notification_send_email`` claims a row with a conditional UPDATE before sending.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import timezone

from changes.models import AuditEvent
from core.errors import ValidationFailed

from . import events
from . import models as m

logger = logging.getLogger(__name__)
MAX_EMAIL_ATTEMPTS = 6


def preferences_for(user) -> dict[str, dict]:
    """{kind: {"in_app": bool, "email": bool}} with the defaults filled in."""
    out = {kind: {"in_app": True, "email": True} for kind, _ in m.EVENT_TYPES}
    for pref in m.NotificationPreference.objects.filter(user=user):
        out[pref.kind] = {"in_app": pref.in_app, "email": pref.email}
    return out


@transaction.atomic
def preferences_set(*, actor, choices: dict) -> dict[str, dict]:
    """Save ``{kind: {"in_app": bool, "email": bool}}`` for the acting user (only theirs)."""
    if not isinstance(choices, dict):
        raise ValidationFailed("preferences: an object of event kind -> channels is expected.")
    for kind, channels in choices.items():
        if kind not in m.EVENT_TYPE_NAMES:
            raise ValidationFailed(f"preferences: unknown event kind '{kind}'.")
        if not isinstance(channels, dict) or set(channels) - {"in_app", "email"}:
            raise ValidationFailed(f"preferences.{kind}: give in_app and/or email as booleans.")
        if any(not isinstance(v, bool) for v in channels.values()):
            raise ValidationFailed(f"preferences.{kind}: in_app and email must be booleans.")
        m.NotificationPreference.objects.update_or_create(
            user=actor, kind=kind, defaults=dict(channels)
        )
    return preferences_for(actor)


@transaction.atomic
def fan_out(*, event_id: int) -> list[int]:
    """Create the notifications (and webhook deliveries) one audit event calls for.

    Idempotent: an existing (event, recipient) row is left alone and nothing is re-sent.
    Returns the ids of the notifications created by this call.
    """
    event = AuditEvent.objects.filter(pk=event_id).first()
    described = events.describe(event) if event is not None else None
    if described is None:
        if event is not None:
            m.EventFanOut.objects.get_or_create(event_id=event.pk)
        return []
    created = []
    for user in described.recipients:
        prefs = preferences_for(user).get(described.type, {"in_app": True, "email": True})
        if not (prefs["in_app"] or prefs["email"]):
            continue
        wants_email = prefs["email"] and bool(user.email)
        try:
            with transaction.atomic():
                note = m.Notification.objects.create(
                    recipient=user,
                    event_id=event.pk,
                    kind=described.type,
                    change=described.change,
                    title=described.title[:300],
                    body=described.body,
                    url=described.url,
                    in_inbox=prefs["in_app"],
                    email_state="pending" if wants_email else "none",
                )
        except IntegrityError:
            continue  # already told: a duplicate fan-out
        created.append(note.pk)
        if wants_email:
            transaction.on_commit(lambda pk=note.pk: _enqueue_email(pk), robust=True)
    from . import requests as review_requests
    from . import webhooks

    webhooks.deliveries_create(event=event, described=described)
    if event.verb == "change.evaluation_passed" and described.change is not None:
        review_requests.auto_request(change_id=described.change.pk)  # the rule set's people
    m.EventFanOut.objects.get_or_create(event_id=event.pk)
    return created


def _enqueue_email(notification_id: int) -> None:
    from .tasks import queue_options, send_notification_email

    try:
        send_notification_email.apply_async(args=[notification_id], retry=False, **queue_options())
    except Exception:  # noqa: BLE001 - the broker only carries wake-ups; the reaper re-sends
        logger.exception("Could not enqueue the e-mail of notification %s", notification_id)


def notification_send_email(*, notification_id: int) -> str:
    """Send one notification's e-mail exactly once: claim pending -> sending, send, -> sent.

    A send error puts the row back to pending (or failed after the last attempt) and is
    raised again so the task retries with backoff. Returns the resulting state.
    """
    claimed = m.Notification.objects.filter(pk=notification_id, email_state="pending").update(
        email_state="sending"
    )
    if not claimed:
        return "skipped"
    note = m.Notification.objects.select_related("recipient", "change").get(pk=notification_id)
    context = {"note": note, "site_url": getattr(settings, "SITE_URL", "")}
    message = EmailMultiAlternatives(
        subject=" ".join(f"[PCM] {note.title}".split())[:250],  # no header injection
        body=render_to_string("reviews/email.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[note.recipient.email],
    )
    message.attach_alternative(render_to_string("reviews/email.html", context), "text/html")
    try:
        message.send(fail_silently=False)
    except Exception as exc:
        attempts = note.email_attempts + 1
        state = "failed" if attempts >= MAX_EMAIL_ATTEMPTS else "pending"
        m.Notification.objects.filter(pk=note.pk).update(
            email_state=state, email_attempts=attempts, email_error=str(exc)[:300]
        )
        if state == "failed":
            logger.error("Giving up on e-mailing notification %s: %s", note.pk, exc)
            return state
        raise
    m.Notification.objects.filter(pk=note.pk).update(
        email_state="sent", emailed_at=timezone.now(), email_attempts=note.email_attempts + 1
    )
    return "sent"


def notifications_mark_read(*, actor, ids=None) -> int:
    """Mark the acting user's notifications read (all unread ones when ``ids`` is None)."""
    rows = m.Notification.objects.filter(recipient=actor, read_at__isnull=True)
    if ids is not None:
        try:
            ids = [int(i) for i in ids]
        except (TypeError, ValueError):
            raise ValidationFailed("ids: a list of notification ids is expected.")
        rows = rows.filter(pk__in=ids)
    return rows.update(read_at=timezone.now())


SWEEP_GRACE = timedelta(minutes=2)
SWEEP_HORIZON = timedelta(days=1)


def requeue_stalled(*, now=None) -> dict:
    """Periodic: re-send wake-ups that were lost (broker down at commit, worker died).

    Events of interest from the last day with no fan-out mark, e-mails still pending, and
    webhook deliveries pending past their backoff are enqueued again; the claims make a
    duplicate wake-up harmless. Returns how many of each were enqueued."""
    from . import webhooks
    from .tasks import enqueue_fan_out

    now = now or timezone.now()
    old = now - SWEEP_GRACE
    recent = AuditEvent.objects.filter(
        verb__in=list(events.VERB_TYPES),
        created_at__lt=old,
        created_at__gte=now - SWEEP_HORIZON,
    )
    first = recent.order_by("id").values_list("id", flat=True).first() or 0
    marked = m.EventFanOut.objects.filter(event_id__gte=first).values("event_id")
    missing = recent.exclude(id__in=marked).values_list("id", flat=True)
    out = {"events": 0, "emails": 0, "webhooks": 0}
    for event_id in list(missing[:500]):
        enqueue_fan_out(event_id)
        out["events"] += 1
    for pk in m.Notification.objects.filter(email_state="pending", created_at__lt=old).values_list(
        "pk", flat=True
    )[:500]:
        _enqueue_email(pk)
        out["emails"] += 1
    for delivery in m.WebhookDelivery.objects.filter(status="pending", created_at__lt=old)[:500]:
        last = delivery.log.order_by("-at").values_list("at", flat=True).first()
        due = (last or delivery.created_at) + timedelta(
            seconds=webhooks.backoff_seconds(delivery.attempts) + SWEEP_GRACE.total_seconds()
        )
        if delivery.attempts == 0 or due <= now:
            webhooks.enqueue(delivery.pk)
            out["webhooks"] += 1
    return out
