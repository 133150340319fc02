"""The evaluation run's state graph, as data: which status may follow which, and by what.

Every status change of a run is a conditional UPDATE whose ``status__in`` is
:func:`sources` of its target, so the graph here is the one place the moves are written
(docs/ARCHITECTURE.md, "State machines"). Mirrors ``changes/states.py``.
"""

from __future__ import annotations

from core.states import StateGraph

QUEUED = "queued"
RUNNING = "running"
COMPLETED = "completed"
ERRORED = "errored"
CANCELLED = "cancelled"

STATES: tuple[str, ...] = (QUEUED, RUNNING, COMPLETED, ERRORED, CANCELLED)

#: (from, to) -> the action that makes the move. A queued run may finish or error without
#: having run: finalising and the reaper act on whatever is still live.
TRANSITIONS: dict[tuple[str, str], str] = {
    (QUEUED, RUNNING): "start",  # a worker claimed its first batch
    (QUEUED, COMPLETED): "finish",  # the gate judged every sample
    (RUNNING, COMPLETED): "finish",
    (QUEUED, ERRORED): "error",  # too many samples failed, or the reaper gave up on it
    (RUNNING, ERRORED): "error",
    (QUEUED, CANCELLED): "cancel",  # the change was withdrawn or edited, or someone cancelled
    (RUNNING, CANCELLED): "cancel",
}


GRAPH = StateGraph(STATES, TRANSITIONS, noun="evaluation run")
#: Statuses that can still be left (work in flight); the rest are final.
LIVE, TERMINAL = GRAPH.live, GRAPH.terminal
can_transition, assert_transition, sources = (
    GRAPH.can_transition,
    GRAPH.assert_transition,
    GRAPH.sources,
)
