"""The target interface every evaluated system implements, and the retry policy they share.

Why this module exists: the runner must not care whether a reply came from a hosted API, a
local model server, a customer's agent or an in-process reference agent. It awaits
``target.complete(messages, seed=...)`` and gets a :class:`TargetReply` or a
:class:`TargetError` that says whether trying again could help (``transient``).

``describe()`` is what gets stored with a run and printed in attestations, so it names the
kind, model and host, and never a key or a header value.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TargetReply:
    """One reply: the text graded, the reasoning trace when the target exposes one."""

    text: str
    reasoning: str | None = None
    tool_calls: list = field(default_factory=list)
    model: str | None = None
    latency_ms: float = 0.0
    attempts: int = 1


class TargetError(Exception):
    """A call failed. ``transient`` errors (connection, timeout, 429, 5xx) may be retried."""

    def __init__(
        self,
        message: str,
        *,
        transient: bool = False,
        status: int | None = None,
        retry_after: float | None = None,
        attempts: int = 1,
    ):
        super().__init__(message)
        self.transient = transient
        self.status = status
        self.retry_after = retry_after
        self.attempts = attempts


class Target:
    """Base class. Subclasses set ``kind`` and implement :meth:`complete`."""

    kind = "base"
    max_concurrency = 4

    async def complete(self, messages: list[dict], *, seed: int) -> TargetReply:
        """Send one chat (``[{"role", "content"}, ...]``) and return the reply."""
        raise NotImplementedError

    def describe(self) -> dict:
        """Kind, model and host, for the run record. Never a key."""
        return {"kind": self.kind}

    def prepare(self, suite: dict) -> None:  # noqa: B027 - an optional hook, empty on purpose
        """Hook called once per batch with the normalised suite. Real targets ignore it; the
        reference agents learn what each scenario's new and legacy replies look like."""

    async def aclose(self) -> None:  # noqa: B027 - an optional hook, empty on purpose
        """Release connections. Safe to call more than once."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; a server's Retry-After wins, up to a cap."""

    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    retry_after_cap: float = 30.0

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        if retry_after is not None:
            # Honour the server, capped so a hostile value cannot park a worker; a little
            # jitter spreads concurrent callers that all got the same Retry-After.
            return min(max(retry_after, 0.0), self.retry_after_cap) + rng.uniform(
                0, min(self.backoff_base, 1.0)
            )
        ceiling = min(self.backoff_max, self.backoff_base * (2**retry))
        return rng.uniform(ceiling / 2, ceiling)  # "equal jitter": never retries instantly

    @classmethod
    def from_config(cls, config: dict) -> RetryPolicy:
        """The policy a validated remote target config (openai or http) asks for."""
        return cls(
            max_retries=config["max_retries"],
            backoff_base=config["backoff_base"],
            backoff_max=config["backoff_max"],
            retry_after_cap=config["retry_after_cap"],
        )


async def call_with_retries(
    attempt: Callable[[], Awaitable[Any]],
    policy: RetryPolicy,
    *,
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> tuple[Any, int]:
    """Run ``attempt`` until it succeeds or fails for good; return ``(result, attempts)``.

    Only :class:`TargetError` with ``transient=True`` is retried; the final error carries the
    number of attempts made.
    """
    rng = rng or random.Random()
    for retry in range(policy.max_retries + 1):
        try:
            return await attempt(), retry + 1
        except TargetError as exc:
            exc.attempts = retry + 1
            if not exc.transient or retry == policy.max_retries:
                raise
            await sleep(policy.delay(retry, exc.retry_after, rng))
    raise AssertionError("unreachable")  # pragma: no cover
