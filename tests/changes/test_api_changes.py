"""Change requests through the API: filing, reading, editing, filters, and a change list
whose query count does not grow with the page size or the number of changes."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from changes import hooks, states
from changes.models import AuditEvent, ChangeRequest
from tests.changes.test_api_support import awaiting_review, pin_null_ports, snapshot, url
from tests.factories import ProtocolFactory, SystemFactory, TeamFactory, make_change

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _null_ports(monkeypatch):
    pin_null_ports(monkeypatch)


@pytest.fixture
def system(team_a):
    return SystemFactory(owner_team=team_a, criticality="medium", name="support-bot")


@pytest.fixture
def protocols(system):
    return ProtocolFactory(system=system, version="v1"), ProtocolFactory(
        system=system, version="v2"
    )


def _body(on_system, protocols, **overrides):
    body = {
        "system": on_system.pk,
        "base_protocol": protocols[0].pk,
        "proposed_protocol": protocols[1].pk,
        "title": "Redact e-mail addresses",
        "rationale": "Summaries leak **PII**.",
        "expected_changes": [
            {"behaviour": "e-mail in summary", "before": "quoted", "after": "redacted"}
        ],  # fmt: skip
        "test_plan": "    indented Markdown stays as written",
        "risk": "high",
        "change_type": "normal",
        "rollout_plan": "Canary.",
        "backout_plan": "Redeploy v1.",
    }
    body.update(overrides)
    return body


def test_an_engineer_files_a_change(api, engineer, system, protocols):
    # given: an engineer and two protocol versions of a system

    # when: they file a change
    response = api(engineer).post(url("change-list"), _body(system, protocols), format="json")

    # then: a draft comes back with every contract field, audited once
    assert response.status_code == 201, response.content
    body = response.json()
    change = ChangeRequest.objects.get()
    assert body["id"] == change.pk
    assert body["reference"] == f"CR-{change.pk}"
    assert body["state"] == states.DRAFT and body["state_label"] == "Draft"
    assert body["author"] == "engineer"
    assert body["content_sha256"] == change.content_sha256 and len(body["content_sha256"]) == 64
    assert body["test_plan"] == "    indented Markdown stays as written"
    assert body["expected_changes"] == [
        {"behaviour": "e-mail in summary", "before": "quoted", "after": "redacted"}
    ]
    assert body["base_protocol_version"] == "v1" and body["proposed_protocol_version"] == "v2"
    assert body["suites"] == [] and body["editors"] == [] and body["reviews"] == []
    assert body["gate"]["deployable"] is False and body["gate"]["reasons"]
    assert body["review_summary"]["approvals_required"] == 1
    for field in ("created_at", "updated_at", "submitted_at", "deployed_at", "revision",
                  "retrospective_pending", "risk", "change_type", "rollout_plan"):  # fmt: skip
        assert field in body
    assert AuditEvent.objects.filter(verb="change.created").count() == 1


@pytest.mark.parametrize(
    "missing",
    ["system", "base_protocol", "proposed_protocol", "title", "rationale", "test_plan"],
)
def test_a_missing_field_is_400_naming_it(api, engineer, system, protocols, missing):
    # given: a body without one required field
    body = _body(system, protocols)
    del body[missing]
    before = snapshot()

    # when: it is filed
    response = api(engineer).post(url("change-list"), body, format="json")

    # then: 400 naming the field, and nothing was created
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert response.json()["detail"].startswith(missing)
    assert missing in response.json()["fields"]
    assert snapshot() == before


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"title": "   "}, "title"),
        ({"rationale": "   "}, "rationale"),
        ({"risk": "extreme"}, "risk"),
        ({"change_type": "yolo"}, "change_type"),
        ({"expected_changes": [{"before": "x"}]}, "expected_changes"),
        ({"system": 999_999}, "system"),
        ({"title": "x" * 201}, "title"),
    ],
)
def test_invalid_input_is_400_naming_the_field(api, engineer, system, protocols, overrides, field):
    # given: one invalid field
    body = _body(system, protocols, **overrides)
    before = snapshot()

    # when: it is filed
    response = api(engineer).post(url("change-list"), body, format="json")

    # then: 400 naming it, nothing created
    assert response.status_code == 400, response.content
    assert response.json()["detail"].startswith(field)
    assert snapshot() == before


def test_protocols_of_another_system_are_refused(api, engineer, system, protocols):
    # given: a proposed protocol from another system
    other = ProtocolFactory(system=SystemFactory(owner_team=TeamFactory()))
    before = snapshot()

    # when: the change is filed
    response = api(engineer).post(
        url("change-list"), _body(system, protocols, proposed_protocol=other.pk), format="json"
    )

    # then: 400 from the service, nothing created
    assert response.status_code == 400
    assert response.json()["detail"].startswith("proposed_protocol")
    assert snapshot() == before


def test_suite_ids_are_passed_to_the_evaluation_engine(
    api, engineer, system, protocols, monkeypatch
):
    # given: an evaluation engine that records the suites it is asked to link
    linked = []

    class RecordingPort(hooks.EvaluationPort):
        def link_suites(self, change, suite_ids):
            linked.append(list(suite_ids))

    monkeypatch.setattr(hooks, "_evaluation", RecordingPort())

    # when: a change is filed with suites
    response = api(engineer).post(
        url("change-list"), _body(system, protocols, suites=[3, 5]), format="json"
    )

    # then: the ids reach the engine as given
    assert response.status_code == 201
    assert linked == [[3, 5]]


def test_suites_without_an_engine_are_refused(api, engineer, system, protocols):
    # given: no evaluation engine installed
    before = snapshot()

    # when: a change names suites
    response = api(engineer).post(
        url("change-list"), _body(system, protocols, suites=[1]), format="json"
    )

    # then: 400, nothing created (the service's transaction rolled back)
    assert response.status_code == 400
    assert snapshot() == before


def test_an_edit_in_draft_bumps_the_revision(api, engineer, engineer2):
    # given: a draft
    change = make_change(author=engineer)

    # when: a teammate edits it
    response = api(engineer2).patch(
        url("change-detail", pk=change.pk), {"title": "Sharper title"}, format="json"
    )

    # then: new content, new revision, the teammate listed as an editor, still a draft
    assert response.status_code == 200
    body = response.json()
    assert body["title"] == "Sharper title"
    assert body["revision"] == 2
    assert body["editors"] == ["engineer2"]
    assert body["state"] == states.DRAFT
    assert body["content_sha256"] != change.content_sha256


def test_an_edit_that_changes_nothing_is_not_a_revision(api, engineer):
    # given: a draft
    change = make_change(author=engineer)
    before = snapshot()

    # when: the author "edits" the title to the same text
    response = api(engineer).patch(
        url("change-detail", pk=change.pk), {"title": change.title}, format="json"
    )

    # then: 200 and nothing recorded
    assert response.status_code == 200
    assert snapshot() == before


def test_put_and_delete_are_not_offered(api, engineer):
    # given: a draft
    change = make_change(author=engineer)
    before = snapshot()

    # when: PUT and DELETE are tried
    put = api(engineer).put(url("change-detail", pk=change.pk), {"title": "x"}, format="json")
    delete = api(engineer).delete(url("change-detail", pk=change.pk))

    # then: 405 and nothing changed
    assert put.status_code == delete.status_code == 405
    assert put.json()["code"] == "method_not_allowed"
    assert snapshot() == before


def test_submit_and_withdraw(api, engineer):
    # given: a draft
    change = make_change(author=engineer)

    # when: the author submits it
    submitted = api(engineer).post(url("change-submit", pk=change.pk))

    # then: it waits in evaluating (no engine installed) with a submission time
    assert submitted.status_code == 200
    assert submitted.json()["state"] == states.EVALUATING
    assert submitted.json()["submitted_at"] is not None

    # when: the author withdraws it with a reason
    withdrawn = api(engineer).post(
        url("change-withdraw", pk=change.pk), {"reason": "Superseded by CR-9."}, format="json"
    )

    # then: withdrawn, and the reason is in the audit log
    assert withdrawn.json()["state"] == states.WITHDRAWN
    event = AuditEvent.objects.get(verb="change.withdrawn")
    assert event.data["reason"] == "Superseded by CR-9."


def test_unknown_change_is_404_everywhere(api, engineer):
    # given: no change 424242
    paths = [
        url(name, pk=424242)
        for name in ("change-detail", "change-gate", "change-reviews", "change-timeline")
    ]
    before = snapshot()

    # when/then: every read and write answers 404 with the error body
    for path in paths:
        response = api(engineer).get(path)
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
    for name in ("change-submit", "change-withdraw", "change-close", "change-deploy"):
        assert api(engineer).post(url(name, pk=424242), {}, format="json").status_code == 404
    assert snapshot() == before


def test_the_timeline_lists_the_changes_events(api, engineer):
    # given: a change that was filed and submitted
    change = awaiting_review(make_change(author=engineer), engineer)

    # when: its timeline is read
    response = api(engineer).get(url("change-timeline", pk=change.pk))

    # then: its events, oldest first
    verbs = [e["verb"] for e in response.json()["results"]]
    assert verbs == [
        "change.created",
        "change.submitted",
        "change.evaluation_started",
        "change.evaluation_passed",
    ]


# --- filters ------------------------------------------------------------------------------


@pytest.fixture
def assorted(engineer, engineer2, team_a):
    low = SystemFactory(owner_team=team_a, criticality="low", name="low-bot")
    high = SystemFactory(owner_team=team_a, criticality="high", name="high-bot")
    a = make_change(author=engineer, system=low, title="Alpha redaction", risk="low")
    b = make_change(author=engineer2, system=high, title="Beta tone", risk="high",
                    change_type="emergency")  # fmt: skip
    c = awaiting_review(make_change(author=engineer, system=high, title="Gamma redaction"),
                        engineer)  # fmt: skip
    return {"a": a, "b": b, "c": c, "low": low, "high": high}


def _ids(response):
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["c", "b", "a"]),
        ("?state=draft", ["b", "a"]),
        ("?state=draft&state=awaiting_review", ["c", "b", "a"]),
        ("?author=engineer2", ["b"]),
        ("?risk=high", ["b"]),
        ("?change_type=emergency", ["b"]),
        ("?search=REDACTION", ["c", "a"]),
        ("?ordering=title", ["a", "b", "c"]),
        ("?ordering=-title", ["c", "b", "a"]),
    ],
)
def test_change_list_filters(api, auditor, assorted, query, expected):
    # given: three changes of different states, systems, authors and risks

    # when: the list is filtered
    response = api(auditor).get(url("change-list") + query)

    # then: exactly the matching changes, in order
    assert _ids(response) == [assorted[key].pk for key in expected]


def test_change_list_filters_by_system(api, auditor, assorted):
    # given: changes on two systems
    # when: filtered by the high-criticality one
    response = api(auditor).get(url("change-list") + f"?system={assorted['high'].pk}")
    # then: only its changes
    assert _ids(response) == [assorted["c"].pk, assorted["b"].pk]


def test_an_invalid_filter_is_400(api, auditor, assorted):
    # given/when: an unknown state
    response = api(auditor).get(url("change-list") + "?state=launched")
    # then: 400 naming the filter
    assert response.status_code == 400
    assert response.json()["detail"].startswith("state")


def test_filters_cannot_widen_what_a_user_sees(api, reviewer, assorted):
    # given: a reviewer, who sees only changes that left draft
    # when: they ask for drafts explicitly
    response = api(reviewer).get(url("change-list") + "?state=draft")
    # then: none
    assert _ids(response) == []
    assert _ids(api(reviewer).get(url("change-list"))) == [assorted["c"].pk]


# --- query counts --------------------------------------------------------------------------


def test_a_plain_page_skips_the_filter_set_and_lists_the_same_rows(
    api, auditor, assorted, monkeypatch
):
    import django_filters

    built = []
    original = django_filters.FilterSet.__init__

    def counting_init(self, *args, **kwargs):
        built.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(django_filters.FilterSet, "__init__", counting_init)
    client = api(auditor)

    # when: the list is read with no filter parameter, then with an empty (no-op) filter
    plain = client.get(url("change-list") + "?page_size=100")
    skipped = list(built)
    filtered = client.get(url("change-list") + "?page_size=100&search=")

    # then: the fast path built no filter set, the full path did, and both list the same rows
    assert plain.status_code == filtered.status_code == 200
    assert skipped == [] and built == ["ChangeFilter"]
    assert _ids(plain) == _ids(filtered) and _ids(plain)


@pytest.mark.parametrize("query", ["?state=bogus", "?page_size=10&system=-1"])
def test_a_bad_filter_next_to_paging_parameters_is_still_400(api, auditor, assorted, query):
    response = api(auditor).get(url("change-list") + query)

    assert response.status_code == 400, response.content


def _bulk_changes(n, *, authors, systems):
    """n changes straight into the table (the list only reads them)."""
    protocols = {s.pk: (ProtocolFactory(system=s), ProtocolFactory(system=s)) for s in systems}
    rows = []
    for i in range(n):
        system = systems[i % len(systems)]
        base, proposed = protocols[system.pk]
        rows.append(
            ChangeRequest(
                system=system,
                base_protocol=base,
                proposed_protocol=proposed,
                author=authors[i % len(authors)],
                title=f"Change {i}",
                rationale="Why.",
                test_plan="How.",
                state=states.STATES[i % len(states.STATES)],
                content_sha256=f"{i:064x}",
            )
        )
    ChangeRequest.objects.bulk_create(rows)


def _list_queries(client, page_size) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url("change-list") + f"?page_size={page_size}")
    assert response.status_code == 200
    return len(queries), len(response.json()["results"])


@pytest.mark.parametrize("persona", ["engineer", "reviewer", "auditor"])
def test_change_list_query_count_does_not_grow_with_page_size(
    request, api, engineer, engineer2, team_a, persona
):
    # given: 240 changes by two authors on two systems
    systems = [SystemFactory(owner_team=team_a), SystemFactory(owner_team=TeamFactory())]
    _bulk_changes(240, authors=[engineer, engineer2], systems=systems)
    client = api(request.getfixturevalue(persona))

    # when: the list is read 10 and 100 rows at a time
    small, small_rows = _list_queries(client, 10)
    large, large_rows = _list_queries(client, 100)

    # then: ten times the rows, the same number of queries
    assert (small_rows, large_rows) == (10, 100)
    assert small == large


def test_change_list_query_count_does_not_grow_with_the_table(api, engineer, engineer2, team_a):
    # given: 10 changes
    systems = [SystemFactory(owner_team=team_a), SystemFactory(owner_team=team_a)]
    _bulk_changes(10, authors=[engineer, engineer2], systems=systems)
    client = api(engineer)
    at_10, rows_10 = _list_queries(client, 100)

    # when: the table grows to 1,000 changes
    _bulk_changes(990, authors=[engineer, engineer2], systems=systems)
    at_1000, rows_1000 = _list_queries(client, 100)

    # then: the list still costs the same number of queries
    assert (rows_10, rows_1000) == (10, 100)
    assert at_10 == at_1000
