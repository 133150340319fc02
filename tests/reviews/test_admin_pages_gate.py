"""The admin-only pages of the reviews app (webhooks, reviewer rules) each name the permission
they need (``core.ui.requires``): a non-admin is refused before the view runs, with that page's
own reason in the audited denial; an anonymous visitor is sent to log in; an admin gets in."""

from __future__ import annotations

import pytest
from django.urls import reverse

from changes.models import AuditEvent
from reviews.models import WebhookEndpoint
from tests.factories import SystemFactory

pytestmark = pytest.mark.django_db

WEBHOOKS = "Only admins manage webhook endpoints."
RULES = "Only admins edit reviewer rules."


@pytest.fixture
def pages(team_a, admin_user):
    system = SystemFactory(owner_team=team_a, name="triage-bot")
    endpoint = WebhookEndpoint.objects.create(
        name="ci",
        url="http://127.0.0.1:9/hook",
        events=["change.deployed"],
        secret="s" * 32,
        created_by=admin_user,
    )
    return [
        (reverse("webhook-list"), WEBHOOKS),
        (reverse("webhook-detail", args=[endpoint.pk]), WEBHOOKS),
        (reverse("ruleset-systems"), RULES),
        (reverse("ruleset-edit", args=[system.pk]), RULES),
    ]


def _denials():
    return list(AuditEvent.objects.filter(verb="permission.denied").values_list("data", flat=True))


@pytest.mark.parametrize("who", ["engineer", "reviewer", "auditor"])
def test_a_non_admin_is_refused_with_the_pages_own_reason_audited(request, client, pages, who):
    client.force_login(request.getfixturevalue(who))
    for url, reason in pages:
        before = len(_denials())
        for method in (client.get, client.post):
            if url == reverse("ruleset-systems") and method == client.post:
                continue  # GET only: a POST is a 405 before any permission is asked
            assert method(url).status_code == 403, url
        denials = _denials()[before:]
        assert denials and all(d["detail"] == reason and d["path"] == url for d in denials)
    assert not WebhookEndpoint.objects.exclude(name="ci").exists()


def test_anonymous_is_sent_to_login_and_an_admin_gets_in(client, admin_user, pages):
    for url, _ in pages:
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response["Location"], url
    assert not _denials()
    client.force_login(admin_user)
    for url, _ in pages:
        assert client.get(url).status_code == 200, url
    assert not _denials()
