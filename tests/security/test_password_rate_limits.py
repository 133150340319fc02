"""Every password check is rate-limited, and nobody can use the limits to lock someone out.

Red team: 30 wrong passwords on ``POST /reviews/``, then the right one, was accepted; behind a
proxy the username+IP lockout let anyone lock any user out; 300 anonymous failed logins
appended 300 hash-chained audit events.
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from changes.models import AuditEvent, Review
from core import throttle
from tests.changes.test_api_support import awaiting_review, pin_null_ports, url
from tests.conftest import api_client_for
from tests.factories import PASSWORD, make_change

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _null_ports(monkeypatch):
    pin_null_ports(monkeypatch)


def _sign(client, change, password):
    return client.post(
        url("change-reviews", pk=change.pk),
        {"decision": "approve", "password": password, "content_sha256": change.content_sha256},
        format="json",
    )


def test_30_wrong_signoff_passwords_then_the_right_one_is_refused(engineer, reviewer):
    # given a change awaiting review and a reviewer's token (a stolen session, say)
    change = awaiting_review(make_change(author=engineer), engineer)
    client = api_client_for(reviewer)
    # when 30 wrong passwords are tried, then the right one
    statuses = [_sign(client, change, f"guess-{i}").status_code for i in range(30)]
    response = _sign(client, change, PASSWORD)
    # then the guesses stop being checked after the limit, and the right one is refused too
    assert statuses[:5] == [403] * 5
    assert set(statuses[5:]) == {429}
    assert response.status_code == 429
    assert response.json()["code"] == "too_many_attempts"
    assert 0 < int(response["Retry-After"]) <= 900
    assert not Review.objects.filter(change=change).exists()


def test_signoff_limit_through_the_page_answers_429_with_retry_after(client, engineer, reviewer):
    change = awaiting_review(make_change(author=engineer), engineer)
    client.force_login(reviewer)
    path = reverse("change-review", args=[change.pk])

    def post(password):
        return client.post(
            path,
            {
                "decision": "approve",
                "comment": "",
                "password": password,
                "expected_sha256": change.content_sha256,
            },
        )

    for i in range(5):
        assert post(f"guess-{i}").status_code == 403
    response = post(PASSWORD)
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert not Review.objects.filter(change=change).exists()


def test_the_signoff_limit_is_per_account(engineer, reviewer, reviewer2):
    # given reviewer's sign-off locked by their own failures, from another address
    change = awaiting_review(make_change(author=engineer), engineer)
    locked = APIClient(REMOTE_ADDR="10.0.0.1")
    locked.force_authenticate(reviewer)
    for i in range(6):
        _sign(locked, change, f"guess-{i}")
    # when another reviewer signs from their own address
    other = APIClient(REMOTE_ADDR="10.0.0.2")
    other.force_authenticate(reviewer2)
    # then they are not affected
    assert _sign(other, change, PASSWORD).status_code == 201


def _token(client, username, password):
    return client.post(url("token"), {"username": username, "password": password}, format="json")


def test_a_third_party_cannot_lock_an_account_out(engineer, monkeypatch):
    # given an attacker guessing the engineer's password from many addresses
    clock = [1_000_000.0]
    monkeypatch.setattr(throttle.time, "time", lambda: clock[0])
    for i in range(40):
        attacker = APIClient(REMOTE_ADDR=f"203.0.113.{i % 8 + 1}")
        _token(attacker, "engineer", f"guess-{i}")
    # when the real user tries from their own address during the soft delay
    owner = APIClient(REMOTE_ADDR="198.51.100.7")
    delayed = _token(owner, "engineer", PASSWORD)
    # then they are asked to wait a few seconds, never locked out
    assert delayed.status_code == 429
    wait = int(delayed["Retry-After"])
    assert 0 < wait <= 31
    # and once the delay passes, the right password works
    clock[0] += wait
    assert _token(owner, "engineer", PASSWORD).status_code == 200


def test_retrying_during_a_delay_does_not_lock_the_owner_out(engineer, monkeypatch):
    # given a delay on the engineer's account caused by someone else
    clock = [2_000_000.0]
    monkeypatch.setattr(throttle.time, "time", lambda: clock[0])
    for i in range(12):
        _token(APIClient(REMOTE_ADDR=f"203.0.113.{i + 1}"), "engineer", f"guess-{i}")
    owner = APIClient(REMOTE_ADDR="198.51.100.7")
    # when the owner retries impatiently, more often than axes' failure limit
    retries = [_token(owner, "engineer", PASSWORD) for _ in range(8)]
    # then each retry is asked to wait (not counted as a failure anywhere) ...
    assert {r.status_code for r in retries} == {429}
    # ... and once the delay has passed, the owner gets in: no lockout was earned
    clock[0] += 60
    assert _token(owner, "engineer", PASSWORD).status_code == 200


def test_one_client_is_limited_across_usernames(engineer, reviewer):
    # given one address spraying wrong passwords across many names
    sprayer = APIClient(REMOTE_ADDR="203.0.113.50")
    for i in range(30):
        _token(sprayer, f"user{i}", "wrong")
    # then it is refused even for a right password, while other addresses are not
    refused = _token(sprayer, "reviewer", PASSWORD)
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert _token(APIClient(REMOTE_ADDR="198.51.100.9"), "reviewer", PASSWORD).status_code == 200


@pytest.mark.heavy
def test_300_anonymous_failures_are_counted_not_each_chained(db):
    before = AuditEvent.objects.count()
    for i in range(300):
        Client(REMOTE_ADDR=f"192.0.2.{i % 250 + 1}").post(
            reverse("login"), {"username": f"probe{i}", "password": "x"}
        )
    chained = AuditEvent.objects.count() - before
    assert chained <= 2, list(AuditEvent.objects.values_list("verb", "data")[before:])
    from axes.models import AccessAttempt

    assert AccessAttempt.objects.count() == 300


@pytest.mark.parametrize(
    ("count", "forwarded", "expected"),
    [
        (0, "6.6.6.6", "10.0.0.9"),  # no trusted proxy: the header is ignored
        (1, "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # the spoofed left entry is ignored
        (2, "6.6.6.6, 198.51.100.1, 10.0.0.2", "198.51.100.1"),
        (2, "198.51.100.1", "10.0.0.9"),  # fewer hops than proxies: fall back to the peer
    ],
)
def test_client_address_behind_trusted_proxies(rf, settings, count, forwarded, expected):
    settings.TRUSTED_PROXY_COUNT = count
    request = rf.get("/", REMOTE_ADDR="10.0.0.9", HTTP_X_FORWARDED_FOR=forwarded)
    assert throttle.client_ip(request) == expected
