"""The defects found on the pages (issue 9, item 7), checked through Django's test client.

Each defect is also checked in a real browser, at 1280 and 390 px, in
``tests/browser/test_page_layout.py``; these tests cover what the HTML alone shows.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from changes import audit, env_services, hooks, services, states
from changes.models import AuditEvent, ChangeRequest, Deployment, ProtocolVersion
from tests.changes.test_ui_pages import change_in_state, login, system_with_versions
from tests.factories import ProtocolFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("passing_evaluations", "recorded_attestations"),
]


def page(client, name, *args, **params) -> str:
    response = client.get(reverse(name, args=args), params)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


# --- deploy: a labelled environment choice, a confirmation, the gate after a deploy --------


def test_the_change_page_offers_a_labelled_environment_choice(client, engineer, reviewer):
    # given an approved change
    change = change_in_state(engineer, states.APPROVED, reviewer=reviewer)
    login(client, engineer)
    # when the engineer opens it
    html = page(client, "change-detail", change.pk)
    # then deploying starts with a labelled select of environments, not a text box,
    # and leads to the confirmation page rather than deploying at once
    assert '<label for="id_environment" class="deploy-label">Environment</label>' in html
    assert '<select name="environment" id="id_environment"' in html
    assert '<option value="staging">Staging</option>' in html
    assert '<option value="production" selected>Production</option>' in html
    assert f'action="{reverse("change-deploy-confirm", args=[change.pk])}"' in html
    assert 'type="text" name="environment"' not in html


def test_the_confirmation_names_what_goes_live_and_deploys_nothing(client, engineer, reviewer):
    # given an approved change
    change = change_in_state(engineer, states.APPROVED, reviewer=reviewer)
    login(client, engineer)
    # when the engineer chooses staging and presses Deploy…
    html = page(client, "change-deploy-confirm", change.pk, environment="staging")
    # then the page names the system, the protocol version and the environment
    assert f'<strong id="confirm-system">{change.system.name}</strong>' in html
    version = change.proposed_protocol.version
    assert f'<strong class="mono" id="confirm-version">{version}</strong>' in html
    assert '<strong class="mono" id="confirm-environment">staging</strong>' in html
    assert f"Deploy {version} to staging</button>" in html
    # and nothing is deployed until the confirmation is posted
    assert not Deployment.objects.exists()
    assert ChangeRequest.objects.get(pk=change.pk).state == states.APPROVED
    response = client.post(
        reverse("change-deploy", args=[change.pk]), {"environment": "staging"}, follow=True
    )
    assert response.status_code == 200
    assert Deployment.objects.get(change=change).environment == "staging"


def test_an_unknown_environment_is_refused_with_a_reason(client, engineer, reviewer):
    change = change_in_state(engineer, states.APPROVED, reviewer=reviewer)
    login(client, engineer)
    response = client.get(
        reverse("change-deploy-confirm", args=[change.pk]), {"environment": "moon"}, follow=True
    )
    assert "Choose the environment to deploy to." in response.content.decode()
    response = client.post(
        reverse("change-deploy", args=[change.pk]), {"environment": "moon"}, follow=True
    )
    assert "environment: choose one of the listed environments." in response.content.decode()
    assert not Deployment.objects.exists()


def test_the_confirmation_shows_a_closed_gate_without_a_deploy_button(client, engineer):
    change = change_in_state(engineer, states.AWAITING_REVIEW)
    login(client, engineer)
    html = page(client, "change-deploy-confirm", change.pk, environment="production")
    assert "The deploy gate is closed." in html
    assert reverse("change-deploy", args=[change.pk]) not in html


def test_reviewers_get_no_confirmation_page(client, engineer, reviewer):
    change = change_in_state(engineer, states.APPROVED, reviewer=reviewer)
    login(client, reviewer)
    url = reverse("change-deploy-confirm", args=[change.pk])
    assert client.get(url, {"environment": "production"}).status_code == 403


def test_environments_an_admin_configures_are_offered_too(client, engineer, reviewer, admin_user):
    # given a system whose admin added a "canary" environment to the path
    first = change_in_state(engineer, states.APPROVED, reviewer=reviewer)
    env_services.environment_save(actor=admin_user, system=first.system, name="canary", order=15)
    login(client, engineer)
    html = page(client, "change-detail", first.pk)
    assert '<option value="canary">canary</option>' in html
    # in promotion order: staging (10), canary (15), production (20)
    assert html.index('value="staging"') < html.index('value="canary"')
    assert html.index('value="canary"') < html.index('value="production"')


def test_after_a_deploy_the_gate_says_where_when_and_by_whom(client, engineer, reviewer):
    # given a deployed change
    change = change_in_state(engineer, states.APPROVED, reviewer=reviewer)
    deployment = services.change_request_deploy(
        actor=engineer, change_request=change, environment="production"
    )
    login(client, reviewer)
    # when anyone opens it
    html = page(client, "change-detail", change.pk)
    # then the gate card says it is deployed, not a red "Not deployable"
    when = deployment.created_at.strftime("%Y-%m-%d %H:%M")
    assert "Deployed to production at <time datetime=" in html
    assert f"{when} UTC</time> by engineer." in html
    assert "Not deployable" not in html
    assert "gate-closed" not in html


# --- edit: only the fields that changed are logged ------------------------------------------


def edit_post_data(client, change) -> dict:
    """What a browser posts for the edit page as rendered: every field, CRLF newlines."""
    response = client.get(reverse("change-edit", args=[change.pk]))
    form = response.context["form"]
    data = {}
    for name, field in form.fields.items():
        if field.disabled:
            continue
        value = form.initial.get(name, field.initial)
        if isinstance(value, str):
            value = value.replace("\n", "\r\n")
        data[name] = value if value is not None else ""
    rows = list(change.expected_changes)
    data.update(
        {
            "expected-TOTAL_FORMS": str(len(rows) + 1),
            "expected-INITIAL_FORMS": str(len(rows)),
            "expected-MIN_NUM_FORMS": "0",
            "expected-MAX_NUM_FORMS": "1000",
        }
    )
    for i, row in enumerate([*rows, {"behaviour": "", "before": "", "after": ""}]):
        for key, value in row.items():
            data[f"expected-{i}-{key}"] = value
    return data


def test_the_edit_form_logs_only_the_fields_that_changed(client, engineer):
    # given a draft whose rationale has several lines (the browser sends them back as CRLF)
    system, *_ = system_with_versions(engineer.teams.first())
    change = change_in_state(
        engineer, states.DRAFT, system=system, rationale="Line one.\n\nLine **two**."
    )
    login(client, engineer)
    data = edit_post_data(client, change)
    # when only the title is changed in the form
    data["title"] = "A sharper title"
    response = client.post(reverse("change-edit", args=[change.pk]), data)
    assert response.status_code == 302
    # then the audit event names the title alone, and the rationale is stored as it was
    event = AuditEvent.objects.filter(verb="change.edited").get()
    assert event.data["fields"] == ["title"]
    change.refresh_from_db()
    assert change.rationale == "Line one.\n\nLine **two**."
    assert change.revision == 2


def test_saving_the_edit_form_untouched_logs_nothing(client, engineer):
    system, *_ = system_with_versions(engineer.teams.first())
    change = change_in_state(engineer, states.DRAFT, system=system, rationale="A\nB")
    login(client, engineer)
    before = change.content_sha256
    client.post(reverse("change-edit", args=[change.pk]), edit_post_data(client, change))
    change.refresh_from_db()
    assert change.content_sha256 == before and change.revision == 1
    assert not AuditEvent.objects.filter(verb="change.edited").exists()


# --- auditors' pages: "All changes", the audit log, the timeline ----------------------------


def test_all_changes_offers_a_pdf_only_where_an_attestation_is_ready(
    client, engineer, reviewer, auditor, monkeypatch
):
    # given two changes, only the first with a ready attestation
    with_pdf = change_in_state(engineer, states.APPROVED, reviewer=reviewer)
    without = change_in_state(engineer, states.DRAFT)
    rendering = change_in_state(engineer, states.DRAFT)
    port = hooks.attestation()
    monkeypatch.setattr(
        port,
        "statuses",
        lambda ids: {
            k: v
            for k, v in {with_pdf.pk: "ready", rendering.pk: "rendering"}.items()
            if k in set(ids)
        },  # fmt: skip
        raising=False,
    )
    login(client, auditor)
    # when the auditor lists every change
    html = page(client, "audit-changes")
    # then only the first links its PDF; the others say why there is none
    assert f"/api/v1/changes/{with_pdf.pk}/attestation.pdf" in html
    assert f"/api/v1/changes/{without.pk}/attestation.pdf" not in html
    assert f"/api/v1/changes/{rendering.pk}/attestation.pdf" not in html
    assert "rendering…" in html


def event(verb, *, object_type, object_id, data):
    return audit.append(
        actor=None, verb=verb, object_type=object_type, object_id=object_id, data=data
    )


def test_the_audit_log_shows_verification_results_and_human_object_labels(
    client, engineer, auditor
):
    # given a change, and two verifications of its attestation #7: one valid, one tampered
    change = change_in_state(engineer, states.DRAFT)
    for valid, failed, name in ((True, [], "good.pdf"), (False, ["signature"], "bad.pdf")):
        event(
            "attestation.verified",
            object_type="attestations.attestation",
            object_id=7,
            data={"valid": valid, "change": change.pk, "failed_checks": failed,
                  "pdf_sha256": "ab" * 32, "filename": name, "source": "ui"},
        )  # fmt: skip
    login(client, auditor)
    # when the auditor opens the audit log
    html = page(client, "audit-log")
    # then each verification shows its result, the failed check and the file
    assert '<span class="muted">result:</span> <span title="valid">valid</span>' in html
    assert '<span class="muted">result:</span> <span title="INVALID">INVALID</span>' in html
    assert '<span title="signature">signature</span>' in html
    assert '<span title="bad.pdf">bad.pdf</span>' in html
    # and the object is a human label linked to the change, not "attestations.attestation:7"
    url = reverse("change-detail", args=[change.pk]) + "#attestation"
    label = f"Attestation #7 of {change.reference}"
    assert f'<a href="{url}" title="attestations.attestation:7">{label}</a>' in html
    assert ">attestations.attestation:7<" not in html


def test_the_timeline_lists_long_reasons_whole(client, engineer):
    # given a failed evaluation whose reasons together run past any cut-off
    change = change_in_state(engineer, states.EVALUATING)
    reasons = [
        f"Reason {i}: " + "the unmonitored compliance bound is too low " * 4 for i in range(6)
    ]
    services.change_request_record_verdict(
        change_id=change.pk, content_sha256=change.content_sha256, passed=False, reasons=reasons
    )
    login(client, engineer)
    html = page(client, "change-detail", change.pk)
    # then every reason is listed in full (no word is cut), and booleans read as words
    for reason in reasons:
        assert f"<li>{reason}</li>" in html
    assert "retrospective pending</dt><dd>False" not in html


def test_audit_facts_are_cut_at_a_word_boundary():
    from changes.templatetags.changes_ui import clip

    text = "alpha " * 400
    clipped = clip(text, 100)
    assert clipped.endswith("alpha…") and len(clipped) <= 101
    assert clip("short") == "short"


# --- the new-change form: version order, the live default, the backwards warning -----------


def test_versions_are_listed_oldest_first_and_the_base_defaults_to_the_live_one(
    client, engineer, reviewer
):
    # given a system with v1, v2 and v3 where v2 is live in production
    system, v1, v2 = system_with_versions(engineer.teams.first())
    live = change_in_state(engineer, states.APPROVED, reviewer=reviewer, system=system)
    services.change_request_deploy(actor=engineer, change_request=live, environment="production")
    v3 = ProtocolFactory(system=system, version="v3")
    login(client, engineer)
    # when the engineer opens the form for this system
    html = page(client, "change-create", system=system.pk)
    base = html[html.index('name="base_protocol"') : html.index('name="proposed_protocol"')]
    # then the versions read v1, v2, v3; v2 is marked live and is the base; v3 is proposed
    assert base.index(">v1 ·") < base.index(">v2 ·") < base.index(">v3 ·")
    assert f'<option value="{v2.pk}" selected>v2 · live ·' in html
    assert f'<option value="{v3.pk}" selected>v3 ·' in html
    assert "v2 is live." in html
    # and the system page marks v2 as live
    system_page = page(client, "system-detail", system.pk)
    assert f'{v2.version}</a> <span class="tag tag-ok"' in system_page


def test_a_backwards_choice_is_named_before_and_after_filing(client, engineer):
    # given a system with v1 and v2
    system, v1, v2 = system_with_versions(engineer.teams.first())
    login(client, engineer)
    # when the author picks v2 as base and v1 as proposed (htmx re-renders the selects)
    html = page(
        client, "protocol-options", system=system.pk, base_protocol=v2.pk, proposed_protocol=v1.pk
    )
    # then the form says the change goes backwards
    assert 'id="direction-note"' in html and "This change goes backwards." in html
    assert f'<option value="{v1.pk}" selected>' in html  # the author's pick is kept
    # and forward does not
    forward = page(
        client, "protocol-options", system=system.pk, base_protocol=v1.pk, proposed_protocol=v2.pk
    )
    assert "direction-note" not in forward
    # when it is filed anyway, the change page and the message name the rollback
    from tests.changes.test_ui_change_form import form_data

    response = client.post(reverse("change-create"), form_data(system, v2, v1), follow=True)
    body = response.content.decode()
    assert "goes backwards: the proposed version v1 is older than the base v2" in body
    assert ">rollback</span>" in body


def test_a_version_choice_re_renders_only_the_direction_note(client, engineer):
    # The version selects are not swapped on a version change (the author's choice stays as
    # made, even mid-request): only the note comes back, empty when the change goes forward.
    system, v1, v2 = system_with_versions(engineer.teams.first())
    login(client, engineer)
    picks = {"system": system.pk, "part": "direction"}
    html = page(client, "protocol-options", **picks, base_protocol=v2.pk, proposed_protocol=v1.pk)
    assert html.strip().startswith('<div id="direction" class="span-2 direction">')
    assert "This change goes backwards." in html and "<select" not in html
    forward = page(
        client, "protocol-options", **picks, base_protocol=v1.pk, proposed_protocol=v2.pk
    )
    assert forward.strip() == '<div id="direction" class="span-2 direction"></div>'
    # and the new-change form wires the selects through one wrapper that is never swapped
    form = page(client, "change-create", system=system.pk)
    picker = form.split('id="protocol-picker"')[1].split(">")[0]
    assert 'hx-target="#direction"' in picker and 'hx-sync="this:queue last"' in picker
    assert "hx-get" not in form.split('id="id_base_protocol"')[0].rsplit("<select", 1)[1]


# --- a protocol version from the UI ---------------------------------------------------------


def test_an_engineer_adds_a_protocol_version_with_the_apis_service(client, engineer):
    system, v1, v2 = system_with_versions(engineer.teams.first())
    login(client, engineer)
    # the form starts from the newest version's text
    html = page(client, "protocol-create", system.pk)
    assert v2.body in html
    # when the engineer adds v3 (the browser sends CRLF)
    response = client.post(
        reverse("protocol-create", args=[system.pk]),
        {"version": "v3", "system_prompt": "Be brief.\r\nBe kind.", "body": "# P\r\n\r\n- x"},
    )
    # then it exists, with LF text, the API's content hash and its audit event
    protocol = ProtocolVersion.objects.get(system=system, version="v3")
    assert response.status_code == 302
    assert response["Location"] == reverse("protocol-detail", args=[system.pk, protocol.pk])
    assert protocol.system_prompt == "Be brief.\nBe kind." and protocol.created_by == engineer
    event = AuditEvent.objects.get(verb="protocol.created", object_id=str(protocol.pk))
    assert event.actor_username == "engineer" and event.data["version"] == "v3"


def test_a_duplicate_or_empty_version_is_refused_on_the_form(client, engineer):
    system, v1, v2 = system_with_versions(engineer.teams.first())
    login(client, engineer)
    url = reverse("protocol-create", args=[system.pk])
    response = client.post(url, {"version": "v2", "system_prompt": "x", "body": ""})
    assert response.status_code == 409
    assert "already has a protocol version" in response.content.decode()
    response = client.post(url, {"version": "v9", "system_prompt": "   ", "body": ""})
    assert response.status_code == 400
    assert ProtocolVersion.objects.filter(system=system).count() == 2


def test_only_engineers_add_protocol_versions(client, engineer, reviewer, auditor):
    system, *_ = system_with_versions(engineer.teams.first())
    url = reverse("protocol-create", args=[system.pk])
    for user in (reviewer, auditor):
        login(client, user)
        assert client.get(url).status_code == 403
        data = {"version": "v9", "system_prompt": "x"}
        assert client.post(url, data).status_code == 403
    assert not ProtocolVersion.objects.filter(version="v9").exists()
    login(client, engineer)
    html = page(client, "system-detail", system.pk)
    assert f'href="{url}"' in html


# --- smaller page defects ---------------------------------------------------------------------


def test_the_change_form_links_the_suite_upload_page(client, engineer):
    login(client, engineer)
    html = page(client, "change-create")
    assert f'<a href="{reverse("suite-upload")}">Upload a suite</a>' in html


def test_the_api_docs_load_nothing_from_third_parties(client, engineer):
    # Redoc was dropped (it needs inline script, which the CSP forbids); Swagger UI remains,
    # served from the sidecar's files.
    login(client, engineer)
    assert client.get("/api/redoc/").status_code == 404
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "googleapis" not in html and "gstatic" not in html and "cdn." not in html


def test_changing_only_the_versions_logs_the_versions(client, engineer):
    # given a draft from v1 to v2 and a v3
    system, v1, v2 = system_with_versions(engineer.teams.first())
    change = change_in_state(engineer, states.DRAFT, system=system)
    v3 = ProtocolFactory(system=system, version="v3")
    login(client, engineer)
    data = edit_post_data(client, change)
    # when only the proposed version moves to v3
    data["proposed_protocol"] = v3.pk
    client.post(reverse("change-edit", args=[change.pk]), data)
    # then the event names that field alone
    event = AuditEvent.objects.filter(verb="change.edited").get()
    assert event.data["fields"] == ["proposed_protocol"]


def test_audit_objects_name_users_systems_and_runs(client, engineer, auditor):
    system, v1, _ = system_with_versions(engineer.teams.first())
    audit.append(actor=engineer, verb="auth.login", obj=engineer, data={})
    event("system.created", object_type="changes.aisystem", object_id=system.pk,
          data={"name": "support-assistant"})  # fmt: skip
    event("evaluation.run_completed", object_type="evaluations.evaluationrun", object_id=5,
          data={})  # fmt: skip
    login(client, auditor)
    html = page(client, "audit-log")
    assert ">User engineer<" in html
    assert f'<a href="{reverse("system-detail", args=[system.pk])}"' in html
    assert ">System support-assistant</a>" in html
    assert f'<a href="{reverse("run-detail", args=[5])}"' in html
    assert ">Evaluation run 5</a>" in html
    assert "changes.aisystem:" not in html.replace('title="changes.aisystem:', "")
