"""The shared state-graph reader that changes, evaluations and attestations build on, and the
one error every graph raises for a refused move."""

from __future__ import annotations

from unittest import mock

import pytest

from attestations import states as attestation_states
from changes import states as change_states
from core import errors
from core.states import StateGraph
from evaluations import states as run_states

GRAPH = StateGraph(
    ("a", "b", "c", "d"),
    {("a", "b"): "go", ("b", "c"): "finish", ("a", "c"): "skip", ("b", "a"): "undo"},
    noun="item",
    labels={"a": "Alpha", "c": "Gamma"},
)


def test_queries_read_the_transitions_as_declared():
    assert GRAPH.assert_transition("a", "b") == "go"
    assert GRAPH.can_transition("b", "a") and not GRAPH.can_transition("c", "a")
    assert GRAPH.sources("c") == ("a", "b")  # in the declared order of the states
    assert GRAPH.next_states("a") == ["b", "c"]
    assert GRAPH.live == ("a", "b")
    assert GRAPH.terminal == frozenset({"c", "d"})


def test_a_refused_move_names_the_noun_and_both_statuses_by_their_labels():
    with pytest.raises(errors.InvalidTransition) as info:
        GRAPH.assert_transition("c", "a")
    error = info.value
    assert (error.noun, error.current, error.target) == ("item", "c", "a")
    assert (error.current_label, error.target_label) == ("Gamma", "Alpha")
    assert str(error) == "An item in state 'Gamma' cannot move to 'Alpha'."
    with pytest.raises(errors.InvalidTransition, match="in state 'd' cannot move to 'Alpha'"):
        GRAPH.assert_transition("d", "a")  # a status without a label is named as it is


@pytest.mark.parametrize(
    ("graph", "current", "target", "message"),
    [
        pytest.param(
            change_states.GRAPH,
            change_states.DRAFT,
            change_states.DEPLOYED,
            "A change in state 'Draft' cannot move to 'Deployed'.",
            id="change",
        ),
        pytest.param(
            run_states.GRAPH,
            run_states.COMPLETED,
            run_states.RUNNING,
            "An evaluation run in state 'completed' cannot move to 'running'.",
            id="evaluation-run",
        ),
        pytest.param(
            attestation_states.GRAPH,
            attestation_states.READY,
            attestation_states.PENDING,
            "An attestation in state 'ready' cannot move to 'pending'.",
            id="attestation",
        ),
    ],
)
def test_each_apps_graph_raises_the_core_error_with_its_noun_answered_409(
    graph, current, target, message
):
    with pytest.raises(errors.InvalidTransition) as info:
        graph.assert_transition(current, target)
    assert type(info.value) is errors.InvalidTransition  # no app-specific subclass
    assert str(info.value) == message

    domain = errors.as_domain_error(info.value)
    assert isinstance(domain, errors.Conflict)
    assert domain.as_dict() == {"detail": message, "code": "invalid_transition"}


@pytest.mark.django_db
def test_the_api_answers_a_refused_attestation_move_with_409_invalid_transition(api, auditor):
    """No attestation endpoint moves a row today (services move rows by a conditional UPDATE
    from ``sources()``), so the refusal is raised where the detail view reads its row: what is
    checked is that the API's one exception handler answers the attestation graph's error as a
    409, not a 500."""

    def refuse(user, pk):
        attestation_states.assert_transition(attestation_states.READY, attestation_states.PENDING)

    with mock.patch("attestations.apis.selectors.attestation_for", side_effect=refuse):
        response = api(auditor).get("/api/v1/attestations/1/")

    assert response.status_code == 409, response.content
    assert response.json() == {
        "detail": "An attestation in state 'ready' cannot move to 'pending'.",
        "code": "invalid_transition",
    }
