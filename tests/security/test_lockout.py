"""Login lockout after repeated failures, on the web form and the token API, and audited.

django-axes locks a (username, IP address) pair after ``AXES_FAILURE_LIMIT`` failures. Every
failure is counted (axes' ``AccessAttempt``), and the hash-chained log gets a periodic
``auth.login_failures`` summary, not one row per anonymous request; the lockout of an existing
account is chained as ``auth.locked_out``. The password tried never reaches the audit log.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from changes import audit
from changes.models import ApiToken, AuditEvent
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

LIMIT = settings.AXES_FAILURE_LIMIT
WRONG = "wrong-password-{}-do-not-log"


def web_login(client: Client, username: str, password: str):
    return client.post(reverse("login"), {"username": username, "password": password})


def api_token(client: APIClient, username: str, password: str):
    return client.post(
        reverse("api-token"), {"username": username, "password": password}, format="json"
    )


def failures_counted(username: str) -> int:
    from axes.models import AccessAttempt

    return sum(AccessAttempt.objects.filter(username=username).values_list(
        "failures_since_start", flat=True))  # fmt: skip


def events(verb: str, username: str | None = None):
    qs = AuditEvent.objects.filter(verb=verb)
    return [e for e in qs.order_by("id") if username is None or e.data.get("username") == username]


def assert_no_password_in_audit(*passwords: str) -> None:
    dump = " ".join(str(e.data) for e in AuditEvent.objects.all())
    for password in passwords:
        assert password not in dump


def test_the_web_form_locks_out_after_the_limit_and_audits_it(engineer):
    # given: a browser and the failure limit
    browser = Client()

    # when: the wrong password is posted up to the limit
    responses = [web_login(browser, "engineer", WRONG.format(i)) for i in range(LIMIT)]

    # then: the failures before the limit show the form again; the one reaching it locks out
    assert [r.status_code for r in responses[:-1]] == [200] * (LIMIT - 1)
    assert responses[-1].status_code == 429
    assert b"Too many sign-in attempts" in responses[-1].content

    # when: the right password is then given
    response = web_login(browser, "engineer", PASSWORD)

    # then: still locked out, no session, no login event; every failure and the lockout audited
    assert response.status_code == 429
    assert "_auth_user_id" not in browser.session
    assert browser.get(reverse("dashboard")).status_code == 302
    assert not AuditEvent.objects.filter(verb="auth.login").exists()
    assert failures_counted("engineer") >= LIMIT
    assert 1 <= len(events("auth.login_failures")) <= 2
    locked = events("auth.locked_out", "engineer")
    assert locked and locked[0].data["ip"] == "127.0.0.1"
    assert_no_password_in_audit(PASSWORD, *(WRONG.format(i) for i in range(LIMIT)))
    assert audit.verify_chain()[1] is None


def test_the_token_api_locks_out_after_the_limit_and_audits_it(engineer):
    # given: an API client and the failure limit
    client = APIClient()

    # when: the wrong password is sent up to the limit, then the right one
    statuses = [api_token(client, "engineer", WRONG.format(i)).status_code for i in range(LIMIT)]
    response = api_token(client, "engineer", PASSWORD)

    # then: 400s, then 403 locked_out, and the right password gets no token
    assert statuses == [400] * (LIMIT - 1) + [403]
    assert response.status_code == 403
    assert response.json()["code"] == "locked_out"
    assert not ApiToken.objects.filter(user=engineer).exists()
    assert failures_counted("engineer") >= LIMIT
    assert 1 <= len(events("auth.login_failures")) <= 2
    assert events("auth.locked_out", "engineer")
    assert not AuditEvent.objects.filter(verb="auth.token_issued").exists()
    assert_no_password_in_audit(PASSWORD, *(WRONG.format(i) for i in range(LIMIT)))


def test_failures_on_the_web_form_lock_the_token_api_too(engineer):
    # given: a username locked out through the web form
    browser = Client()
    for i in range(LIMIT):
        web_login(browser, "engineer", WRONG.format(i))

    # when: the right password is sent to the token API from the same address
    response = api_token(APIClient(), "engineer", PASSWORD)

    # then: the API refuses too: the lock is on the account and address, not the channel
    assert response.status_code == 403
    assert response.json()["code"] == "locked_out"
    assert not ApiToken.objects.filter(user=engineer).exists()


def test_failures_on_the_token_api_lock_the_web_form_too(engineer):
    # given: a username locked out through the token API
    client = APIClient()
    for i in range(LIMIT):
        api_token(client, "engineer", WRONG.format(i))

    # when: the right password is posted to the web form
    browser = Client()
    response = web_login(browser, "engineer", PASSWORD)

    # then: the browser is refused as well, without a session
    assert response.status_code == 429
    assert "_auth_user_id" not in browser.session


def test_a_locked_out_username_does_not_lock_other_users(engineer, reviewer):
    # given: the engineer locked out
    for i in range(LIMIT):
        web_login(Client(), "engineer", WRONG.format(i))

    # when: another user signs in from the same address
    browser = Client()
    response = web_login(browser, "reviewer", PASSWORD)

    # then: they get in
    assert response.status_code == 302
    assert browser.session["_auth_user_id"] == str(reviewer.pk)


def test_failures_for_an_unknown_username_are_audited_and_locked_too(db):
    # given: a username that does not exist (probing for accounts)
    client = APIClient()

    # when: it is tried past the limit
    statuses = [api_token(client, "nobody", WRONG.format(i)).status_code for i in range(LIMIT)]

    # then: the same answers as for a real account (nothing tells them apart), all counted,
    # and a probe for a name that does not exist adds no chained lockout event
    assert statuses == [400] * (LIMIT - 1) + [403]
    assert failures_counted("nobody") >= LIMIT
    assert not events("auth.locked_out", "nobody")
