"""The change-request state graph, as data.

Pure: no ORM. Services call :func:`assert_transition` before moving a change; one parametrised
test walks every (from, to) pair of :data:`STATES` against :data:`TRANSITIONS`.
"""

from __future__ import annotations

from core.states import StateGraph

DRAFT = "draft"
SUBMITTED = "submitted"
EVALUATING = "evaluating"
AWAITING_REVIEW = "awaiting_review"
EVALUATION_FAILED = "evaluation_failed"
APPROVED = "approved"
CHANGES_REQUESTED = "changes_requested"
REJECTED = "rejected"
DEPLOYED = "deployed"
CLOSED = "closed"
WITHDRAWN = "withdrawn"

STATES: tuple[str, ...] = (
    DRAFT,
    SUBMITTED,
    EVALUATING,
    AWAITING_REVIEW,
    EVALUATION_FAILED,
    APPROVED,
    CHANGES_REQUESTED,
    REJECTED,
    DEPLOYED,
    CLOSED,
    WITHDRAWN,
)

LABELS = {
    DRAFT: "Draft",
    SUBMITTED: "Submitted",
    EVALUATING: "Evaluating",
    AWAITING_REVIEW: "Awaiting review",
    EVALUATION_FAILED: "Evaluation failed",
    APPROVED: "Approved",
    CHANGES_REQUESTED: "Changes requested",
    REJECTED: "Rejected",
    DEPLOYED: "Deployed",
    CLOSED: "Closed",
    WITHDRAWN: "Withdrawn",
}

# (from, to) -> the action that performs it. Anything absent is refused.
TRANSITIONS: dict[tuple[str, str], str] = {
    (DRAFT, SUBMITTED): "submit",
    (CHANGES_REQUESTED, SUBMITTED): "submit",
    (EVALUATION_FAILED, SUBMITTED): "submit",
    (SUBMITTED, EVALUATING): "start_evaluation",
    (EVALUATING, AWAITING_REVIEW): "evaluation_passed",
    (EVALUATING, EVALUATION_FAILED): "evaluation_failed",
    (AWAITING_REVIEW, APPROVED): "approve",
    (AWAITING_REVIEW, CHANGES_REQUESTED): "request_changes",
    (AWAITING_REVIEW, REJECTED): "reject",
    (APPROVED, CHANGES_REQUESTED): "request_changes",
    (APPROVED, REJECTED): "reject",
    # An edit after evaluation or approval sends the change back to draft: what was
    # evaluated and signed is no longer what would deploy.
    (AWAITING_REVIEW, DRAFT): "edit",
    (APPROVED, DRAFT): "edit",
    (APPROVED, DEPLOYED): "deploy",
    (DEPLOYED, CLOSED): "close",
    (DRAFT, WITHDRAWN): "withdraw",
    (SUBMITTED, WITHDRAWN): "withdraw",
    (EVALUATING, WITHDRAWN): "withdraw",
    (AWAITING_REVIEW, WITHDRAWN): "withdraw",
    (EVALUATION_FAILED, WITHDRAWN): "withdraw",
    (CHANGES_REQUESTED, WITHDRAWN): "withdraw",
    (APPROVED, WITHDRAWN): "withdraw",
}

# Editing content in these states keeps the state; see TRANSITIONS for edits that reset it.
EDITABLE_IN_PLACE = frozenset({DRAFT, CHANGES_REQUESTED, EVALUATION_FAILED})
EDITABLE = EDITABLE_IN_PLACE | {AWAITING_REVIEW, APPROVED}
REVIEWABLE = frozenset({AWAITING_REVIEW, APPROVED})
TERMINAL = frozenset({REJECTED, CLOSED, WITHDRAWN})


GRAPH = StateGraph(STATES, TRANSITIONS, noun="change", labels=LABELS)
can_transition, assert_transition, next_states = (
    GRAPH.can_transition,
    GRAPH.assert_transition,
    GRAPH.next_states,
)


# Transitions that start a new round: an edit after evaluation or approval, and a resubmission
# after a failed evaluation or a request for changes. Someone has to rework the change first,
# so a client waiting for a state (``?wait_for=``) is not kept waiting across them.
ROUND_RESTARTS = frozenset(
    {
        (AWAITING_REVIEW, DRAFT),
        (APPROVED, DRAFT),
        (CHANGES_REQUESTED, SUBMITTED),
        (EVALUATION_FAILED, SUBMITTED),
    }
)


def reachable_in_round(current: str, target: str) -> bool:
    """Whether ``target`` is ``current`` or still lies ahead of it in the same round.

    Follows :data:`TRANSITIONS` minus :data:`ROUND_RESTARTS`: from ``evaluating``,
    ``awaiting_review`` and ``deployed`` are ahead; from ``evaluation_failed`` only
    ``withdrawn`` is (reaching review again takes a fix and a resubmission).
    """
    seen, frontier = {current}, [current]
    while frontier:
        state = frontier.pop()
        if state == target:
            return True
        for frm, to in TRANSITIONS:
            if frm == state and (frm, to) not in ROUND_RESTARTS and to not in seen:
                seen.add(to)
                frontier.append(to)
    return False
