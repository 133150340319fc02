"""Every page of the web UI renders for the personas who may see it, and refuses the rest.

Anonymous users are sent to the login page; invisible changes are 404 (never a 403 that
would leak their existence); role-restricted pages are 403.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from changes import services, states
from changes.models import AuditEvent, ChangeRequest
from tests.factories import PASSWORD, ProtocolFactory, SystemFactory, make_change

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("passing_evaluations", "recorded_attestations"),
]


# --- helpers shared by the UI tests (plain functions, imported by the other test_ui files) --


def system_with_versions(team, *, criticality="medium", name=None):
    """A system owned by ``team`` with two protocol versions v1 and v2."""
    system = SystemFactory(
        owner_team=team, criticality=criticality, **({"name": name} if name else {})
    )
    v1 = ProtocolFactory(
        system=system, version="v1", body="# Protocol\n\nQuote e-mail addresses verbatim."
    )
    v2 = ProtocolFactory(
        system=system, version="v2", body="# Protocol\n\nRedact e-mail addresses as [email]."
    )
    return system, v1, v2


def change_in_state(author, state, *, reviewer=None, system=None, **overrides) -> ChangeRequest:
    """A change driven through the services to ``state``."""
    if system is not None:
        base, proposed = list(system.protocols.order_by("id"))[:2]
        change = services.change_request_create(
            actor=author,
            system=system,
            base_protocol=base,
            proposed_protocol=proposed,
            **{**_fields(), **overrides},
        )
    else:
        change = make_change(author=author, **overrides)
    if state == states.DRAFT:
        return change
    if state == states.WITHDRAWN:
        services.change_request_withdraw(actor=author, change_request=change)
        return ChangeRequest.objects.get(pk=change.pk)
    services.change_request_submit(actor=author, change_request=change)
    change.refresh_from_db()
    if state == states.EVALUATING:
        return change
    services.change_request_record_verdict(
        change_id=change.pk,
        content_sha256=change.content_sha256,
        passed=state != states.EVALUATION_FAILED,
        reasons=[],
    )
    change.refresh_from_db()
    if state in (states.AWAITING_REVIEW, states.EVALUATION_FAILED):
        return change
    decision = {states.APPROVED: "approve", states.REJECTED: "reject"}.get(state, "approve")
    if state == states.CHANGES_REQUESTED:
        decision = "request_changes"
    services.review_submit(
        actor=reviewer,
        change_request=change,
        decision=decision,
        comment="" if decision == "approve" else "Needs a stronger test plan.",
        password=PASSWORD,
    )
    change.refresh_from_db()
    return change


def _fields():
    from tests.factories import change_fields

    return change_fields()


def login(client, user):
    client.force_login(user)
    return client


# --- anonymous -----------------------------------------------------------------------------


def test_anonymous_is_sent_to_login_everywhere(client, engineer):
    # given a change and an anonymous visitor
    change = make_change(author=engineer)
    urls = [
        reverse("dashboard"),
        reverse("change-list"),
        reverse("change-create"),
        reverse("change-detail", args=[change.pk]),
        reverse("change-edit", args=[change.pk]),
        reverse("change-review", args=[change.pk]),
        reverse("system-list"),
        reverse("system-detail", args=[change.system_id]),
        reverse("protocol-compare", args=[change.system_id]),
        reverse("audit-log"),
        reverse("audit-changes"),
        reverse("protocol-options"),
    ]
    for url in urls:
        # when they open a page
        response = client.get(url)
        # then they are redirected to the login page, with the way back
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login") + "?next="), url


def test_login_page_renders_and_logs_in(client, engineer):
    # given the login page
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b"Sign in" in response.content and b"csrfmiddlewaretoken" in response.content
    # when the engineer signs in with the password
    response = client.post(reverse("login"), {"username": "engineer", "password": PASSWORD})
    # then they land on the dashboard, and the login is audited
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    assert AuditEvent.objects.filter(verb="auth.login", actor_username="engineer").exists()


def test_failed_login_shows_error_and_is_audited(client, engineer):
    response = client.post(reverse("login"), {"username": "engineer", "password": "wrong"})
    assert response.status_code == 200
    assert b"alert-error" in response.content
    assert AuditEvent.objects.filter(verb="auth.login_failures").exists()


def test_repeated_failures_lock_out_with_our_template(client, engineer, settings):
    # given the lockout threshold
    limit = settings.AXES_FAILURE_LIMIT
    # when the password is wrong that many times
    for _ in range(limit):
        response = client.post(reverse("login"), {"username": "engineer", "password": "nope"})
    # then the lockout page answers, even with the right password
    response = client.post(reverse("login"), {"username": "engineer", "password": PASSWORD})
    assert response.status_code == 429
    assert b"Too many sign-in attempts" in response.content
    assert "_auth_user_id" not in client.session


def test_logout_is_a_post(client, engineer):
    login(client, engineer)
    page = client.get(reverse("dashboard"))
    assert f'action="{reverse("logout")}"'.encode() in page.content
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert client.get(reverse("dashboard")).status_code == 302


# --- every persona ---------------------------------------------------------------------------

PERSONAS = [
    "engineer",
    "engineer2",
    "reviewer",
    "team_a_reviewer",
    "auditor",
    "admin_user",
    "pipeline",
    "outsider",
]


@pytest.mark.parametrize("persona", PERSONAS)
def test_common_pages_render_for_every_persona(client, request, persona, engineer):
    # given some data and a signed-in persona
    change = change_in_state(engineer, states.EVALUATING)
    user = request.getfixturevalue(persona)
    login(client, user)
    # when they open the pages everyone may open
    for url in (
        reverse("dashboard"),
        reverse("change-list"),
        reverse("change-list") + "?state=evaluating&sort=created&q=e-mail",
        reverse("system-list"),
        reverse("system-detail", args=[change.system_id]),
        reverse("protocol-compare", args=[change.system_id]),
        reverse("protocol-detail", args=[change.system_id, change.proposed_protocol_id]),
    ):
        # then each renders
        response = client.get(url)
        assert response.status_code == 200, (persona, url)


@pytest.mark.parametrize(
    ("persona", "state", "expected"),
    [
        ("engineer", states.DRAFT, 200),  # the author
        ("engineer2", states.DRAFT, 200),  # the owning team
        ("reviewer", states.DRAFT, 404),  # drafts are private to the team
        ("auditor", states.DRAFT, 200),
        ("admin_user", states.DRAFT, 200),
        ("outsider", states.DRAFT, 404),
        ("reviewer", states.AWAITING_REVIEW, 200),
        ("outsider", states.AWAITING_REVIEW, 404),
        ("auditor", states.APPROVED, 200),
        ("engineer", states.APPROVED, 200),
    ],
)
def test_change_page_visibility(client, request, persona, state, expected, engineer, reviewer):
    # given a change in some state
    change = change_in_state(engineer, state, reviewer=reviewer)
    login(client, request.getfixturevalue(persona))
    # when the persona opens it
    response = client.get(reverse("change-detail", args=[change.pk]))
    # then they see it, or it does not exist for them
    assert response.status_code == expected
    if expected == 200:
        assert change.content_sha256.encode() in response.content


def test_change_page_shows_all_sections(client, engineer):
    # given a submitted change
    change = change_in_state(engineer, states.EVALUATING)
    login(client, engineer)
    # when the author opens it
    html = client.get(reverse("change-detail", args=[change.pk])).content.decode()
    # then every part a reviewer needs is there
    for text in (change.reference, change.title, "badge-evaluating", change.system.name):
        assert text in html
    for anchor in ('id="diff"', 'id="rationale"', 'id="expected"', 'id="testing"',
                   'id="rollout"', 'id="evaluation"', 'id="reviews"', 'id="gate"',
                   'id="attestation"', 'id="timeline"'):  # fmt: skip
        assert anchor in html
    assert change.base_protocol.version in html and change.proposed_protocol.version in html
    assert "<strong>PII</strong>" in html  # rendered rationale
    assert "e-mail in summary" in html  # expected changes table
    assert "Waiting for evaluation" in html  # no evaluation panel yet
    assert "Submitted for evaluation" in html  # timeline
    assert "Not deployable" in html  # gate with reasons
    assert 'class="diff-table"' in html and 'class="unified"' in html


def test_change_page_unified_diff_mode(client, engineer):
    change = make_change(author=engineer)
    login(client, engineer)
    html = client.get(reverse("change-detail", args=[change.pk]) + "?diff=unified").content
    assert b'data-diff-view="split" hidden' in html


def test_change_page_includes_hook_panels(client, engineer, monkeypatch):
    # given evaluation and attestation ports that provide panels
    from changes import hooks

    class EvalPort(hooks.EvaluationPort):
        def panel(self, change, user):
            return "changes/_markdown_preview.html", {
                "html": "EVALUATION PANEL FOR " + user.username
            }

    class AttestPort(hooks.AttestationPort):
        def panel(self, change, user):
            raise RuntimeError("broken panel")

    monkeypatch.setattr(hooks, "_evaluation", EvalPort())
    monkeypatch.setattr(hooks, "_attestation", AttestPort())
    change = make_change(author=engineer)
    login(client, engineer)
    # when the change page renders
    response = client.get(reverse("change-detail", args=[change.pk]))
    # then the evaluation panel is included, and a broken panel does not break the page
    assert response.status_code == 200
    assert b"EVALUATION PANEL FOR engineer" in response.content
    assert b"The attestation panel could not be displayed" in response.content


@pytest.mark.parametrize(
    ("persona", "expected"),
    [("engineer", 200), ("engineer2", 200), ("reviewer", 403), ("auditor", 403),
     ("outsider", 403), ("team_a_reviewer", 403)],
)  # fmt: skip
def test_new_change_page_is_for_engineers(client, request, persona, expected):
    login(client, request.getfixturevalue(persona))
    response = client.get(reverse("change-create"))
    assert response.status_code == expected
    if expected == 403:
        assert AuditEvent.objects.filter(verb="permission.denied").exists()


@pytest.mark.parametrize(
    ("persona", "state", "expected"),
    [
        ("engineer", states.DRAFT, 200),
        ("engineer2", states.DRAFT, 200),  # an engineer on the owning team
        ("reviewer", states.DRAFT, 404),
        ("reviewer", states.AWAITING_REVIEW, 403),
        ("auditor", states.AWAITING_REVIEW, 403),
        ("engineer", states.AWAITING_REVIEW, 200),
        ("engineer", states.EVALUATING, 302),  # not editable now: back to the change
    ],
)
def test_edit_page_access(client, request, persona, state, expected, engineer):
    change = change_in_state(engineer, state)
    login(client, request.getfixturevalue(persona))
    response = client.get(reverse("change-edit", args=[change.pk]))
    assert response.status_code == expected


@pytest.mark.parametrize(
    ("persona", "expected"),
    [("reviewer", 200), ("engineer", 200), ("auditor", 200), ("outsider", 404)],
)
def test_review_page_access(client, request, persona, expected, engineer):
    change = change_in_state(engineer, states.AWAITING_REVIEW)
    login(client, request.getfixturevalue(persona))
    assert client.get(reverse("change-review", args=[change.pk])).status_code == expected


@pytest.mark.parametrize(
    ("persona", "expected"),
    [("auditor", 200), ("admin_user", 200), ("engineer", 403), ("reviewer", 403),
     ("outsider", 403)],
)  # fmt: skip
def test_auditor_pages(client, request, persona, expected, engineer):
    make_change(author=engineer)
    login(client, request.getfixturevalue(persona))
    for url in (reverse("audit-log"), reverse("audit-changes")):
        assert client.get(url).status_code == expected, url


def test_dashboard_lists_my_changes_and_my_review_queue(client, engineer, reviewer):
    # given one change awaiting review and one draft
    waiting = change_in_state(engineer, states.AWAITING_REVIEW, title="Waiting for you")
    make_change(author=engineer, title="Still a draft")
    # when the reviewer opens the dashboard
    login(client, reviewer)
    html = client.get(reverse("dashboard")).content.decode()
    # then the waiting change is in their queue, the draft is invisible
    assert "Awaiting my review" in html and waiting.title in html
    assert "Still a draft" not in html
    # and the author sees both among their changes
    login(client, engineer)
    html = client.get(reverse("dashboard")).content.decode()
    assert "Waiting for you" in html and "Still a draft" in html
    assert "Awaiting my review" not in html


def test_dashboard_empty_states(client, outsider):
    login(client, outsider)
    html = client.get(reverse("dashboard")).content.decode()
    assert "You have not filed or edited any change." in html
    assert "No change has been deployed yet." in html


def test_change_list_filters_and_paginates(client, engineer, reviewer):
    # given 30 drafts and one change awaiting review
    system, *_ = system_with_versions(engineer.teams.first(), name="billing-bot")
    for i in range(30):
        change_in_state(engineer, states.DRAFT, system=system, title=f"Draft number {i}")
    special = change_in_state(engineer, states.AWAITING_REVIEW, title="Special redaction")
    login(client, engineer)
    # when listing everything: 25 per page
    page1 = client.get(reverse("change-list")).content.decode()
    assert "Page 1 of 2" in page1
    assert page1.count('class="cell-title"') == 25
    # when filtering by state, text, system, author and risk
    assert (
        "Special redaction"
        in client.get(reverse("change-list") + "?state=awaiting_review").content.decode()
    )
    by_text = client.get(reverse("change-list") + "?q=redaction").content.decode()
    assert "Special redaction" in by_text and "Draft number" not in by_text
    by_ref = client.get(reverse("change-list") + f"?q={special.reference}").content.decode()
    assert "Special redaction" in by_ref
    by_system = client.get(reverse("change-list") + f"?system={system.pk}").content.decode()
    assert "Special redaction" not in by_system and "30 in all" in by_system
    assert (
        "Special redaction"
        in client.get(
            reverse("change-list") + "?author=engineer&risk=medium&sort=created&page=2"
        ).content.decode()
    )
    none = client.get(reverse("change-list") + "?author=nobody").content.decode()
    assert "No change matches these filters." in none
    # and junk parameters never break the page
    assert client.get(reverse("change-list") + "?state=bogus&system=x&page=99").status_code == 200


def test_protocol_compare_page(client, engineer):
    # given a system with two versions
    system, v1, v2 = system_with_versions(engineer.teams.first())
    login(client, engineer)
    url = reverse("protocol-compare", args=[system.pk])
    # when comparing them either way
    html = client.get(f"{url}?from={v1.pk}&to={v2.pk}").content.decode()
    # then both views of the diff are there with the changed words highlighted
    assert "<del>Quote</del>" in html and "<ins>Redact</ins>" in html
    assert "--- v1/body" in html
    # and versions of another system, or junk, are a 404
    other, w1, _ = system_with_versions(engineer.teams.first())
    assert client.get(f"{url}?from={w1.pk}&to={v2.pk}").status_code == 404
    assert client.get(f"{url}?from=abc&to={v2.pk}").status_code == 404
    assert client.get(reverse("protocol-compare", args=[999999])).status_code == 404


def test_admin_pages_render_and_audit_log_is_read_only(client, admin_user, engineer):
    # given some records
    change = make_change(author=engineer)
    login(client, admin_user)
    # when the admin opens each changelist
    for model in ("team", "aisystem", "protocolversion", "changerequest", "review",
                  "deployment", "auditevent"):  # fmt: skip
        assert client.get(f"/admin/changes/{model}/").status_code == 200, model
    event = AuditEvent.objects.first()
    # then audit events can be viewed but not added, changed or deleted
    assert client.get(f"/admin/changes/auditevent/{event.pk}/change/").status_code == 200
    assert client.get("/admin/changes/auditevent/add/").status_code == 403
    assert client.get(f"/admin/changes/auditevent/{event.pk}/delete/").status_code == 403
    before = AuditEvent.objects.count()
    client.post(f"/admin/changes/auditevent/{event.pk}/change/", {"verb": "tampered"})
    assert AuditEvent.objects.get(pk=event.pk).verb == event.verb
    assert AuditEvent.objects.count() == before
    # and change requests are read-only too
    assert client.get("/admin/changes/changerequest/add/").status_code == 403
    assert client.get(f"/admin/changes/changerequest/{change.pk}/change/").status_code == 200
    assert client.get(f"/admin/changes/changerequest/{change.pk}/delete/").status_code == 403


def test_list_pages_run_a_constant_number_of_queries(client, engineer, auditor):
    # given a few changes, then many more
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    system, *_ = system_with_versions(engineer.teams.first())

    def count(user, url):
        login(client, user)
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        return len(ctx.captured_queries)

    for i in range(3):
        change_in_state(engineer, states.DRAFT, system=system, title=f"Change {i}")
    few = {url: count(user, url) for user, url in _list_pages(engineer, auditor)}
    for i in range(30):
        change_in_state(engineer, states.DRAFT, system=system, title=f"More {i}")
    # when the pages render again, then the query count has not grown with the rows
    many = {url: count(user, url) for user, url in _list_pages(engineer, auditor)}
    assert many == few


def _list_pages(engineer, auditor):  # noqa: N802 - reads like a constant
    return [
        (engineer, reverse("change-list")),
        (engineer, reverse("dashboard")),
        (auditor, reverse("audit-changes")),
        (auditor, reverse("audit-log")),
    ]
