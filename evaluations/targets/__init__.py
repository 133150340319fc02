"""Evaluation targets: what a suite is run against, built from an AI system's ``target`` config.

Design notes: docs/ENGINE_NOTES.md, section ``evaluations.targets``.
"""

from __future__ import annotations

import re
from typing import Any

from .base import RetryPolicy, Target, TargetError, TargetReply
from .hostguard import HostGuardError, check_static
from .secrets import NO_SECRETS, SECRET_NAME, SecretResolver, secret_shaped

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
    "openai": ("base_url", "model", "api_key_secret", "api_key_env"),
    "http": ("url",),
    "reference": ("agent",),
}
_REQUIRED = {"openai": ("base_url", "model"), "http": ("url",), "reference": ("agent",)}
_OTHER_KEYS = {
    "openai": {"extra_body"},
    "http": {"headers_secret", "headers_env"},
    "reference": set(),
}
LEGACY_ENV_FIELDS = ("api_key_env", "headers_env")


class TargetConfigError(ValueError):
    """A target config is invalid; ``errors`` lists each problem."""

    def __init__(self, errors: list[str] | str):
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("; ".join(self.errors))


def validate_target_config(
    config: dict, *, allowed_hosts: list[str] | None = None, allow_env: bool = False
) -> dict:
    """Check a target config without network access and return it normalised.

    With ``allowed_hosts`` (the ``EVAL_ALLOWED_HOSTS`` setting) literal IPs and ``localhost``
    are also checked against the allow-list; names are resolved only by :func:`build_target`'s
    target, at call time. ``allow_env`` accepts the retired ``api_key_env`` / ``headers_env``
    fields (stored configs and the ``run_suite`` command only; never a write path).
    """
    if not isinstance(config, dict):
        raise TargetConfigError("a target config must be a JSON object")
    kind = config.get("kind")
    if kind not in KINDS:
        raise TargetConfigError(f"kind: must be one of {', '.join(KINDS)} (got {kind!r})")
    errors = _secret_errors(config) + _unknown_key_errors(kind, config)
    errors += _env_errors(config, allow_env)
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
        f"{k}: secrets are never stored in a target config; an admin registers the secret "
        "and the config names it (api_key_secret, or headers_secret for http agents)"
        for k in found
    ] + [
        f"{path}: looks like a credential; secrets are never stored in a target config"
        for path in secret_shaped(config)
    ]


def _env_errors(config: dict, allow_env: bool) -> list[str]:
    """No field may name an environment variable: a config is written by people who must not
    choose which of the worker's variables is sent to a URL (SECRET_KEY, the signing key...)."""
    errors = []
    for key in config:
        if not str(key).lower().endswith("_env"):
            continue
        if allow_env and key in LEGACY_ENV_FIELDS:
            continue
        hint = {"api_key_env": "api_key_secret", "headers_env": "headers_secret"}.get(key)
        errors.append(
            f"{key}: a config may not name an environment variable; "
            + (
                f"name a secret an admin registered instead ({hint})"
                if hint
                else "secrets come only from the admin-managed registry"
            )
        )
    return errors


def _nested_secret_errors(field: str, value) -> list[str]:
    """Secret-looking keys, ``*_env`` keys and credential-shaped values inside a free-form
    object that is sent to a remote host and shown to every user (``extra_body``)."""
    errors = []
    for path, text in _keys_in(value, field):
        low = text.lower()
        if low in SECRET_LOOKING_KEYS or low.endswith("_env"):
            errors.append(f"{path}: secrets are never stored in a target config")
    return errors


def _keys_in(value, path: str):
    if isinstance(value, dict):
        for k, v in value.items():
            yield f"{path}.{k}", str(k)
            yield from _keys_in(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _keys_in(v, f"{path}[{i}]")


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
        if k not in allowed
        and str(k).lower() not in SECRET_LOOKING_KEYS
        and not str(k).lower().endswith("_env")
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
    name = out.get("api_key_secret")
    if name is not None and not SECRET_NAME.match(name):
        errors.append(
            "api_key_secret: must be the name of a registered secret (lower-case letters, "
            "digits, . _ -), never the key itself"
        )
        out.pop("api_key_secret", None)
    if name is not None and env is not None:
        errors.append("api_key_secret and api_key_env: give one")
    extra = config.get("extra_body", {})
    if not isinstance(extra, dict):
        errors.append("extra_body: must be an object")
    else:
        clash = sorted(set(extra) & {"model", "messages", "seed", "stream", "n"})
        if clash:
            errors.append(f"extra_body: may not set {', '.join(clash)}")
        errors += _nested_secret_errors("extra_body", extra)
        out["extra_body"] = dict(extra)
    return errors


def _check_http(config: dict, out: dict, allowed_hosts: list[str] | None) -> list[str]:
    errors = _check_url("url", out.get("url"), allowed_hosts)
    for field, pattern, what in (
        ("headers_secret", SECRET_NAME, "the name of a registered secret"),
        ("headers_env", ENV_NAME, "the NAME of an environment variable"),
    ):
        if field not in config:
            continue
        headers = config[field]
        if not isinstance(headers, dict):
            errors.append(f'{field}: must be an object like {{"X-Api-Key": "agent-key"}}')
            continue
        for name, ref in headers.items():
            if not isinstance(name, str) or not HEADER_NAME.match(name):
                errors.append(f"{field}: {name!r} is not a valid header name")
            elif name.lower() in FORBIDDEN_HEADERS:
                errors.append(f"{field}: the {name} header is set by the client")
            if not isinstance(ref, str) or not pattern.match(ref):
                errors.append(f"{field}.{name}: must be {what}, never the value itself")
        out[field] = dict(headers)
    if "headers_secret" in out and "headers_env" in out:
        errors.append("headers_secret and headers_env: give one")
    return errors


def build_target(
    config: dict,
    *,
    allowed_hosts: list[str],
    max_response_bytes: int = 1_000_000,
    secrets: SecretResolver = NO_SECRETS,
) -> Target:
    """A live target for ``config``. Literal addresses are checked now; host names are
    resolved and checked on the first call (then pinned). ``secrets`` is the only way the
    target can read a key: it answers for the registered secrets granted to it, nothing else.
    """
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
            normalised,
            allowed_hosts=list(allowed_hosts),
            max_response_bytes=max_response_bytes,
            secrets=secrets,
        )
    from .http import HTTPAgentTarget

    return HTTPAgentTarget(
        normalised,
        allowed_hosts=list(allowed_hosts),
        max_response_bytes=max_response_bytes,
        secrets=secrets,
    )
