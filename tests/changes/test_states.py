"""The state graph: every (from, to) pair, both as data and through the services."""

import itertools

import pytest

from changes import audit, services, states
from changes.models import AuditEvent, ChangeRequest, Review
from core.errors import Conflict, DomainError, InvalidTransition
from tests.factories import PASSWORD, SystemFactory, make_change

ALL_PAIRS = list(itertools.product(states.STATES, states.STATES))


@pytest.mark.parametrize(("source", "target"), ALL_PAIRS)
def test_assert_transition_matches_the_graph(source, target):
    # given a pair of states / when it is checked / then only listed pairs are allowed
    if (source, target) in states.TRANSITIONS:
        assert states.assert_transition(source, target) == states.TRANSITIONS[(source, target)]
    else:
        with pytest.raises(InvalidTransition):
            states.assert_transition(source, target)


def test_graph_is_well_formed():
    for source, target in states.TRANSITIONS:
        assert source in states.STATES and target in states.STATES
    for terminal in states.TERMINAL:
        assert states.next_states(terminal) == []
    # every state is reachable from draft
    seen, frontier = {states.DRAFT}, [states.DRAFT]
    while frontier:
        for nxt in states.next_states(frontier.pop()):
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(states.STATES)


def _snapshot(change):
    change.refresh_from_db()
    return (
        change.state,
        change.content_sha256,
        change.revision,
        AuditEvent.objects.count(),
        Review.objects.count(),
    )


@pytest.mark.django_db
@pytest.mark.parametrize(("source", "target"), ALL_PAIRS)
def test_move_primitive_for_every_pair(engineer, source, target):
    # given a change forced into `source`
    change = make_change(author=engineer)
    ChangeRequest.objects.filter(pk=change.pk).update(state=source)
    change = services.lock_change(change.pk)
    events_before = AuditEvent.objects.count()
    # when the transition primitive is asked to move it to `target`
    if (source, target) in states.TRANSITIONS:
        services._move(change, target, actor=engineer, verb="test.move")
        # then it moved and exactly one audit event was written
        assert ChangeRequest.objects.get(pk=change.pk).state == target
        assert AuditEvent.objects.count() == events_before + 1
        assert AuditEvent.objects.last().data == {"from": source, "to": target}
    else:
        with pytest.raises(InvalidTransition):
            services._move(change, target, actor=engineer, verb="test.move")
        # then nothing changed
        assert ChangeRequest.objects.get(pk=change.pk).state == source
        assert AuditEvent.objects.count() == events_before


def _act(action, change, *, engineer, reviewer, pipeline):
    if action == "submit":
        services.change_request_submit(actor=engineer, change_request=change)
    elif action == "approve":
        services.review_submit(
            actor=reviewer, change_request=change, decision="approve", password=PASSWORD
        )
    elif action == "request_changes":
        services.review_submit(
            actor=reviewer,
            change_request=change,
            decision="request_changes",
            comment="Tighten the regex.",
            password=PASSWORD,
        )
    elif action == "reject":
        services.review_submit(
            actor=reviewer,
            change_request=change,
            decision="reject",
            comment="Out of scope.",
            password=PASSWORD,
        )
    elif action == "edit":
        services.change_request_update(
            actor=engineer, change_request=change, data={"title": change.title + " (edited)"}
        )
    elif action == "deploy":
        services.change_request_deploy(
            actor=pipeline, change_request=change, environment="production"
        )
    elif action == "close":
        services.change_request_close(actor=engineer, change_request=change)
    elif action == "withdraw":
        services.change_request_withdraw(actor=engineer, change_request=change)


# The state each action leads to (None: the state is kept).
ACTION_TARGET = {
    "submit": states.EVALUATING,
    "approve": states.APPROVED,
    "request_changes": states.CHANGES_REQUESTED,
    "reject": states.REJECTED,
    "edit": None,
    "deploy": states.DEPLOYED,
    "close": states.CLOSED,
    "withdraw": states.WITHDRAWN,
}


def _allowed(action, source):
    if action == "submit":
        return (source, states.SUBMITTED) in states.TRANSITIONS
    if action == "approve":
        return source in states.REVIEWABLE
    if action == "edit":
        return source in states.EDITABLE
    return (source, ACTION_TARGET[action]) in states.TRANSITIONS


@pytest.mark.django_db
@pytest.mark.parametrize("source", states.STATES)
@pytest.mark.parametrize("action", list(ACTION_TARGET))
def test_every_service_action_from_every_state(
    action,
    source,
    engineer,
    reviewer,
    reviewer2,
    pipeline,
    passing_evaluations,
    recorded_attestations,
):
    # given a change in `source`; for deploy, with the approvals the gate needs
    system = SystemFactory(owner_team=engineer.teams.first(), criticality="low")
    change = make_change(author=engineer, system=system)
    ChangeRequest.objects.filter(pk=change.pk).update(state=source)
    if action == "deploy" and source == states.APPROVED:
        Review.objects.create(
            change=change,
            reviewer=reviewer2,
            decision="approve",
            content_sha256=change.content_sha256,
            evaluation_digest="stub-digest",
            signature_meaning="test",
        )
    before = _snapshot(change)
    # when the action is attempted
    if _allowed(action, source):
        _act(action, change, engineer=engineer, reviewer=reviewer, pipeline=pipeline)
        change.refresh_from_db()
        # then the change is where the graph says
        expected = ACTION_TARGET[action]
        if action == "edit":
            expected = states.DRAFT if source not in states.EDITABLE_IN_PLACE else source
        assert change.state == expected
        assert AuditEvent.objects.count() > before[3]
        assert audit.verify_chain()[1] is None
    else:
        with pytest.raises((DomainError, InvalidTransition)) as info:
            _act(action, change, engineer=engineer, reviewer=reviewer, pipeline=pipeline)
        # then it is refused as a conflict (409) and nothing changed
        error = info.value
        assert isinstance(error, InvalidTransition | Conflict), error
        assert _snapshot(change) == before
