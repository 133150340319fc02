"""Evaluation targets: what a suite is run against, built from an AI system's ``target`` config.

Why this package exists: the API stores a target config when an AI system is saved
(:func:`validate_target_config`, static checks only) and the workers build a live target from
it (:func:`build_target`, which also applies the host allow-list). Configs name environment
variables for secrets, never the secrets themselves; a config that looks like it carries a
key is refused.

Config kinds (defaults filled by :func:`validate_target_config`)::

    {"kind": "openai", "base_url": "http://127.0.0.1:8765/v1", "model": "my-model",
     "api_key_env": "MY_MODEL_KEY", "temperature": 0.7, "max_tokens": 512,
     "max_concurrency": 4, "timeout": 60, "max_retries": 3, "backoff_base": 0.5,
     "backoff_max": 8, "retry_after_cap": 30, "send_seed": true, "extra_body": {},
     "verify_tls": true}
    {"kind": "http", "url": "https://agent.example/run",
     "headers_env": {"X-Api-Key": "AGENT_KEY"}, ... same timeout/retry fields ...}
    {"kind": "reference", "agent": "compliant" | "legacy" | "faker", "noise": 0.0,
     "error_rate": 0.0, "latency_ms": 0, "max_concurrency": 16}
"""

from __future__ import annotations

import re
from typing import Any

from .base import RetryPolicy, Target, TargetError, TargetReply
from .hostguard import HostGuardError, check_static

__all__ = [
    "RetryPolicy",
    "Target",
    "TargetConfigError",
    "TargetError",
    "TargetReply",
    "build_target",
    "validate_target_config",
]

ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
FORBIDDEN_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "content-type"}
SECRET_LOOKING_KEYS = {
    "api_key",
    "apikey",
    "key",
    "token",
    "secret",
    "password",
    "authorization",
    "bearer",
    "headers",
    "access_token",
}
KINDS = ("openai", "http", "reference")

_HTTP_COMMON = {
    "max_concurrency": (int, 4, 1, 256),
    "timeout": (float, 60.0, 0.001, 3600.0),
    "max_retries": (int, 3, 0, 10),
    "backoff_base": (float, 0.5, 0.0, 60.0),
    "backoff_max": (float, 8.0, 0.0, 600.0),
    "retry_after_cap": (float, 30.0, 0.0, 600.0),
}
_NUMBERS: dict[str, dict[str, tuple]] = {
    "openai": {
        **_HTTP_COMMON,
        "temperature": (float, 0.7, 0.0, 2.0),
        "max_tokens": (int, 512, 1, 1_000_000),
    },
    "http": dict(_HTTP_COMMON),
    "reference": {
        "noise": (float, 0.0, 0.0, 1.0),
        "error_rate": (float, 0.0, 0.0, 1.0),
        "latency_ms": (float, 0.0, 0.0, 60_000.0),
        "max_concurrency": (int, 16, 1, 1024),
    },
}
_FLAGS = {"openai": {"send_seed": True, "verify_tls": True}, "http": {"verify_tls": True}}
_STRINGS = {
    "openai": ("base_url", "model", "api_key_env"),
    "http": ("url",),
    "reference": ("agent",),
}
_REQUIRED = {"openai": ("base_url", "model"), "http": ("url",), "reference": ("agent",)}
_OTHER_KEYS = {"openai": {"extra_body"}, "http": {"headers_env"}, "reference": set()}


class TargetConfigError(ValueError):
    """A target config is invalid; ``errors`` lists each problem."""

    def __init__(self, errors: list[str] | str):
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("; ".join(self.errors))


def validate_target_config(config: dict, *, allowed_hosts: list[str] | None = None) -> dict:
    """Check a target config without network access and return it normalised.

    With ``allowed_hosts`` (the ``EVAL_ALLOWED_HOSTS`` setting) literal IPs and ``localhost``
    are also checked against the allow-list; names are resolved only by :func:`build_target`'s
    target, at call time.
    """
    if not isinstance(config, dict):
        raise TargetConfigError("a target config must be a JSON object")
    kind = config.get("kind")
    if kind not in KINDS:
        raise TargetConfigError(f"kind: must be one of {', '.join(KINDS)} (got {kind!r})")
    errors = _secret_errors(config) + _unknown_key_errors(kind, config)
    out: dict[str, Any] = {"kind": kind}
    errors += _strings(kind, config, out)
    errors += _numbers(kind, config, out)
    errors += _flags(kind, config, out)
    errors += _kind_specific(kind, config, out, allowed_hosts)
    if errors:
        raise TargetConfigError(errors)
    return out


def _secret_errors(config: dict) -> list[str]:
    found = sorted(k for k in config if str(k).lower() in SECRET_LOOKING_KEYS)
    return [
        f"{k}: secrets are never stored in a target config; put the value in an environment "
        "variable and name it (api_key_env, or headers_env for http agents)"
        for k in found
    ]


def _unknown_key_errors(kind: str, config: dict) -> list[str]:
    allowed = (
        {"kind"}
        | set(_STRINGS[kind])
        | set(_NUMBERS[kind])
        | set(_FLAGS.get(kind, {}))
        | _OTHER_KEYS[kind]
    )
    return [
        f"{k}: unknown field for a {kind} target (allowed: {', '.join(sorted(allowed))})"
        for k in config
        if k not in allowed and str(k).lower() not in SECRET_LOOKING_KEYS
    ]


def _strings(kind: str, config: dict, out: dict) -> list[str]:
    errors = []
    for name in _STRINGS[kind]:
        value = config.get(name)
        if value is None:
            if name in _REQUIRED[kind]:
                errors.append(f"{name}: required")
            continue
        if not isinstance(value, str) or not value.strip():
            errors.append(f"{name}: must be a non-empty string")
            continue
        out[name] = value.strip()
    return errors


def _numbers(kind: str, config: dict, out: dict) -> list[str]:
    errors = []
    for name, (typ, default, low, high) in _NUMBERS[kind].items():
        value = config.get(name, default)
        ok_type = isinstance(value, int | float) and not isinstance(value, bool)
        if typ is int and ok_type and float(value) != int(value):
            ok_type = False
        if not ok_type or not low <= value <= high:
            word = "an integer" if typ is int else "a number"
            errors.append(f"{name}: must be {word} from {low:g} to {high:g} (got {value!r})")
            continue
        out[name] = typ(value)
    return errors


def _flags(kind: str, config: dict, out: dict) -> list[str]:
    errors = []
    for name, default in _FLAGS.get(kind, {}).items():
        value = config.get(name, default)
        if not isinstance(value, bool):
            errors.append(f"{name}: must be true or false")
        else:
            out[name] = value
    return errors


def _kind_specific(kind: str, config: dict, out: dict, allowed_hosts: list[str] | None) -> list:
    if kind == "openai":
        return _check_openai(config, out, allowed_hosts)
    if kind == "http":
        return _check_http(config, out, allowed_hosts)
    from .reference import AGENTS

    if out.get("agent") is not None and out["agent"] not in AGENTS:
        return [f"agent: must be one of {', '.join(AGENTS)} (got {out['agent']!r})"]
    return []


def _check_url(field: str, url: str | None, allowed_hosts: list[str] | None) -> list[str]:
    if url is None:
        return []
    try:
        check_static(url, allowed_hosts if allowed_hosts is not None else None)
    except HostGuardError as exc:
        if allowed_hosts is None and "EVAL_ALLOWED_HOSTS" in str(exc):
            return []  # address rules are applied when the target is built
        return [f"{field}: {exc}"]
    return []


def _check_openai(config: dict, out: dict, allowed_hosts: list[str] | None) -> list[str]:
    errors = _check_url("base_url", out.get("base_url"), allowed_hosts)
    env = out.get("api_key_env")
    if env is not None and not ENV_NAME.match(env):
        errors.append(
            "api_key_env: must be the NAME of an environment variable (like MY_MODEL_KEY, "
            "matching ^[A-Z_][A-Z0-9_]*$), never the key itself"
        )
        out.pop("api_key_env", None)
    extra = config.get("extra_body", {})
    if not isinstance(extra, dict):
        errors.append("extra_body: must be an object")
    else:
        clash = sorted(set(extra) & {"model", "messages", "seed", "stream", "n"})
        if clash:
            errors.append(f"extra_body: may not set {', '.join(clash)}")
        out["extra_body"] = dict(extra)
    return errors


def _check_http(config: dict, out: dict, allowed_hosts: list[str] | None) -> list[str]:
    errors = _check_url("url", out.get("url"), allowed_hosts)
    headers = config.get("headers_env", {})
    if not isinstance(headers, dict):
        return errors + ['headers_env: must be an object like {"X-Api-Key": "AGENT_KEY"}']
    for name, env in headers.items():
        if not isinstance(name, str) or not HEADER_NAME.match(name):
            errors.append(f"headers_env: {name!r} is not a valid header name")
        elif name.lower() in FORBIDDEN_HEADERS:
            errors.append(f"headers_env: the {name} header is set by the client")
        if not isinstance(env, str) or not ENV_NAME.match(env):
            errors.append(
                f"headers_env.{name}: must be the NAME of an environment variable "
                "(matching ^[A-Z_][A-Z0-9_]*$), never the value itself"
            )
    out["headers_env"] = dict(headers)
    return errors


def build_target(
    config: dict, *, allowed_hosts: list[str], max_response_bytes: int = 1_000_000
) -> Target:
    """A live target for ``config``. Literal addresses are checked now; host names are
    resolved and checked on the first call (then pinned)."""
    normalised = validate_target_config(config, allowed_hosts=list(allowed_hosts or []))
    kind = normalised["kind"]
    if kind == "reference":
        from .reference import ReferenceTarget

        return ReferenceTarget(
            normalised["agent"],
            noise=normalised["noise"],
            error_rate=normalised["error_rate"],
            latency_ms=normalised["latency_ms"],
            max_concurrency=normalised["max_concurrency"],
        )
    if kind == "openai":
        from .openai import OpenAITarget

        return OpenAITarget(
            normalised, allowed_hosts=list(allowed_hosts), max_response_bytes=max_response_bytes
        )
    from .http import HTTPAgentTarget

    return HTTPAgentTarget(
        normalised, allowed_hosts=list(allowed_hosts), max_response_bytes=max_response_bytes
    )
