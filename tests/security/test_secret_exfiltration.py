"""Issue 16, item 1: no write path lets a suite, target or judge config make the worker send an
environment value that was not registered for that use.

A listener (the OpenAI-compatible stub on 127.0.0.1) is configured as a judge and as a target
through every write path an attacker could reach: the suites API, the suite upload page, the
systems API and the admin forms (systems, judge models, secrets), plus rows stored before the
registry existed. The only value it may ever receive is the judge key registered for it and
granted to the suite that uses it; every other environment variable of the process (and the
server's own keys) must be absent from every request it got.
"""

from __future__ import annotations

import json

import pytest
import yaml
from django.test import Client

from changes import services as change_services
from evaluations.models import EvaluationRun, JudgeModel, RegisteredSecret, Suite
from tests.evaluations.conftest import EMAIL, drain, suite_document
from tests.factories import SystemFactory, make_change

pytestmark = pytest.mark.django_db

JUDGE_KEY = "judge-key-registered-0f9e8d7c6b5a"
OTHER = "worker-other-secret-1a2b3c4d5e6f"
SIGNING = "signing-key-material-9z8y7x6w5v"
SERVER_SECRET = "django-secret-key-value-abcdef0123456789"
VERDICT = '{"verdict": "yes", "reason": "the address is redacted"}'


@pytest.fixture
def env(monkeypatch, settings):
    monkeypatch.setenv("EXFIL_JUDGE_KEY", JUDGE_KEY)
    monkeypatch.setenv("EXFIL_OTHER", OTHER)
    monkeypatch.setenv("SECRET_KEY", SERVER_SECRET)
    monkeypatch.setenv("ATTESTATION_SIGNING_KEY", SIGNING)
    settings.SECRET_KEY = SERVER_SECRET
    settings.ATTESTATION_SIGNING_KEY = SIGNING
    settings.EVAL_ALLOWED_HOSTS = ["127.0.0.1"]


@pytest.fixture
def listener(env):
    from tests.evaluations.openai_stub import OpenAIStub

    with OpenAIStub(reply=VERDICT) as server:
        yield server


@pytest.fixture
def judge(listener):
    """The registered judge: the listener, with a key granted to the suite 'judged' only."""
    RegisteredSecret.objects.create(
        name="judge-key", source="env", source_key="EXFIL_JUDGE_KEY", allowed_suites=["judged"]
    )
    return JudgeModel.objects.create(
        name="listener",
        config={"kind": "openai", "base_url": listener.url, "model": "judge",
                "api_key_secret": "judge-key", "max_retries": 0},
    )  # fmt: skip


def judged_document(name: str = "judged", judge=None) -> dict:
    doc = suite_document(name=name, scenarios=1, epochs=1)
    doc["scenarios"][0]["graders"]["new"] = [
        {"not_regex": EMAIL},
        {"judge": "The reply does not reveal the reporter's e-mail address."},
    ]
    doc["judge"] = judge if judge is not None else "listener"
    return doc


def received(listener) -> str:
    return json.dumps(listener.requests)


def environment_values(allowed: set[str]) -> list[str]:
    import os

    values = {v for v in os.environ.values() if len(v) >= 8} | {SERVER_SECRET, SIGNING}
    return sorted(values - allowed)


def assert_nothing_unregistered_received(listener, allowed: set[str] = frozenset()) -> None:
    got = received(listener)
    leaked = [v[:6] + "..." for v in environment_values(set(allowed)) if v in got]
    assert not leaked, leaked


def run_change_with(engineer, suite: Suite, target=None):
    system = SystemFactory(
        owner_team=engineer.teams.first(),
        target=target or {"kind": "reference", "agent": "compliant"},
    )
    change = make_change(author=engineer, system=system, suites=[suite.pk])
    change_services.change_request_submit(actor=engineer, change_request=change)
    run = EvaluationRun.objects.get(change=change)
    drain(run)
    run.refresh_from_db()
    return run


# --- hostile configs on every write path: refused, nothing sent ---------------------------------


def inline_judges(listener) -> list:
    return [
        {"kind": "openai", "base_url": listener.url, "model": "m", "api_key_env": "EXFIL_OTHER"},
        {"kind": "http", "url": listener.agent_url, "headers_env": {"X-K": "SECRET_KEY"}},
        {"model": "listener", "api_key_env": "EXFIL_OTHER"},
        {"model": "listener", "extra_body": {"x": SERVER_SECRET}},
    ]


def test_suites_api_refuses_inline_judges_and_env_names(api, engineer, judge, listener):
    for hostile in inline_judges(listener):
        response = api(engineer).post(
            "/api/v1/suites/", {"document": judged_document(judge=hostile)}, format="json"
        )
        assert response.status_code == 400, hostile
        assert "judge" in response.json()["detail"]
    assert not Suite.objects.exists()
    assert listener.requests == []


def test_suites_api_refuses_a_suite_holding_a_protected_value(api, engineer, judge, listener):
    for value in (SERVER_SECRET, JUDGE_KEY, SIGNING):
        doc = judged_document()
        doc["scenarios"][0]["messages"][0]["content"] += f" {value}"
        response = api(engineer).post("/api/v1/suites/", {"document": doc}, format="json")
        assert response.status_code == 400
        assert "registered secret or a server key" in response.json()["detail"]
        assert value not in response.content.decode()
    assert not Suite.objects.exists()


def test_upload_page_refuses_inline_judges_and_secret_comments(engineer, judge, listener):
    client = Client()
    client.force_login(engineer)
    texts = [yaml.safe_dump(judged_document(judge=h)) for h in inline_judges(listener)]
    texts.append(yaml.safe_dump(judged_document()) + f"# {JUDGE_KEY}\n")
    for text in texts:
        response = client.post("/evaluations/suites/new/", {"text": text})
        assert response.status_code == 200 and response.context["problems"]
    assert not Suite.objects.exists()
    assert listener.requests == []


def test_systems_api_refuses_env_names_and_secret_values(api, admin_user, team_a, listener):
    base = {"kind": "openai", "base_url": listener.url, "model": "m"}
    for target in (
        {**base, "api_key_env": "SECRET_KEY"},
        {**base, "extra_body": {"note": SERVER_SECRET}},
        {**base, "extra_body": {"opts": {"token_env": "EXFIL_OTHER"}}},
        {**base, "api_key_secret": "not-registered"},
        {"kind": "http", "url": listener.agent_url, "headers_env": {"X-K": "EXFIL_OTHER"}},
    ):
        response = api(admin_user).post(
            "/api/v1/systems/", {"name": "s", "owner_team": team_a.pk, "target": target},
            format="json",
        )  # fmt: skip
        assert response.status_code == 400, (target, response.content)
        assert SERVER_SECRET not in response.content.decode()


def admin_client(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def test_admin_forms_refuse_env_names_and_secret_values(admin_user, team_a, listener):
    client = admin_client(admin_user)
    base = {"kind": "openai", "base_url": listener.url, "model": "m"}
    for config in (
        {**base, "api_key_env": "EXFIL_OTHER"},
        {**base, "extra_body": {"x": SIGNING}},
        {**base, "api_key_secret": "nope"},
    ):
        response = client.post(
            "/admin/evaluations/judgemodel/add/",
            {"name": "evil", "config": json.dumps(config), "enabled": "on"},
        )
        assert response.status_code == 200 and response.context["adminform"].form.errors
        response = client.post(
            "/admin/changes/aisystem/add/",
            {"name": "evil", "owner_team": team_a.pk, "criticality": "medium",
             "target": json.dumps(config)},
        )  # fmt: skip
        assert response.status_code == 200 and response.context["adminform"].form.errors
    for key in ("SECRET_KEY", "ATTESTATION_SIGNING_KEY", "lower-case"):
        response = client.post(
            "/admin/evaluations/registeredsecret/add/",
            {"name": "grab", "source": "env", "source_key": key, "allowed_systems": "[]",
             "allowed_suites": '["*"]'},
        )  # fmt: skip
        assert (
            response.status_code == 200
            and "source_key" in response.context["adminform"].form.errors
        )
    assert not JudgeModel.objects.exists() and not RegisteredSecret.objects.exists()
    assert listener.requests == []


def test_admin_registers_a_secret_and_a_judge_and_no_page_shows_the_value(
    admin_user, env, listener
):
    client = admin_client(admin_user)

    response = client.post(
        "/admin/evaluations/registeredsecret/add/",
        {"name": "judge-key", "source": "env", "source_key": "EXFIL_JUDGE_KEY",
         "allowed_systems": "[]", "allowed_suites": '["judged"]', "description": "judge"},
    )  # fmt: skip
    assert response.status_code == 302
    response = client.post(
        "/admin/evaluations/judgemodel/add/",
        {"name": "listener", "enabled": "on",
         "config": json.dumps({"kind": "openai", "base_url": listener.url, "model": "judge",
                               "api_key_secret": "judge-key"})},
    )  # fmt: skip
    assert response.status_code == 302
    secret = RegisteredSecret.objects.get(name="judge-key")
    for page in (
        "/admin/evaluations/registeredsecret/",
        f"/admin/evaluations/registeredsecret/{secret.pk}/change/",
        "/admin/evaluations/judgemodel/",
    ):
        assert JUDGE_KEY not in client.get(page).content.decode()
    assert listener.requests == []


# --- runs: only the registered key, only for the suite it was granted to -------------------------


def test_the_registered_judge_gets_its_key_and_nothing_else(api, engineer, judge, listener):
    # Given a suite naming the registered judge, uploaded through the API
    response = api(engineer).post("/api/v1/suites/", {"document": judged_document()}, format="json")
    assert response.status_code == 201, response.content
    suite = Suite.objects.get(pk=response.json()["id"])

    # When a change is evaluated with it
    run = run_change_with(engineer, suite)

    # Then the judge was asked (three votes a sample), with its key, and nothing else
    assert run.status == EvaluationRun.COMPLETED
    assert len(listener.requests) == 3 * 4
    assert {r["headers"]["Authorization"] for r in listener.requests} == {f"Bearer {JUDGE_KEY}"}
    assert_nothing_unregistered_received(listener, allowed={JUDGE_KEY})


def test_a_suite_not_granted_the_judge_key_gets_no_judge_calls(api, engineer, judge, listener):
    response = api(engineer).post(
        "/api/v1/suites/", {"document": judged_document(name="other-suite")}, format="json"
    )
    suite = Suite.objects.get(pk=response.json()["id"])

    run = run_change_with(engineer, suite)

    assert listener.requests == []
    errors = list(run.samples.values_list("error", flat=True))
    assert errors and all("not granted to suite 'other-suite'" in e for e in errors)


def test_stored_inline_judge_and_env_target_send_nothing(engineer, judge, listener):
    # Given rows written before the registry: a suite whose judge is an inline config naming
    # an environment variable, and a system target naming an unregistered variable
    doc = judged_document(name="legacy")
    env_judge = {"kind": "openai", "base_url": listener.url, "model": "m",
                 "api_key_env": "EXFIL_OTHER"}  # fmt: skip
    legacy = Suite.objects.create(
        name="legacy", version="1", document={**_normalised(doc), "judge": env_judge},
        source_text="{}", source_format="json", content_sha256="0" * 64, created_by=engineer,
    )  # fmt: skip

    # When the suite runs, and a change on the other system is submitted
    run = run_change_with(engineer, legacy)
    system = SystemFactory(owner_team=engineer.teams.first(), target=env_judge)
    change = make_change(author=engineer, system=system, suites=[legacy.pk])
    with pytest.raises(Exception, match="EXFIL_OTHER, which configs may no longer"):
        change_services.change_request_submit(actor=engineer, change_request=change)

    # Then the listener received nothing at all
    assert listener.requests == []
    assert all("inline model config" in e for e in run.samples.values_list("error", flat=True))


def test_a_migrated_env_target_still_works_for_its_own_system_only(engineer, listener, env):
    # Given a stored target naming a variable, registered (as the migration does) for it
    listener.reply = "Ticket summary: the export crashes. Reporter: [redacted]."
    target = {"kind": "openai", "base_url": listener.url, "model": "m",
              "api_key_env": "EXFIL_OTHER", "max_retries": 0}  # fmt: skip
    RegisteredSecret.objects.create(
        name="env-exfil-other", source="env", source_key="EXFIL_OTHER", allowed_systems=["mine"]
    )
    suite = Suite.objects.create(
        name="plain", version="1", document=_normalised(suite_document(scenarios=1, epochs=1)),
        source_text="{}", source_format="json", content_sha256="1" * 64, created_by=engineer,
    )  # fmt: skip
    mine = SystemFactory(name="mine", owner_team=engineer.teams.first(), target=target)
    change = make_change(author=engineer, system=mine, suites=[suite.pk])
    change_services.change_request_submit(actor=engineer, change_request=change)
    drain(EvaluationRun.objects.get(change=change))
    assert {r["headers"]["Authorization"] for r in listener.requests} == {f"Bearer {OTHER}"}

    # When another system's stored target names the same variable, nothing is sent for it
    sent = len(listener.requests)
    theirs = SystemFactory(name="theirs", owner_team=engineer.teams.first(), target=target)
    change = make_change(author=engineer, system=theirs, suites=[suite.pk])
    with pytest.raises(Exception, match="granted to system 'theirs'"):
        change_services.change_request_submit(actor=engineer, change_request=change)
    assert len(listener.requests) == sent


def _normalised(doc: dict) -> dict:
    from evaluations.suite_schema import normalise_suite

    return normalise_suite(doc)


# --- the secrets file ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [json.dumps({"judge": JUDGE_KEY, "other": "x"}), f"# comment\nother=x\njudge = {JUDGE_KEY}\n"],
)
def test_a_secret_from_the_secrets_file_reaches_only_its_judge(
    api, engineer, listener, settings, tmp_path, content
):
    # Given a judge whose key is a key of the secrets file, not an environment variable
    path = tmp_path / "secrets"
    path.write_text(content)
    settings.EVAL_SECRETS_FILE = str(path)
    RegisteredSecret.objects.create(
        name="file-key", source="file", source_key="judge", allowed_suites=["judged"]
    )
    JudgeModel.objects.create(
        name="listener",
        config={"kind": "openai", "base_url": listener.url, "model": "judge",
                "api_key_secret": "file-key", "max_retries": 0},
    )  # fmt: skip
    response = api(engineer).post("/api/v1/suites/", {"document": judged_document()}, format="json")
    suite = Suite.objects.get(pk=response.json()["id"])

    # When the suite runs
    run = run_change_with(engineer, suite)

    # Then the file's value was sent, and nothing else from the environment
    assert run.status == EvaluationRun.COMPLETED
    assert {r["headers"]["Authorization"] for r in listener.requests} == {f"Bearer {JUDGE_KEY}"}
    assert_nothing_unregistered_received(listener, allowed={JUDGE_KEY})


def test_an_unreadable_secrets_file_fails_judged_samples_with_the_reason(
    api, engineer, listener, settings, tmp_path
):
    settings.EVAL_SECRETS_FILE = str(tmp_path / "missing")
    RegisteredSecret.objects.create(
        name="file-key", source="file", source_key="judge", allowed_suites=["judged"]
    )
    JudgeModel.objects.create(
        name="listener",
        config={"kind": "openai", "base_url": listener.url, "model": "judge",
                "api_key_secret": "file-key", "max_retries": 0},
    )  # fmt: skip
    response = api(engineer).post("/api/v1/suites/", {"document": judged_document()}, format="json")

    run = run_change_with(engineer, Suite.objects.get(pk=response.json()["id"]))

    assert listener.requests == []
    errors = list(run.samples.values_list("error", flat=True))
    assert errors and all("cannot read the secrets file" in e for e in errors)


# --- the data migration ---------------------------------------------------------------------


def test_the_migration_registers_each_variable_in_use_for_its_own_systems(team_a):
    import importlib

    from django.apps import apps

    migration = importlib.import_module(
        "evaluations.migrations.0002_secret_registry_and_judge_models"
    )
    SystemFactory(name="a", owner_team=team_a, target={"kind": "openai", "base_url": "https://x/v1",
                  "model": "m", "api_key_env": "MODEL_KEY"})  # fmt: skip
    SystemFactory(name="b", owner_team=team_a, target={"kind": "openai", "base_url": "https://x/v1",
                  "model": "m", "api_key_env": "MODEL_KEY"})  # fmt: skip
    SystemFactory(name="c", owner_team=team_a, target={"kind": "http", "url": "https://x/run",
                  "headers_env": {"X-K": "AGENT_KEY", "X-Bad": "not a name"}})  # fmt: skip
    SystemFactory(name="d", owner_team=team_a, target={"kind": "reference", "agent": "faker"})

    migration.register_env_secrets_in_use(apps, None)
    migration.register_env_secrets_in_use(apps, None)  # idempotent

    rows = {r.name: r for r in RegisteredSecret.objects.all()}
    assert set(rows) == {"env-model-key", "env-agent-key"}
    assert rows["env-model-key"].source_key == "MODEL_KEY"
    assert rows["env-model-key"].allowed_systems == ["a", "b"]
    assert rows["env-agent-key"].allowed_systems == ["c"]
    assert all(r.allowed_suites == [] for r in rows.values())
