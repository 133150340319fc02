"""A sentinel API key placed in a target's environment variable never leaves the process
environment: the model server receives it, and it appears nowhere in the database (every
table, binary columns and all), the API's answers, the pages, the logs, the attestation PDFs
(page text, attachments, signed statement) or the audit log (rows and exports).

The whole workflow runs for real against an OpenAI-compatible stub on 127.0.0.1: an admin
registers the key in the secret registry (the variable's name, granted to the system) and the
system through the API (``api_key_secret`` names the registered secret), an engineer files
and submits a change, the evaluation batches execute in-process as a worker would, a reviewer
signs, a pipeline deploys, and both attestations are rendered. The stub also answers one call
with a 401 that echoes the key back, as real servers do, to check the error path.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import uuid

import pytest
from django.apps import apps
from django.core.management import call_command
from django.urls import reverse

from attestations import services as attestation_services
from attestations.keys import ensure_dev_key
from attestations.models import Attestation
from attestations.pdf import attachment_names, extract_attachment, pdf_text
from changes import audit, states
from changes.models import AuditEvent, ChangeRequest
from evaluations.models import EvaluationRun, RegisteredSecret, Sample
from evaluations.runner import plan_samples, run_batch_sync
from evaluations.targets import build_target
from evaluations.targets.secrets import SecretResolver
from tests.evaluations.conftest import drain, suite_document
from tests.evaluations.openai_stub import OpenAIStub
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

ENV_NAME = "PCM_SENTINEL_KEY"
COMPLIANT_REPLY = "Ticket summary: the export crashes. Reporter: [redacted]."


@pytest.fixture
def sentinel(monkeypatch) -> str:
    key = f"sk-sentinel-{uuid.uuid4().hex}"
    monkeypatch.setenv(ENV_NAME, key)
    return key


@pytest.fixture
def signing(settings, tmp_path):
    settings.ATTESTATION_SIGNING_KEY = ""
    settings.ATTESTATION_SIGNING_KEY_FILE = str(tmp_path / "keys" / "signing.pem")
    settings.ATTESTATION_PUBLIC_KEYS_DIR = str(tmp_path / "keys" / "trusted")
    (tmp_path / "keys" / "trusted").mkdir(parents=True)
    ensure_dev_key(tmp_path / "keys" / "signing.pem")


@pytest.fixture
def stub(settings):
    settings.EVAL_ALLOWED_HOSTS = ["127.0.0.1"]
    with OpenAIStub(reply=COMPLIANT_REPLY) as server:
        yield server


def fragments(secret: str) -> list[str]:
    """The key, and its distinctive part: a truncated echo must not leak half of it either."""
    unique = secret.removeprefix("sk-sentinel-")
    return [secret, unique[:12], unique[-12:]]


def leaks(secret: str, text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return [f for f in fragments(secret) if f in text]


def ok(response, status=200):
    assert response.status_code == status, (response.status_code, response.content[:500])
    return response.json()


def run_the_workflow(api, users, stub) -> ChangeRequest:
    """Register, file, submit, evaluate, approve, deploy: every step through the API."""
    admin, engineer = api(users["admin"]), api(users["engineer"])
    RegisteredSecret.objects.create(
        name="sentinel-key", source="env", source_key=ENV_NAME,
        allowed_systems=["sentinel-assistant"],
    )  # fmt: skip
    system = ok(
        admin.post(
            "/api/v1/systems/",
            {
                "name": "sentinel-assistant",
                "owner_team": users["engineer"].teams.first().pk,
                "criticality": "medium",
                "target": {
                    "kind": "openai",
                    "base_url": stub.url,
                    "model": "stub-model",
                    "api_key_secret": "sentinel-key",
                    "max_concurrency": 2,
                    "max_retries": 0,
                },
            },
            format="json",
        ),
        201,
    )
    protocols = [
        ok(
            engineer.post(
                f"/api/v1/systems/{system['id']}/protocols/",
                {"version": f"v{i}", "body": "# Protocol", "system_prompt": f"Prompt {i}."},
                format="json",
            ),
            201,
        )
        for i in (1, 2)
    ]
    document = suite_document(name="sentinel-suite")
    suite = ok(engineer.post("/api/v1/suites/", {"document": document}, format="json"), 201)
    change = ok(
        engineer.post(
            "/api/v1/changes/",
            {
                "system": system["id"],
                "base_protocol": protocols[0]["id"],
                "proposed_protocol": protocols[1]["id"],
                "title": "Redact e-mail addresses",
                "rationale": "PII in summaries.",
                "test_plan": "Run the suite.",
                "suites": [suite["id"]],
            },
            format="json",
        ),
        201,
    )
    # The first model call answers 401 and echoes the key, as some servers do.
    stub.push({"status": 401, "json": {"error": {"message": f"Bad key {users['key']}."}}})
    ok(engineer.post(f"/api/v1/changes/{change['id']}/submit/"))
    for run in EvaluationRun.objects.filter(change_id=change["id"]):
        drain(run)
    cr = ChangeRequest.objects.get(pk=change["id"])
    assert cr.state == states.AWAITING_REVIEW, (cr.state, ChangeRequest.objects.values())
    ok(
        api(users["reviewer"]).post(
            f"/api/v1/changes/{cr.pk}/reviews/",
            {
                "decision": "approve",
                "comment": "Looks right.",
                "password": PASSWORD,
                "content_sha256": cr.content_sha256,
            },
            format="json",
        ),
        201,
    )
    ok(api(users["pipeline"]).post(f"/api/v1/changes/{cr.pk}/deploy/", {}, format="json"), 201)
    for attestation in Attestation.objects.filter(change=cr):
        attestation_services.attestation_render(attestation_id=attestation.pk)
    cr.refresh_from_db()
    assert cr.state == states.DEPLOYED
    assert Attestation.objects.filter(change=cr, status=Attestation.READY).count() == 2
    return cr


@pytest.fixture
def users(engineer, reviewer, auditor, admin_user, pipeline, sentinel):
    return {
        "engineer": engineer,
        "reviewer": reviewer,
        "auditor": auditor,
        "admin": admin_user,
        "pipeline": pipeline,
        "key": sentinel,
    }


def database_text() -> dict[str, list[str]]:
    """Every row of every model, as text; binary columns decoded, PDFs read as text and
    attachments, so a key inside a compressed stream would still be found."""
    out: dict[str, list[str]] = {}
    for model in apps.get_models():
        rows = []
        for values in model.objects.all().values_list():
            for value in values:
                if isinstance(value, bytes | memoryview):
                    raw = bytes(value)
                    rows.append(raw.decode("latin-1"))
                    if raw.startswith(b"%PDF"):
                        rows.append(pdf_text(raw))
                        rows += [
                            (extract_attachment(raw, name) or b"").decode("utf-8", "replace")
                            for name in attachment_names(raw)
                        ]
                else:
                    rows.append(json.dumps(value, default=str) if value is not None else "")
        out[model._meta.label] = rows
    return out


def api_bodies(api, users, change: ChangeRequest) -> dict[str, bytes]:
    """The main endpoints' answers, for every persona that may read them."""
    runs = list(EvaluationRun.objects.filter(change=change).values_list("id", flat=True))
    attestations = list(Attestation.objects.filter(change=change).values_list("id", flat=True))
    paths = [
        "/api/v1/systems/",
        f"/api/v1/systems/{change.system_id}/",
        f"/api/v1/systems/{change.system_id}/protocols/",
        "/api/v1/suites/",
        "/api/v1/changes/",
        f"/api/v1/changes/{change.pk}/",
        f"/api/v1/changes/{change.pk}/gate/",
        f"/api/v1/changes/{change.pk}/reviews/",
        f"/api/v1/changes/{change.pk}/timeline/",
        f"/api/v1/changes/{change.pk}/evaluations/",
        f"/api/v1/changes/{change.pk}/attestations/",
        f"/api/v1/changes/{change.pk}/attestation.pdf",
        "/api/v1/attestations/",
        "/api/v1/audit/events/?page_size=100",
        "/api/v1/audit/events/?format=jsonl",
        "/api/v1/audit/events/?format=csv",
        "/api/v1/audit/verify/",
    ]
    for run in runs:
        paths += [f"/api/v1/evaluations/{run}/"]
        paths += [f"/api/v1/evaluations/{run}/samples/?page_size=25&page={p}" for p in (1, 2)]
    for pk in attestations:
        paths += [
            f"/api/v1/attestations/{pk}/",
            f"/api/v1/attestations/{pk}/pdf",
            f"/api/v1/attestations/{pk}/envelope.json",
        ]
    bodies = {}
    for persona in ("engineer", "reviewer", "auditor", "admin", "pipeline"):
        client = api(users[persona])
        for path in paths:
            response = client.get(path)
            body = b"".join(response.streaming_content) if response.streaming else response.content
            bodies[f"{persona} GET {path} -> {response.status_code}"] = body
            if body.startswith(b"%PDF"):
                bodies[f"{persona} GET {path} (PDF text)"] = pdf_text(body).encode()
            if path.endswith("envelope.json") and response.status_code == 200:
                payload = json.loads(body)["payload"]
                bodies[f"{persona} GET {path} (payload)"] = base64.b64decode(payload)
    return bodies


def page_bodies(client, users, change: ChangeRequest) -> dict[str, bytes]:
    client.force_login(users["engineer"])
    paths = [
        reverse("dashboard"),
        reverse("change-list"),
        reverse("change-detail", kwargs={"pk": change.pk}),
        reverse("system-detail", kwargs={"pk": change.system_id}),
        reverse("audit-log"),
    ]
    for run in EvaluationRun.objects.filter(change=change):
        paths += [
            reverse("run-detail", kwargs={"pk": run.pk}),
            reverse("run-samples", kwargs={"pk": run.pk}),
            reverse("run-discordant", kwargs={"pk": run.pk}),
        ]
    bodies = {}
    for user in ("engineer", "auditor", "admin"):
        client.force_login(users[user])
        for path in paths:
            response = client.get(path)
            bodies[f"{user} page {path} -> {response.status_code}"] = response.content
    return bodies


@pytest.mark.heavy
def test_the_sentinel_key_reaches_the_model_and_nowhere_else(
    api, client, users, sentinel, stub, signing, caplog
):
    # given: every logger at DEBUG (httpx and httpcore too), so anything logged is seen
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "evaluations", "attestations", "changes", "django"):
        caplog.set_level(logging.DEBUG, logger=name)

    # when: the workflow runs end to end against the stub
    change = run_the_workflow(api, users, stub)

    # then: the model server received the key on every call
    assert len(stub.requests) == Sample.objects.filter(run__change=change).count() > 0
    assert {r["headers"].get("Authorization") for r in stub.requests} == {f"Bearer {sentinel}"}
    errors = list(Sample.objects.filter(run__change=change, label="error"))
    assert len(errors) == 1 and "401" in errors[0].error, errors  # the echo was recorded

    # and: not one table holds it (rows, binary columns, PDFs inside them)
    found = {
        label: [row[:200] for row in rows if leaks(sentinel, row)]
        for label, rows in database_text().items()
    }
    assert not {k: v for k, v in found.items() if v}, found
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    assert dump.getvalue() and not leaks(sentinel, dump.getvalue())

    # and: no API answer, for any persona, and no page carries it
    bodies = {**api_bodies(api, users, change), **page_bodies(client, users, change)}
    assert len(bodies) > 100
    auditor_answers = [k for k in bodies if k.startswith("auditor GET") and "(" not in k]
    assert all(k.endswith("-> 200") for k in auditor_answers), [
        k for k in auditor_answers if not k.endswith("-> 200")
    ]
    admin_pages = [k for k in bodies if k.startswith("admin page")]
    assert all(k.endswith("-> 200") for k in admin_pages), admin_pages
    assert not [where for where, body in bodies.items() if leaks(sentinel, body)]

    # and: the attestation PDFs (page text, every attachment) and the signed statements
    for attestation in Attestation.objects.filter(change=change):
        pdf = bytes(attestation.pdf)
        assert pdf_text(pdf) and attachment_names(pdf)
        assert not leaks(sentinel, pdf)
        assert not leaks(sentinel, pdf_text(pdf))
        for name in attachment_names(pdf):
            assert not leaks(sentinel, extract_attachment(pdf, name) or b"")
        assert not leaks(sentinel, json.dumps(attestation.statement))
        assert not leaks(sentinel, json.dumps(attestation.facts))

    # and: the audit log (intact) never recorded it
    assert audit.verify_chain()[1] is None
    assert AuditEvent.objects.filter(verb="evaluation.run_created").exists()
    for event in AuditEvent.objects.all():
        assert not leaks(sentinel, json.dumps(event.data)), event.verb

    # and: nothing logged it, at any level, in a message, its arguments or a traceback
    assert caplog.records
    for record in caplog.records:
        text = " ".join(
            [record.getMessage(), repr(record.args), record.exc_text or "", str(record.msg)]
        )
        assert not leaks(sentinel, text), (record.name, record.levelname, text[:300])
    assert not leaks(sentinel, caplog.text)


def test_a_key_echoed_across_the_error_snippet_cut_is_not_kept_in_part(sentinel, stub):
    # given: an OpenAI target reading the sentinel from the environment, and a server that
    # answers 401 echoing the key so that it straddles the 200th byte of its body
    target = build_target(
        {"kind": "openai", "base_url": stub.url, "model": "m", "api_key_secret": "sentinel",
         "max_retries": 0},
        allowed_hosts=["127.0.0.1"],
        secrets=SecretResolver({"sentinel": ("env", ENV_NAME)}, secrets_file=None),
    )  # fmt: skip
    padding = "x" * (200 - len('{"error": {"message": "') - 35)
    stub.push({"status": 401, "json": {"error": {"message": f"{padding} bad key {sentinel}"}}})
    document = suite_document(scenarios=1, epochs=1)
    keys = plan_samples(document)[:1]

    # when: one sample runs (the pure engine, as a worker's batch would)
    [outcome] = run_batch_sync(target, document, keys, "You are a helpful assistant.")

    # then: the key was sent, the failure is recorded, and no part of the key is in it
    assert stub.requests[0]["headers"]["Authorization"] == f"Bearer {sentinel}"
    assert outcome.label == "error" and "401" in outcome.error
    assert not leaks(sentinel, outcome.error), outcome.error
