"""The API permission matrix: every persona against every endpoint.

A medium-criticality system owned by team A, a draft change and a change awaiting review,
both filed by ``engineer``. Reviewers and pipelines see changes once they leave draft; team
members see their team's changes; auditors and admins see everything; an outsider sees no
change at all (404, never 403, so existence does not leak). A refused request changes
nothing but the ``permission.denied`` audit count, and a 403 always adds exactly one.

Columns: engineer, engineer2 (team A), reviewer (team B), team_a_reviewer, auditor,
admin_user, pipeline, outsider, anonymous.
"""

from types import SimpleNamespace

import pytest

from tests.changes.test_api_support import (
    PERSONAS,
    awaiting_review,
    denials,
    pin_null_ports,
    snapshot,
    url,
)
from tests.conftest import api_client_for
from tests.factories import PASSWORD, SystemFactory, make_change

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _null_ports(monkeypatch):
    pin_null_ports(monkeypatch)


@pytest.fixture
def world(engineer, team_a):
    system = SystemFactory(owner_team=team_a, criticality="medium")
    draft = make_change(author=engineer, system=system, title="A draft")
    waiting = awaiting_review(make_change(author=engineer, system=system), engineer)
    emergency = awaiting_review(
        make_change(author=engineer, system=system, change_type="emergency"), engineer
    )
    return SimpleNamespace(
        team=team_a, system=system, draft=draft, waiting=waiting, emergency=emergency
    )


def _change_body(w):
    return {
        "system": w.system.pk,
        "base_protocol": w.draft.base_protocol_id,
        "proposed_protocol": w.draft.proposed_protocol_id,
        "title": "Another change",
        "rationale": "Because.",
        "test_plan": "Run the suite.",
    }


# endpoint -> (method, path, body); paths and bodies are built from the world.
ENDPOINTS = {
    "teams.list": ("get", lambda w: url("team-list"), None),
    "teams.detail": ("get", lambda w: url("team-detail", pk=w.team.pk), None),
    "systems.list": ("get", lambda w: url("system-list"), None),
    "systems.detail": ("get", lambda w: url("system-detail", pk=w.system.pk), None),
    "systems.create": (
        "post",
        lambda w: url("system-list"),
        lambda w: {"name": "new-system", "owner_team": w.team.pk, "criticality": "low"},
    ),
    "protocols.list": ("get", lambda w: url("protocol-list", system_pk=w.system.pk), None),
    "protocols.create": (
        "post",
        lambda w: url("protocol-list", system_pk=w.system.pk),
        lambda w: {"version": "v-new", "system_prompt": "Be careful.", "body": "# New"},
    ),
    "protocols.diff": (
        "get",
        lambda w: (
            url("protocol-diff", system_pk=w.system.pk)
            + f"?from={w.draft.base_protocol_id}&to={w.draft.proposed_protocol_id}"
        ),
        None,
    ),
    "changes.list": ("get", lambda w: url("change-list"), None),
    "changes.create": ("post", lambda w: url("change-list"), _change_body),
    "draft.detail": ("get", lambda w: url("change-detail", pk=w.draft.pk), None),
    "draft.patch": (
        "patch",
        lambda w: url("change-detail", pk=w.draft.pk),
        lambda w: {"title": "Renamed"},
    ),
    "draft.submit": ("post", lambda w: url("change-submit", pk=w.draft.pk), lambda w: {}),
    "draft.withdraw": (
        "post",
        lambda w: url("change-withdraw", pk=w.draft.pk),
        lambda w: {"reason": "Superseded."},
    ),
    "waiting.detail": ("get", lambda w: url("change-detail", pk=w.waiting.pk), None),
    "waiting.reviews": ("get", lambda w: url("change-reviews", pk=w.waiting.pk), None),
    "waiting.review": (
        "post",
        lambda w: url("change-reviews", pk=w.waiting.pk),
        lambda w: {
            "decision": "approve",
            "password": PASSWORD,
            "content_sha256": type(w.waiting).objects.get(pk=w.waiting.pk).content_sha256,
        },
    ),
    "waiting.gate": ("get", lambda w: url("change-gate", pk=w.waiting.pk), None),
    "waiting.deploy": (
        "post",
        lambda w: url("change-deploy", pk=w.waiting.pk),
        lambda w: {"environment": "production"},
    ),
    "waiting.close": ("post", lambda w: url("change-close", pk=w.waiting.pk), lambda w: {}),
    "waiting.timeline": ("get", lambda w: url("change-timeline", pk=w.waiting.pk), None),
    "emergency.confirm": (
        "post",
        lambda w: url("change-emergency-confirm", pk=w.emergency.pk),
        lambda w: {},
    ),
    "audit.events": ("get", lambda w: url("audit-events"), None),
    "audit.jsonl": ("get", lambda w: url("audit-events") + "?format=jsonl", None),
    "audit.csv": ("get", lambda w: url("audit-events") + "?format=csv", None),
    "audit.verify": ("get", lambda w: url("audit-verify"), None),
}

# fmt: off
MATRIX = {
    #                   eng  eng2 rev  trev aud  adm  pipe out  anon
    "teams.list":       (200, 200, 200, 200, 200, 200, 200, 200, 401),
    "teams.detail":     (200, 200, 200, 200, 200, 200, 200, 200, 401),
    "systems.list":     (200, 200, 200, 200, 200, 200, 200, 200, 401),
    "systems.detail":   (200, 200, 200, 200, 200, 200, 200, 200, 401),
    "systems.create":   (403, 403, 403, 403, 403, 201, 403, 403, 401),
    "protocols.list":   (200, 200, 200, 200, 200, 200, 200, 200, 401),
    "protocols.create": (201, 201, 403, 403, 403, 201, 403, 403, 401),
    "protocols.diff":   (200, 200, 200, 200, 200, 200, 200, 200, 401),
    "changes.list":     (200, 200, 200, 200, 200, 200, 200, 200, 401),
    "changes.create":   (201, 201, 403, 403, 403, 403, 403, 403, 401),
    "draft.detail":     (200, 200, 404, 200, 200, 200, 404, 404, 401),
    "draft.patch":      (200, 200, 404, 403, 403, 403, 404, 404, 401),
    "draft.submit":     (200, 403, 404, 403, 403, 403, 404, 404, 401),
    "draft.withdraw":   (200, 403, 404, 403, 403, 200, 404, 404, 401),
    "waiting.detail":   (200, 200, 200, 200, 200, 200, 200, 404, 401),
    "waiting.reviews":  (200, 200, 200, 200, 200, 200, 200, 404, 401),
    "waiting.review":   (403, 403, 201, 201, 403, 403, 403, 404, 401),
    "waiting.gate":     (200, 200, 200, 200, 200, 200, 200, 404, 401),
    "waiting.deploy":   (409, 409, 403, 403, 403, 403, 409, 404, 401),
    "waiting.close":    (409, 403, 403, 403, 403, 409, 403, 404, 401),
    "waiting.timeline": (200, 200, 200, 200, 200, 200, 200, 404, 401),
    # Only someone who could sign confirms an emergency: never its author, no admin bypass.
    "emergency.confirm": (403, 403, 200, 200, 403, 403, 403, 404, 401),
    "audit.events":     (403, 403, 403, 403, 200, 200, 403, 403, 401),
    "audit.jsonl":      (403, 403, 403, 403, 200, 200, 403, 403, 401),
    "audit.csv":        (403, 403, 403, 403, 200, 200, 403, 403, 401),
    "audit.verify":     (403, 403, 403, 403, 200, 200, 403, 403, 401),
}
# fmt: on

CASES = [
    pytest.param(endpoint, persona, expected, id=f"{endpoint}-{persona}")
    for endpoint, row in MATRIX.items()
    for persona, expected in zip(PERSONAS, row, strict=True)
]


def test_matrix_covers_every_endpoint():
    assert set(MATRIX) == set(ENDPOINTS)


@pytest.mark.parametrize(("endpoint", "persona", "expected"), CASES)
def test_permission_matrix(request, world, endpoint, persona, expected):
    # given: a persona (or nobody) and one endpoint
    user = None if persona == "anonymous" else request.getfixturevalue(persona)
    client = api_client_for(user)
    method, path, body = ENDPOINTS[endpoint]
    before, denied_before = snapshot(), denials()

    # when: the persona calls it
    kwargs = {"format": "json"} if body else {}
    response = getattr(client, method)(path(world), *([body(world)] if body else []), **kwargs)

    # then: the status is the one in the table
    assert response.status_code == expected, (endpoint, persona, _body(response))
    if expected >= 400:
        # ... an error body is JSON with detail and code, whatever format was asked for
        assert response["Content-Type"].startswith("application/json")
        assert {"detail", "code"} <= set(response.json())
        # ... nothing changed, and only a 403 is audited as a denial
        assert snapshot() == before
        assert denials() == denied_before + (1 if expected == 403 else 0)


def _body(response):
    if getattr(response, "streaming", False):
        return "<stream>"
    return response.content[:300]
