"""API tokens: hashed (shown once), expiring, rotatable, revoked on password change, scoped.

Red team: tokens never expired or rotated, survived a password change and were shown in
clear on the admin page.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from changes import tokens
from changes.models import ApiToken, AuditEvent
from tests.changes.test_api_support import awaiting_review, pin_null_ports, url
from tests.evaluations.conftest import suite_text
from tests.factories import PASSWORD, make_change

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _null_ports(monkeypatch):
    pin_null_ports(monkeypatch)


def client_with(key: str, scheme: str = "Token") -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {key}")
    return client


def _exchange(username="engineer", **extra):
    body = {"username": username, "password": PASSWORD, **extra}
    return APIClient().post(reverse("api-token"), body, format="json")


def test_the_key_is_shown_once_and_stored_only_as_a_hash(client, engineer, admin_user):
    response = _exchange()
    assert response.status_code == 200
    body = response.json()
    key = body["token"]
    assert body["scopes"] == ["read", "write", "deploy", "ingest"]
    assert key.startswith("pcm_" + body["prefix"])
    # nothing stored holds the key: not the token row, not the audit log
    row = ApiToken.objects.get(user=engineer)
    assert key not in str(ApiToken.objects.filter(pk=row.pk).values().first())
    assert all(key not in str(e.data) for e in AuditEvent.objects.all())
    # and the admin lists it by prefix only
    client.force_login(admin_user)
    page = client.get("/admin/changes/apitoken/").content.decode()
    assert body["prefix"] in page and key not in page
    detail = client.get(f"/admin/changes/apitoken/{row.pk}/change/").content.decode()
    assert key not in detail and row.key_sha256 not in detail


def test_tokens_expire(engineer, settings):
    token, key = tokens.issue(engineer, days=1)
    assert client_with(key).get(url("change-list")).status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client_with(key).get(url("change-list"))
    assert response.status_code == 401 and "expired" in response.json()["detail"]


def test_lifetime_is_capped(engineer):
    assert _exchange(expires_in_days=91).status_code == 400
    response = _exchange(expires_in_days=7)
    expires = ApiToken.objects.get(prefix=response.json()["prefix"]).expires_at
    assert timedelta(days=6) < expires - timezone.now() <= timedelta(days=7)


def test_rotation_replaces_the_key_and_kills_the_old_one(engineer):
    _, old = tokens.issue(engineer, scopes=["read", "ingest"], name="ci")
    response = client_with(old).post(reverse("api-token-rotate"))
    assert response.status_code == 200, response.content
    new = response.json()["token"]
    assert response.json()["scopes"] == ["read", "ingest"]
    assert client_with(new).get(url("change-list")).status_code == 200
    assert client_with(old).get(url("change-list")).status_code == 401


def test_revoke_and_bearer(engineer):
    _, key = tokens.issue(engineer)
    assert client_with(key, "Bearer").get(url("change-list")).status_code == 200
    assert client_with(key).post(reverse("api-token-revoke")).status_code == 204
    assert client_with(key).get(url("change-list")).status_code == 401


def test_a_password_change_revokes_every_token(engineer):
    keys = [tokens.issue(engineer)[1] for _ in range(2)]
    engineer.set_password("a-new-password-2026")
    engineer.save()
    for key in keys:
        assert client_with(key).get(url("change-list")).status_code == 401
    assert AuditEvent.objects.filter(verb="auth.token_revoked").count() == 2


def test_a_rehash_of_the_same_password_at_login_does_not_revoke(engineer):
    _, key = tokens.issue(engineer)
    engineer.password = "md5$" + engineer.password.split("$", 1)[1]  # same hash, re-saved
    engineer._password = None
    engineer.save(update_fields=["password"])
    assert client_with(key).get(url("change-list")).status_code == 200


def test_old_clear_text_tokens_are_refused(engineer):
    response = client_with("0123456789abcdef0123456789abcdef01234567").get(url("change-list"))
    assert response.status_code == 401


# --- scopes: they narrow what the roles allow, and admins get no bypass --------------------


def test_a_read_token_cannot_write(engineer, admin_user):
    _, key = tokens.issue(engineer, scopes=["read"])
    client = client_with(key)
    assert client.get(url("change-list")).status_code == 200
    response = client.post(url("change-list"), {"title": "x"}, format="json")
    assert response.status_code == 403 and "'write' scope" in response.json()["detail"]
    _, admin_key = tokens.issue(admin_user, scopes=["read"])
    refused = client_with(admin_key).post(url("system-list"), {"name": "n"}, format="json")
    assert refused.status_code == 403


def test_a_deploy_token_deploys_but_files_nothing(engineer, pipeline):
    change = awaiting_review(make_change(author=engineer), engineer)
    _, key = tokens.issue(pipeline, scopes=["read", "deploy"])
    client = client_with(key)
    deploy = client.post(url("change-deploy", pk=change.pk), {}, format="json")
    assert deploy.status_code == 409  # reaches the gate (closed), not refused for scope
    assert client.post(url("change-list"), {}, format="json").status_code == 403


def test_an_ingest_token_adds_suites_only(engineer):
    _, key = tokens.issue(engineer, scopes=["ingest"])
    client = client_with(key)
    added = client.post(reverse("api-suite-list"), suite_text(), content_type="application/json")
    assert added.status_code == 201, added.content[:300]
    assert client.post(url("change-list"), {}, format="json").status_code == 403
    assert client.get(url("change-list")).status_code == 403  # no read scope either


def test_unknown_scopes_are_400(engineer):
    assert _exchange(scopes=["admin"]).status_code == 400
