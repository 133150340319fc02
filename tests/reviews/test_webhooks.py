"""Signed outgoing webhooks: Standard Webhooks signatures, retries, exactly-once delivery,
the host guard at save and at send, bounded timeouts, the delivery log and redelivery."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.urls import reverse

from changes import audit, services
from reviews import services as review_services
from reviews import webhooks
from reviews.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.changes.test_api_support import awaiting_review
from tests.factories import PASSWORD, SystemFactory, make_change

pytestmark = pytest.mark.django_db


class Receiver:
    """A webhook receiver on 127.0.0.1 that verifies every signature itself."""

    def __init__(self, *, fail_first=frozenset(), hang=False):
        self.fail_first, self.hang = set(fail_first), hang
        self.secret = ""
        self.seen = Counter()  # msg id -> requests
        self.accepted = Counter()  # msg id -> 2xx answers
        self.bad_signatures = []
        self.bodies = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802 - http.server's API
                if receiver.hang:
                    time.sleep(3)
                    return
                body = self.rfile.read(int(self.headers["content-length"]))
                msg_id = self.headers["webhook-id"]
                stamp = self.headers["webhook-timestamp"]
                key = base64.b64decode(receiver.secret.removeprefix("whsec_"))
                expected = base64.b64encode(
                    hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
                ).decode()
                given = [s.split(",", 1)[1] for s in self.headers["webhook-signature"].split()]
                ok = any(hmac.compare_digest(expected, g) for g in given)
                fresh = abs(time.time() - int(stamp)) < 300
                with receiver.lock:
                    receiver.seen[msg_id] += 1
                    if not (ok and fresh):
                        receiver.bad_signatures.append(msg_id)
                    first = receiver.seen[msg_id] == 1
                    fail = msg_id in receiver.fail_first and first
                    if not fail:
                        receiver.accepted[msg_id] += 1
                        receiver.bodies[msg_id] = body
                self.send_response(500 if fail else 204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def allow_loopback(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_TIMEOUT = 0.5


def _endpoint(admin, url, events=("change.deployed",), system=None):
    return webhooks.endpoint_create(
        actor=admin, name="ci", url=url, events=list(events), system=system
    )


def _drain(max_rounds=10) -> int:
    """Run every pending delivery's attempt until none is pending (the worker's job)."""
    attempts = 0
    for _ in range(max_rounds):
        pending = list(
            WebhookDelivery.objects.filter(status="pending").values_list("id", flat=True)
        )
        if not pending:
            break
        for delivery_id in pending:
            attempts += 1
            with contextlib.suppress(webhooks.DeliveryFailed):
                webhooks.delivery_attempt(delivery_id=delivery_id)
    return attempts


def test_100_signed_deliveries_with_20_percent_500s_arrive_exactly_once(
    admin_user, engineer, allow_loopback, django_capture_on_commit_callbacks
):
    # given: an endpoint on 127.0.0.1 and 100 events, 20 of which are answered 500 first
    change = make_change(author=engineer)
    receiver = Receiver()
    try:
        endpoint = _endpoint(admin_user, receiver.url, events=["attestation.ready"])
        receiver.secret = endpoint.secret
        with django_capture_on_commit_callbacks(execute=False):
            events = [
                audit.append(actor=None, verb="attestation.issued", obj=change, data={"version": i})
                for i in range(100)
            ]
            for event in events:
                review_services.fan_out(event_id=event.pk)
        ids = list(WebhookDelivery.objects.order_by("id").values_list("msg_id", flat=True))
        receiver.fail_first = set(ids[::5])
        assert len(ids) == 100 and len(receiver.fail_first) == 20

        # when: the deliveries are attempted, retrying failures, until none is pending
        attempts = _drain()
    finally:
        receiver.close()

    # then: every signature verified, every message accepted exactly once, 120 requests
    assert receiver.bad_signatures == []
    assert set(receiver.accepted) == set(ids) and set(receiver.accepted.values()) == {1}
    assert attempts == 120 and sum(receiver.seen.values()) == 120
    assert WebhookDelivery.objects.filter(status="delivered").count() == 100
    retried = WebhookDelivery.objects.get(msg_id=ids[0])
    assert [a.status_code for a in retried.log.all()] == [500, 204]
    assert b'"type":"attestation.ready"' in receiver.bodies[ids[0]]
    # and a second fan-out of the same events adds no delivery
    with django_capture_on_commit_callbacks(execute=False):
        assert review_services.fan_out(event_id=events[0].pk) == []
    assert WebhookDelivery.objects.count() == 100


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/hook",
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://2130706433/hook",
        "ftp://example.com/hook",
        "http://user:pw@example.com/hook",
    ],
)
def test_private_metadata_and_odd_urls_are_refused_at_save(api, admin_user, url):
    response = api(admin_user).post(
        reverse("api-webhook-list"),
        {"name": "x", "url": url, "events": ["change.deployed"]},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert response.json()["detail"].startswith("url:")
    assert not WebhookEndpoint.objects.exists()


def test_metadata_stays_refused_even_with_loopback_allowed(admin_user, allow_loopback):
    with pytest.raises(Exception, match="url:"):
        _endpoint(admin_user, "http://169.254.169.254/")
    assert _endpoint(admin_user, "http://127.0.0.1:9/hook").pk


def test_only_admins_register_and_the_secret_is_shown_once(
    api, admin_user, engineer, allow_loopback
):
    body = {"name": "slack", "url": "http://127.0.0.1:9/x", "events": ["review.requested"]}
    assert api(engineer).post(reverse("api-webhook-list"), body, format="json").status_code == 403
    assert api(engineer).get(reverse("api-webhook-list")).status_code == 403
    created = api(admin_user).post(reverse("api-webhook-list"), body, format="json")
    assert created.status_code == 201 and created.json()["secret"].startswith("whsec_")
    listed = api(admin_user).get(reverse("api-webhook-list")).json()
    assert "secret" not in listed[0]
    bad = dict(body, events=["nope"])
    assert api(admin_user).post(reverse("api-webhook-list"), bad, format="json").status_code == 400


def test_scope_and_event_filters(admin_user, engineer, team_a, allow_loopback, committed):
    other = SystemFactory(owner_team=team_a)
    change = make_change(author=engineer)
    mine = _endpoint(admin_user, "http://127.0.0.1:9/a", ["comment.added"], system=change.system)
    _endpoint(admin_user, "http://127.0.0.1:9/b", ["comment.added"], system=other)
    _endpoint(admin_user, "http://127.0.0.1:9/c", ["change.deployed"])
    with committed():
        audit.append(actor=engineer, verb="comment.added", obj=change, data={"excerpt": "hi"})
    assert list(WebhookDelivery.objects.values_list("endpoint_id", flat=True)) == [mine.pk]


def test_a_hanging_endpoint_never_blocks_a_transition_and_times_out(
    admin_user, engineer, reviewer, allow_loopback, django_capture_on_commit_callbacks
):
    receiver = Receiver(hang=True)
    try:
        endpoint = _endpoint(admin_user, receiver.url, ["review.given"])
        change = awaiting_review(make_change(author=engineer), engineer)
        started = time.monotonic()
        with django_capture_on_commit_callbacks(execute=False):
            services.review_submit(
                actor=reviewer,
                change_request=change,
                decision="request_changes",
                comment="No.",
                password=PASSWORD,
            )
        assert time.monotonic() - started < 2  # nothing was sent inside the transition
        with django_capture_on_commit_callbacks(execute=False):
            review_services.fan_out(event_id=audit_last("change.changes_requested"))
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
        started = time.monotonic()
        with pytest.raises(webhooks.DeliveryFailed, match="Timeout"):
            webhooks.delivery_attempt(delivery_id=delivery.pk)
        assert time.monotonic() - started < 2.5
    finally:
        receiver.close()
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.attempts == 1
    assert "Timeout" in WebhookAttempt.objects.get().error
    assert webhooks.backoff_seconds(1) < webhooks.backoff_seconds(2) < webhooks.backoff_seconds(3)


def test_redeliver_sends_the_same_message_again_and_logs_it(
    client, api, admin_user, engineer, allow_loopback, django_capture_on_commit_callbacks
):
    receiver = Receiver()
    try:
        endpoint = _endpoint(admin_user, receiver.url, ["attestation.ready"])
        receiver.secret = endpoint.secret
        change = make_change(author=engineer)
        with django_capture_on_commit_callbacks(execute=False):
            event = audit.append(actor=None, verb="attestation.issued", obj=change, data={})
            review_services.fan_out(event_id=event.pk)
        _drain()
        delivery = WebhookDelivery.objects.get()
        assert (
            api(engineer)
            .post(reverse("api-webhook-redeliver", kwargs={"pk": delivery.pk}))
            .status_code
            == 403
        )
        with django_capture_on_commit_callbacks(execute=False):
            response = api(admin_user).post(
                reverse("api-webhook-redeliver", kwargs={"pk": delivery.pk})
            )
        assert response.status_code == 202 and response.json()["status"] == "pending"
        _drain()
    finally:
        receiver.close()
    assert receiver.seen[delivery.msg_id] == 2 and receiver.bad_signatures == []
    log = api(admin_user).get(reverse("api-webhook-deliveries", kwargs={"pk": endpoint.pk}))
    assert [a["status_code"] for a in log.json()[0]["log"]] == [204, 204]
    client.force_login(admin_user)
    page = client.get(reverse("webhook-detail", args=[endpoint.pk])).content.decode()
    assert delivery.msg_id in page and "Redeliver" in page


def test_gives_up_after_the_last_attempt(admin_user, engineer, allow_loopback, settings):
    endpoint = _endpoint(admin_user, "http://127.0.0.1:9/closed", ["attestation.ready"])
    change = make_change(author=engineer)
    event = audit.append(actor=None, verb="attestation.issued", obj=change, data={})
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint, event_id=event.pk, event_type="attestation.ready", msg_id="m1", body="{}"
    )
    WebhookDelivery.objects.filter(pk=delivery.pk).update(attempts=webhooks.MAX_ATTEMPTS - 1)
    assert webhooks.delivery_attempt(delivery_id=delivery.pk) == "failed"
    assert webhooks.delivery_attempt(delivery_id=delivery.pk) == "skipped"


def audit_last(verb):
    from changes.models import AuditEvent

    return AuditEvent.objects.filter(verb=verb).latest("id").pk


def test_the_sweep_wakes_deliveries_whose_wake_up_was_lost(
    admin_user, engineer, allow_loopback, monkeypatch, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    woken = []
    monkeypatch.setattr(webhooks, "enqueue", lambda pk, **kw: woken.append(pk))
    endpoint = _endpoint(admin_user, "http://127.0.0.1:9/x", ["attestation.ready"])
    change = make_change(author=engineer)
    with django_capture_on_commit_callbacks(execute=False):
        event = audit.append(actor=None, verb="attestation.issued", obj=change, data={})
        review_services.fan_out(event_id=event.pk)
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert review_services.requeue_stalled()["webhooks"] == 0  # within the grace period
    later = timezone.now() + timedelta(minutes=5)
    assert review_services.requeue_stalled(now=later)["webhooks"] == 1
    assert woken == [delivery.pk]
    # a delivery that failed a moment ago waits for its backoff
    WebhookDelivery.objects.filter(pk=delivery.pk).update(attempts=6)
    WebhookAttempt.objects.create(delivery=delivery, status_code=500)
    WebhookAttempt.objects.filter(delivery=delivery).update(at=later)
    assert review_services.requeue_stalled(now=later)["webhooks"] == 0


def test_the_webhook_pages_show_the_secret_once_and_refuse_non_admins(
    client, admin_user, engineer, allow_loopback
):
    client.force_login(engineer)
    assert client.get(reverse("webhook-list")).status_code == 403
    client.force_login(admin_user)
    refused = client.post(
        reverse("webhook-list"),
        {"name": "x", "url": "http://169.254.169.254/", "events": ["change.deployed"]},
    )
    assert refused.status_code == 400 and "metadata" in refused.content.decode().lower()
    assert not WebhookEndpoint.objects.exists()
    created = client.post(
        reverse("webhook-list"),
        {"name": "ci", "url": "http://127.0.0.1:9/h", "events": ["change.deployed"]},
    )
    secret = WebhookEndpoint.objects.get().secret
    assert created.status_code == 200 and secret in created.content.decode()
    assert secret not in client.get(reverse("webhook-list")).content.decode()
