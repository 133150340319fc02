"""Input limits checked before anything is parsed: body size, JSON and YAML nesting and size.

The red team's inputs: deeply nested JSON (a ``RecursionError`` in ``json.loads``, a 500 on
every endpoint, the unauthenticated token endpoint included), deeply nested YAML (9 s of CPU
and ~2,900 log lines per request in PyYAML's recursive composer) and a 300 MB suite upload
read into memory before it was refused. Each check here is linear in the input, never
recursive, and names the limit it enforces. Design notes: ``docs/input-limits.md``.
"""

from __future__ import annotations

import json
import re

import yaml
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import JsonResponse
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def max_depth() -> int:
    return _setting("INPUT_MAX_DEPTH", 64)


def max_json_bytes() -> int:
    return _setting("INPUT_MAX_JSON_BYTES", 2_000_000)


class InputLimitExceeded(ParseError):
    """400 naming the limit; a ``ParseError``, so DRF and our handler answer it as such."""

    default_code = "input_limit"


# --- JSON --------------------------------------------------------------------------------

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def json_depth_exceeds(text: str, limit: int) -> bool:
    """Whether ``text`` nests arrays/objects deeper than ``limit`` (strings are skipped).

    Linear, no recursion. Malformed text is left to the JSON parser to refuse.
    """
    if text.count("[") + text.count("{") <= limit:
        return False  # cannot be deeper than the number of openers
    depth = 0
    for match in _BRACKETS.finditer(_JSON_STRING.sub('""', text)):
        if match.group() in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def check_json(text: str, *, what: str = "JSON") -> None:
    limit = max_depth()
    if len(text) > max_json_bytes():
        raise InputLimitExceeded(
            f"{what} is larger than {max_json_bytes()} bytes (INPUT_MAX_JSON_BYTES)."
        )
    if json_depth_exceeds(text, limit):
        raise InputLimitExceeded(f"{what} is nested deeper than {limit} levels (INPUT_MAX_DEPTH).")


def loads(text: str, *, what: str = "JSON"):
    """``json.loads`` after the limits; a NaN or Infinity constant is refused, not parsed."""
    check_json(text, what=what)
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:  # a limit set above what the interpreter can parse
        raise InputLimitExceeded(f"{what} is nested too deeply to parse.") from None


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


# --- YAML --------------------------------------------------------------------------------


def check_yaml(text: str, *, what: str = "YAML") -> None:
    """Refuse YAML nested deeper than ``INPUT_MAX_DEPTH`` or with more than
    ``INPUT_MAX_YAML_EVENTS`` nodes, by walking the parser's event stream (a state machine,
    not recursive) and stopping at the first excess: nothing is composed or constructed.
    Syntax errors are left to the real parse, which reports them with their line.
    """
    limit = max_depth()
    max_events = _setting("INPUT_MAX_YAML_EVENTS", 400_000)
    if len(text) > max_json_bytes():
        raise InputLimitExceeded(
            f"{what} is larger than {max_json_bytes()} bytes (INPUT_MAX_JSON_BYTES)."
        )
    depth = events = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            events += 1
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > limit:
                    raise InputLimitExceeded(
                        f"{what} is nested deeper than {limit} levels (INPUT_MAX_DEPTH)."
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            if events > max_events:
                raise InputLimitExceeded(
                    f"{what} has more than {max_events} nodes (INPUT_MAX_YAML_EVENTS)."
                )
    except yaml.YAMLError:
        return


class LimitedJSONFormField(forms.JSONField):
    """Django's form JSONField with the limits first: ``json.loads`` on deep input raised
    ``RecursionError`` (a 500) instead of a form error. Used by every project admin."""

    def to_python(self, value):
        if isinstance(value, str) and value:
            try:
                check_json(value, what="This JSON")
            except InputLimitExceeded as exc:
                raise ValidationError(str(exc.detail), code="input_limit") from None
        return super().to_python(value)

    def bound_data(self, data, initial):
        # Re-showing the refused input must not parse it either.
        if isinstance(data, str) and data and not self.disabled:
            try:
                check_json(data, what="This JSON")
            except InputLimitExceeded:
                return forms.fields.InvalidJSONInput(data)
        return super().bound_data(data, initial)


# --- request parsing ---------------------------------------------------------------------


def read_capped(stream, limit: int, *, what: str = "The request body") -> bytes:
    raw = stream.read(limit + 1) if stream is not None else b""
    if len(raw) > limit:
        raise InputLimitExceeded(f"{what} is larger than {limit} bytes (INPUT_MAX_JSON_BYTES).")
    return raw


class LimitedJSONParser(JSONParser):
    """DRF's JSON parser with the size and depth limits checked before parsing."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        raw = read_capped(stream, max_json_bytes())
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"JSON parse error - the body is not valid {encoding}: {exc}")
        try:
            return loads(text, what="The JSON body")
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}")


# --- the whole request --------------------------------------------------------------------


def max_request_bytes() -> int:
    return _setting("REQUEST_MAX_BYTES", 64 * 1024 * 1024)


#: Endpoints that read their body as a bounded stream under a cap of their own (live decision
#: ingestion, OTLP): the global cap would stop a large stream they are built to take.
STREAMED_BODY_PATHS = re.compile(r"^/api/v1/systems/\d+/(decisions/|otlp/v1/traces$)")


class RequestSizeLimitMiddleware:
    """Refuse a request whose declared body is over ``REQUEST_MAX_BYTES`` from its
    ``Content-Length`` alone (413), before anything reads it; streamed endpoints
    (``STREAMED_BODY_PATHS``) apply their own cap."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if STREAMED_BODY_PATHS.match(request.path_info):
            return self.get_response(request)
        declared = request.META.get("CONTENT_LENGTH") or ""
        limit = max_request_bytes()
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            return JsonResponse(
                {
                    "detail": f"The request body is larger than {limit} bytes "
                    "(REQUEST_MAX_BYTES); it was not read.",
                    "code": "request_too_large",
                },
                status=413,
            )
        return self.get_response(request)


class CappedUploadHandler(FileUploadHandler):
    """First upload handler: stops a file at ``FILE_UPLOAD_MAX_BYTES`` while it streams in.

    Covers bodies whose size was not declared up front; Django then stops reading the
    request (``connection_reset``) instead of spooling the rest to disk.
    """

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > _setting("FILE_UPLOAD_MAX_BYTES", 20 * 1024 * 1024):
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size):
        return None
