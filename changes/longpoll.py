"""Waiting for a change to reach a state (``GET /api/v1/changes/{id}/?wait_for=...``).

A read, not a write: it polls one indexed column of one row, closes the database connection
between polls (so a minute of waiting holds no connection and no transaction), and gives up
at the timeout. The number of requests waiting at once is capped per process, so waiting
clients cannot take every web thread. Why it is built this way: docs/long-poll.md.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from . import states
from .models import AuditEvent, ChangeRequest

MAX_TIMEOUT = 60
DEFAULT_TIMEOUT = 30
# Polls start quick (an evaluation of the demo finishes in about a second) and back off.
FIRST_INTERVAL = 0.2
MAX_INTERVAL = 1.0

REACHED = "reached"  # the change is in the state asked for
PASSED = "passed"  # it entered that state during the wait and has already moved on
UNREACHABLE = "unreachable"  # it cannot get there any more without a new round
TIMEOUT = "timeout"  # still on its way when the timeout ran out
OUTCOMES = (REACHED, PASSED, UNREACHABLE, TIMEOUT)

_lock = threading.Lock()
_waiting = 0

# Indirections the tests replace (no real sleeping in unit tests).
_sleep = time.sleep
_clock = time.monotonic


class TooManyWaiters(Exception):
    """Every waiting slot of this process is taken; the client should retry shortly."""


@dataclass(frozen=True)
class WaitResult:
    outcome: str
    state: str
    waited: float


def max_waiters() -> int:
    """Requests allowed to wait at once in one web process (``API_MAX_WAITERS``, 2).

    gunicorn runs 4 threads per process in the demo and in Docker: two stay free for
    everything else however many clients wait.
    """
    return int(getattr(settings, "API_MAX_WAITERS", 2))


def _current_state(change_id: int) -> str | None:
    return ChangeRequest.objects.filter(pk=change_id).values_list("state", flat=True).first()


def _entered_since(change_id: int, target: str, after_event_id: int) -> bool:
    """Whether the audit log shows the change entering ``target`` after that event."""
    return AuditEvent.objects.filter(
        object_type=ChangeRequest._meta.label_lower,
        object_id=str(change_id),
        pk__gt=after_event_id,
        data__to=target,
    ).exists()


def _release_connection() -> None:
    # Outside a transaction only: closing inside one would roll it back (the tests' own).
    if not connection.in_atomic_block:
        connection.close()


def wait_for_state(*, change_id: int, target: str, timeout: float) -> WaitResult:
    """Block until the change is in ``target``, can no longer get there, or ``timeout``.

    ``timeout`` is clamped to [0, MAX_TIMEOUT]; 0 answers at once. Raises
    :class:`TooManyWaiters` when this process already has ``max_waiters()`` waiting.
    """
    global _waiting
    with _lock:
        if _waiting >= max_waiters():
            raise TooManyWaiters
        _waiting += 1
    try:
        return _wait(change_id, target, min(max(timeout, 0), MAX_TIMEOUT))
    finally:
        with _lock:
            _waiting -= 1


def _wait(change_id: int, target: str, timeout: float) -> WaitResult:
    started = _clock()
    deadline = started + timeout
    mark = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    interval = FIRST_INTERVAL
    while True:
        state = _current_state(change_id)
        if state is None:  # deleted meanwhile; the caller's own read answers 404
            return WaitResult(UNREACHABLE, "", _clock() - started)
        if state == target:
            return WaitResult(REACHED, state, _clock() - started)
        if not states.reachable_in_round(state, target):
            outcome = PASSED if _entered_since(change_id, target, mark) else UNREACHABLE
            return WaitResult(outcome, state, _clock() - started)
        remaining = deadline - _clock()
        if remaining <= 0:
            return WaitResult(TIMEOUT, state, _clock() - started)
        _release_connection()
        _sleep(min(interval, remaining))
        interval = min(interval * 1.5, MAX_INTERVAL)
