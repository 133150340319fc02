"""The shared state-graph reader that changes, evaluations and attestations build on."""

from __future__ import annotations

import pytest

from core.states import StateGraph


class Refused(Exception):
    def __init__(self, current, target):
        super().__init__(f"{current} -> {target}")
        self.current, self.target = current, target


GRAPH = StateGraph(
    ("a", "b", "c", "d"),
    {("a", "b"): "go", ("b", "c"): "finish", ("a", "c"): "skip", ("b", "a"): "undo"},
    error=Refused,
)


def test_queries_read_the_transitions_as_declared():
    assert GRAPH.assert_transition("a", "b") == "go"
    assert GRAPH.can_transition("b", "a") and not GRAPH.can_transition("c", "a")
    assert GRAPH.sources("c") == ("a", "b")  # in the declared order of the states
    assert GRAPH.next_states("a") == ["b", "c"]
    assert GRAPH.live == ("a", "b")
    assert GRAPH.terminal == frozenset({"c", "d"})


def test_a_refused_move_raises_the_apps_own_error():
    with pytest.raises(Refused) as info:
        GRAPH.assert_transition("c", "a")
    assert (info.value.current, info.value.target) == ("c", "a")
