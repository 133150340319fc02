"""Signed outgoing webhooks (issue 14, item 6), in the Standard Webhooks header scheme.

Each delivery carries ``webhook-id`` (stable across retries), ``webhook-timestamp`` (Unix
seconds) and ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` keyed
with the base64-decoded part of the endpoint's ``whsec_`` secret. URLs pass the evaluation
host guard: refused at save when they name a private, loopback or metadata address that
``WEBHOOK_ALLOWED_HOSTS`` does not allow, and resolved once and pinned at send time.
Sending happens on a worker with bounded timeouts and never inside a transition.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import secrets
import ssl
import time

import httpx
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from changes import audit
from core.errors import NotAllowed, ValidationFailed
from evaluations.targets import hostguard

from . import models as m
from .permissions import may_manage_webhooks

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 8
SECRET_PREFIX = "whsec_"


class DeliveryFailed(Exception):
    """A non-2xx answer or a network error; the task retries with exponential backoff."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """``v1,<signature>`` for one message (the Standard Webhooks scheme)."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{msg_id}.{timestamp}.{body}".encode()
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def _allowed_hosts() -> list[str]:
    return list(getattr(settings, "WEBHOOK_ALLOWED_HOSTS", []) or [])


def check_url(url) -> str:
    try:
        hostguard.check_static(url, _allowed_hosts())
    except hostguard.HostGuardError as exc:
        text = str(exc).replace("EVAL_ALLOWED_HOSTS", "WEBHOOK_ALLOWED_HOSTS")
        raise ValidationFailed(f"url: {text}.", fields={"url": [text]})
    return url


@transaction.atomic
def endpoint_create(*, actor, name, url, events, system=None) -> m.WebhookEndpoint:
    """Register an endpoint (admin). Writes ``webhook.created`` (never the secret)."""
    if not may_manage_webhooks(actor):
        raise NotAllowed("Only admins register webhook endpoints.")
    name = (name or "").strip() if isinstance(name, str) else ""
    if not name or len(name) > 100:
        raise ValidationFailed("name: required, at most 100 characters.")
    if not isinstance(url, str) or len(url) > 2000:
        raise ValidationFailed("url: an http(s) URL of at most 2000 characters.")
    check_url(url)
    if not isinstance(events, list) or not events:
        raise ValidationFailed(
            f"events: choose one or more of {', '.join(sorted(m.EVENT_TYPE_NAMES))}."
        )
    unknown = [e for e in events if e not in m.EVENT_TYPE_NAMES]
    if unknown:
        raise ValidationFailed(f"events: unknown event type(s): {', '.join(map(str, unknown))}.")
    endpoint = m.WebhookEndpoint.objects.create(
        name=name,
        url=url,
        system=system,
        events=sorted(set(events)),
        secret=new_secret(),
        created_by=actor,
    )
    audit.append(
        actor=actor,
        verb="webhook.created",
        obj=endpoint,
        data={"name": name, "url": hostguard.display_url(url), "events": endpoint.events},
    )
    return endpoint


def _payload(event, described) -> dict:
    change = described.change
    return {
        "type": described.type,
        "timestamp": event.created_at.isoformat(),
        "data": {
            "audit_event": event.pk,
            "verb": event.verb,
            "actor": event.actor_username or None,
            "summary": described.title,
            "change": None
            if change is None
            else {
                "id": change.pk,
                "reference": change.reference,
                "title": change.title,
                "state": change.state,
                "system": change.system.name,
                "content_sha256": change.content_sha256,
            },
            "details": {k: v for k, v in (described.data or {}).items() if k != "participants"},
        },
    }


def deliveries_create(*, event, described) -> list[int]:
    """One delivery per active endpoint subscribed to this type (global or the change's
    system); a second call for the same event adds nothing. Enqueued on commit."""
    system_id = described.change.system_id if described.change is not None else described.system_id
    endpoints = m.WebhookEndpoint.objects.filter(active=True)
    created = []
    for endpoint in endpoints:
        if described.type not in endpoint.events:
            continue
        if endpoint.system_id is not None and endpoint.system_id != system_id:
            continue
        body = json.dumps(_payload(event, described), sort_keys=True, separators=(",", ":"))
        try:
            with transaction.atomic():
                delivery = m.WebhookDelivery.objects.create(
                    endpoint=endpoint,
                    event_id=event.pk,
                    event_type=described.type,
                    msg_id=f"msg_{event.pk}_{endpoint.pk}",
                    body=body,
                )
        except IntegrityError:
            continue
        created.append(delivery.pk)
        transaction.on_commit(lambda pk=delivery.pk: enqueue(pk), robust=True)
    return created


def enqueue(delivery_id: int, *, countdown: float = 0) -> None:
    from .tasks import deliver_webhook, queue_options

    try:
        deliver_webhook.apply_async(
            args=[delivery_id], countdown=countdown, retry=False, **queue_options()
        )
    except Exception:  # noqa: BLE001 - the broker only carries wake-ups
        logger.exception("Could not enqueue webhook delivery %s", delivery_id)


def backoff_seconds(attempts: int) -> float:
    """Exponential: 2, 4, 8, ... seconds, capped at an hour."""
    return float(min(3600, 2**attempts))


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Building a context loads the CA bundle (tens of milliseconds): once per process.
    return ssl.create_default_context()


def _post(url: str, headers: dict, body: bytes) -> int:
    """POST to the pinned address; returns the status code. Bounded timeouts, no redirects,
    no proxies from the environment, the response body is not read."""
    resolved = hostguard.resolve_url(url, _allowed_hosts())
    timeout = float(getattr(settings, "WEBHOOK_TIMEOUT", 5.0))
    extensions = {}
    if resolved.url.scheme == "https" and not resolved.is_ip_literal:
        extensions["sni_hostname"] = resolved.host
    with httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
        follow_redirects=False,
        trust_env=False,
        verify=_tls_context(),
    ) as client:
        request = client.build_request(
            "POST",
            resolved.connect_url,
            content=body,
            headers={**headers, "Host": resolved.host_header},
            extensions=extensions,
        )
        response = client.send(request, stream=True)
        response.close()
        return response.status_code


def delivery_attempt(*, delivery_id: int) -> str:
    """Send one delivery once: claim pending -> sending, POST, log the attempt, then
    delivered (2xx), pending (to retry: raises DeliveryFailed) or failed (last attempt)."""
    claimed = m.WebhookDelivery.objects.filter(pk=delivery_id, status="pending").update(
        status="sending"
    )
    if not claimed:
        return "skipped"
    delivery = m.WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "pcm-webhooks/1",
        "webhook-id": delivery.msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(
            delivery.endpoint.secret, delivery.msg_id, timestamp, delivery.body
        ),
    }
    started, code, error = time.monotonic(), None, ""
    try:
        code = _post(delivery.endpoint.url, headers, delivery.body.encode())
        if not 200 <= code < 300:
            error = f"HTTP {code}"
    except hostguard.HostGuardError as exc:
        error = f"refused by the host guard: {exc}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    attempts = delivery.attempts + 1
    m.WebhookAttempt.objects.create(
        delivery=delivery,
        status_code=code,
        error=error[:300],
        duration_ms=int((time.monotonic() - started) * 1000),
    )
    if not error:
        m.WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status="delivered",
            attempts=attempts,
            last_status_code=code,
            last_error="",
            delivered_at=timezone.now(),
        )
        return "delivered"
    state = "failed" if attempts >= MAX_ATTEMPTS else "pending"
    m.WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=state, attempts=attempts, last_status_code=code, last_error=error[:300]
    )
    if state == "failed":
        return state
    raise DeliveryFailed(error)


@transaction.atomic
def redeliver(*, actor, delivery: m.WebhookDelivery) -> m.WebhookDelivery:
    """Send a delivery again (admin), same ``webhook-id``. Writes ``webhook.redelivered``."""
    if not may_manage_webhooks(actor):
        raise NotAllowed("Only admins redeliver webhooks.")
    m.WebhookDelivery.objects.filter(pk=delivery.pk).exclude(status="sending").update(
        status="pending", attempts=0
    )
    audit.append(
        actor=actor,
        verb="webhook.redelivered",
        obj=delivery.endpoint,
        data={"delivery": delivery.pk, "msg_id": delivery.msg_id},
    )
    transaction.on_commit(lambda: enqueue(delivery.pk), robust=True)
    delivery.refresh_from_db()
    return delivery
