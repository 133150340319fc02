"""Issue 13 after deploy: the monitor is approved with the change, the live registry is the
one answer to "what is live", probes follow deploys, the monitoring window gates closing."""

from __future__ import annotations

import pytest

from changes import env_services, hooks, services, states
from changes.env_models import LiveVersion
from changes.models import AuditEvent, ChangeRequest
from monitoring import live as live_mod
from monitoring import services as monitoring_services
from monitoring.selectors import labels_for
from tests.changes.env_support import approve, approved, system_with
from tests.changes.ports import PassingEvaluationPort, RecordingAttestationPort
from tests.factories import change_fields
from tests.monitoring.conftest import MONITOR_GRADERS

pytestmark = pytest.mark.django_db


@pytest.fixture
def ports(monkeypatch):
    monkeypatch.setattr(hooks, "_evaluation", PassingEvaluationPort())
    attestations = RecordingAttestationPort()
    monkeypatch.setattr(hooks, "_attestation", attestations)
    return attestations


@pytest.fixture
def world(team_a, engineer, reviewer):
    return system_with(team_a, "v1", "v2", "v3")


# --- 1. the monitor is part of the content hash ----------------------------------------------


def test_editing_the_monitor_moves_the_content_hash_and_voids_approvals(
    ports, world, engineer, reviewer
):
    system, v = world
    change = approved(engineer, reviewer, system, v["v1"], v["v2"])
    assert change.state == states.APPROVED
    before = change.content_sha256
    monitoring_services.monitor_set(actor=engineer, change=change, graders=MONITOR_GRADERS)
    change.refresh_from_db()
    assert change.content_sha256 != before
    assert change.state == states.DRAFT  # an approved change goes back to draft
    assert not change.reviews.filter(decision="approve", voided_at__isnull=True).exists()
    voided = AuditEvent.objects.get(verb="review.voided", object_id=str(change.pk))
    assert "monitor" in voided.data["reason"]
    event = AuditEvent.objects.filter(verb="monitoring.monitor_set").get()
    assert event.data["fields"] == ["monitor"] and event.data["new_sha256"] == change.content_sha256
    # The same declaration again is no edit; another one moves the hash again.
    with_monitor = change.content_sha256
    monitoring_services.monitor_set(actor=engineer, change=change, graders=MONITOR_GRADERS)
    change.refresh_from_db()
    assert change.content_sha256 == with_monitor
    monitoring_services.monitor_set(
        actor=engineer, change=change, graders=MONITOR_GRADERS, evaluated_condition="monitored"
    )
    change.refresh_from_db()
    assert change.content_sha256 not in (before, with_monitor)
    from changes import content

    assert content.content_document(change)["monitor"]["evaluated_condition"] == "monitored"


def test_a_change_without_a_monitor_keeps_its_hash(ports, world, engineer):
    from changes import content

    system, v = world
    change = services.change_request_create(
        actor=engineer, system=system, base_protocol=v["v1"], proposed_protocol=v["v2"],
        **change_fields(),
    )  # fmt: skip
    assert "monitor" not in content.content_document(change)


def test_an_admin_monitor_on_a_deployed_change_leaves_its_signed_hash(
    ports, world, engineer, reviewer, admin_user
):
    system, v = world
    change = approved(engineer, reviewer, system, v["v1"], v["v2"])
    services.change_request_deploy(actor=engineer, change_request=change, environment="production")
    change.refresh_from_db()
    signed = change.content_sha256
    monitoring_services.monitor_set(actor=admin_user, change=change, graders=MONITOR_GRADERS)
    change.refresh_from_db()
    assert change.content_sha256 == signed and change.state == states.DEPLOYED
    from changes import content

    assert content.content_sha256(change) == signed


def test_the_monitor_is_refused_while_the_change_is_under_evaluation(ports, world, engineer):
    system, v = world
    change = services.change_request_create(
        actor=engineer, system=system, base_protocol=v["v1"], proposed_protocol=v["v2"],
        **change_fields(),
    )  # fmt: skip
    services.change_request_submit(actor=engineer, change_request=change)
    from core.errors import NotAllowed

    with pytest.raises(NotAllowed):
        monitoring_services.monitor_set(actor=engineer, change=change, graders=MONITOR_GRADERS)


# --- 2. live_protocol_hash reads the live registry -------------------------------------------


def test_live_hash_follows_the_registry_through_staged_multi_env_deploys_and_rollback(
    ports, world, engineer, reviewer, api
):
    system, v = world
    sha = {name: p.content_sha256 for name, p in v.items()}
    assert live_mod.live_protocol_hash(system, "staging") is None
    first = approved(engineer, reviewer, system, v["v1"], v["v2"])
    services.change_request_deploy(actor=engineer, change_request=first, environment="staging")
    assert live_mod.live_protocol_hash(system, "staging") == sha["v2"]
    assert live_mod.live_protocol_hash(system, "production") is None
    services.change_request_deploy(actor=engineer, change_request=first, environment="production")
    assert live_mod.live_protocol_hash(system, "production") == sha["v2"]
    # A staged rollout: stage 1 of the next change puts v3 live in production only.
    second = services.change_request_create(
        actor=engineer, system=system, base_protocol=v["v2"], proposed_protocol=v["v3"],
        **change_fields(),
    )  # fmt: skip
    env_services.change_request_set_stages(actor=engineer, change_request=second, stages=[10, 100])
    second = approve(second, engineer, reviewer)
    env_services.stage_start(
        actor=engineer, change_request=second, environment="production", number=1
    )
    lives = live_mod.live_map(system)
    assert lives["production"].protocol_sha256 == sha["v3"]
    assert lives["production"].change.pk == second.pk
    assert lives["staging"].protocol_sha256 == sha["v2"]
    assert lives["staging"].change.pk == first.pk
    # A rollback deploy moves the registry back; the history keeps every deployment.
    response = api(engineer).post(f"/api/v1/changes/{second.pk}/rollback/", {}, format="json")
    assert response.status_code == 201, response.json()
    rollback = approve(ChangeRequest.objects.get(pk=response.json()["id"]), engineer, reviewer)
    services.change_request_deploy(
        actor=engineer, change_request=rollback, environment="production"
    )
    assert live_mod.live_protocol_hash(system, "production") == sha["v2"]
    assert live_mod.live(system, "production").change.pk == rollback.pk
    # Only the registry counts: clearing it leaves nothing live, whatever the history says.
    LiveVersion.objects.filter(environment__system=system, environment__name="staging").update(
        protocol=None, deployment=None
    )
    assert live_mod.live_protocol_hash(system, "staging") is None


# --- 6. incident notifications ---------------------------------------------------------------


@pytest.fixture
def eager():
    from config import celery_app

    before = (celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates)
    celery_app.conf.update(task_always_eager=True, task_eager_propagates=True)
    yield
    celery_app.conf.update(task_always_eager=before[0], task_eager_propagates=before[1])


def test_an_opened_incident_tells_the_owners_by_inbox_email_and_webhook_once(
    deployed, engineer, engineer2, reviewer, admin_user, settings, eager, mailoutbox,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    import json

    from reviews import webhooks
    from reviews.models import Notification, WebhookAttempt, WebhookDelivery
    from tests.reviews.test_webhooks import Receiver

    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_TIMEOUT = 2
    receiver = Receiver()
    try:
        endpoint = webhooks.endpoint_create(
            actor=admin_user, name="pager", url=receiver.url, events=["incident.opened"],
            system=deployed.system,
        )  # fmt: skip
        receiver.secret = endpoint.secret
        webhooks.endpoint_create(
            actor=admin_user, name="other", url=receiver.url + "x", events=["change.deployed"]
        )
        engineer.email, engineer2.email = "eng@example.org", "eng2@example.org"
        engineer.save(update_fields=["email"])
        engineer2.save(update_fields=["email"])
        for _ in range(2):  # the second is a repeat of the same open incident: no new message
            with django_capture_on_commit_callbacks(execute=True):
                incident = monitoring_services.incident_open(
                    system=deployed.system, change=deployed, kind="discrepancy",
                    key=f"discrepancy:{deployed.pk}:production", environment="production",
                    summary="Live rate below the evaluated band.", details={},
                )  # fmt: skip
    finally:
        receiver.close()
    notes = Notification.objects.filter(kind="incident.opened")
    # The deployed change's author and the owning team's engineers; not the other team.
    assert {n.recipient for n in notes} == {engineer, engineer2}
    assert all(f"/monitoring/incidents/{incident.pk}/" in n.url for n in notes)
    assert sorted(m.to[0] for m in mailoutbox) == ["eng2@example.org", "eng@example.org"]
    assert "Live rate below the evaluated band." in mailoutbox[0].body
    delivery = WebhookDelivery.objects.get()  # once, to the subscribed endpoint only
    assert delivery.event_type == "incident.opened" and delivery.status == "delivered"
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 1
    body = json.loads(delivery.body)
    assert body["type"] == "incident.opened"
    assert body["data"]["change"]["id"] == deployed.pk
    assert body["data"]["details"]["kind"] == "discrepancy"
    assert sum(receiver.accepted.values()) == 1 and not receiver.bad_signatures


# --- 3. a probe right after each deploy and stage start ---------------------------------------


def test_each_deploy_and_stage_start_sends_one_probe_on_commit_to_the_probe_queue(
    ports, world, engineer, reviewer, settings, monkeypatch, django_capture_on_commit_callbacks
):
    from monitoring import tasks

    settings.MONITORING_PROBE_QUEUE = "probes-test"
    sent = []
    monkeypatch.setattr(
        tasks.probe_change, "apply_async", lambda args, queue, retry: sent.append((args, queue))
    )
    system, v = world
    first = approved(engineer, reviewer, system, v["v1"], v["v2"])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.change_request_deploy(actor=engineer, change_request=first, environment="staging")
    assert sent == []  # nothing before commit
    for callback in callbacks:
        callback()
    assert sent == [([first.pk], "probes-test")]
    second = services.change_request_create(
        actor=engineer, system=system, base_protocol=v["v1"], proposed_protocol=v["v3"],
        **change_fields(),
    )  # fmt: skip
    env_services.change_request_set_stages(actor=engineer, change_request=second, stages=[10, 100])
    second = approve(second, engineer, reviewer)
    sent.clear()
    for number in (1, 2):
        with django_capture_on_commit_callbacks(execute=True):
            env_services.stage_start(
                actor=engineer, change_request=second, environment="production", number=number
            )
    # Stage 1 is the deploy (one probe, not two); stage 2 moves more traffic: one more.
    assert sent == [([second.pk], "probes-test"), ([second.pk], "probes-test")]


def test_the_after_deploy_probe_runs_for_a_live_monitored_change_and_never_counts_as_live(
    monitor, deployed, django_capture_on_commit_callbacks
):
    from changes.models import AISystem
    from monitoring import discrepancy, probes, tasks
    from monitoring.models import Decision, ProbeRun, ReviewItem, Rollup
    from tests.monitoring.conftest import store
    from tests.monitoring.test_probes import pre_deploy_run

    AISystem.objects.filter(pk=deployed.system_id).update(
        target={"kind": "reference", "agent": "compliant"}
    )
    pre_deploy_run(deployed)
    store(deployed, ["NEEDS_SECOND_APPROVER"] * 5 + ["approved"] * 5)
    from monitoring import grading

    grading.grade_pending()
    before = (
        list(Rollup.objects.values_list("n", "new", "legacy")),
        ReviewItem.objects.count(),
        Decision.objects.count(),
        discrepancy.assess(deployed),
    )
    assert tasks.probe_change.run(deployed.pk) == 1  # what the queued task does
    probe = ProbeRun.objects.get()
    assert probe.n + probe.errors == probes.settings.MONITORING_PROBE_BUDGET
    after = (
        list(Rollup.objects.values_list("n", "new", "legacy")),
        ReviewItem.objects.count(),
        Decision.objects.count(),
        discrepancy.assess(deployed),
    )
    assert after == before  # probe results live in ProbeRun only
    # Decisions the operator marks as probe traffic are graded, never counted or sampled.
    probes = store(deployed, ["approved"] * 50, probe=True)
    grading.grade_pending()
    assert list(Rollup.objects.values_list("n", "new", "legacy")) == before[0]
    assert not ReviewItem.objects.filter(decision__is_probe=True).exists()
    assert len(labels_for([d.pk for d in probes])) == 50


def test_the_after_deploy_probe_skips_unmonitored_or_replaced_changes(deployed, monitor):
    from changes.env_models import LiveVersion
    from monitoring import probes

    LiveVersion.objects.update(protocol=None, deployment=None)
    assert probes.probe_after_deploy(deployed.pk) == 0
    assert probes.probe_after_deploy(10**9) == 0


# --- 7. the staged-rollout gate waits for live evidence and for incidents ---------------------


def test_the_next_stage_waits_for_live_evidence_and_while_an_incident_is_open(
    ports, world, engineer, reviewer, settings, api
):
    from monitoring import grading
    from monitoring.models import Incident
    from tests.monitoring.conftest import store

    settings.MONITORING_STAGE_MIN_DECISIONS = 20
    system, v = world
    change = services.change_request_create(
        actor=engineer, system=system, base_protocol=v["v1"], proposed_protocol=v["v2"],
        **change_fields(),
    )  # fmt: skip
    monitoring_services.monitor_set(actor=engineer, change=change, graders=MONITOR_GRADERS)
    env_services.change_request_set_stages(actor=engineer, change_request=change, stages=[5, 100])
    change = approve(change, engineer, reviewer)
    url = f"/api/v1/changes/{change.pk}/stage/"
    first = api(engineer).post(url, {"environment": "production", "stage": 1}, format="json")
    assert first.status_code == 201, first.json()
    # Too little graded live evidence from stage 1: 409 in words, nothing written.
    thin = api(engineer).post(url, {"environment": "production", "stage": 2}, format="json")
    assert thin.status_code == 409
    assert (
        "Only 0 graded live decision(s) in production since stage 1 started; 20 are needed"
        in thin.json()["reasons"][0]
    )
    store(change, ["NEEDS_SECOND_APPROVER"] * 20)
    grading.grade_pending()
    asked = api(engineer).get(url + "?environment=production&stage=2").json()
    assert asked["may_start"] is True, asked
    # An incident on the change holds the stage until it is resolved.
    incident = monitoring_services.incident_open(
        system=system, change=change, kind="unapproved_protocol", key="u:1",
        environment="production", summary="Unapproved protocol in production.", details={},
    )  # fmt: skip
    held = api(engineer).post(url, {"environment": "production", "stage": 2}, format="json")
    assert held.status_code == 409
    assert held.json()["reasons"] == [
        f"INC-{incident.pk} is open: Unapproved protocol in production."
    ]
    monitoring_services.incident_transition(actor=engineer, incident=incident, action="resolve")
    assert Incident.objects.get().state == "resolved"
    done = api(engineer).post(url, {"environment": "production", "stage": 2}, format="json")
    assert done.status_code == 201, done.json()


def test_each_stage_waits_for_evidence_served_since_the_previous_stage_started(
    ports, world, engineer, reviewer, settings, api
):
    from monitoring import grading
    from tests.monitoring.conftest import store

    settings.MONITORING_STAGE_MIN_DECISIONS = 10
    system, v = world
    change = services.change_request_create(
        actor=engineer, system=system, base_protocol=v["v1"], proposed_protocol=v["v2"],
        **change_fields(),
    )  # fmt: skip
    monitoring_services.monitor_set(actor=engineer, change=change, graders=MONITOR_GRADERS)
    env_services.change_request_set_stages(
        actor=engineer, change_request=change, stages=[5, 50, 100]
    )
    change = approve(change, engineer, reviewer)
    url = f"/api/v1/changes/{change.pk}/stage/"

    def start(stage):
        return api(engineer).post(url, {"environment": "production", "stage": stage}, format="json")

    assert start(1).status_code == 201
    store(change, ["NEEDS_SECOND_APPROVER"] * 30)  # plenty for stage 2, served under stage 1
    grading.grade_pending()
    assert start(2).status_code == 201
    # Stage 3 counts only what was served since stage 2 started: the 30 above do not.
    thin = start(3)
    assert thin.status_code == 409
    assert thin.json()["reasons"] == [
        "Only 0 graded live decision(s) in production since stage 2 started; "
        "10 are needed before the next stage."
    ]
    # Probes and decisions not graded yet are no evidence either.
    store(change, ["NEEDS_SECOND_APPROVER"] * 9)
    store(change, ["NEEDS_SECOND_APPROVER"] * 5, probe=True)
    store(change, ["NEEDS_SECOND_APPROVER"] * 1)  # not graded yet
    assert "Only 0 graded" in start(3).json()["reasons"][0]
    grading.grade_pending()
    asked = api(engineer).get(url + "?environment=production&stage=3").json()
    assert asked["may_start"] is True, asked
    assert start(3).status_code == 201


# --- 5. judge graders on live traffic at the monitor's sampling rate --------------------------


@pytest.fixture
def stub_judge(settings, db):
    """A judge model on 127.0.0.1 that says yes to outputs mentioning the second approver,
    no to the rest, and answers prose (unparsable) to outputs containing 'ramble'."""
    from evaluations.models import JudgeModel
    from tests.evaluations.openai_stub import OpenAIStub

    def answer(payload):
        text = payload["messages"][-1]["content"]
        if "ramble" in text:
            return "Well, it depends on how you look at it."
        return '{"verdict": "yes", "reason": "ok"}' if "SECOND_APPROVER" in text else "no"

    settings.EVAL_ALLOWED_HOSTS = ["127.0.0.1"]
    with OpenAIStub(responder=answer) as server:
        JudgeModel.objects.create(
            name="stub-judge",
            config={"kind": "openai", "base_url": server.url, "model": "j", "max_retries": 0},
        )
        yield server


JUDGE = {
    "model": "stub-judge",
    "rate": 0.5,
    "graders": {
        "new": {"judge": "The reply asks for a second approver."},
        "legacy": {"regex": r"\bapproved\b"},
    },
}


def test_the_judge_labels_a_sample_of_live_decisions_and_counts_unparsable_votes_as_errors(
    deployed, admin_user, stub_judge, django_capture_on_commit_callbacks, eager
):
    from monitoring import grading, judging
    from monitoring.models import Decision, JudgeVerdict
    from tests.monitoring.conftest import store

    monitoring_services.monitor_set(
        actor=admin_user, change=deployed, graders=MONITOR_GRADERS, judge=JUDGE
    )
    store(deployed, ["NEEDS_SECOND_APPROVER"] * 60 + ["ramble on"] * 20 + ["approved"] * 20)
    with django_capture_on_commit_callbacks(execute=True):
        grading.grade_pending()
    ids = list(Decision.objects.values_list("pk", flat=True))
    expected = {pk for pk in ids if judging.sampled(pk, 0.5)}
    assert 30 <= len(expected) <= 70  # the rate, give or take the hash's luck
    verdicts = {v.decision_id: v for v in JudgeVerdict.objects.all()}
    assert set(verdicts) == expected  # exactly the sample, once each
    outputs = dict(Decision.objects.values_list("pk", "output_text"))
    for pk, verdict in verdicts.items():
        want = {"NEEDS_SECOND_APPROVER": "new", "ramble on": "error", "approved": "legacy"}
        assert verdict.label == want[outputs[pk]], (outputs[pk], verdict.error)
        if verdict.label == "error":
            assert "no majority" in verdict.error and "unparsable" in verdict.error
    summary = judging.summary(deployed)
    assert summary["n"] == len(expected)
    assert summary["errors"] == sum(outputs[pk] == "ramble on" for pk in expected) > 0
    assert summary["agreement_with_grader"] == 1.0
    # Judging again stores nothing twice; the stub heard one call per judged decision
    # whose legacy regex did not decide it.
    calls = len(stub_judge.requests)
    assert judging.judge_decisions(deployed.pk, ids) == 0
    assert len(stub_judge.requests) == calls


def test_a_monitor_judge_must_name_a_registered_model_and_a_rate(deployed, admin_user, db):
    from core.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as refused:
        monitoring_services.monitor_set(
            actor=admin_user, change=deployed, graders=MONITOR_GRADERS,
            judge={**JUDGE, "model": "nobody", "rate": 2},
        )  # fmt: skip
    assert "judge.rate" in " ".join(refused.value.reasons)
    assert "no enabled judge model named 'nobody'" in " ".join(refused.value.reasons)


def test_the_judge_is_part_of_the_approved_monitor(ports, world, engineer, reviewer, stub_judge):
    system, v = world
    change = approved(engineer, reviewer, system, v["v1"], v["v2"])
    monitoring_services.monitor_set(actor=engineer, change=change, graders=MONITOR_GRADERS)
    change.refresh_from_db()
    without = change.content_sha256
    monitoring_services.monitor_set(
        actor=engineer, change=change, graders=MONITOR_GRADERS, judge=JUDGE
    )
    change.refresh_from_db()
    assert change.content_sha256 != without


def test_the_monitor_api_takes_a_judge_and_refuses_a_bad_one_with_a_400(
    deployed, admin_user, stub_judge, api
):
    from monitoring.models import Monitor

    url = f"/api/v1/changes/{deployed.pk}/monitor/"
    body = {"graders": MONITOR_GRADERS, "judge": JUDGE}
    bad = api(admin_user).put(url, {**body, "judge": {"model": "stub-judge"}}, format="json")
    assert bad.status_code == 400 and "judge" in bad.json()["detail"]
    assert not Monitor.objects.exists()
    good = api(admin_user).put(url, body, format="json")
    assert good.status_code == 200 and good.json()["judge"]["rate"] == 0.5
    assert Monitor.objects.get().judge["model"] == "stub-judge"


def test_setting_the_monitor_without_a_judge_keeps_the_declared_one(
    ports, world, engineer, stub_judge
):
    from monitoring.models import Monitor

    system, v = world
    change = services.change_request_create(
        actor=engineer, system=system, base_protocol=v["v1"], proposed_protocol=v["v2"],
        **change_fields(),
    )  # fmt: skip
    monitoring_services.monitor_set(
        actor=engineer, change=change, graders=MONITOR_GRADERS, judge=JUDGE
    )
    monitoring_services.monitor_set(
        actor=engineer, change=change, graders=MONITOR_GRADERS, evaluated_condition="monitored"
    )
    assert Monitor.objects.get().judge["model"] == "stub-judge"
    monitoring_services.monitor_set(
        actor=engineer, change=change, graders=MONITOR_GRADERS, judge={}
    )
    assert Monitor.objects.get().judge == {}
