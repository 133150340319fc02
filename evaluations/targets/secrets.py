"""Secrets by reference: how a target or judge gets a key without any config naming where
the worker keeps it. See docs/SECRETS.md for the threat model.

A config names a *registered* secret (``api_key_secret: "openai-prod"``, or
``headers_secret: {"X-Api-Key": "agent-key"}``); the registry (an admin-managed table,
``evaluations.models.RegisteredSecret``) says where its value lives (an environment variable
or a key of the secrets file) and which systems and suites may use it. The services look the
rows up and check the allow-list once, when a target is built, and hand the target a
:class:`SecretResolver` that can read exactly those values and nothing else. Targets never
read ``os.environ`` themselves.

This module has no ORM: the resolver is built from plain ``{name: (source, key)}`` pairs so
it can run inside the workers' event loop.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SECRET_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,79}$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
SOURCES = ("env", "file")
MIN_SECRET_CHARS = 8
"""Registered values shorter than this are not searched for inside other text (a 3-character
"secret" would match everywhere); they are still refused as exact field values."""

# Shapes of well-known credentials. A target's free-form fields (extra_body, header maps) are
# sent to a remote host and read back by every user, so a value that looks like one of these
# is refused even when it is not registered.
SECRET_SHAPES = re.compile(
    r"(?:^|[^A-Za-z0-9])(?:sk|rk|pk)[-_](?:live|test|proj|ant|[A-Za-z0-9]{2})[-_A-Za-z0-9]{8,}"
    r"|\bsk-[A-Za-z0-9_-]{16,}"
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"
    r"|\bgithub_pat_[A-Za-z0-9_]{20,}"
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"
    r"|\bAKIA[0-9A-Z]{16}\b"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\."
    r"|\bBearer\s+\S{8,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----",
)


class SecretError(Exception):
    """A registered secret cannot be read (unset variable, missing file or key). The message
    names the secret and where it should be, never a value."""


def read_secret(source: str, key: str, *, secrets_file: str | None) -> str:
    """The value of one registered secret, read now (so rotating it needs no restart)."""
    if source == "env":
        value = os.environ.get(key)
        if not value:
            raise SecretError(f"the environment variable {key} is not set on this worker")
        return value
    if source == "file":
        return _file_values(secrets_file).get(key) or _missing_file_key(key, secrets_file)
    raise SecretError(f"unknown secret source {source!r}")


def _missing_file_key(key: str, secrets_file: str | None) -> str:
    raise SecretError(f"the secrets file has no non-empty key {key!r} ({secrets_file or 'unset'})")


def _file_values(secrets_file: str | None) -> dict[str, str]:
    """The secrets file: a JSON object of strings, or ``KEY=value`` lines (``#`` comments)."""
    if not secrets_file:
        raise SecretError("no secrets file is configured (EVAL_SECRETS_FILE)")
    try:
        text = Path(secrets_file).read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretError(f"cannot read the secrets file: {exc.strerror or exc}") from None
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            raise SecretError("the secrets file is not valid JSON") from None
        return {str(k): v for k, v in data.items() if isinstance(v, str)}
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


class SecretResolver:
    """Reads the values of the secrets one target may use, and only those.

    ``sources`` is ``{registered name: (source, key)}`` as checked against the allow-list by
    the caller. Asking for any other name is an error, whatever the config says.
    """

    def __init__(self, sources: Mapping[str, tuple[str, str]], *, secrets_file: str | None):
        self._sources = dict(sources)
        self._file = secrets_file

    def __call__(self, name: str) -> str:
        if name not in self._sources:
            raise SecretError(f"secret {name!r} was not granted to this target")
        source, key = self._sources[name]
        try:
            return read_secret(source, key, secrets_file=self._file)
        except SecretError as exc:
            raise SecretError(f"secret {name!r}: {exc}") from None

    def identity(self) -> list:
        """What the resolver can read, for cache keys (names and sources, never values)."""
        return sorted([name, *pair] for name, pair in self._sources.items())


NO_SECRETS = SecretResolver({}, secrets_file=None)


def secret_refs(config: Mapping) -> list[str]:
    """Registered-secret names a (validated) target config refers to."""
    names = []
    if isinstance(config.get("api_key_secret"), str):
        names.append(config["api_key_secret"])
    headers = config.get("headers_secret")
    if isinstance(headers, Mapping):
        names.extend(v for v in headers.values() if isinstance(v, str))
    return names


def strings_in(value: Any, path: str = "") -> Iterable[tuple[str, str]]:
    """Every ``(path, string)`` in a JSON-like value, keys included."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield f"{path}.{k}" if path else str(k), str(k)
            yield from strings_in(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from strings_in(v, f"{path}[{i}]")


def leaked_values(value: Any, secrets: Iterable[str]) -> list[str]:
    """Paths of strings in ``value`` that equal or contain one of ``secrets``. The message a
    caller builds from this names the path, never which secret matched."""
    needles = [s for s in secrets if s]
    found = []
    for path, text in strings_in(value):
        if any(text == s or (len(s) >= MIN_SECRET_CHARS and s in text) for s in needles):
            found.append(path or "document")
    return list(dict.fromkeys(found))


def secret_shaped(value: Any) -> list[str]:
    """Paths of strings in ``value`` shaped like a well-known credential."""
    return list(
        dict.fromkeys(p or "value" for p, t in strings_in(value) if SECRET_SHAPES.search(t))
    )
