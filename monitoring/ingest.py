"""Streaming parsers and per-record validation for decision ingestion.

Why: a client may post thousands of decisions in one request, and a hostile one a gigabyte.
Nothing here reads the whole body: JSONL is read line by line with a bounded ``readline``,
a JSON array is split into its top-level elements by a small byte scanner, and each record is
validated on its own so one bad line is reported (with its number) while the rest are kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

CHUNK = 64 * 1024
HASH_RE = re.compile(r"^[0-9a-f]{64}$")
KEY_RE = re.compile(r"^[\x21-\x7e]{1,128}$")
FIELDS = {
    "timestamp",
    "environment",
    "protocol_sha256",
    "input",
    "output",
    "reasoning",
    "model_label",
    "idempotency_key",
    "probe",
}


def max_line() -> int:
    return settings.MONITORING_MAX_LINE_BYTES


class LineTooLong(ValueError):
    pass


def jsonl_records(stream) -> Iterator[tuple[int, bytes | Exception]]:
    """(line number, raw bytes) per non-blank line; an over-long line is skipped to its end
    and yielded as :class:`LineTooLong` (memory stays bounded by the line cap)."""
    limit = max_line()
    number = 0
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        number += 1
        if len(line) > limit and not line.endswith(b"\n"):
            while True:  # discard the rest of this line
                rest = stream.readline(CHUNK)
                if not rest or rest.endswith(b"\n"):
                    break
            yield number, LineTooLong(f"line longer than {limit} bytes")
            continue
        if line.strip():
            yield number, line


def json_array_records(stream) -> Iterator[tuple[int, bytes | Exception]]:
    """(element number, raw bytes) per top-level element of a JSON array, scanning bytes.

    Tracks string/escape state and nesting depth only; each element is parsed later by
    orjson. An element over the line cap is skipped and reported; a body that is not an
    array yields one error.
    """
    limit = max_line()
    started = False
    depth = 0
    in_string = escape = False
    buf = bytearray()
    too_long = False
    number = 0
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        for byte in chunk:
            if not started:
                if byte in b" \t\r\n":
                    continue
                if byte != ord("["):
                    yield 1, ValueError("the body is not a JSON array")
                    return
                started = True
                continue
            if in_string:
                if escape:
                    escape = False
                elif byte == 0x5C:
                    escape = True
                elif byte == 0x22:
                    in_string = False
            elif byte == 0x22:
                in_string = True
            elif byte in b"[{":
                depth += 1
            elif byte in b"]}":
                if depth == 0:  # the closing bracket of the array
                    if buf.strip():
                        number += 1
                        yield number, (LineTooLong("element too long") if too_long else bytes(buf))
                    return
                depth -= 1
            elif byte == 0x2C and depth == 0:
                number += 1
                yield number, (LineTooLong("element too long") if too_long else bytes(buf))
                buf.clear()
                too_long = False
                continue
            if too_long:
                continue
            buf.append(byte)
            if len(buf) > limit:
                too_long = True
                buf.clear()
    yield number + 1, ValueError("the JSON array is not closed")


@dataclass
class Valid:
    """One validated decision (not yet saved)."""

    idempotency_key: str
    environment: str
    protocol_sha256: str
    timestamp: datetime
    input_text: str
    output_text: str
    output_truncated: bool
    reasoning: str
    model_label: str
    is_probe: bool


@dataclass(frozen=True)
class Limits:
    """The settings validation needs, read once per request (not per record)."""

    max_text: int
    latest: datetime
    earliest: datetime
    max_age_days: int

    @classmethod
    def at(cls, now: datetime) -> Limits:
        return cls(
            max_text=settings.MONITORING_MAX_TEXT_CHARS,
            latest=now + timedelta(seconds=settings.MONITORING_MAX_CLOCK_SKEW_S),
            earliest=now - timedelta(days=settings.MONITORING_MAX_AGE_DAYS),
            max_age_days=settings.MONITORING_MAX_AGE_DAYS,
        )


def _text(record: dict, name: str, cap: int) -> tuple[str, bool]:
    value = record.get(name)
    if value is None:
        return "", False
    if not isinstance(value, str):
        raise ValueError(f"{name}: must be a string or null")
    if "\x00" in value:
        raise ValueError(f"{name}: contains a NUL character")
    if len(value) > cap:
        return value[:cap], True
    return value, False


def validate(
    raw: bytes, *, environments: set[str], now: datetime, limits: Limits | None = None
) -> Valid:
    """Parse and check one record; raises ValueError with a reason in words. Text over the
    cap is truncated (``output_truncated`` says so for the output)."""
    limits = limits or Limits.at(now)
    if b"\x00" in raw:
        raise ValueError("contains a NUL byte")
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise ValueError(f"not valid JSON ({error.args[0]})") from None
    if not isinstance(record, dict):
        raise ValueError("a decision must be a JSON object")
    unknown = set(record) - FIELDS
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown)[:5])}")
    key = record.get("idempotency_key")
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise ValueError("idempotency_key: required, 1-128 printable ASCII characters")
    env = record.get("environment")
    if not isinstance(env, str) or env not in environments:
        shown = env if isinstance(env, str) else type(env).__name__
        raise ValueError(
            f"environment: unknown environment {shown[:50]!r} "
            f"(known: {', '.join(sorted(environments))})"
        )
    digest = record.get("protocol_sha256")
    if not isinstance(digest, str) or not HASH_RE.match(digest):
        raise ValueError("protocol_sha256: required, 64 lowercase hex characters")
    stamp = record.get("timestamp")
    parsed = parse_datetime(stamp) if isinstance(stamp, str) and len(stamp) < 40 else None
    if parsed is None:
        raise ValueError("timestamp: required, ISO 8601 with a UTC offset")
    if timezone.is_naive(parsed):
        raise ValueError("timestamp: needs a UTC offset (e.g. Z)")
    if parsed > limits.latest:
        raise ValueError("timestamp: in the future")
    if parsed < limits.earliest:
        raise ValueError(f"timestamp: older than {limits.max_age_days} days")
    input_text, _ = _text(record, "input", limits.max_text)
    output_text, truncated = _text(record, "output", limits.max_text)
    reasoning, _ = _text(record, "reasoning", limits.max_text)
    label = record.get("model_label") or ""
    if not isinstance(label, str) or len(label) > 100 or "\x00" in label:
        raise ValueError("model_label: a string of at most 100 characters")
    probe = record.get("probe", False)
    if not isinstance(probe, bool):
        raise ValueError("probe: true or false")
    return Valid(
        idempotency_key=key,
        environment=env,
        protocol_sha256=digest,
        timestamp=parsed,
        input_text=input_text,
        output_text=output_text,
        output_truncated=truncated,
        reasoning=reasoning,
        model_label=label,
        is_probe=probe,
    )
