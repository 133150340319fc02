"""One gate computation's shared reads.

The deploy gate is assembled from rules in several apps (approvals and their standing,
evaluation digest and current runs, reviewer rules, acknowledgements), and several of them
read the same rows: the reviewer rules recount the valid approvals, the approval-standing
words re-read them, the evaluation digest and the acknowledgement rule both read the current
runs. Each read costs a query and, mostly, the ORM's work to build it (bench ``env_gate``).

``computing(change)`` opens a scope in which ``memo(change, key, compute)`` computes each
shared read once and hands the same answer to every rule; outside a scope ``memo`` simply
computes. The scope lives on the change instance and is removed when the computation ends,
so nothing is ever reused across gate calls: the deploy service re-runs the rules under its
row locks outside any scope, on fresh reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

_ATTR = "_gate_memo"


@contextmanager
def computing(change) -> Iterator[None]:
    """Share reads for ``change`` until the block ends (nested scopes join the outer one)."""
    owner = _ATTR not in change.__dict__
    if owner:
        change.__dict__[_ATTR] = {}
    try:
        yield
    finally:
        if owner:
            change.__dict__.pop(_ATTR, None)


def active(change) -> bool:
    return _ATTR in getattr(change, "__dict__", {})


def memo(change, key: str, compute: Callable[[], T]) -> T:
    """``compute()`` once per scope under ``key``; every call when no scope is open."""
    store: dict[str, Any] | None = getattr(change, "__dict__", {}).get(_ATTR)
    if store is None:
        return compute()
    if key not in store:
        store[key] = compute()
    return store[key]
