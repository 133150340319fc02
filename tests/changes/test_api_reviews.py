"""Sign-off, the deploy gate and deploys through the API.

Independence (no self-review, no editor, no author's team on high-criticality systems),
re-authentication, stale content, duplicate approvals, invalid transitions, and the full
two-approval flow to a pipeline deploy. Every refusal leaves the data as it was.
"""

import pytest

from changes import states
from changes.models import AuditEvent, Deployment, Review
from tests.changes.test_api_support import (
    approve,
    awaiting_review,
    denials,
    pass_evaluation,
    pin_null_ports,
    snapshot,
    submit,
    url,
)
from tests.factories import PASSWORD, SystemFactory, UserFactory, make_change

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _null_ports(monkeypatch):
    pin_null_ports(monkeypatch)


def _review(api, user, change, **body):
    body.setdefault("decision", "approve")
    body.setdefault("password", PASSWORD)
    if "content_sha256" not in body:
        change.refresh_from_db()
        body["content_sha256"] = change.content_sha256
    elif body["content_sha256"] is None:
        del body["content_sha256"]
    return api(user).post(url("change-reviews", pk=change.pk), body, format="json")


def _assert_refused(response, status, code, before, *, denied_before=None):
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    assert snapshot() == before
    if denied_before is not None:
        assert denials() == denied_before + (1 if status == 403 else 0)


def test_self_review_is_refused_with_the_reason(api, team_a):
    # given: an author who also holds the reviewer role, on a low-criticality system
    author = UserFactory(username="engrev", roles=["engineer", "reviewer"], team=team_a)
    system = SystemFactory(owner_team=team_a, criticality="low")
    change = awaiting_review(make_change(author=author, system=system), author)
    before, denied = snapshot(), denials()

    # when: they approve their own change
    response = _review(api, author, change)

    # then: 403 not_independent, the reason in words, nothing changed but the denial
    _assert_refused(response, 403, "not_independent", before, denied_before=denied)
    assert response.json()["reasons"] == ["Authors cannot review their own change."]


def test_same_team_reviewer_is_refused_on_a_high_criticality_system(
    api, engineer, team_a, team_a_reviewer
):
    # given: a high-criticality system; the reviewer is on the author's team
    system = SystemFactory(owner_team=team_a, criticality="high")
    change = awaiting_review(make_change(author=engineer, system=system), engineer)
    before, denied = snapshot(), denials()

    # when: they approve
    response = _review(api, team_a_reviewer, change)

    # then: refused, naming the cross-team rule
    _assert_refused(response, 403, "not_independent", before, denied_before=denied)
    assert any("author's team" in reason for reason in response.json()["reasons"])


def test_same_team_reviewer_may_sign_a_medium_criticality_system(api, engineer, team_a_reviewer):
    # given: a medium-criticality system of the author's team
    change = awaiting_review(make_change(author=engineer), engineer)

    # when: a reviewer on that team approves
    response = _review(api, team_a_reviewer, change)

    # then: the one required approval is recorded and the change is approved
    assert response.status_code == 201, response.content
    change.refresh_from_db()
    assert change.state == states.APPROVED


def test_an_editor_cannot_review(api, engineer, team_a):
    # given: an engineer-reviewer who edited the change while it was a draft
    editor = UserFactory(username="editor", roles=["engineer", "reviewer"], team=team_a)
    change = make_change(author=engineer, system=SystemFactory(owner_team=team_a))
    edit = api(editor).patch(
        url("change-detail", pk=change.pk), {"rationale": "Sharper."}, format="json"
    )
    assert edit.status_code == 200
    assert edit.json()["editors"] == ["editor"]
    change = awaiting_review(change, engineer)
    before, denied = snapshot(), denials()

    # when: the editor approves
    response = _review(api, editor, change)

    # then: refused because they edited it
    _assert_refused(response, 403, "not_independent", before, denied_before=denied)
    assert response.json()["reasons"] == ["You edited this change, so you cannot review it."]


def test_wrong_password_is_refused(api, engineer, reviewer):
    # given: a change awaiting review
    change = awaiting_review(make_change(author=engineer), engineer)
    before, denied = snapshot(), denials()

    # when: the reviewer signs with the wrong password
    response = _review(api, reviewer, change, password="not my password")

    # then: 403 reauthentication_failed, no review recorded
    _assert_refused(response, 403, "reauthentication_failed", before, denied_before=denied)


def test_stale_content_hash_is_409(api, engineer, reviewer):
    # given: a reviewer opened the change at one content hash ...
    change = awaiting_review(make_change(author=engineer), engineer)
    seen = api(reviewer).get(url("change-detail", pk=change.pk)).json()["content_sha256"]
    # ... then the author edited it, resubmitted it and it passed evaluation again
    edit = api(engineer).patch(
        url("change-detail", pk=change.pk), {"test_plan": "A better plan."}, format="json"
    )
    assert edit.json()["state"] == states.DRAFT
    change = awaiting_review(change, engineer)
    assert change.content_sha256 != seen
    before = snapshot()

    # when: the reviewer signs what they saw
    response = _review(api, reviewer, change, content_sha256=seen)

    # then: 409 stale_content, nothing signed
    _assert_refused(response, 409, "stale_content", before)


def test_matching_content_hash_is_accepted(api, engineer, reviewer):
    # given: the reviewer saw the current hash
    change = awaiting_review(make_change(author=engineer), engineer)

    # when: they sign it
    response = _review(api, reviewer, change, content_sha256=change.content_sha256)

    # then: the approval binds to that hash and says so
    assert response.status_code == 201
    body = response.json()
    assert body["content_sha256"] == change.content_sha256
    assert change.content_sha256 in body["signature_meaning"]
    assert body["is_current"] is True
    assert "password" not in body


def test_duplicate_approval_is_409(api, engineer, team_a, reviewer):
    # given: a high-criticality change with one of its two approvals, from this reviewer
    system = SystemFactory(owner_team=team_a, criticality="high")
    change = awaiting_review(make_change(author=engineer, system=system), engineer)
    assert _review(api, reviewer, change).status_code == 201
    before = snapshot()

    # when: the same reviewer approves again
    response = _review(api, reviewer, change)

    # then: 409 duplicate_approval, still one approval, still awaiting review
    _assert_refused(response, 409, "duplicate_approval", before)
    assert Review.objects.filter(change=change).count() == 1


def test_request_changes_needs_a_comment(api, engineer, reviewer):
    # given: a change awaiting review
    change = awaiting_review(make_change(author=engineer), engineer)
    before = snapshot()

    # when: the reviewer requests changes without saying what
    response = _review(api, reviewer, change, decision="request_changes")

    # then: 400 naming the comment
    _assert_refused(response, 400, "invalid", before)
    assert response.json()["detail"].startswith("comment")


def test_request_changes_moves_the_change(api, engineer, reviewer):
    # given: a change awaiting review
    change = awaiting_review(make_change(author=engineer), engineer)

    # when: the reviewer requests changes with a comment
    response = _review(api, reviewer, change, decision="request_changes", comment="Add tests.")

    # then: the change is back with its author
    assert response.status_code == 201
    change.refresh_from_db()
    assert change.state == states.CHANGES_REQUESTED


@pytest.mark.parametrize("missing", ["decision", "password", "content_sha256"])
def test_review_missing_field_is_400_naming_it(api, engineer, reviewer, missing):
    # given: a change awaiting review and a body without one field
    change = awaiting_review(make_change(author=engineer), engineer)
    body = {"decision": "approve", "password": PASSWORD, "content_sha256": change.content_sha256}
    del body[missing]
    before = snapshot()

    # when: it is posted
    response = api(reviewer).post(url("change-reviews", pk=change.pk), body, format="json")

    # then: 400 naming the field, nothing changed
    _assert_refused(response, 400, "invalid", before)
    assert response.json()["detail"].startswith(missing)
    assert missing in response.json()["fields"]


def _draft(engineer):
    return make_change(author=engineer)


def _evaluating(engineer):
    return submit(make_change(author=engineer), engineer)


def _withdrawn(engineer):
    change = make_change(author=engineer)
    from changes import services

    services.change_request_withdraw(actor=engineer, change_request=change)
    change.refresh_from_db()
    return change


INVALID_TRANSITIONS = [
    # (how the change is prepared, who acts, endpoint, body, expected code)
    pytest.param(_evaluating, "engineer", "change-submit", {}, "invalid_transition",
                 id="submit-while-evaluating"),
    pytest.param(_draft, "engineer", "change-close", {}, "invalid_transition",
                 id="close-a-draft"),
    pytest.param(_draft, "team_a_reviewer", "change-reviews",
                 {"decision": "approve", "password": PASSWORD}, "invalid_transition",
                 id="review-a-draft"),
    pytest.param(_withdrawn, "engineer", "change-withdraw", {}, "invalid_transition",
                 id="withdraw-twice"),
    pytest.param(_withdrawn, "engineer", "change-submit", {}, "invalid_transition",
                 id="submit-withdrawn"),
    pytest.param(_draft, "engineer", "change-deploy", {"environment": "production"},
                 "gate_closed", id="deploy-a-draft"),
]  # fmt: skip


@pytest.mark.parametrize(("prepare", "persona", "endpoint", "body", "code"), INVALID_TRANSITIONS)
def test_invalid_transitions_are_409(
    request, api, engineer, team_a_reviewer, prepare, persona, endpoint, body, code
):
    # given: a change in a state the operation does not apply to
    change = prepare(engineer)
    actor = request.getfixturevalue(persona)
    before = snapshot()

    if endpoint == "change-reviews":
        body = {**body, "content_sha256": change.content_sha256}

    # when: the operation is attempted
    response = api(actor).post(url(endpoint, pk=change.pk), body, format="json")

    # then: 409 with the code, and nothing changed
    _assert_refused(response, 409, code, before)


def test_editing_a_withdrawn_change_is_409(api, engineer):
    # given: a withdrawn change
    change = _withdrawn(engineer)
    before = snapshot()

    # when: the author edits it
    response = api(engineer).patch(
        url("change-detail", pk=change.pk), {"title": "Revived"}, format="json"
    )

    # then: 409 not_editable
    _assert_refused(response, 409, "not_editable", before)


def test_two_approvals_then_a_pipeline_deploys(
    api, engineer, team_a, reviewer, reviewer2, pipeline, passing_evaluations
):
    # given: a high-criticality system of team A, filed and submitted through the API
    system = SystemFactory(owner_team=team_a, criticality="high")
    seed = make_change(author=engineer, system=system)
    created = api(engineer).post(
        url("change-list"),
        {
            "system": system.pk,
            "base_protocol": seed.base_protocol_id,
            "proposed_protocol": seed.proposed_protocol_id,
            "title": "Refuse to quote e-mail addresses",
            "rationale": "PII leaks.",
            "test_plan": "pii-redaction suite.",
            "risk": "high",
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    assert api(engineer).post(url("change-submit", pk=pk)).status_code == 200
    change = pass_evaluation(seed.__class__.objects.get(pk=pk))
    assert change.state == states.AWAITING_REVIEW

    # when: the first independent reviewer approves
    assert _review(api, reviewer, change).status_code == 201

    # then: one approval is not enough for a high-criticality system
    gate = api(pipeline).get(url("change-gate", pk=pk)).json()
    assert gate["deployable"] is False
    assert gate["approvals"] == 1 and gate["approvals_required"] == 2

    # when: a second, distinct reviewer approves
    assert _review(api, reviewer2, change).status_code == 201

    # then: the change is approved and the gate opens
    gate = api(pipeline).get(url("change-gate", pk=pk)).json()
    assert gate == {**gate, "deployable": True, "reasons": [], "state": states.APPROVED}

    # when: the pipeline deploys with its token
    response = api(pipeline).post(
        url("change-deploy", pk=pk), {"environment": "production"}, format="json"
    )

    # then: one deployment of the approved content, the change deployed, the chain intact
    assert response.status_code == 201, response.content
    deployment = Deployment.objects.get()
    assert response.json()["content_sha256"] == deployment.content_sha256
    assert deployment.deployed_by == pipeline
    detail = api(engineer).get(url("change-detail", pk=pk)).json()
    assert detail["state"] == states.DEPLOYED
    assert detail["deployed_at"] is not None
    assert detail["review_summary"]["approvals"] == 2
    assert api(engineer).post(url("change-close", pk=pk)).json()["state"] == states.CLOSED
    verify = api(UserFactory(username="aud", roles=["auditor"])).get(url("audit-verify"))
    assert verify.json()["valid"] is True


def test_deploy_is_refused_with_the_reasons_the_gate_lists(
    api, engineer, team_a, reviewer, pipeline, passing_evaluations
):
    # given: a high-criticality change with one approval of two
    system = SystemFactory(owner_team=team_a, criticality="high")
    change = approve(awaiting_review(make_change(author=engineer, system=system), engineer),
                     reviewer)  # fmt: skip
    gate = api(pipeline).get(url("change-gate", pk=change.pk)).json()
    assert gate["deployable"] is False and gate["reasons"]
    before = snapshot()

    # when: the pipeline deploys anyway
    response = api(pipeline).post(
        url("change-deploy", pk=change.pk), {"environment": "production"}, format="json"
    )

    # then: 409 gate_closed with exactly the gate's reasons, and nothing deployed
    _assert_refused(response, 409, "gate_closed", before)
    assert response.json()["reasons"] == gate["reasons"]


def test_the_null_evaluation_engine_keeps_the_gate_closed(api, engineer, reviewer, pipeline):
    # given: an approved change while no evaluation engine is installed
    change = approve(awaiting_review(make_change(author=engineer), engineer), reviewer)
    assert change.state == states.APPROVED
    before = snapshot()

    # when: the pipeline asks the gate and tries to deploy
    gate = api(pipeline).get(url("change-gate", pk=change.pk)).json()
    response = api(pipeline).post(url("change-deploy", pk=change.pk), {}, format="json")

    # then: both name the missing evaluation
    assert any("evaluation" in reason.lower() for reason in gate["reasons"])
    _assert_refused(response, 409, "gate_closed", before)
    assert response.json()["reasons"] == gate["reasons"]


def test_an_edit_after_approval_voids_it_and_returns_to_draft(api, engineer, reviewer):
    # given: an approved change
    change = approve(awaiting_review(make_change(author=engineer), engineer), reviewer)
    assert change.state == states.APPROVED
    old_hash = change.content_sha256

    # when: the author edits it
    response = api(engineer).patch(
        url("change-detail", pk=change.pk), {"rationale": "Now with numbers."}, format="json"
    )

    # then: it is a draft again with a new hash, the approval is voided and audited
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["state"] == states.DRAFT
    assert body["content_sha256"] != old_hash
    assert body["revision"] == 2
    assert body["review_summary"]["approvals"] == 0
    assert body["review_summary"]["voided"] == 1
    assert body["reviews"][0]["voided_at"] is not None
    assert body["reviews"][0]["is_current"] is False
    voided = AuditEvent.objects.get(verb="review.voided", object_id=str(change.pk))
    assert voided.data["reviews"] == [body["reviews"][0]["id"]]
    assert body["gate"]["deployable"] is False


def test_reviews_are_listed_oldest_first(api, engineer, team_a, reviewer, reviewer2):
    # given: two approvals on a high-criticality change
    system = SystemFactory(owner_team=team_a, criticality="high")
    change = awaiting_review(make_change(author=engineer, system=system), engineer)
    approve(approve(change, reviewer), reviewer2)

    # when: anyone who sees the change lists its reviews
    response = api(engineer).get(url("change-reviews", pk=change.pk))

    # then: both, in order, with who signed what
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["reviewer"] for r in results] == ["reviewer", "reviewer2"]
    assert all(r["is_current"] for r in results)
