"""Environments, the live registry, stale-base refusal, rollback, rebase and rollout stages.

Each refusal is checked for its status, its reason in words and for writing nothing.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from changes import env_selectors, env_services, environments, services, states
from changes.env_models import Environment, LiveVersion, RolloutStage
from changes.models import AuditEvent, ChangeRequest, Deployment, ProtocolVersion
from core.errors import Conflict, ValidationFailed
from tests.changes.env_support import approve, approved, new_version, system_with
from tests.factories import PASSWORD, change_fields

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("passing_evaluations", "recorded_attestations"),
]


def counts():
    return (
        Deployment.objects.count(),
        AuditEvent.objects.count(),
        ChangeRequest.objects.count(),
        ProtocolVersion.objects.count(),
        RolloutStage.objects.count(),
        list(LiveVersion.objects.order_by("pk").values_list("protocol_id", "deployment_id")),
    )


@pytest.fixture
def world(team_a, engineer, reviewer):
    system, v = system_with(team_a, "v1", "v2", "v3")
    return system, v


def live(system, env="production"):
    return LiveVersion.objects.get(environment__system=system, environment__name=env).protocol


# --- environments ---------------------------------------------------------------------------


def test_every_new_system_gets_staging_then_production(world):
    system, _ = world
    assert [(e.name, e.order) for e in env_selectors.environments_of(system)] == [
        ("staging", 10),
        ("production", 20),
    ]


def test_deploy_to_staging_keeps_the_change_approved_and_production_makes_it_deployed(
    world, engineer, reviewer
):
    system, v = world
    change = approved(engineer, reviewer, system, v["v1"], v["v2"])
    services.change_request_deploy(actor=engineer, change_request=change, environment="staging")
    change.refresh_from_db()
    assert change.state == states.APPROVED
    assert live(system, "staging") == v["v2"] and live(system) is None
    services.change_request_deploy(actor=engineer, change_request=change, environment="production")
    change.refresh_from_db()
    assert change.state == states.DEPLOYED
    assert live(system) == v["v2"]
    verbs = list(
        AuditEvent.objects.filter(verb__startswith="change.deployed").values_list("verb", flat=True)
    )
    assert verbs == ["change.deployed_to_environment", "change.deployed"]


def test_unknown_environment_is_a_400_and_writes_nothing(world, engineer, reviewer, api):
    system, v = world
    change = approved(engineer, reviewer, system, v["v1"], v["v2"])
    before = counts()
    response = api(engineer).post(
        reverse("api-change-deploy", kwargs={"pk": change.pk}), {"environment": "qa"}, format="json"
    )
    assert response.status_code == 400
    assert "'qa' is not an environment of" in response.json()["detail"]
    assert "staging, production" in response.json()["detail"]
    assert counts() == before


def test_out_of_order_promotion_is_a_409_in_words(world, engineer, reviewer, admin_user, api):
    system, v = world
    env_services.environment_save(
        actor=admin_user, system=system, name="production", requires_previous=True
    )
    change = approved(engineer, reviewer, system, v["v1"], v["v2"])
    before = counts()
    response = api(engineer).post(
        reverse("api-change-deploy", kwargs={"pk": change.pk}),
        {"environment": "production"},
        format="json",
    )
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "out_of_order"
    assert (
        "production comes after staging on the promotion path: deploy to staging first."
        in body["reasons"]
    )
    assert counts() == before
    # in order it goes through
    services.change_request_deploy(actor=engineer, change_request=change, environment="staging")
    services.change_request_deploy(actor=engineer, change_request=change, environment="production")
    assert live(system) == v["v2"]


@pytest.mark.parametrize(
    "windows, words",
    [
        ("fri", "must be a list"),
        ([{"start": "fri 18:00"}], "needs exactly 'start' and 'end'"),
        ([{"start": "friday 18:00", "end": "mon 06:00"}], "is not a weekday and time"),
        ([{"start": "fri 25:00", "end": "mon 06:00"}], "is not a weekday and time"),
        ([{"start": "fri 18:00", "end": "fri 18:00"}], "same time"),
        (
            [
                {"start": "fri 18:00", "end": "mon 06:00"},
                {"start": "sun 12:00", "end": "sun 13:00"},
            ],
            "overlap",
        ),
        (
            [
                {"start": "sat 00:00", "end": "sun 00:00"},
                {"start": "fri 12:00", "end": "sat 00:01"},
            ],
            "overlap",
        ),
    ],
)
def test_malformed_or_overlapping_blackout_windows_are_a_400(world, admin_user, windows, words):
    system, _ = world
    before = (counts(), list(Environment.objects.values_list("blackout_windows", flat=True)))
    with pytest.raises(ValidationFailed, match=words):
        env_services.environment_save(
            actor=admin_user, system=system, name="production", blackout_windows=windows
        )
    assert (
        counts(),
        list(Environment.objects.values_list("blackout_windows", flat=True)),
    ) == before


def test_blackout_windows_wrap_around_the_week_in_the_system_time_zone():
    windows = [{"start": "fri 18:00", "end": "mon 06:00"}]
    berlin = "Europe/Berlin"
    # 2026-12-04 is a Friday; 17:30 UTC is 18:30 in Berlin (winter time, UTC+1)
    assert environments.in_blackout(
        windows, berlin, dt.datetime(2026, 12, 4, 17, 30, tzinfo=dt.UTC)
    )
    assert not environments.in_blackout(
        windows, berlin, dt.datetime(2026, 12, 4, 16, 30, tzinfo=dt.UTC)
    )
    assert environments.in_blackout(windows, berlin, dt.datetime(2026, 12, 7, 4, 59, tzinfo=dt.UTC))
    assert not environments.in_blackout(
        windows, berlin, dt.datetime(2026, 12, 7, 5, 0, tzinfo=dt.UTC)
    )


def _always_blackout(admin_user, system):
    whole_week = [{"start": "mon 00:00", "end": "sun 23:59"}]
    env_services.environment_save(
        actor=admin_user, system=system, name="production", blackout_windows=whole_week
    )


def test_deploy_in_a_blackout_needs_the_override_and_one_more_approval(
    world, engineer, reviewer, reviewer2, admin_user, api
):
    system, v = world
    _always_blackout(admin_user, system)
    change = approved(engineer, reviewer, system, v["v1"], v["v2"])
    url = reverse("api-change-deploy", kwargs={"pk": change.pk})
    before = counts()
    plain = api(engineer).post(url, {"environment": "production"}, format="json")
    assert plain.status_code == 409 and plain.json()["code"] == "blackout"
    assert any("blackout window (mon 00:00 - sun 23:59, UTC)" in r for r in plain.json()["reasons"])
    short = api(engineer).post(
        url, {"environment": "production", "blackout_override": True}, format="json"
    )
    assert short.status_code == 409
    assert "The blackout override needs 2 approvals; 1 given." in short.json()["reasons"]
    assert counts() == before
    # a second independent approval: the override goes through and is marked
    services.review_submit(
        actor=reviewer2, change_request=change, decision="approve", password=PASSWORD
    )
    ok = api(engineer).post(
        url, {"environment": "production", "blackout_override": True}, format="json"
    )
    assert ok.status_code == 201, ok.json()
    assert ok.json()["blackout_override"] is True
    event = AuditEvent.objects.get(verb="change.deployed")
    assert event.data["blackout_override"] is True


# --- the live registry and the stale-base refusal -------------------------------------------


def test_registry_and_history_api(world, engineer, reviewer, api):
    system, v = world
    first = approved(engineer, reviewer, system, v["v1"], v["v2"])
    services.change_request_deploy(actor=engineer, change_request=first, environment="production")
    second = approved(engineer, reviewer, system, v["v2"], v["v3"])
    services.change_request_deploy(actor=engineer, change_request=second, environment="production")
    rows = api(reviewer).get(reverse("api-system-environments", kwargs={"pk": system.pk})).json()
    prod = next(r for r in rows if r["name"] == "production")
    assert (prod["live_version"], prod["change_reference"]) == ("v3", second.reference)
    assert prod["since"] and prod["deployed_by"] == "engineer"
    staging = next(r for r in rows if r["name"] == "staging")
    assert staging["live_version"] is None
    history = (
        api(reviewer)
        .get(reverse("api-environment-history", kwargs={"pk": system.pk, "env": "production"}))
        .json()
    )
    assert [(h["previous_version"], h["version"], h["change"]) for h in history] == [
        (None, "v2", first.pk),
        ("v2", "v3", second.pk),
    ]
    missing = api(reviewer).get(
        reverse("api-environment-history", kwargs={"pk": system.pk, "env": "qa"})
    )
    assert missing.status_code == 404


def test_a_change_written_against_an_old_base_is_refused_with_a_rebase_hint(
    world, engineer, reviewer, api
):
    system, v = world
    first = approved(engineer, reviewer, system, v["v1"], v["v2"])
    stale = approved(engineer, reviewer, system, v["v1"], v["v3"])
    services.change_request_deploy(actor=engineer, change_request=first, environment="production")
    before = counts()
    response = api(engineer).post(
        reverse("api-change-deploy", kwargs={"pk": stale.pk}),
        {"environment": "production"},
        format="json",
    )
    assert response.status_code == 409
    assert response.json()["code"] == "stale_base"
    when = Deployment.objects.get(change=first).created_at
    expected = (
        f"production now runs v2 ({first.reference}, deployed {when:%Y-%m-%d}); this change "
        "was written against v1: rebase."
    )
    assert expected in response.json()["reasons"]
    assert counts() == before
    gate = api(engineer).get(reverse("api-change-gate", kwargs={"pk": stale.pk})).json()
    assert gate["deployable"] is False and "stale_base" in gate["codes"]
    assert gate["live_version"] == "v2"


def test_the_gate_lists_other_open_changes_on_the_system(world, engineer, reviewer, api):
    system, v = world
    one = approved(engineer, reviewer, system, v["v1"], v["v2"])
    other = approved(engineer, reviewer, system, v["v1"], v["v3"])
    gate = api(engineer).get(reverse("api-change-gate", kwargs={"pk": one.pk})).json()
    assert [c["reference"] for c in gate["open_changes"]] == [other.reference]
    unknown = api(engineer).get(
        reverse("api-change-gate", kwargs={"pk": one.pk}) + "?environment=qa"
    )
    assert unknown.status_code == 400


# --- rollback ---------------------------------------------------------------------------------


def test_rollback_files_the_reverse_change_and_deploys_like_any_other(
    world, engineer, reviewer, api
):
    system, v = world
    change = approved(engineer, reviewer, system, v["v1"], v["v2"], backout_plan="Redeploy **v1**.")
    services.change_request_deploy(actor=engineer, change_request=change, environment="production")
    response = api(engineer).post(
        reverse("api-rollback", kwargs={"pk": change.pk}), {"emergency": True}, format="json"
    )
    assert response.status_code == 201, response.json()
    rollback = ChangeRequest.objects.get(pk=response.json()["id"])
    assert (rollback.base_protocol, rollback.proposed_protocol) == (v["v2"], v["v1"])
    assert rollback.rollback_of == change and rollback.is_emergency
    assert "Redeploy **v1**." in rollback.rationale
    assert AuditEvent.objects.filter(
        verb="change.rollback_filed", object_id=str(rollback.pk)
    ).exists()
    approve(rollback, engineer, reviewer)
    services.change_request_deploy(
        actor=engineer, change_request=rollback, environment="production"
    )
    assert live(system) == v["v1"]


def test_rollback_of_a_change_that_is_not_live_is_a_409(world, engineer, reviewer):
    system, v = world
    change = approved(engineer, reviewer, system, v["v1"], v["v2"])
    before = counts()
    with pytest.raises(Conflict, match="Only a deployed change can be rolled back"):
        env_services.change_request_rollback(actor=engineer, change_request=change)
    services.change_request_deploy(actor=engineer, change_request=change, environment="production")
    later = approved(engineer, reviewer, system, v["v2"], v["v3"])
    services.change_request_deploy(actor=engineer, change_request=later, environment="production")
    before = counts()
    with pytest.raises(Conflict, match="production runs v3, not v2"):
        env_services.change_request_rollback(actor=engineer, change_request=change)
    assert counts() == before


# --- rebase -----------------------------------------------------------------------------------


def test_rebase_of_a_change_that_is_not_stale_is_a_409(world, engineer, reviewer, api):
    system, v = world
    change = approved(engineer, reviewer, system, v["v1"], v["v2"])
    before = counts()
    response = api(engineer).post(
        reverse("api-rebase", kwargs={"pk": change.pk}), {}, format="json"
    )
    assert response.status_code == 409 and response.json()["code"] == "not_stale"
    assert "is not stale" in response.json()["detail"]
    assert counts() == before


def test_rebase_merges_cleanly_and_voids_the_approvals(team_a, engineer, reviewer):
    system, _ = system_with(team_a)
    base = new_version(system, "v1", "line one\nline two\nline three\n")
    theirs = new_version(system, "v2", "line ONE\nline two\nline three\n")
    ours = new_version(system, "v3", "line one\nline two\nline THREE\n")
    first = approved(engineer, reviewer, system, base, theirs)
    services.change_request_deploy(actor=engineer, change_request=first, environment="production")
    stale = approved(engineer, reviewer, system, base, ours)
    old_hash = stale.content_sha256
    rebased = env_services.change_request_rebase(actor=engineer, change_request=stale)
    assert rebased.base_protocol == theirs
    assert rebased.proposed_protocol.system_prompt == "line ONE\nline two\nline THREE\n"
    assert rebased.proposed_protocol.version == "v3+v2"
    assert rebased.content_sha256 != old_hash and rebased.state == states.DRAFT
    assert not rebased.reviews.filter(voided_at__isnull=True).exists()
    assert AuditEvent.objects.filter(verb="change.rebased", object_id=str(stale.pk)).exists()
    approve(rebased, engineer, reviewer)
    services.change_request_deploy(actor=engineer, change_request=rebased, environment="production")
    assert live(system) == rebased.proposed_protocol


def test_rebase_with_a_conflict_returns_the_markers_until_resolved(team_a, engineer, reviewer, api):
    system, _ = system_with(team_a)
    base = new_version(system, "v1", "Be brief.\n")
    theirs = new_version(system, "v2", "Be brief and polite.\n")
    ours = new_version(system, "v3", "Be brief and cite sources.\n")
    first = approved(engineer, reviewer, system, base, theirs)
    services.change_request_deploy(actor=engineer, change_request=first, environment="production")
    stale = approved(engineer, reviewer, system, base, ours)
    url = reverse("api-rebase", kwargs={"pk": stale.pk})
    preview = api(engineer).get(url).json()
    assert preview["conflicts"] == 1 and preview["onto_version"] == "v2"
    assert preview["system_prompt"] == (
        "<<<<<<< this change\nBe brief and cite sources.\n"
        "=======\nBe brief and polite.\n>>>>>>> live\n"
    )
    before = counts()
    refused = api(engineer).post(url, {}, format="json")
    assert refused.status_code == 409 and refused.json()["code"] == "merge_conflict"
    assert "<<<<<<<" in refused.json()["fields"]["system_prompt"][0]
    still = api(engineer).post(url, {"system_prompt": preview["system_prompt"]}, format="json")
    assert still.status_code == 409
    assert counts() == before
    ok = api(engineer).post(
        url, {"system_prompt": "Be brief, polite, and cite sources.\n"}, format="json"
    )
    assert ok.status_code == 200, ok.json()
    stale.refresh_from_db()
    assert stale.proposed_protocol.system_prompt == "Be brief, polite, and cite sources.\n"
    assert stale.base_protocol == theirs


def test_merge3_keeps_both_sides_of_separate_edits():
    base = "a\nb\nc\nd\ne\n"
    merged, conflicts = environments.merge3(base, "A\nb\nc\nd\ne\n", "a\nb\nc\nd\nE\n")
    assert (merged, conflicts) == ("A\nb\nc\nd\nE\n", 0)
    assert environments.merge3(base, base, "x\n") == ("x\n", 0)
    assert environments.merge3(base, "a\nb\nX\nd\ne\n", "a\nb\nX\nd\ne\n")[1] == 0


# --- staged rollouts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stages, words",
    [
        ([5, 5, 100], "5% after 5% does not increase"),
        ([50, 25, 100], "25% after 50% does not increase"),
        ([5, 25], "the last stage must be 100%"),
        ([0, 100], "between 1 and 100"),
        (["5", 100], "whole percentages"),
    ],
)
def test_stages_that_do_not_increase_are_a_400(world, engineer, stages, words, api):
    system, v = world
    change = services.change_request_create(
        actor=engineer, system=system, base_protocol=v["v1"], proposed_protocol=v["v2"],
        **change_fields(),
    )  # fmt: skip
    before = (counts(), change.content_sha256)
    response = api(engineer).put(
        reverse("api-stages", kwargs={"pk": change.pk}), {"stages": stages}, format="json"
    )
    assert response.status_code == 400 and words in response.json()["detail"]
    change.refresh_from_db()
    assert (counts(), change.content_sha256) == before


def test_staged_rollout_stage_by_stage(world, engineer, reviewer, admin_user, api):
    system, v = world
    env_services.environment_save(
        actor=admin_user, system=system, name="production", requires_staged_rollout=True
    )
    plain = approved(engineer, reviewer, system, v["v1"], v["v2"])
    with pytest.raises(Conflict) as refused:
        services.change_request_deploy(
            actor=engineer, change_request=plain, environment="production"
        )
    assert "production requires a staged rollout" in " ".join(refused.value.reasons)
    change = services.change_request_create(
        actor=engineer,
        system=system,
        base_protocol=v["v1"],
        proposed_protocol=v["v3"],
        **change_fields(),
    )
    env_services.change_request_set_stages(
        actor=engineer, change_request=change, stages=[5, 25, 100]
    )
    change = approve(change, engineer, reviewer)
    url = reverse("api-stage", kwargs={"pk": change.pk})
    ask = api(engineer).get(url + "?environment=production&stage=2").json()
    assert ask["may_start"] is False and "Stage 1 has not started" in ask["reasons"][0]
    assert api(engineer).get(url + "?environment=production&stage=1").json()["may_start"] is True
    started = api(engineer).post(url, {"environment": "production", "stage": 1}, format="json")
    assert started.status_code == 201 and started.json()["percent"] == 5
    assert live(system) == v["v3"]
    again = api(engineer).post(url, {"environment": "production", "stage": 1}, format="json")
    assert again.status_code == 409
    skip = api(engineer).post(url, {"environment": "production", "stage": 3}, format="json")
    assert skip.status_code == 409 and "Stage 2 has not started" in skip.json()["reasons"][0]
    assert (
        api(engineer)
        .post(url, {"environment": "production", "stage": 2}, format="json")
        .status_code
        == 201
    )
    assert (
        api(engineer)
        .post(url, {"environment": "production", "stage": 3}, format="json")
        .status_code
        == 201
    )
    assert list(
        AuditEvent.objects.filter(verb="change.stage_started").values_list(
            "data__percent", flat=True
        )
    ) == [5, 25, 100]


def test_openapi_documents_the_environment_endpoints(api, engineer):
    schema = api(engineer).get("/api/schema/?format=json").json()
    assert "/api/v1/systems/{id}/environments/" in schema["paths"]
    assert "/api/v1/systems/{id}/environments/{env}/history/" in schema["paths"]


def test_open_changes_list_only_what_the_asker_may_see(world, engineer, reviewer, pipeline, api):
    # given an approved change and a private draft beside it on the same system
    system, v = world
    change = approved(engineer, reviewer, system, v["v1"], v["v2"])
    draft = services.change_request_create(
        actor=engineer,
        system=system,
        base_protocol=v["v1"],
        proposed_protocol=v["v3"],
        **change_fields(title="Private draft SECRET-TITLE"),
    )
    url = reverse("api-change-gate", kwargs={"pk": change.pk})
    # then the author's team sees the draft as a conflict, the pipeline does not
    assert draft.reference in [
        c["reference"] for c in api(engineer).get(url).json()["open_changes"]
    ]
    as_pipeline = api(pipeline).get(url)
    assert as_pipeline.json()["open_changes"] == []
    assert "SECRET-TITLE" not in as_pipeline.content.decode()
    detail = api(pipeline).get(reverse("api-change-detail", kwargs={"pk": change.pk}))
    assert "SECRET-TITLE" not in detail.content.decode()


def test_the_attestation_facts_name_the_live_version_before_and_after(world, engineer, reviewer):
    from django.utils import timezone

    from attestations import document

    system, v = world
    change = approved(engineer, reviewer, system, v["v1"], v["v2"])
    services.change_request_deploy(actor=engineer, change_request=change, environment="staging")
    services.change_request_deploy(actor=engineer, change_request=change, environment="production")
    change.refresh_from_db()
    facts = document.gather_facts(
        change,
        reason="deployed",
        version=9,
        audit_head=AuditEvent.objects.order_by("id").last(),
        issued_at=timezone.now(),
    )
    rows = [(d["environment"], d["live_before"], d["live_after"]) for d in facts["deployments"]]
    assert rows == [("staging", None, "v2"), ("production", None, "v2")]
    assert [d["blackout_override"] for d in facts["deployments"]] == [False, False]
    assert (facts["change"]["rollback_of"], facts["change"]["stages"]) == (None, [])
    rollback = env_services.change_request_rollback(actor=engineer, change_request=change)
    rollback_facts = document.gather_facts(
        rollback,
        reason="approved",
        version=1,
        audit_head=AuditEvent.objects.order_by("id").last(),
        issued_at=timezone.now(),
    )
    assert rollback_facts["change"]["rollback_of"] == change.reference


def test_staging_override_deploys_on_one_approval_while_production_waits_for_two(
    team_a, engineer, reviewer, reviewer2, admin_user
):
    # given a high-criticality system (2 cross-team approvals) whose staging needs only 1
    system, v = system_with(team_a, "v1", "v2", criticality="high")
    env_services.environment_save(
        actor=admin_user, system=system, name="staging", required_approvals=1
    )
    change = approved(engineer, reviewer, system, v["v1"], v["v2"])
    assert change.state == states.AWAITING_REVIEW  # one of two approvals
    # when it deploys to staging: allowed, and the change stays awaiting review
    services.change_request_deploy(actor=engineer, change_request=change, environment="staging")
    change.refresh_from_db()
    assert change.state == states.AWAITING_REVIEW and live(system, "staging") == v["v2"]
    # production is refused until the second approval
    with pytest.raises(Conflict) as refused:
        services.change_request_deploy(
            actor=engineer, change_request=change, environment="production"
        )
    assert any("1 of 2 required" in r for r in refused.value.reasons)
    approve(change, engineer, reviewer2)
    services.change_request_deploy(actor=engineer, change_request=change, environment="production")
    change.refresh_from_db()
    assert change.state == states.DEPLOYED and not change.retrospective_pending


def test_emergency_rollback_deploys_on_one_approval_and_owes_a_retrospective(
    team_a, engineer, reviewer, reviewer2
):
    system, v = system_with(team_a, "v1", "v2", criticality="high")
    change = approve(
        services.change_request_create(
            actor=engineer, system=system, base_protocol=v["v1"], proposed_protocol=v["v2"],
            **change_fields(),
        ),
        engineer, reviewer, reviewer2,
    )  # fmt: skip
    services.change_request_deploy(actor=engineer, change_request=change)
    rollback = env_services.change_request_rollback(
        actor=engineer, change_request=change, emergency=True
    )
    # an independent reviewer confirms the emergency (the author alone cannot lower the gate)
    services.change_request_confirm_emergency(actor=reviewer2, change_request=rollback)
    rollback = approve(rollback, engineer, reviewer)
    assert rollback.state == states.APPROVED  # one approval is enough for an emergency
    services.change_request_deploy(actor=engineer, change_request=rollback)
    rollback.refresh_from_db()
    assert rollback.state == states.DEPLOYED and rollback.retrospective_pending
    assert live(system) == v["v1"]


def test_stage_numbers_may_arrive_as_strings(world, engineer, reviewer, api):
    # Argo Rollouts' jsonBody sends template args as strings (docs/ROLLOUTS.md)
    system, v = world
    change = services.change_request_create(
        actor=engineer, system=system, base_protocol=v["v1"], proposed_protocol=v["v2"],
        **change_fields(),
    )  # fmt: skip
    env_services.change_request_set_stages(actor=engineer, change_request=change, stages=[50, 100])
    approve(change, engineer, reviewer)
    url = reverse("api-stage", kwargs={"pk": change.pk})
    started = api(engineer).post(url, {"environment": "production", "stage": "1"}, format="json")
    assert started.status_code == 201 and started.json()["number"] == 1


def test_the_change_document_says_it_is_a_rollback(world, engineer, reviewer, api):
    system, v = world
    change = approved(engineer, reviewer, system, v["v1"], v["v2"])
    services.change_request_deploy(actor=engineer, change_request=change)
    rollback = env_services.change_request_rollback(actor=engineer, change_request=change)
    body = api(engineer).get(reverse("api-change-detail", kwargs={"pk": rollback.pk})).json()
    assert body["rollback_of"] == change.pk and body["stages"] == []


def test_a_later_stage_waits_out_a_blackout(world, engineer, reviewer, admin_user, api):
    system, v = world
    change = services.change_request_create(
        actor=engineer, system=system, base_protocol=v["v1"], proposed_protocol=v["v2"],
        **change_fields(),
    )  # fmt: skip
    env_services.change_request_set_stages(actor=engineer, change_request=change, stages=[5, 100])
    approve(change, engineer, reviewer)
    env_services.stage_start(
        actor=engineer, change_request=change, environment="production", number=1
    )
    env_services.environment_save(
        actor=admin_user, system=system, name="production",
        blackout_windows=[{"start": "mon 00:00", "end": "sun 23:59"}],
    )  # fmt: skip
    before = counts()
    url = reverse("api-stage", kwargs={"pk": change.pk})
    refused = api(engineer).post(url, {"environment": "production", "stage": 2}, format="json")
    assert refused.status_code == 409
    assert "production is in a blackout window" in refused.json()["reasons"][0]
    assert counts() == before
