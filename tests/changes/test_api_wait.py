"""``GET /api/v1/changes/{id}/?wait_for=<state>&timeout=<s>``: the long-poll.

Most tests replace the poller's clock and sleep: each "sleep" advances a fake clock and may
run a step of the workflow, as a worker would between two polls. One test waits for real,
across threads, on a database both can see.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
from django.db import connection

from changes import longpoll, services, states
from changes.models import ChangeRequest
from tests.changes.test_api_support import approve, awaiting_review, submit
from tests.factories import make_change

pytestmark = pytest.mark.django_db


class FakeTime:
    """The poller's clock and sleep: ``steps`` run one per sleep, in order."""

    def __init__(self, *steps):
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.steps = list(steps)
        self.connection_closed_while_sleeping: list[bool] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.connection_closed_while_sleeping.append(connection.connection is None)
        self.sleeps.append(seconds)
        self.now += seconds
        if self.steps:
            self.steps.pop(0)()


@pytest.fixture
def fake_time(monkeypatch):
    def install(*steps) -> FakeTime:
        fake = FakeTime(*steps)
        monkeypatch.setattr(longpoll, "_clock", fake.clock)
        monkeypatch.setattr(longpoll, "_sleep", fake.sleep)
        return fake

    return install


@pytest.fixture
def evaluating(engineer, passing_evaluations):
    return submit(make_change(author=engineer), engineer)


def verdict(change, *, passed: bool):
    def step():
        change.refresh_from_db()
        services.change_request_record_verdict(
            change_id=change.pk, content_sha256=change.content_sha256, passed=passed, reasons=[]
        )

    return step


def nothing():
    pass


def url(change, **params) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"/api/v1/changes/{change.pk}/?{query}"


def test_answers_as_soon_as_the_evaluation_passes(api, engineer, evaluating, fake_time):
    fake = fake_time(nothing, verdict(evaluating, passed=True))
    response = api(engineer).get(url(evaluating, wait_for="awaiting_review", timeout=60))
    assert response.status_code == 200
    assert response["X-Wait-Outcome"] == "reached"
    assert response.json()["state"] == "awaiting_review"
    assert response.json()["id"] == evaluating.pk
    # two polls slept, then the third saw the new state: no waiting for the timeout
    assert len(fake.sleeps) == 2
    assert sum(fake.sleeps) < 1


def test_a_failed_evaluation_ends_the_wait_as_unreachable(api, engineer, evaluating, fake_time):
    fake = fake_time(verdict(evaluating, passed=False))
    response = api(engineer).get(url(evaluating, wait_for="awaiting_review", timeout=60))
    assert response.status_code == 200
    assert response["X-Wait-Outcome"] == "unreachable"
    assert response.json()["state"] == "evaluation_failed"
    assert len(fake.sleeps) == 1


def test_a_state_entered_and_left_during_the_wait_is_passed(
    api, engineer, reviewer, evaluating, fake_time
):
    def pass_and_approve():
        verdict(evaluating, passed=True)()
        approve(ChangeRequest.objects.get(pk=evaluating.pk), reviewer)

    fake_time(pass_and_approve)
    response = api(engineer).get(url(evaluating, wait_for="awaiting_review", timeout=60))
    assert response["X-Wait-Outcome"] == "passed"
    assert response.json()["state"] == "approved"


def test_an_earlier_visit_to_the_state_is_not_passed(api, engineer, passing_evaluations):
    # The change was awaiting review before the wait began, then withdrawn: unreachable.
    change = awaiting_review(make_change(author=engineer), engineer)
    services.change_request_withdraw(actor=engineer, change_request=change, reason="no")
    response = api(engineer).get(url(change, wait_for="awaiting_review", timeout=5))
    assert response["X-Wait-Outcome"] == "unreachable"
    assert response.json()["state"] == "withdrawn"


def test_already_there_answers_without_sleeping(api, engineer, evaluating, fake_time):
    fake = fake_time()
    response = api(engineer).get(url(evaluating, wait_for="evaluating", timeout=60))
    assert response["X-Wait-Outcome"] == "reached"
    assert fake.sleeps == []


def test_timeout_answers_with_the_current_state_and_polls_gently(
    api, engineer, evaluating, fake_time
):
    fake = fake_time()
    response = api(engineer).get(url(evaluating, wait_for="awaiting_review", timeout=10))
    assert response.status_code == 200
    assert response["X-Wait-Outcome"] == "timeout"
    assert response.json()["state"] == "evaluating"
    assert sum(fake.sleeps) == pytest.approx(10)
    # no busy loop: at least 0.2 s between polls, and back-off to at most 1 s
    assert min(fake.sleeps[:-1]) >= longpoll.FIRST_INTERVAL
    assert max(fake.sleeps) <= longpoll.MAX_INTERVAL
    assert len(fake.sleeps) <= 16


def test_timeout_zero_is_a_single_look(api, engineer, evaluating, fake_time):
    fake = fake_time()
    response = api(engineer).get(url(evaluating, wait_for="awaiting_review", timeout=0))
    assert response["X-Wait-Outcome"] == "timeout"
    assert fake.sleeps == []


def test_default_timeout_is_30_seconds(api, engineer, evaluating, fake_time):
    fake = fake_time()
    response = api(engineer).get(url(evaluating, wait_for="awaiting_review"))
    assert response["X-Wait-Outcome"] == "timeout"
    assert sum(fake.sleeps) == pytest.approx(longpoll.DEFAULT_TIMEOUT)


def test_without_wait_for_nothing_waits_and_no_outcome_header(api, engineer, evaluating, fake_time):
    fake = fake_time()
    response = api(engineer).get(f"/api/v1/changes/{evaluating.pk}/")
    assert response.status_code == 200
    assert "X-Wait-Outcome" not in response
    assert fake.sleeps == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"wait_for": "awaiting-review"}, "wait_for"),
        ({"wait_for": "AWAITING_REVIEW"}, "wait_for"),
        ({"wait_for": ""}, "wait_for"),
        ({"wait_for": "approved", "timeout": 61}, "timeout"),
        ({"wait_for": "approved", "timeout": -1}, "timeout"),
        ({"wait_for": "approved", "timeout": "soon"}, "timeout"),
        ({"wait_for": "approved", "timeout": "nan"}, "timeout"),
        ({"wait_for": "approved", "timeout": "1e9"}, "timeout"),
        ({"timeout": 5}, "timeout"),
    ],
)
def test_bad_parameters_are_a_400_naming_the_field(
    api, engineer, evaluating, fake_time, params, field
):
    fake = fake_time()
    response = api(engineer).get(url(evaluating, **params))
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid"
    assert field in body["fields"]
    assert body["detail"].startswith(f"{field}:")
    assert fake.sleeps == []


def test_a_change_you_cannot_see_is_a_404_at_once(api, evaluating, outsider, fake_time):
    fake = fake_time()
    response = api(outsider).get(url(evaluating, wait_for="deployed", timeout=60))
    assert response.status_code == 404
    assert fake.sleeps == []
    response = api(None).get(url(evaluating, wait_for="deployed", timeout=60))
    assert response.status_code == 401


def test_too_many_waiters_is_a_429_with_retry_after(api, engineer, evaluating, fake_time, settings):
    settings.API_MAX_WAITERS = 0
    fake = fake_time()
    response = api(engineer).get(url(evaluating, wait_for="awaiting_review", timeout=60))
    assert response.status_code == 429
    assert response["Retry-After"] == "1"
    assert response.json()["code"] == "throttled"
    assert fake.sleeps == []


def test_a_slot_is_given_back_whatever_happens(api, engineer, evaluating, fake_time, settings):
    settings.API_MAX_WAITERS = 1

    def explode():
        raise RuntimeError("the database went away")

    fake_time(explode)
    with pytest.raises(RuntimeError):
        api(engineer).get(url(evaluating, wait_for="awaiting_review", timeout=60))
    assert longpoll._waiting == 0
    fake_time()
    response = api(engineer).get(url(evaluating, wait_for="awaiting_review", timeout=1))
    assert response["X-Wait-Outcome"] == "timeout"
    assert longpoll._waiting == 0


@pytest.mark.django_db(transaction=True)
def test_no_connection_is_held_while_sleeping(api, engineer, passing_evaluations, fake_time):
    change = submit(make_change(author=engineer), engineer)
    fake = fake_time(nothing, verdict(change, passed=True))
    response = api(engineer).get(url(change, wait_for="awaiting_review", timeout=60))
    assert response["X-Wait-Outcome"] == "reached"
    assert fake.connection_closed_while_sleeping == [True, True]


@pytest.mark.django_db(transaction=True)
def test_a_real_wait_sees_another_threads_commit(api, engineer, passing_evaluations):
    change = submit(make_change(author=engineer), engineer)
    answer = {}

    def wait():
        try:
            started = time.monotonic()
            answer["response"] = api(engineer).get(
                url(change, wait_for="awaiting_review", timeout=20)
            )
            answer["seconds"] = time.monotonic() - started
        finally:
            connection.close()

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.5)
    verdict(change, passed=True)()
    waiter.join(timeout=30)
    response = answer["response"]
    assert response["X-Wait-Outcome"] == "reached"
    assert response.json()["state"] == "awaiting_review"
    assert answer["seconds"] < 5  # answered on the commit, not at the 20 s timeout


# --- the state graph behind "unreachable" -------------------------------------------------


@pytest.mark.parametrize(
    ("current", "target", "expected"),
    [
        ("draft", "awaiting_review", True),
        ("evaluating", "awaiting_review", True),
        ("evaluating", "deployed", True),
        ("evaluating", "evaluation_failed", True),
        ("awaiting_review", "closed", True),
        ("evaluation_failed", "awaiting_review", False),  # needs a fix and a resubmission
        ("changes_requested", "approved", False),
        ("approved", "awaiting_review", False),
        ("approved", "draft", False),  # an edit starts a new round
        ("deployed", "approved", False),
        ("evaluating", "submitted", False),
    ],
)
def test_reachable_in_round(current, target, expected):
    assert states.reachable_in_round(current, target) is expected


@pytest.mark.parametrize("terminal", sorted(states.TERMINAL))
def test_nothing_but_itself_is_reachable_from_a_terminal_state(terminal):
    assert [s for s in states.STATES if states.reachable_in_round(terminal, s)] == [terminal]


def test_round_restarts_are_real_transitions():
    assert set(states.TRANSITIONS) >= states.ROUND_RESTARTS


def test_each_poll_is_one_single_column_primary_key_query(api, engineer, evaluating, fake_time):
    from django.db import connection as conn
    from django.test.utils import CaptureQueriesContext

    poll = re.compile(
        r'^SELECT "changes_changerequest"\."state"( AS "state")? FROM "changes_changerequest" '
        r'WHERE "changes_changerequest"\."id" = \d+( ORDER BY [^,]*)? LIMIT 1$'
    )
    fake = fake_time()
    with CaptureQueriesContext(conn) as captured:
        response = api(engineer).get(url(evaluating, wait_for="awaiting_review", timeout=20))
    assert response["X-Wait-Outcome"] == "timeout"
    polls = [q["sql"] for q in captured.captured_queries if poll.match(q["sql"])]
    assert len(polls) == len(fake.sleeps) + 1
    # everything else is the request's own work, not a per-poll cost
    assert len(captured.captured_queries) - len(polls) < 20


@pytest.mark.django_db(transaction=True)
def test_the_cap_counts_requests_waiting_in_other_threads(
    api, engineer, passing_evaluations, settings
):
    settings.API_MAX_WAITERS = 1
    change = submit(make_change(author=engineer), engineer)
    answer = {}

    def wait():
        try:
            answer["response"] = api(engineer).get(
                url(change, wait_for="awaiting_review", timeout=20)
            )
        finally:
            connection.close()

    waiter = threading.Thread(target=wait)
    waiter.start()
    deadline = time.monotonic() + 10
    while longpoll._waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    second = api(engineer).get(url(change, wait_for="awaiting_review", timeout=20))
    plain = api(engineer).get(f"/api/v1/changes/{change.pk}/")  # while the first still waits
    assert longpoll._waiting == 1
    verdict(change, passed=True)()
    waiter.join(timeout=30)
    assert second.status_code == 429
    assert answer["response"]["X-Wait-Outcome"] == "reached"
    assert longpoll._waiting == 0
    assert plain.status_code == 200  # a plain read is never refused, however many wait
