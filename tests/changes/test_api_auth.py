"""Token authentication: issue, use, refuse, and lock out after repeated failures."""

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from changes import tokens
from changes.models import ApiToken, AuditEvent
from tests.changes.test_api_support import snapshot, url
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def _token(client, username, password):
    return client.post(url("token"), {"username": username, "password": password}, format="json")


def _verbs(verb):
    return AuditEvent.objects.filter(verb=verb).count()


def test_token_is_issued_audited_and_works(engineer):
    # given: an engineer with a password
    client = APIClient()

    # when: they exchange it for a token
    response = _token(client, "engineer", PASSWORD)

    # then: a token comes back, it authenticates API calls, and the issue is audited
    assert response.status_code == 200, response.content
    key = response.json()["token"]
    assert tokens.find(key).user == engineer
    assert not ApiToken.objects.filter(key_sha256=key).exists()  # only the hash is stored
    event = AuditEvent.objects.get(verb="auth.token_issued")
    assert event.actor_id == engineer.pk
    assert "password" not in str(event.data)
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get(url("change-list")).status_code == 200


def test_asking_twice_issues_two_tokens_both_shown_once(engineer):
    # given: a token already issued
    first = _token(APIClient(), "engineer", PASSWORD).json()["token"]

    # when: the engineer asks again
    second = _token(APIClient(), "engineer", PASSWORD).json()["token"]

    # then: a second token (the first key cannot be shown again: only its hash is kept),
    # both working, both issues audited
    assert first != second
    assert tokens.find(first) and tokens.find(second)
    assert _verbs("auth.token_issued") == 2


def test_bad_credentials_are_400_and_audited(engineer):
    # given: nothing issued yet
    before = snapshot()

    # when: the password is wrong
    response = _token(APIClient(), "engineer", "not the password")

    # then: 400 invalid_credentials, no token, and the failure is audited
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_credentials"
    assert snapshot()["counts"] == before["counts"]
    failed = AuditEvent.objects.get(verb="auth.login_failures")
    assert failed.data["last_username"] == "engineer" and failed.data["count"] == 1
    assert "not the password" not in str(failed.data)


@pytest.mark.parametrize("missing", ["username", "password"])
def test_missing_field_is_400_naming_it(engineer, missing):
    # given: a body without one field
    body = {"username": "engineer", "password": PASSWORD}
    del body[missing]
    before = snapshot()

    # when: it is posted
    response = APIClient().post(url("token"), body, format="json")

    # then: 400 naming the field, and nothing changed
    assert response.status_code == 400
    assert response.json()["detail"].startswith(missing)
    assert missing in response.json()["fields"]
    assert snapshot() == before


def test_lockout_after_repeated_failures(engineer):
    # given: the failure limit (django-axes)
    limit = settings.AXES_FAILURE_LIMIT
    client = APIClient()

    # when: the wrong password is tried up to the limit
    statuses = [_token(client, "engineer", f"wrong {i}").status_code for i in range(limit)]

    # then: the failures before the limit are 400, the one reaching it locks the account
    assert statuses == [400] * (limit - 1) + [403]
    tokens_before = ApiToken.objects.count()

    # when: the right password is then given
    response = _token(client, "engineer", PASSWORD)

    # then: still locked out, no token issued, and every step is audited
    assert response.status_code == 403
    assert response.json()["code"] == "locked_out"
    assert ApiToken.objects.count() == tokens_before == 0
    assert _verbs("auth.login_failures") >= 1  # counted, summarised in the chain
    assert _verbs("auth.locked_out") >= 1
    assert _verbs("auth.token_issued") == 0


def test_a_success_resets_the_failure_count(engineer):
    # given: failures just short of the limit, then a success
    limit = settings.AXES_FAILURE_LIMIT
    client = APIClient()
    for i in range(limit - 1):
        assert _token(client, "engineer", f"wrong {i}").status_code == 400
    assert _token(client, "engineer", PASSWORD).status_code == 200

    # when: the user mistypes again, as many times
    statuses = [_token(client, "engineer", f"again {i}").status_code for i in range(limit - 1)]

    # then: they are not locked out: the count started again
    assert statuses == [400] * (limit - 1)
    assert _token(client, "engineer", PASSWORD).status_code == 200


def test_bad_token_is_401():
    # given: a made-up token
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)

    # when: it is used
    response = client.get(url("change-list"))

    # then: 401 with the error body
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


def test_session_auth_also_works(engineer, client):
    # given: a browser session
    client.force_login(engineer)

    # when: the API is called from it
    response = client.get(url("change-list"))

    # then: it is allowed
    assert response.status_code == 200


# --- Token lookup reads the roles in the same query (changes/authentication.py) ----------


def test_the_token_lookup_reads_every_role_in_one_query(db):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from core import roles
    from core.authentication import TokenWithRolesAuthentication
    from tests.factories import UserFactory

    # given: a user holding two roles, with a token
    user = UserFactory(username="two-hats", roles=["reviewer", "auditor"])
    key = tokens.issue(user)[1]

    # when: the token is authenticated and the roles are then asked for
    with CaptureQueriesContext(connection) as queries:
        authenticated, token = TokenWithRolesAuthentication().authenticate_credentials(key)
        held = roles.role_names(authenticated)

    # then: one query gave the user and both roles
    assert len(queries) == 1
    assert authenticated == user and token.scopes == tokens.ALL_SCOPES
    assert held == {"reviewer", "auditor"}


def test_a_user_without_roles_has_none_and_is_still_authenticated(db):
    from core import roles
    from core.authentication import TokenWithRolesAuthentication
    from tests.factories import UserFactory

    user = UserFactory(username="no-hats")
    key = tokens.issue(user)[1]

    authenticated, _ = TokenWithRolesAuthentication().authenticate_credentials(key)

    assert authenticated == user
    assert roles.role_names(authenticated) == frozenset()


@pytest.mark.parametrize("case", ["unknown", "inactive"])
def test_unknown_tokens_and_inactive_users_are_401(engineer, case):
    # given: a token that does not exist, or one whose user was deactivated
    key = tokens.issue(engineer)[1]
    if case == "unknown":
        key = "0" * 40
    else:
        engineer.is_active = False
        engineer.save(update_fields=["is_active"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    # when: it is used
    response = client.get(url("change-list"))

    # then: 401, as with DRF's own token authentication
    assert response.status_code == 401, response.content
