"""Target: a generic agent behind an HTTP endpoint.

Design notes: docs/ENGINE_NOTES.md, section ``evaluations.targets.http``.
"""

from __future__ import annotations

import random
import time

from .base import RetryPolicy, Target, TargetError, TargetReply, call_with_retries
from .hostguard import GuardedClient, display_url, status_error
from .secrets import NO_SECRETS, SecretError, SecretResolver


class HTTPAgentTarget(Target):
    """A generic agent endpoint speaking the contract above."""

    kind = "http"

    def __init__(
        self,
        config: dict,
        *,
        allowed_hosts: list[str],
        max_response_bytes: int,
        secrets: SecretResolver = NO_SECRETS,
    ):
        self.url = config["url"]
        self.headers_secret = dict(config.get("headers_secret") or {})
        self.secrets = secrets
        self.timeout = config["timeout"]
        self.max_concurrency = config["max_concurrency"]
        self.retry = RetryPolicy.from_config(config)
        self.client = GuardedClient(
            allowed_hosts=allowed_hosts,
            max_response_bytes=max_response_bytes,
            max_connections=self.max_concurrency,
            verify=config["verify_tls"],
        )
        self._rng = random.Random()

    def describe(self) -> dict:
        shown = display_url(self.url)
        return {"kind": self.kind, "model": None, "host": shown.split("/")[2], "url": shown}

    def _headers(self) -> dict[str, str]:
        headers = {}
        for name, secret in self.headers_secret.items():
            try:
                headers[name] = self.secrets(secret)
            except SecretError as exc:
                raise TargetError(f"{exc} (header {name})") from None
        return headers

    async def complete(self, messages: list[dict], *, seed: int) -> TargetReply:
        started = time.perf_counter()
        reply, attempts = await call_with_retries(
            lambda: self._attempt({"messages": messages, "seed": seed}), self.retry, rng=self._rng
        )
        reply.latency_ms = (time.perf_counter() - started) * 1000
        reply.attempts = attempts
        return reply

    async def _attempt(self, payload: dict) -> TargetReply:
        headers = self._headers()
        result = await self.client.post_json(
            self.url, payload, headers=headers, timeout=self.timeout
        )
        error = status_error(result, secrets=tuple(headers.values()))
        if error is not None:
            raise error
        return _reply_from(result.json())

    async def aclose(self) -> None:
        await self.client.aclose()


def _reply_from(data: object) -> TargetReply:
    if not isinstance(data, dict) or not isinstance(data.get("output"), str):
        raise TargetError('malformed agent response: expected {"output": "<string>", ...}')
    reasoning = data.get("reasoning")
    tool_calls = data.get("tool_calls") or []
    model = data.get("model")
    return TargetReply(
        text=data["output"],
        reasoning=reasoning if isinstance(reasoning, str) and reasoning.strip() else None,
        tool_calls=tool_calls if isinstance(tool_calls, list) else [],
        model=model if isinstance(model, str) else None,
    )
