"""``seed_demo``: the demo users, roles, teams, systems and changes, idempotently."""

from io import StringIO

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command

from changes import states, tokens
from changes.management.commands.seed_demo import DEMO_USERS
from changes.models import AISystem, ApiToken, AuditEvent, ChangeRequest, ProtocolVersion, Team
from core.tokens import KEY_PREFIX

pytestmark = pytest.mark.django_db

MODELS = (User, Group, Team, AISystem, ProtocolVersion, ChangeRequest, AuditEvent, ApiToken)


@pytest.fixture(autouse=True)
def _key_in_tmp(settings, tmp_path):
    settings.ATTESTATION_SIGNING_KEY = ""
    settings.ATTESTATION_SIGNING_KEY_FILE = str(tmp_path / "keys" / "dev.pem")


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def counts() -> dict:
    return {model.__name__: model.objects.count() for model in MODELS}


def roles_of(username: str) -> set[str]:
    return set(User.objects.get(username=username).groups.values_list("name", flat=True))


def test_seed_creates_users_roles_and_teams():
    # when
    seed()
    # then
    assert roles_of("engineer") == {"engineer"}
    assert roles_of("engineer2") == {"engineer"}
    assert roles_of("reviewer") == {"reviewer"}
    assert roles_of("reviewer2") == {"reviewer"}
    assert roles_of("auditor") == {"auditor"}
    assert roles_of("pipeline") == {"pipeline"}
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff and roles_of("admin") == {"admin"}
    team_a = set(Team.objects.get(name="Team A").members.values_list("username", flat=True))
    team_b = set(Team.objects.get(name="Team B").members.values_list("username", flat=True))
    assert team_a == {"engineer", "engineer2"}
    assert team_b == {"reviewer", "reviewer2"}
    for username, password, *_ in DEMO_USERS:
        assert User.objects.get(username=username).check_password(password)
    assert ApiToken.objects.filter(user__username="pipeline", revoked_at=None).count() == 1


def test_seed_creates_systems_protocols_and_changes():
    # when
    seed()
    # then
    criticalities = set(AISystem.objects.values_list("criticality", flat=True))
    assert len(criticalities) >= 2
    for system in AISystem.objects.all():
        assert set(system.protocols.values_list("version", flat=True)) >= {"v1", "v2"}
        assert system.target.get("kind") == "reference"
    change_states = set(ChangeRequest.objects.values_list("state", flat=True))
    assert states.DRAFT in change_states
    assert change_states & {states.SUBMITTED, states.EVALUATING, states.AWAITING_REVIEW,
                            states.EVALUATION_FAILED}  # fmt: skip
    assert AuditEvent.objects.filter(verb="change.submitted").exists()


def test_second_run_adds_nothing_and_prints_the_same_logins():
    # given
    first = seed()
    before = counts()
    # when
    second = seed()
    # then
    assert counts() == before
    assert "nothing changed" in second

    def logins(text):
        return [line for line in text.splitlines() if " / " in line and ";" not in line]

    assert logins(first) == logins(second)
    for username, password, *_ in DEMO_USERS:
        assert f"{username} / {password}" in second.splitlines()

    # keys are stored hashed: the first run prints a working key, later runs only its prefix
    key = next(w for w in first.split() if w.startswith(KEY_PREFIX))
    token = tokens.find(key)
    assert token is not None and token.scopes == ["read", "deploy"]
    assert key not in second and f"({token.prefix}…" in second


def test_seed_generates_a_dev_signing_key_once(settings):
    keys = pytest.importorskip("attestations.keys")
    if not hasattr(keys, "ensure_dev_key"):
        pytest.skip("attestations.keys has no ensure_dev_key yet")
    # when
    first = seed()
    second = seed()
    # then
    assert (
        f"Generated a development signing key at {settings.ATTESTATION_SIGNING_KEY_FILE}" in first
    )
    assert "Generated a development signing key" not in second


def test_app_demo_seeds_run_before_the_changes_and_may_link_suites(monkeypatch):
    # given: an installed app's demo seed that records what it saw and offers no suites
    from changes.management.commands import seed_demo as command

    seen = {}

    def fake_seed(*, stdout, style, context):
        seen["changes_at_call"] = ChangeRequest.objects.count()
        seen["systems"] = sorted(context["systems"])
        stdout.write("fake demo seeded")
        return {"support-assistant": []}

    real = command.app_demo_seeders()
    monkeypatch.setattr(command, "app_demo_seeders", lambda: [fake_seed, *real])
    # when
    out = seed()
    # then
    assert "fake demo seeded" in out
    assert seen["changes_at_call"] == 0
    assert seen["systems"] == ["access-review-agent", "support-assistant"]
    assert ChangeRequest.objects.count() == 2


def test_a_demo_seed_without_context_is_called_with_stdout_and_style_only(monkeypatch):
    from changes.management.commands import seed_demo as command

    calls = []
    real = command.app_demo_seeders()
    monkeypatch.setattr(command, "app_demo_seeders",
                        lambda: [lambda *, stdout, style: calls.append(style), *real])  # fmt: skip
    seed()
    assert len(calls) == 1


def test_a_change_that_cannot_be_submitted_stays_a_draft_with_a_warning(monkeypatch):
    # given: submitting is refused (e.g. an engine that needs suites nobody offered)
    from changes import services
    from core.errors import ValidationFailed

    def refuse(**kwargs):
        raise ValidationFailed("suites: link at least one evaluation suite before submitting")

    monkeypatch.setattr(services, "change_request_submit", refuse)
    # when
    out = seed()
    # then: the seed completes, says why, and leaves both changes as drafts
    assert "stays a draft: suites: link at least one" in out
    assert set(ChangeRequest.objects.values_list("state", flat=True)) == {states.DRAFT}
    assert "engineer / engineer-demo-pass" in out.splitlines()
