"""The Django admin: records are created through the services, workflow records are read-only."""

from __future__ import annotations

import pytest

from changes.models import AISystem, AuditEvent, ChangeRequest, ProtocolVersion, Team
from tests.changes.test_ui_pages import login, system_with_versions
from tests.factories import make_change

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("recorded_attestations")]


def test_admin_adds_a_team_through_the_service(client, admin_user, engineer):
    # given the admin on the team form
    login(client, admin_user)
    # when they add a team with a member
    response = client.post("/admin/changes/team/add/", {"name": "Team Z", "members": [engineer.pk]})
    # then the team exists with its member and the creation is audited
    assert response.status_code == 302, response.content.decode()[:3000]
    team = Team.objects.get(name="Team Z")
    assert list(team.members.all()) == [engineer]
    assert AuditEvent.objects.filter(verb="team.created", object_id=str(team.pk)).exists()


def test_team_membership_changes_are_audited(client, admin_user, engineer, reviewer):
    # given an existing team
    team = engineer.teams.first()
    login(client, admin_user)
    # when the admin adds the reviewer to it
    response = client.post(
        f"/admin/changes/team/{team.pk}/change/", {"members": [engineer.pk, reviewer.pk]}
    )
    # then the membership change is on record (it decides independence)
    assert response.status_code == 302
    event = AuditEvent.objects.get(verb="team.members_changed")
    assert event.data == {"added": [reviewer.pk], "removed": []}


def test_admin_registers_a_system_through_the_service(client, admin_user, team_a):
    login(client, admin_user)
    response = client.post(
        "/admin/changes/aisystem/add/",
        {
            "name": "triage-bot",
            "description": "Routes tickets.",
            "owner_team": team_a.pk,
            "criticality": "high",
            "target": '{"kind": "reference", "agent": "compliant"}',
            "required_approvals": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    system = AISystem.objects.get(name="triage-bot")
    assert system.criticality == "high" and system.approvals_required == 2
    assert AuditEvent.objects.filter(verb="system.created", object_id=str(system.pk)).exists()
    # and the system is read-only afterwards
    page = client.get(f"/admin/changes/aisystem/{system.pk}/change/").content.decode()
    assert 'name="_save"' not in page


def test_admin_adds_an_immutable_protocol_version(client, admin_user, engineer):
    system, *_ = system_with_versions(engineer.teams.first())
    login(client, admin_user)
    response = client.post(
        "/admin/changes/protocolversion/add/",
        {
            "system": system.pk,
            "version": "v3",
            "system_prompt": "You are careful.",
            "body": "# v3",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    protocol = ProtocolVersion.objects.get(system=system, version="v3")
    assert len(protocol.content_sha256) == 64 and protocol.created_by == admin_user
    assert AuditEvent.objects.filter(verb="protocol.created", object_id=str(protocol.pk)).exists()
    # when someone tries to change it, nothing changes
    client.post(
        f"/admin/changes/protocolversion/{protocol.pk}/change/",
        {"system": system.pk, "version": "v3", "system_prompt": "Tampered", "body": "x"},
    )
    assert ProtocolVersion.objects.get(pk=protocol.pk).system_prompt == "You are careful."


def test_duplicate_protocol_version_is_a_form_error(client, admin_user, engineer):
    system, v1, _ = system_with_versions(engineer.teams.first())
    login(client, admin_user)
    response = client.post(
        "/admin/changes/protocolversion/add/",
        {"system": system.pk, "version": "v1", "system_prompt": "x", "body": ""},
    )
    assert response.status_code == 200
    assert ProtocolVersion.objects.filter(system=system).count() == 2


def test_change_requests_cannot_be_edited_in_the_admin(client, admin_user, engineer):
    change = make_change(author=engineer)
    login(client, admin_user)
    response = client.post(
        f"/admin/changes/changerequest/{change.pk}/change/", {"title": "Edited in admin"}
    )
    assert response.status_code == 403
    assert ChangeRequest.objects.get(pk=change.pk).title == change.title


def test_non_admin_staff_cannot_add_teams(client, engineer):
    engineer.is_staff = True
    engineer.save()
    login(client, engineer)
    assert client.get("/admin/changes/team/add/").status_code == 403
