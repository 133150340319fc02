"""Teams, AI systems and protocol versions through the API (and the OpenAPI schema)."""

import pytest
from django.core.management import call_command

from changes.models import AISystem, AuditEvent, ProtocolVersion
from tests.changes.test_api_support import pin_null_ports, snapshot, url
from tests.factories import ProtocolFactory, SystemFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _null_ports(monkeypatch):
    pin_null_ports(monkeypatch)


def test_teams_list_members(api, engineer, engineer2, reviewer, outsider):
    # given: two teams with members

    # when: anyone lists the teams
    response = api(outsider).get(url("team-list"))

    # then: each team with its members' ids and usernames
    assert response.status_code == 200
    teams = {t["name"]: t for t in response.json()["results"]}
    assert sorted(m["username"] for m in teams["Team A"]["members"]) == ["engineer", "engineer2"]
    assert teams["Team B"]["members"] == [{"id": reviewer.pk, "username": "reviewer"}]


# --- systems -----------------------------------------------------------------------------


def test_an_admin_registers_a_system(api, admin_user, team_a):
    # given: an admin and an openai-style target that names its key in the secret registry
    target = {
        "kind": "openai",
        "base_url": "http://127.0.0.1:8765/v1",
        "model": "my-model",
        "api_key_secret": "my-model-key",
        "max_tokens": 256,
    }

    # when: they register a high-criticality system
    response = api(admin_user).post(
        url("system-list"),
        {"name": "triage-bot", "owner_team": team_a.pk, "criticality": "high", "target": target},
        format="json",
    )

    # then: 201 with the target as stored and the derived review rules; audited
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["target"] == target
    assert body["owner_team"] == team_a.pk and body["owner_team_name"] == "Team A"
    assert body["approvals_required"] == 2
    assert body["requires_cross_team_review"] is True
    assert body["required_approvals"] is None
    assert AuditEvent.objects.filter(verb="system.created").count() == 1


def test_required_approvals_can_be_configured(api, admin_user, team_a):
    # given/when: a low-criticality system that nonetheless wants three approvals
    response = api(admin_user).post(
        url("system-list"),
        {"name": "careful-bot", "owner_team": team_a.pk, "criticality": "low",
         "required_approvals": 3},
        format="json",
    )  # fmt: skip

    # then: three it is
    assert response.status_code == 201
    assert response.json()["approvals_required"] == 3


@pytest.mark.parametrize(
    "target",
    [
        {"kind": "openai", "base_url": "http://x/v1", "model": "m", "api_key": "sk-live-123"},
        {"kind": "http", "url": "https://agent.example/run",
         "headers": {"Authorization": "Bearer abc"}},
        {"kind": "http", "url": "https://agent.example/run", "auth": {"token": "abc"}},
    ],
    ids=["api_key", "headers", "nested-token"],
)  # fmt: skip
def test_a_target_holding_a_secret_is_refused(api, admin_user, team_a, target):
    # given: a target with a secret in plain text
    before = snapshot()

    # when: it is registered
    response = api(admin_user).post(
        url("system-list"),
        {"name": "leaky-bot", "owner_team": team_a.pk, "target": target},
        format="json",
    )

    # then: 400 naming the target, and nothing stored
    assert response.status_code == 400
    assert response.json()["detail"].startswith("target")
    assert "sk-live-123" not in response.content.decode()
    assert snapshot() == before


def test_headers_secret_names_are_allowed(api, admin_user, team_a):
    # given: an http target whose headers name registered secrets
    target = {"kind": "http", "url": "https://agent.example/run",
              "headers_secret": {"Authorization": "agent-auth-header"}}  # fmt: skip

    # when: it is registered
    response = api(admin_user).post(
        url("system-list"),
        {"name": "agent", "owner_team": team_a.pk, "target": target},
        format="json",
    )

    # then: stored and returned as given
    assert response.status_code == 201, response.content
    assert response.json()["target"] == target


def test_a_secret_stored_some_other_way_is_never_returned(api, engineer, team_a):
    # given: a system whose target was written with a literal key (e.g. a raw import)
    system = SystemFactory(
        owner_team=team_a,
        target={"kind": "openai", "model": "m", "api_key": "sk-live-123", "api_key_secret": "k"},
    )

    # when: it is read
    response = api(engineer).get(url("system-detail", pk=system.pk))

    # then: the key is masked, the secret name is not
    assert "sk-live-123" not in response.content.decode()
    assert response.json()["target"]["api_key"] == "********"
    assert response.json()["target"]["api_key_secret"] == "k"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [({"name": ""}, "name"), ({"criticality": "extreme"}, "criticality"),
     ({"owner_team": 999_999}, "owner_team"), ({"required_approvals": 0}, "required_approvals"),
     ({"target": ["reference"]}, "target")],
)  # fmt: skip
def test_invalid_system_is_400_naming_the_field(api, admin_user, team_a, overrides, field):
    # given: one invalid field
    body = {"name": "bot", "owner_team": team_a.pk, **overrides}
    before = snapshot()

    # when: it is registered
    response = api(admin_user).post(url("system-list"), body, format="json")

    # then: 400 naming it, nothing stored
    assert response.status_code == 400, response.content
    assert response.json()["detail"].startswith(field)
    assert snapshot() == before


def test_a_duplicate_system_name_is_409(api, admin_user, team_a):
    # given: an existing system
    SystemFactory(name="support-bot", owner_team=team_a)
    before = snapshot()

    # when: another one is registered with its name
    response = api(admin_user).post(
        url("system-list"), {"name": "support-bot", "owner_team": team_a.pk}, format="json"
    )

    # then: 409 duplicate
    assert response.status_code == 409
    assert response.json()["code"] == "duplicate"
    assert snapshot() == before


# --- protocol versions --------------------------------------------------------------------


def test_an_engineer_adds_a_protocol_version(api, engineer, team_a):
    # given: a system
    system = SystemFactory(owner_team=team_a)

    # when: an engineer adds a version
    response = api(engineer).post(
        url("protocol-list", system_pk=system.pk),
        {"version": "v3", "body": "# Rules\n\nNever quote e-mail addresses.",
         "system_prompt": "You summarise tickets."},
        format="json",
    )  # fmt: skip

    # then: stored with its content hash and author; listed; audited
    assert response.status_code == 201, response.content
    body = response.json()
    protocol = ProtocolVersion.objects.get(pk=body["id"])
    assert body["content_sha256"] == protocol.content_sha256 and len(body["content_sha256"]) == 64
    assert body["created_by"] == "engineer"
    assert body["system"] == system.pk
    listed = api(engineer).get(url("protocol-list", system_pk=system.pk)).json()["results"]
    assert [p["version"] for p in listed] == ["v3"]
    assert AuditEvent.objects.filter(verb="protocol.created").count() == 1


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_protocol_versions_are_immutable(api, engineer, admin_user, team_a, method):
    # given: a protocol version
    protocol = ProtocolFactory(system=SystemFactory(owner_team=team_a))
    before = snapshot()
    path = url("protocol-detail", system_pk=protocol.system_id, pk=protocol.pk)

    # when: anyone, even an admin, tries to change or delete it
    for user in (engineer, admin_user):
        response = getattr(api(user), method)(path, {"body": "changed"}, format="json")

        # then: 405, and it is unchanged
        assert response.status_code == 405
        assert response.json()["code"] == "method_not_allowed"
    assert snapshot() == before
    assert ProtocolVersion.objects.get(pk=protocol.pk).body == protocol.body


def test_a_duplicate_version_label_is_409(api, engineer, team_a):
    # given: v1 exists
    protocol = ProtocolFactory(system=SystemFactory(owner_team=team_a), version="v1")
    before = snapshot()

    # when: v1 is added again
    response = api(engineer).post(
        url("protocol-list", system_pk=protocol.system_id),
        {"version": "v1", "system_prompt": "Different."},
        format="json",
    )

    # then: 409, versions are immutable
    assert response.status_code == 409
    assert response.json()["code"] == "duplicate"
    assert snapshot() == before


@pytest.mark.parametrize("missing", ["version", "system_prompt"])
def test_a_protocol_missing_a_field_is_400(api, engineer, team_a, missing):
    # given: a body without one field
    system = SystemFactory(owner_team=team_a)
    body = {"version": "v9", "system_prompt": "Prompt."}
    del body[missing]
    before = snapshot()

    # when: it is posted
    response = api(engineer).post(url("protocol-list", system_pk=system.pk), body, format="json")

    # then: 400 naming it
    assert response.status_code == 400
    assert response.json()["detail"].startswith(missing)
    assert snapshot() == before


def test_protocols_of_an_unknown_system_are_404(api, engineer):
    # given/when: a system id that does not exist
    before = snapshot()
    listed = api(engineer).get(url("protocol-list", system_pk=424242))
    created = api(engineer).post(
        url("protocol-list", system_pk=424242),
        {"version": "v1", "system_prompt": "P."},
        format="json",
    )

    # then: 404 both ways
    assert listed.status_code == created.status_code == 404
    assert snapshot() == before


def test_diff_between_two_versions(api, reviewer, team_a):
    # given: two versions that differ in one line of the prompt
    system = SystemFactory(owner_team=team_a)
    v1 = ProtocolFactory(system=system, version="v1", system_prompt="Be helpful.\nQuote freely.")
    v2 = ProtocolFactory(system=system, version="v2", system_prompt="Be helpful.\nRedact PII.")

    # when: the diff is asked for
    response = api(reviewer).get(
        url("protocol-diff", system_pk=system.pk) + f"?from={v1.pk}&to={v2.pk}"
    )

    # then: a unified diff naming both versions, with the changed lines
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["from"]["version"] == "v1" and body["to"]["version"] == "v2"
    assert "--- v1/system_prompt" in body["diff"] and "+++ v2/system_prompt" in body["diff"]
    assert "-Quote freely." in body["diff"] and "+Redact PII." in body["diff"]
    assert body["body_diff"] == ""  # the bodies are identical


def test_diff_with_a_version_of_another_system_is_404(api, reviewer, team_a):
    # given: versions on two systems
    mine = ProtocolFactory(system=SystemFactory(owner_team=team_a))
    theirs = ProtocolFactory(system=SystemFactory(owner_team=team_a))

    # when: they are diffed under the first system
    response = api(reviewer).get(
        url("protocol-diff", system_pk=mine.system_id) + f"?from={mine.pk}&to={theirs.pk}"
    )

    # then: 404
    assert response.status_code == 404


def test_diff_without_to_is_400(api, reviewer, team_a):
    # given/when: only ?from
    protocol = ProtocolFactory(system=SystemFactory(owner_team=team_a))
    response = api(reviewer).get(
        url("protocol-diff", system_pk=protocol.system_id) + f"?from={protocol.pk}"
    )
    # then: 400 naming the missing parameter
    assert response.status_code == 400
    assert response.json()["detail"].startswith("to")


def test_systems_list_is_paginated(api, outsider, team_a):
    # given: 30 systems
    AISystem.objects.bulk_create(
        AISystem(name=f"bot-{i:02}", owner_team=team_a, target={"kind": "reference"})
        for i in range(30)
    )

    # when: the first page is read
    body = api(outsider).get(url("system-list")).json()

    # then: 25 of 30, with a link to the next page
    assert body["count"] == 30 and len(body["results"]) == 25 and body["next"]


# --- OpenAPI ------------------------------------------------------------------------------


def test_the_openapi_schema_generates_without_warnings(tmp_path):
    # given/when: the schema is generated and validated, failing on any warning
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))

    # then: every API operation is in it
    text = out.read_text()
    for path in (
        "/api/v1/auth/token/",
        "/api/v1/changes/{id}/deploy/",
        "/api/v1/audit/events/",
        "/api/v1/systems/{system_pk}/protocols/diff/",
    ):
        assert path in text  # fmt: skip


def test_the_schema_is_served(client):
    # given/when: the schema endpoint is fetched
    response = client.get("/api/schema/")
    # then: OpenAPI
    assert response.status_code == 200
    assert b"openapi" in response.content
