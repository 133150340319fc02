"""Request parsers that keep the exact text a client sent.

Why: a suite's schema errors name the line they are on, and the stored suite keeps its source
exactly as uploaded, so the suite API needs the request body as text, not only as the parsed
value. ``YAMLParser`` handles ``Content-Type: application/yaml`` (and the older
``application/x-yaml`` / ``text/yaml``); ``SourceJSONParser`` is DRF's JSON parser that also
remembers the text.
"""

from __future__ import annotations

import codecs
from functools import cached_property

import yaml
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser, JSONParser

from core import limits

MAX_SOURCE_BYTES = 2_000_000


def _read(stream, parser_context) -> str:
    parser_context = parser_context or {}
    encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
    raw = stream.read(MAX_SOURCE_BYTES + 1) if stream is not None else b""
    if len(raw) > MAX_SOURCE_BYTES:
        raise ParseError(f"The request body is larger than {MAX_SOURCE_BYTES} bytes.")
    try:
        return codecs.decode(raw, encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise ParseError(f"The request body is not valid {encoding} text: {exc}")


class YAMLDocument:
    """A YAML request body: the text as sent, parsed only when someone asks for ``value``.

    (Not ``data``: DRF treats a parse result with ``data`` and ``files`` as DataAndFiles.)
    """

    format = "yaml"

    def __init__(self, text: str):
        self.source_text = text

    @cached_property
    def value(self):
        limits.check_yaml(self.source_text, what="The YAML body")
        try:
            return yaml.safe_load(self.source_text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ParseError(f"YAML parse error{where}: {getattr(exc, 'problem', exc)}")

    def __repr__(self):
        return f"YAMLDocument({len(self.source_text)} characters)"


class JSONBody(dict):
    """A JSON object request body that also carries the text it was parsed from."""

    format = "json"
    source_text = ""


class YAMLParser(BaseParser):
    """``application/yaml`` -> :class:`YAMLDocument` (text kept; parsed lazily and safely)."""

    media_type = "application/yaml"

    def parse(self, stream, media_type=None, parser_context=None):
        return YAMLDocument(_read(stream, parser_context))


class XYAMLParser(YAMLParser):
    media_type = "application/x-yaml"


class TextYAMLParser(YAMLParser):
    media_type = "text/yaml"


class SourceJSONParser(JSONParser):
    """DRF's JSON parser, but an object body comes back as :class:`JSONBody` with its text."""

    def parse(self, stream, media_type=None, parser_context=None):
        text = _read(stream, parser_context)
        try:
            value = limits.loads(text, what="The JSON body") if text.strip() else {}
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}")
        if isinstance(value, dict):
            body = JSONBody(value)
            body.source_text = text
            return body
        return value


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")
