"""CSRF on every form: a POST without a CSRF token to any web URL (``changes.urls``,
``evaluations.urls``, ``attestations.urls`` and the sign-in pages) is refused with 403 and
changes nothing; the same POST with a token passes the CSRF check. The URLs are enumerated from
the URL configuration, so a new page or form is covered the day it is added.

The API's session authentication is held to the same rule (DRF enforces CSRF for
session-authenticated unsafe requests); token-authenticated calls need no CSRF token.
"""

from __future__ import annotations

import logging

import pytest
from django.conf import settings
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from changes.models import AuditEvent, ChangeRequest
from tests.factories import make_change

pytestmark = pytest.mark.django_db

WEB_URLCONFS = {"changes.urls", "evaluations.urls", "attestations.urls", "changes.auth_urls"}
API_URLCONFS = {"changes.api_urls", "evaluations.api_urls", "attestations.api_urls"}


def _module_name(urlconf) -> str:
    return urlconf if isinstance(urlconf, str) else getattr(urlconf, "__name__", "")


def routes(urlconfs: set[str]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(full route, URL name, path kwargs) of every named pattern under ``urlconfs``."""
    found = []

    def walk(patterns, prefix: str, inside: bool):
        for entry in patterns:
            if isinstance(entry, URLResolver):
                name = _module_name(entry.urlconf_name)
                walk(entry.url_patterns, prefix + str(entry.pattern), inside or name in urlconfs)
            elif isinstance(entry, URLPattern) and inside and entry.name:
                kwargs = tuple(getattr(entry.pattern, "converters", {}))
                found.append((prefix + str(entry.pattern), entry.name, kwargs))

    walk(get_resolver().url_patterns, "", False)
    return sorted(set(found))


WEB_ROUTES = routes(WEB_URLCONFS)
API_ROUTES = routes(API_URLCONFS)


def test_the_enumeration_finds_the_forms():
    # Guards the enumeration itself: if it found nothing, every test below would be vacuous.
    names = {name for _, name, _ in WEB_ROUTES}
    assert {"login", "logout", "change-create", "change-submit", "change-review"} <= names
    assert {"suite-upload", "run-cancel", "attestation-verify"} <= names
    assert {"api-change-list", "api-change-reviews", "api-attestation-verify"} <= {
        name for _, name, _ in API_ROUTES
    }


@pytest.fixture
def objects(engineer):
    """Real ids for the path parameters, so the control request reaches the view."""
    change = make_change(author=engineer)
    return {
        "change": change.pk,
        "system": change.system_id,
        "protocol": change.base_protocol_id,
    }


def url_for(route: str, name: str, kwargs: tuple[str, ...], objects: dict) -> str:
    values = {}
    for key in kwargs:
        if key == "protocol_pk":
            values[key] = objects["protocol"]
        elif route.startswith(("systems/", "api/v1/systems/")):
            values[key] = objects["system"]
        elif "changes/" in route and key == "pk":
            values[key] = objects["change"]
        else:
            values[key] = 1  # runs, suites, attestations: the CSRF check comes before the view
    return reverse(name, kwargs=values)


def snapshot() -> tuple:
    """What a forged request could have changed (a refusal itself may be audited as
    ``permission.denied``: that is a record of the attempt, not a change)."""
    return (
        AuditEvent.objects.exclude(verb="permission.denied").count(),
        sorted(ChangeRequest.objects.values_list("id", "state", "revision")),
    )


def with_token(client: Client) -> dict:
    token = _get_new_csrf_string()
    client.cookies[settings.CSRF_COOKIE_NAME] = token
    return {"HTTP_X_CSRFTOKEN": token}


def csrf_rejections(caplog, path: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "django.security.csrf"
        and getattr(r, "request", None) is not None
        and r.request.path == path
    ]


@pytest.mark.parametrize(
    ("route", "name", "kwargs"), WEB_ROUTES, ids=[name for _, name, _ in WEB_ROUTES]
)
@pytest.mark.parametrize("who", ["admin", "anonymous"])
def test_a_post_without_a_csrf_token_is_refused(
    route, name, kwargs, who, objects, admin_user, caplog
):
    # given: a browser (signed in as an admin, who may do anything, or anonymous) that
    # enforces CSRF like a real one, and the state before
    url = url_for(route, name, kwargs, objects)
    browser = Client(enforce_csrf_checks=True)
    if who == "admin":
        browser.force_login(admin_user)
    before = snapshot()
    caplog.set_level(logging.WARNING, logger="django.security.csrf")

    # when: a form is posted without the token
    response = browser.post(url, {"title": "forged", "decision": "approve", "reason": "x"})

    # then: 403 from the CSRF check, and nothing changed
    assert response.status_code == 403, (url, response.status_code)
    assert csrf_rejections(caplog, url), f"{url}: refused, but not by the CSRF check"
    assert snapshot() == before


@pytest.mark.parametrize(
    ("route", "name", "kwargs"), WEB_ROUTES, ids=[name for _, name, _ in WEB_ROUTES]
)
def test_the_same_post_with_a_csrf_token_passes_the_check(
    route, name, kwargs, objects, admin_user, caplog
):
    # given: the same browser, now holding the CSRF cookie and sending the token
    url = url_for(route, name, kwargs, objects)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    headers = with_token(browser)
    caplog.set_level(logging.WARNING, logger="django.security.csrf")

    # when: the form is posted
    browser.post(url, {}, **headers)

    # then: whatever the view answers, the CSRF check let it through (the refusals above are
    # the check's, not the views')
    assert not csrf_rejections(caplog, url), url


@pytest.mark.parametrize(
    ("route", "name", "kwargs"), API_ROUTES, ids=[name for _, name, _ in API_ROUTES]
)
def test_the_api_with_a_session_needs_a_csrf_token_too(route, name, kwargs, objects, admin_user):
    # given: a browser session (the API accepts it) without a CSRF token
    url = url_for(route, name, kwargs, objects)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    before = snapshot()

    # when: an unsafe request is sent with the session cookie
    response = browser.post(url, {}, content_type="application/json")

    # then: refused by the CSRF check (the token endpoint takes no session: it is exempt),
    # and nothing changed
    if name == "api-token":
        assert response.status_code == 400
    elif name == "api-attestation-certificate":
        # public, sessionless and read-only: there is no unsafe method to protect
        assert response.status_code == 405
    else:
        assert response.status_code == 403, (url, response.status_code)
        assert "CSRF" in response.json()["detail"], response.json()
        denied = AuditEvent.objects.filter(verb="permission.denied").order_by("-id").first()
        assert denied is not None and "CSRF" in denied.data["detail"]
    assert snapshot() == before


def test_token_authenticated_api_calls_need_no_csrf_token(engineer, api, objects):
    # given: an API client with a token (no cookies: nothing a forged page could ride on)
    client = api(engineer)
    client.enforce_csrf_checks = True

    # when: it files a change
    change = ChangeRequest.objects.get(pk=objects["change"])
    response = client.post(
        "/api/v1/changes/",
        {
            "system": change.system_id,
            "base_protocol": change.base_protocol_id,
            "proposed_protocol": change.proposed_protocol_id,
            "title": "Token call",
            "rationale": "r",
            "test_plan": "t",
        },
        format="json",
    )

    # then: it works
    assert response.status_code == 201, response.content
