"""The attestation's state graph, as data: which status may follow which, and by what.

Every status change of an attestation is a conditional UPDATE whose ``status__in`` is
:func:`sources` of its target, and each writes its audit event (``AUDIT_VERBS``), so the
graph here is the one place the moves are written (docs/ARCHITECTURE.md, "State machines").
Mirrors ``evaluations/states.py``. A row is born ``pending`` (or ``failed`` when its facts
could not be gathered); ``ready`` and ``void`` never move again.
"""

from __future__ import annotations

from core.states import StateGraph

PENDING = "pending"
RENDERING = "rendering"
READY = "ready"
FAILED = "failed"
VOID = "void"

STATES: tuple[str, ...] = (PENDING, RENDERING, READY, FAILED, VOID)

#: (from, to) -> the action that makes the move.
TRANSITIONS: dict[tuple[str, str], str] = {
    (PENDING, RENDERING): "claim",  # a worker took the row
    (RENDERING, RENDERING): "reclaim",  # the claim of a dead worker (past the time limit)
    (RENDERING, READY): "issue",  # signed and filled, once
    (RENDERING, FAILED): "fail",  # the render raised; the error is kept
    (RENDERING, VOID): "void",  # its facts no longer held (issue 15)
    (FAILED, PENDING): "retry",  # an admin, or the reaper while attempts are left
}

#: The audit verb each action writes on the change.
AUDIT_VERBS: dict[str, str] = {
    "claim": "attestation.rendering",
    "reclaim": "attestation.rendering",
    "issue": "attestation.issued",
    "fail": "attestation.failed",
    "void": "attestation.voided",
    "retry": "attestation.retried",
}


GRAPH = StateGraph(STATES, TRANSITIONS, noun="attestation")
#: Statuses that can still be left (work in flight); the rest are final.
LIVE, TERMINAL = GRAPH.live, GRAPH.terminal
can_transition, assert_transition, sources = (
    GRAPH.can_transition,
    GRAPH.assert_transition,
    GRAPH.sources,
)


def audit_verb(current: str, target: str) -> str:
    """The audit verb of the move ``current -> target`` (raises on a move not in the graph)."""
    return AUDIT_VERBS[assert_transition(current, target)]
