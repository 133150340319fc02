"""The environments editing API: admins only; every edit audited; every refusal a 400/409 in
words that writes nothing (issue 12, "No API to edit environments")."""

from __future__ import annotations

import pytest

from changes.env_models import Environment, LiveVersion
from changes.models import AuditEvent
from tests.changes.env_support import approved, system_with
from tests.conftest import token_for

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("passing_evaluations", "recorded_attestations"),
]


@pytest.fixture
def system(team_a):
    return system_with(team_a, "v1", "v2", criticality="high")[0]


def url(system, env=None):
    base = f"/api/v1/systems/{system.pk}/environments/"
    return f"{base}{env}/" if env else base


def snapshot(system):
    return (
        list(
            Environment.objects.filter(system=system)
            .order_by("pk")
            .values_list(
                "name", "order", "required_approvals", "blackout_windows", "requires_previous"
            )
        ),
        LiveVersion.objects.count(),
        AuditEvent.objects.exclude(verb="permission.denied").count(),
    )


def test_admin_creates_updates_and_deletes_an_environment_each_audited(api, admin_user, system):
    client = api(admin_user)
    created = client.post(
        url(system),
        {"name": "canary", "order": 15, "required_approvals": 1, "time_zone": "Europe/Berlin"},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["name"] == "canary" and created.json()["order"] == 15
    assert [e["name"] for e in client.get(url(system)).json()] == [
        "staging",
        "canary",
        "production",
    ]
    windows = [{"start": "fri 18:00", "end": "mon 06:00"}]
    updated = client.patch(
        url(system, "canary"),
        {"blackout_windows": windows, "requires_staged_rollout": True, "order": 12},
        format="json",
    )
    assert updated.status_code == 200, updated.content
    body = updated.json()
    assert body["blackout_windows"] == windows and body["requires_staged_rollout"]
    assert body["order"] == 12 and body["time_zone"] == "Europe/Berlin"
    assert client.get(url(system, "canary")).json()["order"] == 12
    deleted = client.delete(url(system, "canary"))
    assert deleted.status_code == 204
    assert not Environment.objects.filter(system=system, name="canary").exists()
    verbs = list(
        AuditEvent.objects.filter(verb__startswith="environment.").values_list("verb", flat=True)
    )
    assert verbs[-3:] == ["environment.saved", "environment.saved", "environment.deleted"]
    gone = AuditEvent.objects.filter(verb="environment.deleted").last()
    assert gone.data["name"] == "canary" and gone.data["order"] == 12


@pytest.mark.parametrize("who", ["engineer", "reviewer", "auditor", "pipeline"])
def test_only_admins_edit_environments(api, system, who, request):
    user = request.getfixturevalue(who)
    client = api(user)
    before = snapshot(system)
    assert client.post(url(system), {"name": "qa", "order": 5}, format="json").status_code == 403
    assert client.patch(url(system, "staging"), {"order": 5}, format="json").status_code == 403
    assert client.delete(url(system, "staging")).status_code == 403
    assert client.get(url(system)).status_code == 200  # reading stays open
    assert snapshot(system) == before
    assert AuditEvent.objects.filter(verb="permission.denied").count() >= 3  # refusals logged


def test_an_admin_token_without_the_write_scope_is_refused(admin_user, system):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(admin_user, scopes=['read'])}")
    before = snapshot(system)
    assert client.post(url(system), {"name": "qa", "order": 5}, format="json").status_code == 403
    assert snapshot(system) == before


@pytest.mark.parametrize(
    "method, env, body, status, words",
    [
        ("post", None, {"name": "staging", "order": 5}, 409, "already has an environment"),
        ("post", None, {"name": "qa", "order": 10}, 409, "10 is already taken"),
        ("patch", "staging", {"order": 20}, 409, "20 is already taken"),
        ("post", None, {"name": "Not A Slug", "order": 5}, 400, "name"),
        ("post", None, {"name": "qa", "order": 0}, 400, "order"),
        ("post", None, {"name": "qa"}, 400, "order"),
        ("patch", "nowhere", {"order": 30}, 400, "is not an environment of"),
        ("patch", "staging", {"blackout_windows": [{"start": "fri 18:00"}]}, 400,
         "needs exactly"),
        ("patch", "staging", {"blackout_windows": [{"start": "fri 25:00", "end": "sat 01:00"}]},
         400, "is not a weekday and time"),
        ("patch", "staging", {"blackout_windows": "fri"}, 400, "blackout_windows"),
        ("patch", "staging", {"blackout_windows": [
            {"start": "mon 00:00", "end": "fri 00:00"},
            {"start": "thu 00:00", "end": "sat 00:00"}]}, 400, "overlap"),
        ("patch", "staging", {"time_zone": "Mars/Olympus"}, 400, "IANA"),
        ("patch", "staging", {"required_approvals": 0}, 400, "required_approvals"),
        ("patch", "production", {"required_approvals": 1}, 400, "below that floor"),
        ("post", None, {"name": "last", "order": 30, "required_approvals": 1}, 400,
         "below that floor"),
        ("patch", "staging", {"order": 30}, 400, "below that floor"),
        ("patch", "staging", {"name": "renamed"}, 400, "name"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_in_words_and_writes_nothing(
    api, admin_user, system, method, env, body, status, words
):
    from changes import env_services

    # staging asks 1 approval; the floor binds it only if it becomes the end of the path
    env_services.environment_save(
        actor=admin_user, system=system, name="staging", required_approvals=1
    )
    before = snapshot(system)
    response = getattr(api(admin_user), method)(url(system, env), body, format="json")
    assert response.status_code == status, response.content
    assert words in str(response.json()), response.json()
    assert snapshot(system) == before


def test_unknown_fields_on_update_are_not_silently_kept(api, admin_user, system):
    before = snapshot(system)
    response = api(admin_user).patch(url(system, "staging"), {"name": "x"}, format="json")
    assert response.status_code == 400
    assert snapshot(system) == before


def test_the_floor_allows_the_end_of_the_path_at_or_above_it(api, admin_user, system):
    response = api(admin_user).patch(
        url(system, "production"), {"required_approvals": 3}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["required_approvals"] == 3


def test_delete_is_refused_once_anything_was_deployed_there(
    api, admin_user, engineer, reviewer, team_a
):
    from changes import env_services

    system, v = system_with(team_a, "v1", "v2")
    change = approved(engineer, reviewer, system, v["v1"], v["v2"])
    env_services.deploy(actor=engineer, change_id=change.pk, environment="staging")
    before = snapshot(system)
    response = api(admin_user).delete(url(system, "staging"))
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "deployed_here"
    assert "1 deployment(s) went to staging" in body["detail"]
    assert change.reference in body["detail"]
    assert snapshot(system) == before


def test_the_only_environment_cannot_be_deleted(api, admin_user, system):
    client = api(admin_user)
    assert client.delete(url(system, "staging")).status_code == 204
    before = snapshot(system)
    response = client.delete(url(system, "production"))
    assert response.status_code == 409 and response.json()["code"] == "last_environment"
    assert snapshot(system) == before


def test_deleting_that_would_leave_a_low_approval_end_is_refused(api, admin_user, system):
    from changes import env_services

    env_services.environment_save(
        actor=admin_user, system=system, name="staging", required_approvals=1
    )
    before = snapshot(system)
    response = api(admin_user).delete(url(system, "production"))
    assert response.status_code == 400
    assert "below that floor" in response.json()["detail"]
    assert snapshot(system) == before


def test_unknown_system_is_a_404_for_admins(api, admin_user):
    client = api(admin_user)
    assert client.post("/api/v1/systems/999999/environments/", {"name": "qa", "order": 1},
                       format="json").status_code == 404  # fmt: skip
    assert client.delete("/api/v1/systems/999999/environments/staging/").status_code == 404
