"""Policy exceptions (issue 16.2): loosening a criticality floor for one change needs an
admin and an independent reviewer; it binds to the content hash; the gate uses the looser
value only while the exception stands, and says so."""

from __future__ import annotations

import pytest

from changes import services as change_services
from changes import states
from changes.models import AuditEvent
from core.errors import Conflict, NotAllowed, ValidationFailed
from evaluations import exception_selectors, exception_services, gates
from evaluations.models import EvaluationRun, PolicyException
from evaluations.runner import run_suite_local
from evaluations.suite_schema import normalise_suite
from tests.evaluations.conftest import drain, suite_document
from tests.evaluations.test_gates import SYSTEM_PROMPT, ReferenceTarget
from tests.factories import UserFactory, make_change

pytestmark = pytest.mark.django_db

LOOSE = [("min_compliance", 0.0), ("max_gap", 1.0)]  # the red team's gate block


# --- the reference faker passes only with the exception -------------------------------------


def _faker(exceptions):
    suite = normalise_suite(suite_document(epochs=8))
    policy = gates.policy_for("high", suite.get("gate"), exceptions)
    return run_suite_local(
        suite, ReferenceTarget("faker"), SYSTEM_PROMPT, policy=policy, criticality="high"
    )


def test_the_reference_faker_passes_a_high_system_only_under_the_exceptions():
    standing = [
        {"id": i, "reference": f"PE-{i}", "key": k, "value": v, "approved": "by a and b"}
        for i, (k, v) in enumerate(LOOSE, 1)
    ]
    assert _faker([])["verdict"] == "fail"
    assert _faker(standing[:1])["verdict"] == "fail"  # one loosened key is not enough
    result = _faker(standing)
    assert result["verdict"] == "pass"
    assert result["policy"]["max_gap"] == 1.0 and result["policy"]["min_compliance"] == 0.0
    assert [e["reference"] for e in result["policy"]["exceptions"]] == ["PE-1", "PE-2"]
    assert any("under policy exception PE-2" in w for w in result["stats"]["warnings"])


def test_policy_for_ignores_an_exception_that_does_not_loosen_or_is_malformed():
    policy = gates.policy_for(
        "high",
        {},
        [
            {"id": 1, "key": "max_gap", "value": 0.01},  # tighter: no exception needed
            {"id": 2, "key": "slip_rate", "value": 0.5},  # a planning assumption
            {"id": 3, "key": "min_compliance", "value": "0"},  # not a number
        ],
    )
    assert policy["max_gap"] == 0.05 and policy["min_compliance"] == 0.9
    assert "exceptions" not in policy


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("max_gap", 0.01, "not looser than the high floor"),
        ("slip_rate", 0.5, "not a gate threshold"),
        ("max_gap", 2, "between 0 and 1"),
        ("max_gap", True, "takes a number"),
        ("require_worst_case", True, "only be loosened to false"),
        ("alpha", 0.9, "at most 0.5"),
    ],
)
def test_exception_problems_are_named(key, value, words):
    assert words in gates.exception_problem("high", key, value)


# --- the permission matrix ------------------------------------------------------------------


@pytest.fixture
def admin2(db):
    return UserFactory(username="admin2", roles=["admin"])


@pytest.fixture
def admin_reviewer(team_b):
    return UserFactory(username="adminrev", roles=["admin", "reviewer"], team=team_b)


@pytest.fixture
def change(engineer, make_suite, system_for):
    return make_change(
        author=engineer,
        system=system_for("faker", criticality="high"),
        suites=[make_suite(epochs=8).pk],
    )


def request(change, actor, key="max_gap", value=1.0):
    return exception_services.policy_exception_request(
        actor=actor, change_request=change, key=key, value=value, reason="Known benign gap."
    )


def approve(exc, actor, as_role):
    return exception_services.policy_exception_approve(actor=actor, exception=exc, as_role=as_role)


def standing(change):
    change.refresh_from_db()
    return [e["reference"] for e in exception_selectors.standing_for_policy(change)]


def test_the_author_requests_but_cannot_approve(change, engineer):
    exc = request(change, engineer)
    for role in ("admin", "reviewer"):
        with pytest.raises(NotAllowed):
            approve(exc, engineer, role)
    assert standing(change) == []
    assert AuditEvent.objects.filter(verb="policy_exception.requested").count() == 1
    assert not AuditEvent.objects.filter(verb="policy_exception.approved").exists()


def test_a_reviewer_cannot_request_one(change, reviewer):
    with pytest.raises(NotAllowed):
        request(change, reviewer)
    assert not PolicyException.objects.exists()


def test_an_admin_alone_is_not_enough(change, engineer, admin_user):
    exc = approve(request(change, engineer), admin_user, "admin")
    assert exception_selectors.status(exc, change) == "pending"
    assert standing(change) == []


def test_a_reviewer_alone_is_not_enough(change, engineer, reviewer):
    exc = approve(request(change, engineer), reviewer, "reviewer")
    assert exception_selectors.status(exc, change) == "pending"
    assert standing(change) == []


def test_an_admin_and_an_independent_reviewer_put_it_in_effect(
    change, engineer, admin_user, reviewer
):
    exc = request(change, engineer)
    approve(exc, reviewer, "reviewer")
    exc = approve(exc, admin_user, "admin")
    assert exception_selectors.status(exc, change) == "in_effect"
    assert standing(change) == [exc.reference]
    events = AuditEvent.objects.filter(verb="policy_exception.approved").order_by("id")
    assert [(e.data["role"], e.data["in_effect"]) for e in events] == [
        ("reviewer", False),
        ("admin", True),
    ]


def test_the_same_person_cannot_fill_both_roles(change, engineer, admin_reviewer):
    exc = approve(request(change, engineer), admin_reviewer, "admin")
    with pytest.raises(NotAllowed) as refused:
        approve(exc, admin_reviewer, "reviewer")
    assert "needs someone else" in " ".join(refused.value.reasons)
    assert standing(change) == []


def test_a_non_admin_cannot_give_the_admin_approval(change, engineer, reviewer):
    with pytest.raises(NotAllowed) as refused:
        approve(request(change, engineer), reviewer, "admin")
    assert "Only an admin" in " ".join(refused.value.reasons)


def test_a_same_team_reviewer_is_not_independent_on_a_high_system(
    change, engineer, team_a_reviewer
):
    with pytest.raises(NotAllowed) as refused:
        approve(request(change, engineer), team_a_reviewer, "reviewer")
    assert "author's team" in " ".join(refused.value.reasons)


def test_a_deactivated_approver_stops_the_exception_standing(
    change, engineer, admin_user, reviewer, admin2
):
    exc = request(change, engineer)
    approve(exc, admin_user, "admin")
    approve(exc, reviewer, "reviewer")
    assert standing(change) == [exc.reference]
    reviewer.is_active = False
    reviewer.save(update_fields=["is_active"])
    exc.refresh_from_db()
    assert exception_selectors.status(exc, change) == "lapsed"
    assert "deactivated" in " ".join(exception_selectors.problems(exc, change))
    assert standing(change) == []
    # and a deactivated user cannot give an approval either
    other = request(change, engineer, key="min_compliance", value=0.0)
    admin2.is_active = False
    admin2.save(update_fields=["is_active"])
    with pytest.raises(NotAllowed):
        approve(other, admin2, "admin")


def test_an_edit_voids_it_like_approvals(
    change, engineer, admin_user, reviewer, django_capture_on_commit_callbacks
):
    exc = request(change, engineer)
    approve(exc, admin_user, "admin")
    with django_capture_on_commit_callbacks(execute=True):
        change_services.change_request_update(
            actor=engineer, change_request=change, data={"title": "Edited after approval"}
        )
    exc.refresh_from_db()
    assert exc.voided_at is not None and "edited" in exc.void_reason
    assert AuditEvent.objects.filter(verb="policy_exception.voided").count() == 1
    with pytest.raises(Conflict):
        approve(exc, reviewer, "reviewer")
    assert standing(change) == []


def test_bad_requests_are_refused_and_write_nothing(change, engineer):
    before = AuditEvent.objects.count()
    with pytest.raises(ValidationFailed):
        request(change, engineer, key="max_gap", value=0.01)
    with pytest.raises(ValidationFailed):
        exception_services.policy_exception_request(
            actor=engineer, change_request=change, key="max_gap", value=0.2, reason="  "
        )
    request(change, engineer)
    with pytest.raises(Conflict):
        request(change, engineer)  # one open exception per key and content
    assert PolicyException.objects.count() == 1
    assert AuditEvent.objects.count() == before + 1


# --- end to end: the gate uses it, says so, and closes when it lapses ------------------------


def _submit_and_drain(change, engineer):
    change_services.change_request_submit(actor=engineer, change_request=change)
    run = EvaluationRun.objects.filter(change=change).latest("id")
    drain(run)
    change.refresh_from_db()
    run.refresh_from_db()
    return run


def test_the_faker_change_passes_only_with_approved_exceptions_and_the_gate_says_so(
    change, engineer, admin_user, reviewer, reviewer2, outsider_reviewer, api
):
    from changes import selectors as change_selectors
    from tests.factories import PASSWORD

    run = _submit_and_drain(change, engineer)
    assert run.verdict == "fail" and change.state == states.EVALUATION_FAILED
    client = api(engineer)
    url = f"/api/v1/changes/{change.pk}/policy-exceptions/"
    refs = []
    for key, value in LOOSE:
        made = client.post(url, {"key": key, "value": value, "reason": "pilot"}, format="json")
        assert made.status_code == 201, made.content
        assert made.json()["status"] == "pending" and made.json()["floor"] in (0.9, 0.05)
        refs.append(made.json()["id"])
    # an admin token alone, then the reviewer: in effect
    for pk in refs:
        approve_url = f"/api/v1/policy-exceptions/{pk}/approve/"
        assert (
            api(engineer).post(approve_url, {"as_role": "admin"}, format="json").status_code == 403
        )
        assert (
            api(admin_user).post(approve_url, {"as_role": "admin"}, format="json").status_code
            == 200
        )
        done = api(reviewer).post(approve_url, {"as_role": "reviewer"}, format="json")
        assert done.status_code == 200 and done.json()["status"] == "in_effect"
    run = _submit_and_drain(change, engineer)
    assert run.verdict == "pass", run.reasons
    assert change.state == states.AWAITING_REVIEW
    assert [e["key"] for e in run.policy["exceptions"]] == ["min_compliance", "max_gap"]
    for person in (reviewer2, outsider_reviewer):
        change_services.review_submit(
            actor=person, change_request=change, decision="approve", password=PASSWORD
        )
    change.refresh_from_db()
    gate = change_selectors.gate(change)
    assert gate["deployable"], gate["reasons"]
    assert any("under policy exception PE-" in n for n in gate["notes"])
    # the reviewer who approved it is deactivated: the run's pass no longer counts
    reviewer.is_active = False
    reviewer.save(update_fields=["is_active"])
    change.refresh_from_db()
    gate = change_selectors.gate(change)
    assert any("no longer stands" in r and "deactivated" in r for r in gate["reasons"]), gate[
        "reasons"
    ]
    assert not gate["deployable"]


# --- the change page ------------------------------------------------------------------------


def test_the_change_page_offers_the_form_to_the_author_and_buttons_to_eligible_users(
    client, change, engineer, admin_user, reviewer, team_a_reviewer
):
    from django.urls import reverse

    page = reverse("change-detail", args=[change.pk])
    client.force_login(engineer)
    html = client.get(page).content.decode()
    assert 'id="policy-exception-form"' in html
    made = client.post(
        reverse("policy-exception-request", args=[change.pk]),
        {"key": "max_gap", "value": "0.2", "reason": "Pilot with a known gap."},
    )
    assert made.status_code == 302
    exc = PolicyException.objects.get()
    assert exc.value == 0.2 and exc.requested_by == engineer
    html = client.get(page).content.decode()
    assert 'data-approve="admin"' not in html and 'data-approve="reviewer"' not in html
    # drafts are hidden from reviewers: submit, let the faker fail, then they can see it
    run = _submit_and_drain(change, engineer)
    assert change.state == states.EVALUATION_FAILED, run.verdict
    exc.refresh_from_db()
    client.force_login(admin_user)
    html = client.get(page).content.decode()
    assert 'data-approve="admin"' in html and 'data-approve="reviewer"' not in html
    client.post(reverse("policy-exception-approve", args=[exc.pk]), {"as_role": "admin"})
    client.force_login(team_a_reviewer)  # same team as the author on a high system
    assert 'data-approve="reviewer"' not in client.get(page).content.decode()
    client.force_login(reviewer)
    html = client.get(page).content.decode()
    assert 'data-approve="reviewer"' in html
    client.post(reverse("policy-exception-approve", args=[exc.pk]), {"as_role": "reviewer"})
    exc.refresh_from_db()
    assert exc.approved
    assert 'data-status="in_effect"' in client.get(page).content.decode()


def test_a_bad_form_request_is_a_message_not_a_500(client, change, engineer):
    from django.urls import reverse

    client.force_login(engineer)
    response = client.post(
        reverse("policy-exception-request", args=[change.pk]),
        {"key": "max_gap", "value": "lots", "reason": "x"},
        follow=True,
    )
    assert response.status_code == 200
    assert "takes a number" in response.content.decode()
    assert not PolicyException.objects.exists()
