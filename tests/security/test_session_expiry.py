"""Session expiry: a session older than ``SESSION_COOKIE_AGE`` is rejected, for pages and for the
API's session authentication alike. No wall-clock sleeps: the tests that let time pass move a
frozen clock (``django.utils.timezone.now``, which the database session store reads when it
saves and when it loads a session), and one ages the stored session itself."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


class FrozenClock:
    """``timezone.now`` stands still until the test moves it."""

    def __init__(self):
        self.now = timezone.now()

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch) -> FrozenClock:
    frozen = FrozenClock()
    monkeypatch.setattr(timezone, "now", frozen)
    return frozen


def signed_in(username: str) -> Client:
    browser = Client()
    response = browser.post(reverse("login"), {"username": username, "password": PASSWORD})
    assert response.status_code == 302, response.content
    return browser


def assert_signed_in(browser: Client) -> None:
    assert browser.get(reverse("dashboard")).status_code == 200
    assert browser.get("/api/v1/changes/").status_code == 200


def assert_signed_out(browser: Client) -> None:
    page = browser.get(reverse("dashboard"))
    assert page.status_code == 302
    assert page["Location"].startswith(reverse("login"))
    assert browser.get("/api/v1/changes/").status_code in (401, 403)


def test_a_new_session_lives_exactly_session_cookie_age(engineer):
    # when: the engineer signs in
    before = timezone.now()
    browser = signed_in("engineer")

    # then: the stored session and the cookie expire SESSION_COOKIE_AGE from now
    session = Session.objects.get(session_key=browser.session.session_key)
    age = timedelta(seconds=settings.SESSION_COOKIE_AGE)
    assert before + age <= session.expire_date <= timezone.now() + age
    assert int(browser.cookies[settings.SESSION_COOKIE_NAME]["max-age"]) == (
        settings.SESSION_COOKIE_AGE
    )
    assert_signed_in(browser)


def test_a_session_older_than_the_cookie_age_is_rejected(engineer, settings, clock):
    # given: a one-second session age, and a signed-in browser
    settings.SESSION_COOKIE_AGE = 1
    browser = signed_in("engineer")
    assert_signed_in(browser)

    # when: more than that passes
    clock.advance(2.1)

    # then: the session no longer authenticates pages or the API
    assert_signed_out(browser)


def test_an_aged_stored_session_is_rejected_even_with_a_valid_cookie(engineer):
    # given: a signed-in browser at the default age
    browser = signed_in("engineer")
    assert_signed_in(browser)

    # when: its stored session reaches its expiry (as it would SESSION_COOKIE_AGE later)
    Session.objects.filter(session_key=browser.session.session_key).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )

    # then: the cookie the browser still holds is worth nothing
    assert_signed_out(browser)


def test_browsing_does_not_extend_a_session_past_its_age(engineer, settings, clock):
    # given: a two-second session that is used continuously
    settings.SESSION_COOKIE_AGE = 2
    browser = signed_in("engineer")
    for _ in range(4):
        assert browser.get(reverse("dashboard")).status_code == 200
        clock.advance(0.3)

    # when: the original age has passed
    clock.advance(1.2)

    # then: activity did not keep it alive (SESSION_SAVE_EVERY_REQUEST is off)
    assert_signed_out(browser)
