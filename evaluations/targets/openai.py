"""Target: any OpenAI-compatible ``/chat/completions`` endpoint.

Design notes: docs/ENGINE_NOTES.md, section ``evaluations.targets.openai``.
"""

from __future__ import annotations

import random
import re
import time
from typing import Any

from .base import RetryPolicy, Target, TargetError, TargetReply, call_with_retries
from .hostguard import GuardedClient, display_url, status_error
from .secrets import NO_SECRETS, SecretError, SecretResolver

_THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)


def split_reasoning(message: dict) -> tuple[str, str | None]:
    """A chat ``message`` -> (text to grade, reasoning or None)."""
    content = _content_text(message.get("content"))
    parts: list[str] = []
    for field in ("reasoning_content", "reasoning"):
        value = message.get(field)
        if isinstance(value, str) and value.strip():
            parts.append(value.strip())
            break
    blocks = _THINK_BLOCK.findall(content)
    if blocks:
        parts.extend(b.strip() for b in blocks if b.strip())
        content = _THINK_BLOCK.sub("", content)
    elif re.search(r"</think>", content, re.IGNORECASE):
        before, content = re.split(r"</think>", content, maxsplit=1, flags=re.IGNORECASE)
        before = re.sub(r"<think>", "", before, flags=re.IGNORECASE).strip()
        parts.extend([before] if before else [])
    elif re.match(r"\s*<think>", content, re.IGNORECASE):
        parts.append(re.sub(r"^\s*<think>", "", content, flags=re.IGNORECASE).strip())
        content = ""
    return content.strip(), ("\n\n".join(parts) or None)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": "..."}]
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


class OpenAITarget(Target):
    """An OpenAI-compatible chat model. Build it with :func:`evaluations.targets.build_target`."""

    kind = "openai"

    def __init__(
        self,
        config: dict,
        *,
        allowed_hosts: list[str],
        max_response_bytes: int,
        secrets: SecretResolver = NO_SECRETS,
    ):
        self.base_url = config["base_url"].rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.model = config["model"]
        self.api_key_secret = config.get("api_key_secret")
        self.secrets = secrets
        self.temperature = config["temperature"]
        self.max_tokens = config["max_tokens"]
        self.timeout = config["timeout"]
        self.send_seed = config["send_seed"]
        self.extra_body = dict(config.get("extra_body") or {})
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
        return {
            "kind": self.kind,
            "model": self.model,
            "host": display_url(self.base_url).split("/")[2],
            "base_url": display_url(self.base_url),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    def _secret(self) -> str | None:
        if not self.api_key_secret:
            return None
        try:
            return self.secrets(self.api_key_secret)
        except SecretError as exc:
            raise TargetError(str(exc)) from None

    def _payload(self, messages: list[dict], seed: int) -> dict:
        payload = {
            **self.extra_body,
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.send_seed:
            payload["seed"] = seed
        return payload

    async def complete(self, messages: list[dict], *, seed: int) -> TargetReply:
        payload = self._payload(messages, seed)
        started = time.perf_counter()
        reply, attempts = await call_with_retries(
            lambda: self._attempt(payload), self.retry, rng=self._rng
        )
        reply.latency_ms = (time.perf_counter() - started) * 1000
        reply.attempts = attempts
        return reply

    async def _attempt(self, payload: dict) -> TargetReply:
        secret = self._secret()
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        result = await self.client.post_json(
            self.url, payload, headers=headers, timeout=self.timeout
        )
        error = status_error(result, secrets=(secret,) if secret else ())
        if error is not None:
            raise error
        message, model = _first_message(result.json())
        text, reasoning = split_reasoning(message)
        return TargetReply(
            text=text,
            reasoning=reasoning,
            tool_calls=list(message.get("tool_calls") or []),
            model=model or self.model,
        )

    async def aclose(self) -> None:
        await self.client.aclose()


def _first_message(data: Any) -> tuple[dict, str | None]:
    try:
        message = data["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        raise TargetError("malformed response: no choices[0].message")
    if not isinstance(message, dict):
        raise TargetError("malformed response: choices[0].message is not an object")
    model = data.get("model") if isinstance(data.get("model"), str) else None
    return message, model
