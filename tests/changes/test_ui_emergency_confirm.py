"""The change page's "Confirm emergency" button (issue 16): the same service and independence
check as ``POST /api/v1/changes/{id}/confirm-emergency/``; the author never gets the button."""

from __future__ import annotations

import pytest
from django.urls import reverse

from changes import services
from changes.models import AuditEvent
from tests.changes.test_api_support import awaiting_review, pin_null_ports
from tests.changes.test_ui_pages import login
from tests.factories import SystemFactory, make_change

pytestmark = pytest.mark.django_db
BUTTON = 'id="confirm-emergency"'


@pytest.fixture(autouse=True)
def _null_ports(monkeypatch):
    pin_null_ports(monkeypatch)


def _emergency(engineer, **overrides):
    system = SystemFactory(owner_team=engineer.teams.first(), criticality="high")
    change = make_change(author=engineer, system=system, change_type="emergency", **overrides)
    return awaiting_review(change, engineer)


def test_an_independent_reviewer_confirms_from_the_change_page(client, engineer, reviewer):
    # given a high-criticality emergency awaiting review (2 approvals until confirmed)
    change = _emergency(engineer)
    assert services.required_approvals(change) == 2
    page = login(client, reviewer).get(reverse("change-detail", args=[change.pk]))
    body = page.content.decode()
    assert BUTTON in body and "not yet confirmed by an independent reviewer" in body

    # when the reviewer presses the button
    response = client.post(reverse("change-confirm-emergency", args=[change.pk]), follow=True)

    # then it is confirmed for this content, audited once, and the page says so without a button
    change.refresh_from_db()
    assert change.emergency_confirmed and change.emergency_confirmed_by == reviewer
    assert services.required_approvals(change) == 1
    assert AuditEvent.objects.filter(verb="change.emergency_confirmed").count() == 1
    body = response.content.decode()
    assert "Emergency confirmed for this content by reviewer" in body
    assert BUTTON not in body


@pytest.mark.parametrize("who", ["engineer", "engineer2", "admin_user", "team_a_reviewer"])
def test_no_button_for_the_author_or_anyone_not_independent_and_a_forged_post_is_refused(
    request, client, engineer, who
):
    change = _emergency(engineer)
    actor = request.getfixturevalue(who)
    page = login(client, actor).get(reverse("change-detail", args=[change.pk]))
    assert page.status_code == 200
    assert BUTTON not in page.content.decode()
    # a hand-made POST goes through the service, which refuses it with the reason
    response = client.post(reverse("change-confirm-emergency", args=[change.pk]), follow=True)
    assert response.status_code == 200
    change.refresh_from_db()
    assert not change.emergency_confirmed and services.required_approvals(change) == 2
    assert not AuditEvent.objects.filter(verb="change.emergency_confirmed").exists()
    assert "Only an independent reviewer may confirm an emergency" in response.content.decode()


def test_no_button_on_an_ordinary_change_and_posting_is_a_409_message(client, engineer, reviewer):
    change = awaiting_review(make_change(author=engineer), engineer)
    page = login(client, reviewer).get(reverse("change-detail", args=[change.pk]))
    assert BUTTON not in page.content.decode() and 'id="emergency"' not in page.content.decode()
    response = client.post(reverse("change-confirm-emergency", args=[change.pk]), follow=True)
    assert "not marked as an emergency" in response.content.decode()


def test_a_get_is_not_allowed(client, engineer, reviewer):
    change = _emergency(engineer)
    response = login(client, reviewer).get(reverse("change-confirm-emergency", args=[change.pk]))
    assert response.status_code == 405
