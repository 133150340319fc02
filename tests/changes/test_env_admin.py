"""Admins edit a system's environments in the Django admin: saved through the service
(validated, audited); bad windows and a taken order are form errors, never a 500."""

from __future__ import annotations

import pytest

from changes.env_models import Environment
from changes.models import AuditEvent
from tests.factories import SystemFactory

pytestmark = pytest.mark.django_db


def form(env, **overrides):
    data = {
        "order": env.order,
        "required_approvals": "",
        "requires_previous": "",
        "blackout_windows": "[]",
        "time_zone": "UTC",
        "requires_staged_rollout": "",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v != ""}


def test_admin_edits_an_environment_through_the_service(client, admin_user, team_a):
    system = SystemFactory(owner_team=team_a)
    prod = Environment.objects.get(system=system, name="production")
    client.force_login(admin_user)
    url = f"/admin/changes/environment/{prod.pk}/change/"
    windows = '[{"start": "fri 18:00", "end": "mon 06:00"}]'
    response = client.post(
        url, form(prod, requires_previous="on", blackout_windows=windows, time_zone="Europe/Berlin")
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    prod.refresh_from_db()
    assert prod.requires_previous and prod.time_zone == "Europe/Berlin"
    assert prod.blackout_windows == [{"start": "fri 18:00", "end": "mon 06:00"}]
    assert AuditEvent.objects.filter(verb="environment.saved", object_id=str(prod.pk)).exists()


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"blackout_windows": '[{"start": "fri 18:00"}]'}, "needs exactly"),
        ({"blackout_windows": '[{"start": "mon 00:00", "end": "fri 00:00"}, '
          '{"start": "thu 00:00", "end": "sat 00:00"}]'}, "overlap"),
        ({"time_zone": "Mars/Olympus"}, "is not an IANA time zone"),
        ({"order": "10"}, "already taken"),
        ({"required_approvals": "1"}, "below that floor"),
    ],
)  # fmt: skip
def test_bad_environment_settings_are_form_errors(client, admin_user, team_a, overrides, words):
    system = SystemFactory(owner_team=team_a, criticality="high")
    prod = Environment.objects.get(system=system, name="production")
    client.force_login(admin_user)
    events = AuditEvent.objects.count()
    response = client.post(f"/admin/changes/environment/{prod.pk}/change/", form(prod, **overrides))
    assert response.status_code == 200
    assert words in response.content.decode()
    prod.refresh_from_db()
    assert (prod.order, prod.blackout_windows, prod.time_zone) == (20, [], "UTC")
    assert AuditEvent.objects.count() == events
