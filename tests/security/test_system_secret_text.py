"""An AI system's name and description are read back by every user, so the suites' and
targets' secret detector (registered secret values, server keys, credential shapes) guards
them on every write path: the API, the admin form and the service itself (issue 16)."""

from __future__ import annotations

import pytest
from django.conf import settings

from changes import services
from changes.models import AISystem, AuditEvent
from core.errors import ValidationFailed
from evaluations.models import RegisteredSecret
from tests.changes.test_ui_pages import login

pytestmark = pytest.mark.django_db

REGISTERED_VALUE = "registered-value-7f3a9c2e1b"
CASES = [
    ("name", "bot sk-live-abcdefghijklmnopqrstuv", "looks like a credential"),
    ("description", "Key: ghp_abcdefghijklmnopqrstuvwxyz0123", "looks like a credential"),
    ("description", "-----BEGIN RSA PRIVATE KEY-----\nMIIE", "looks like a credential"),
    ("description", f"uses {REGISTERED_VALUE} upstream", "value of a registered secret"),
    ("description", "SERVER_KEY", "value of a registered secret"),
]


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    monkeypatch.setenv("SYSTEM_TEXT_SECRET", REGISTERED_VALUE)
    RegisteredSecret.objects.create(
        name="system-text", source="env", source_key="SYSTEM_TEXT_SECRET", allowed_systems=["*"]
    )


def _value(text: str) -> str:
    return text.replace("SERVER_KEY", f"see {settings.SECRET_KEY}")


@pytest.mark.parametrize(("field", "text", "reason"), CASES)
def test_the_api_refuses_secret_text_with_400_and_the_reason(
    api, admin_user, team_a, field, text, reason
):
    body = {"name": "triage-bot", "description": "Routes tickets.", "owner_team": team_a.pk}
    body[field] = _value(text)
    response = api(admin_user).post("/api/v1/systems/", body, format="json")
    assert response.status_code == 400, response.content
    detail = response.json()["detail"]
    assert detail.startswith(f"{field}: ") and reason in detail
    # the answer never echoes the secret back
    assert REGISTERED_VALUE not in response.content.decode()
    assert settings.SECRET_KEY not in response.content.decode()
    assert not AISystem.objects.filter(owner_team=team_a, name__startswith="triage").exists()
    assert not AuditEvent.objects.filter(verb="system.created").exists()


@pytest.mark.parametrize(("field", "text", "reason"), CASES)
def test_the_admin_form_shows_the_reason_on_the_field(
    client, admin_user, team_a, field, text, reason
):
    login(client, admin_user)
    form = {
        "name": "triage-bot",
        "description": "Routes tickets.",
        "owner_team": team_a.pk,
        "criticality": "high",
        "target": '{"kind": "reference", "agent": "compliant"}',
        "required_approvals": "",
    }
    form[field] = _value(text)
    response = client.post("/admin/changes/aisystem/add/", form)
    assert response.status_code == 200  # the form again, not a redirect and not a 500
    page = response.content.decode()
    assert reason in page and "errorlist" in page
    assert not AISystem.objects.filter(name__startswith="triage").exists()


@pytest.mark.parametrize(("field", "text", "reason"), CASES)
def test_the_service_refuses_it_for_every_caller(admin_user, team_a, field, text, reason):
    kwargs = {"name": "triage-bot", "description": "", field: _value(text)}
    with pytest.raises(ValidationFailed, match=reason):
        services.system_create(actor=admin_user, owner_team=team_a, **kwargs)


def test_ordinary_text_still_registers(api, admin_user, team_a):
    body = {
        "name": "sk-learn triage",  # "sk-" alone is not a key
        "description": "Routes tickets; the key is registered as system-text.",
        "owner_team": team_a.pk,
    }
    response = api(admin_user).post("/api/v1/systems/", body, format="json")
    assert response.status_code == 201, response.content
