"""The evaluation run's state graph (evaluations/states.py), pair by pair."""

from __future__ import annotations

import itertools

import pytest

from core.errors import InvalidTransition
from evaluations import states
from evaluations.models import EvaluationRun

Q, R, D, E, C = states.QUEUED, states.RUNNING, states.COMPLETED, states.ERRORED, states.CANCELLED
ALLOWED = {(Q, R), (Q, D), (R, D), (Q, E), (R, E), (Q, C), (R, C)}


@pytest.mark.parametrize(("current", "target"), itertools.product(states.STATES, repeat=2))
def test_every_pair_of_statuses(current, target):
    if (current, target) in ALLOWED:
        assert states.can_transition(current, target)
        assert states.assert_transition(current, target) in {"start", "finish", "error", "cancel"}
        assert current in states.sources(target)
    else:
        assert not states.can_transition(current, target)
        with pytest.raises(InvalidTransition, match=f"'{current}' cannot move to '{target}'"):
            states.assert_transition(current, target)
        assert current not in states.sources(target)


def test_the_graph_names_the_model_statuses_and_finished_runs_never_move():
    assert set(states.STATES) == {value for value, _ in EvaluationRun.STATUS_CHOICES}
    assert states.LIVE == EvaluationRun.LIVE_STATUSES == (Q, R)
    assert {D, E, C} == states.TERMINAL
    for done in states.TERMINAL:
        assert states.sources(done) == (Q, R)
        assert not any(states.can_transition(done, other) for other in states.STATES)
    assert states.sources(R) == (Q,)  # a run never goes back to running
