"""A state graph as data, shared by every app's ``states.py``.

Each app declares its statuses and ``TRANSITIONS`` (``(from, to) -> action``) and builds one
:class:`StateGraph`; the queries every app needs (may this move happen, which statuses may
reach this one for a conditional UPDATE's ``status__in``, which statuses are final) are
answered here once, so the three graphs cannot drift apart in how they are read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .errors import InvalidTransition


class StateGraph:
    def __init__(
        self,
        states: Iterable[str],
        transitions: Mapping[tuple[str, str], str],
        *,
        noun: str,
        labels: Mapping[str, str] | None = None,
    ):
        self.states = tuple(states)
        self.transitions = dict(transitions)
        #: What moves along the graph ("change"), and the statuses' human names, for the
        #: message of a refused move.
        self.noun = noun
        self.labels = dict(labels or {})
        #: Statuses that can still be left; the rest are final.
        self.live = tuple(s for s in self.states if any(f == s for f, _ in self.transitions))
        self.terminal = frozenset(self.states) - frozenset(self.live)

    def can_transition(self, current: str, target: str) -> bool:
        return (current, target) in self.transitions

    def assert_transition(self, current: str, target: str) -> str:
        """The action for ``current -> target``; raises :class:`core.errors.InvalidTransition`
        (409 ``invalid_transition``) for a move not in the graph."""
        try:
            return self.transitions[(current, target)]
        except KeyError:
            raise InvalidTransition(self.noun, current, target, labels=self.labels) from None

    def sources(self, target: str) -> tuple[str, ...]:
        """The statuses that may move to ``target`` (for a conditional UPDATE)."""
        return tuple(s for s in self.states if (s, target) in self.transitions)

    def next_states(self, current: str) -> list[str]:
        return [to for (frm, to) in self.transitions if frm == current]
