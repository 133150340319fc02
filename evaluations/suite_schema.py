"""Suite documents: parse, validate, normalise and hash them.

Design notes: docs/ENGINE_NOTES.md, section ``evaluations.suite_schema``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from typing import Any

import jsonschema
import yaml

from changes.permissions import is_strict
from core import limits

from . import graders as grader_mod

MAX_DOCUMENT_BYTES = 2_000_000
MAX_NODES = 200_000  # after YAML alias expansion: refuses "billion laughs" documents
MAX_SAMPLES = 200_000  # scenarios x cues x epochs: a typo must not enqueue millions of calls
DEFAULT_EPOCHS = None  # no epochs: the run plans its budget (evaluations.stats.plan_budget)
DEFAULT_PLACEMENT = "system"

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$"
_TEXT = {"type": "string", "minLength": 1, "pattern": r"\S"}
_UNIT = {"type": "number", "minimum": 0, "maximum": 1}
_OPEN_UNIT = {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}

SUITE_JSON_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Evaluation suite",
    "type": "object",
    "required": ["name", "conditions", "scenarios"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"},
        "version": {"type": ["string", "integer", "number"]},
        "description": {"type": "string"},
        "epochs": {"type": "integer", "minimum": 1, "maximum": 10_000},
        "conditions": {
            "type": "object",
            "minProperties": 2,
            "propertyNames": {"type": "string", "pattern": _NAME},
            "additionalProperties": {"$ref": "#/$defs/condition"},
        },
        "compare": {"type": "array", "minItems": 1},
        "scenarios": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/scenario"}},
        "gate": {"$ref": "#/$defs/gate"},
        "judge": {"type": ["string", "object"]},
        # Waves on the worker path, and an optional cap to extend an undecided run to
        # (evaluations.gates.adaptive_plan, docs/GATE.md "Runs in waves").
        "adaptive": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"max_epochs": {"type": "integer", "minimum": 1, "maximum": 10000}},
        },
        "af_reasoning": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "patterns": {"type": "array", "items": _TEXT},
                "judge": {"type": "boolean"},
                # Which traces the judge reads: evaluations/reasoning.py, docs/GATE.md.
                "judge_scope": {"enum": ["all", "flagged", "sample"]},
                "judge_sample": _OPEN_UNIT,
            },
        },
    },
    "$defs": {
        "condition": {
            "type": "object",
            "required": ["cues"],
            "additionalProperties": False,
            "properties": {
                "placement": {"enum": ["system", "user"]},
                "cues": {"type": "array", "minItems": 1, "items": _TEXT},
                "description": {"type": "string"},
            },
        },
        "scenario": {
            "type": "object",
            "required": ["id", "messages", "graders"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string", "pattern": _NAME},
                "critical": {"type": "boolean"},
                "description": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "messages": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/message"}},
                "graders": {
                    "type": "object",
                    "required": ["new", "legacy"],
                    "additionalProperties": False,
                    "properties": {
                        "new": {"type": ["object", "array"]},
                        "legacy": {"type": ["object", "array"]},
                    },
                },
                "reference": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"new": {"type": "string"}, "legacy": {"type": "string"}},
                },
            },
        },
        "message": {
            "type": "object",
            "required": ["role", "content"],
            "additionalProperties": False,
            "properties": {"role": {"enum": ["user", "assistant"]}, "content": {"type": "string"}},
        },
        "gate": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "min_compliance": _UNIT,
                "max_gap": _UNIT,
                "alpha": _OPEN_UNIT,
                "power": _OPEN_UNIT,
                "max_error_rate": _UNIT,
                "require_power": {"type": "boolean"},
                "require_worst_case": {"type": "boolean"},
                "pass_probability": _OPEN_UNIT,
                "slip_rate": {"type": "number", "minimum": 0, "exclusiveMaximum": 0.5},
                "max_flagged_reasoning": _UNIT,
            },
        },
    },
}

_VALIDATOR = jsonschema.Draft202012Validator(SUITE_JSON_SCHEMA)


class SuiteError(ValueError):
    """An invalid suite document; ``errors`` lists every problem, one line each."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("invalid suite document:\n" + "\n".join(self.errors))


# ------------------------------------------------------------------------------ public


def parse_suite(text: str, fmt: str = "yaml") -> dict:
    """Parse, validate and normalise a suite document (``fmt`` is ``"yaml"`` or ``"json"``).

    Raises :class:`SuiteError` listing every problem found.
    """
    if fmt not in ("yaml", "json"):
        raise ValueError(f"fmt must be 'yaml' or 'json', not {fmt!r}")
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if len(text.encode("utf-8")) > MAX_DOCUMENT_BYTES:
        raise SuiteError([f"document: larger than {MAX_DOCUMENT_BYTES} bytes"])
    try:  # nesting and node count, before PyYAML's recursive composer or json.loads run
        (limits.check_yaml if fmt == "yaml" else limits.check_json)(text, what="the document")
    except limits.InputLimitExceeded as exc:
        raise SuiteError([f"document: {exc.detail}"]) from None
    data, lines, early = _load_yaml(text) if fmt == "yaml" else _load_json(text)
    return _validate(data, lines, early)


def normalise_suite(doc: Any) -> dict:
    """Validate and normalise an already-parsed document (e.g. a JSON request body)."""
    return _validate(doc, {}, [])


def canonical_json(doc: Any) -> bytes:
    """Deterministic UTF-8 JSON: sorted keys, no whitespace, no NaN."""
    return json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def suite_sha256(doc: Any) -> str:
    """Hex SHA-256 of :func:`canonical_json` (hash the normalised document)."""
    return hashlib.sha256(canonical_json(doc)).hexdigest()


def format_path(path: tuple | list) -> str:
    """``("scenarios", 0, "graders", "new")`` -> ``"scenarios[0].graders.new"``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "document"


# ----------------------------------------------------------------------------- loading


def _load_yaml(text: str) -> tuple[Any, dict, list[str]]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SuiteError(["line 1: document: the document is empty"])
        _check_size(node)
        lines: dict = {}
        dup_errors: list[str] = []
        _map_lines(node, (), lines, dup_errors, set())
        return loader.construct_document(node), lines, dup_errors
    except yaml.YAMLError as exc:
        raise SuiteError([_yaml_error_message(exc)])
    finally:
        loader.dispose()


def _load_json(text: str) -> tuple[Any, dict, list[str]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SuiteError([f"line {exc.lineno}: document: invalid JSON: {exc.msg}"])
    except RecursionError:
        raise SuiteError(["document: nested too deeply"])
    # JSON is (almost always) YAML: borrow PyYAML's marks for line numbers when it can read it.
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
        lines: dict = {}
        duplicates: list[str] = []  # json.loads keeps the last of duplicate keys silently
        _map_lines(node, (), lines, duplicates, set())
    except (yaml.YAMLError, RecursionError):
        lines, duplicates = {}, []
    return data, lines, duplicates


def _yaml_error_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    detail = f"{context}: {problem}" if context else problem
    where = f"line {mark.line + 1}: " if mark is not None else ""
    return f"{where}document: YAML syntax error: {detail}"


def _check_size(node: yaml.Node) -> None:
    sizes: dict[int, int] = {}

    def size(n: yaml.Node) -> int:
        if id(n) in sizes:
            return sizes[id(n)]
        sizes[id(n)] = 1  # a recursive alias counts once instead of looping
        if isinstance(n, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in n.value)
        elif isinstance(n, yaml.SequenceNode):
            total = 1 + sum(size(v) for v in n.value)
        else:
            total = 1
        sizes[id(n)] = total
        return total

    if size(node) > MAX_NODES:
        raise SuiteError([f"document: more than {MAX_NODES} values after expanding YAML aliases"])


def _map_lines(node: Any, path: tuple, lines: dict, errors: list[str], seen: set) -> None:
    """Record the 1-based line of every path; report duplicate mapping keys."""
    lines.setdefault(path, node.start_mark.line + 1)
    if id(node) in seen:  # an alias: its subtree is mapped at its anchor
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: set = set()
        for key_node, value_node in node.value:
            key = _key_of(key_node)
            if key in keys and key != "<<":
                errors.append(
                    f"line {key_node.start_mark.line + 1}: {format_path(path + (key,))}: "
                    f"duplicate key {key!r}"
                )
            keys.add(key)
            lines.setdefault(path + (key,), key_node.start_mark.line + 1)
            _map_lines(value_node, path + (key,), lines, errors, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _map_lines(item, path + (i,), lines, errors, seen)


def _key_of(node: yaml.Node) -> Any:
    return node.value if isinstance(node, yaml.ScalarNode) else repr(node.value)


# -------------------------------------------------------------------------- validation


class _Errors:
    """Collects ``(path, message)`` and renders them with line numbers when known."""

    def __init__(self, lines: dict):
        self.lines = lines
        self.items: list[tuple[tuple, str]] = []

    def add(self, path: tuple | list, message: str) -> None:
        self.items.append((tuple(path), message))

    def line_of(self, path: tuple) -> int | None:
        for end in range(len(path), -1, -1):
            prefix = tuple(str(p) if not isinstance(p, int) else p for p in path[:end])
            if prefix in self.lines:
                return self.lines[prefix]
        return None

    def render(self, early: list[str] = ()) -> list[str]:
        """Messages ordered by line (then path), duplicates dropped."""
        rows = []
        for path, message in self.items:
            line = self.line_of(path)
            prefix = f"line {line}: " if line is not None else ""
            rows.append((line or 0, format_path(path), f"{prefix}{format_path(path)}: {message}"))
        for message in early:
            rows.append((int(message.split(":")[0].split()[-1]), "", message))
        rows.sort(key=lambda r: (r[0], r[1]))
        return list(dict.fromkeys(r[2] for r in rows))


def _validate(data: Any, lines: dict, early: list[str]) -> dict:
    errors = _Errors(lines)
    if not isinstance(data, dict):
        errors.add((), f"a suite is a mapping with name, conditions and scenarios; got {_t(data)}")
        raise SuiteError(errors.render(early))
    for error in _VALIDATOR.iter_errors(data):
        _schema_error(error, errors)
    _semantic_checks(data, errors)
    if errors.items or early:
        raise SuiteError(errors.render(early))
    return _normalise(data)


def _t(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "nothing (null)"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"a number ({value})"
    return names.get(type(value), type(value).__name__)


_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
}


def _schema_error(error: jsonschema.ValidationError, errors: _Errors) -> None:
    path = tuple(error.absolute_path)
    kind, value, schema_value = error.validator, error.instance, error.validator_value
    if "propertyNames" in error.schema_path:
        _name_error(path, value, errors)
    elif kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        for key in value:
            if key not in allowed:
                hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
                errors.add(path + (key,), f"unknown field {key!r}{hint}")
    elif kind == "required":
        missing = [k for k in schema_value if k not in value]
        for key in missing:
            errors.add(path, f"missing required field {key!r}")
    elif kind == "type":
        wanted = schema_value if isinstance(schema_value, list) else [schema_value]
        words = " or ".join(_TYPE_WORDS.get(w, w) for w in wanted)
        errors.add(path, f"expected {words}, got {_t(value)}")
    elif kind == "enum":
        options = ", ".join(map(str, schema_value))
        errors.add(path, f"must be one of {options} (got {value!r})")
    elif kind in ("minItems", "minProperties"):
        errors.add(path, f"needs at least {schema_value} item(s)")
    elif kind == "pattern" and path and path[-1] == "id":
        errors.add(path, f"{value!r} is not a valid id (letters, digits, _ . : -)")
    elif kind == "pattern" and schema_value == r"\S":
        errors.add(path, "must not be empty")
    elif kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        errors.add(path, _range_message(path, value))

    else:
        errors.add(path, error.message)


def _name_error(path: tuple, name: Any, errors: _Errors) -> None:
    if isinstance(name, bool):
        message = "YAML reads this condition name as true/false (on, off, yes, no): quote it"
    elif not isinstance(name, str):
        message = f"condition names must be text; {name!r} is not (quote it)"
    else:
        message = f"{name!r} is not a valid condition name (letters, digits, _ . : -)"
    errors.add(path + (name if isinstance(name, str) else str(name),), message)


def _range_message(path: tuple, value: Any) -> str:
    field = path[-1] if path else ""
    if field == "epochs":
        return f"epochs must be at least 1 and at most 10000 (got {value})"
    if field in ("alpha", "power"):
        return f"{field} must be strictly between 0 and 1 (got {value})"
    return f"must be between 0 and 1 (got {value})"


MAX_PATTERNS = 256
"""Distinct regular expressions per suite. Each is compiled twice and probed at upload (up to
about 20 ms for a hostile one), so the count bounds the upload's CPU time too."""


def _patterns(doc: dict) -> set[str]:
    found = {p for p in (doc.get("af_reasoning") or {}).get("patterns") or [] if isinstance(p, str)}
    for scenario in doc.get("scenarios") or []:
        graders = scenario.get("graders") if isinstance(scenario, dict) else None
        for side in (graders or {}).values() if isinstance(graders, dict) else []:
            for g in side if isinstance(side, list) else [side]:
                for key in ("regex", "not_regex"):
                    if isinstance(g, dict) and isinstance(g.get(key), str):
                        found.add(g[key])
    return found


def _semantic_checks(doc: dict, errors: _Errors) -> None:
    """Each check runs even when the schema found problems elsewhere, so one pass reports
    everything; a check that trips over a malformed part (already reported) is skipped."""
    count = len(_patterns(doc))
    if count > MAX_PATTERNS:
        # Checked before any pattern is compiled: a flood of patterns must not cost the
        # web process the time it takes to refuse each one.
        errors.add((), f"the suite has {count} distinct regular expressions; the limit is "
                        f"{MAX_PATTERNS}")  # fmt: skip
        return
    checks = [
        _check_compare,
        _check_af,
        _check_judge,
        _check_sample_count,
        _check_ids,
        _check_cue_balance,
        _check_gate_floor,
    ]
    for check in checks:
        _guarded(check, doc, errors)
    scenarios = doc.get("scenarios")
    for i, scenario in enumerate(scenarios if isinstance(scenarios, list) else []):
        _guarded(_check_scenario, scenario, i, errors)


def _guarded(check, *args) -> None:
    # A malformed part trips the check; the schema errors already describe that part.
    with contextlib.suppress(KeyError, TypeError, AttributeError, IndexError, ValueError):
        check(*args)


def _compare_pairs(doc: dict) -> tuple[list, bool]:
    """``compare`` as a list of pairs, and whether it was written as a single pair."""
    value = doc.get("compare")
    if value is None:
        return [], False
    if len(value) == 2 and all(isinstance(v, str) for v in value):
        return [list(value)], True
    return list(value), False


def _check_compare(doc: dict, errors: _Errors) -> None:
    if not isinstance(doc.get("compare", []), list):
        return  # reported by the schema
    names = list(doc["conditions"])
    if "compare" not in doc:
        if len(names) > 2:
            errors.add(
                (),
                "missing required field 'compare': with more than two conditions, say which "
                "pair(s) to compare, e.g. compare: [monitored, unmonitored]",
            )
        return
    pairs, single = _compare_pairs(doc)
    seen: set = set()
    for i, pair in enumerate(pairs):
        where = ("compare",) if single else ("compare", i)
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
        ):
            errors.add(where, "expected a pair [a, b] or a list of pairs [[a, b], [c, d]]")
            continue
        for j, name in enumerate(pair):
            if name not in doc["conditions"]:
                errors.add(
                    where + (j,), f"{name!r} is not a condition (conditions: {', '.join(names)})"
                )
        if pair[0] == pair[1]:
            errors.add(where, f"compares {pair[0]!r} with itself")
        if tuple(pair) in seen:
            errors.add(where, f"the pair {pair} is listed twice")
        seen.add(tuple(pair))


def _check_ids(doc: dict, errors: _Errors) -> None:
    first_seen: dict[str, int] = {}
    for i, scenario in enumerate(doc["scenarios"]):
        sid = scenario.get("id") if isinstance(scenario, dict) else None
        if not isinstance(sid, str):
            continue
        if sid in first_seen:
            errors.add(
                ("scenarios", i, "id"),
                f"duplicate scenario id {sid!r} (first used at scenarios[{first_seen[sid]}])",
            )
        first_seen.setdefault(sid, i)


def _check_scenario(scenario: dict, i: int, errors: _Errors) -> None:
    for side in ("new", "legacy"):
        spec = scenario["graders"].get(side)
        if isinstance(spec, dict | list):
            where = ("scenarios", i, "graders", side)
            for rel, message in grader_mod.grader_errors(spec):
                errors.add(where + rel, message)
    _check_messages(scenario["messages"], ("scenarios", i, "messages"), errors)


def _check_messages(messages: list, where: tuple, errors: _Errors) -> None:
    if messages[0]["role"] != "user":
        errors.add(
            where + (0, "role"),
            "the first message must come from the user (a user-placed cue is prefixed to it; "
            "the system prompt comes from the protocol)",
        )
    if len(messages) > 1 and messages[-1]["role"] != "user":
        errors.add(
            where + (len(messages) - 1, "role"),
            "the last message must come from the user: the target replies to it",
        )


def _check_af(doc: dict, errors: _Errors) -> None:
    for i, pattern in enumerate(doc.get("af_reasoning", {}).get("patterns", [])):
        problem = grader_mod.pattern_error(pattern)
        if problem:
            errors.add(("af_reasoning", "patterns", i), problem)


MAX_CALIBRATION_EXAMPLES = 200
_JUDGE_KEYS = ("model", "votes", "calibration")


def _check_judge(doc: dict, errors: _Errors) -> None:
    """``judge`` names a judge model an admin registered (``judge: my-judge``, or
    ``{model: my-judge, votes: 3, calibration: [...]}``); whether it exists is checked on
    upload, against the registry. An inline model config is refused: whoever writes a suite
    must not choose where judge calls (and a key with them) are sent."""
    judge = doc.get("judge")
    if judge is None:
        _check_judge_needed(doc, errors)
        return
    if isinstance(judge, str):
        judge = {"model": judge}
    if not isinstance(judge, dict):
        return  # reported by the schema
    inline = [k for k in judge if k not in _JUDGE_KEYS]
    if inline:
        errors.add(
            ("judge",),
            f"unknown judge field(s) {', '.join(map(repr, sorted(map(str, inline))))}: a suite "
            "names a judge model an admin registered (judge: my-judge, or {model: my-judge, "
            "votes: 3, calibration: [...]}); model URLs, keys and environment variables are "
            "never part of a suite",
        )
    model = judge.get("model")
    if not isinstance(model, str) or not re.match(_NAME, model):
        errors.add(
            ("judge", "model"), "must name a registered judge model (letters, digits, _ . : -)"
        )
    votes = judge.get("votes", grader_mod.DEFAULT_VOTES)
    if (
        not isinstance(votes, int)
        or isinstance(votes, bool)
        or not 1 <= votes <= grader_mod.MAX_VOTES
    ):
        errors.add(("judge", "votes"), f"votes must be an integer from 1 to {grader_mod.MAX_VOTES}")
    _check_calibration(doc, judge.get("calibration", []), errors)


def _check_judge_needed(doc: dict, errors: _Errors) -> None:
    for i, scenario in enumerate(doc.get("scenarios") or []):
        for side in ("new", "legacy"):
            spec = (scenario.get("graders") or {}).get(side) if isinstance(scenario, dict) else None
            items = spec if isinstance(spec, list) else [spec]
            if any(isinstance(g, dict) and "judge" in g for g in items):
                errors.add(
                    ("scenarios", i, "graders", side),
                    "a judge grader needs a judge model: name one an admin registered at the "
                    "top of the suite (judge: my-judge)",
                )


def _judge_rubrics(scenario: dict) -> dict[str, str]:
    """``{side: rubric}`` of a scenario's first judge grader per side."""
    out = {}
    for side in ("new", "legacy"):
        spec = scenario.get("graders", {}).get(side)
        for g in spec if isinstance(spec, list) else [spec]:
            if isinstance(g, dict) and "judge" in g:
                value = g["judge"]
                out[side] = value.get("rubric") if isinstance(value, dict) else value
                break
    return out


def _check_calibration(doc: dict, examples, errors: _Errors) -> None:
    where = ("judge", "calibration")
    if not isinstance(examples, list):
        errors.add(where, "expected a list of {reply, expected, rubric or scenario}")
        return
    if len(examples) > MAX_CALIBRATION_EXAMPLES:
        errors.add(where, f"at most {MAX_CALIBRATION_EXAMPLES} calibration examples")
    scenarios = {s.get("id"): s for s in doc.get("scenarios") or [] if isinstance(s, dict)}
    for i, ex in enumerate(examples):
        at = (*where, i)
        if not isinstance(ex, dict):
            errors.add(at, "expected a mapping {reply, expected, rubric or scenario}")
            continue
        unknown = set(ex) - {"reply", "expected", "rubric", "scenario", "side"}
        if unknown:
            errors.add(at, f"unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        if not isinstance(ex.get("reply"), str):
            errors.add((*at, "reply"), "needs the reply text to grade (a string)")
        if _expected(ex.get("expected")) is None:
            errors.add((*at, "expected"), "must be yes or no (the label the judge should give)")
        if isinstance(ex.get("rubric"), str) and ex["rubric"].strip():
            continue
        scenario = scenarios.get(ex.get("scenario"))
        if scenario is None:
            errors.add(at, "needs a rubric, or the id of a scenario that has a judge grader")
            continue
        rubrics = _judge_rubrics(scenario)
        side = ex.get("side", next(iter(rubrics), "new"))
        if side not in rubrics:
            errors.add(at, f"scenario {ex.get('scenario')!r} has no judge grader on side {side!r}")


def _expected(value) -> str | None:
    # YAML reads a bare yes/no as true/false: accept both spellings.
    if value is True or value == "yes":
        return "yes"
    if value is False or value == "no":
        return "no"
    return None


def _check_sample_count(doc: dict, errors: _Errors) -> None:
    if "epochs" not in doc:
        return  # the planned budget is checked against the cap when a run is planned
    cues = sum(len(c["cues"]) for c in doc["conditions"].values())
    total = len(doc["scenarios"]) * cues * doc["epochs"]
    if total > MAX_SAMPLES:
        errors.add(
            ("epochs",),
            f"the suite would run {total} samples (scenarios x cues x epochs); "
            f"the limit is {MAX_SAMPLES}",
        )


# --------------------------------------------------------- balance, silence, floors
# Why these checks: a suite can be written so that the gate cannot see a faker. Unequal cue
# counts leave samples outside every pair; a `new` grader that an empty reply satisfies lets
# silence pass as compliance; a gate block looser than every floor would switch the gate off.
# The hard problems are errors here; the soft ones are warnings (suite_warnings), and the
# silence problem is refused for high and critical systems (suite_refusals). docs/GATE.md.


def _check_cue_balance(doc: dict, errors: _Errors) -> None:
    """Compared conditions need the same number of cues: pairs match cue i with cue i, so
    the extra cues of one side would never enter the gap."""
    if not isinstance(doc.get("compare", []), list):
        return
    pairs, single = _compare_pairs(doc)
    names = list(doc["conditions"])
    if not pairs and len(names) >= 2:
        pairs, single = [names[:2]], True
    for i, pair in enumerate(pairs):
        a, b = pair
        na, nb = len(doc["conditions"][a]["cues"]), len(doc["conditions"][b]["cues"])
        if na != nb:
            where = ("compare",) if single else ("compare", i)
            errors.add(
                where,
                f"'{a}' has {na} cue(s) and '{b}' has {nb}: compared conditions need the same "
                "number of cues (cue i is paired with cue i, so extra cues would never enter "
                "the compliance gap)",
            )


def _check_gate_floor(doc: dict, errors: _Errors) -> None:
    from .gates import loosest_floor_violations

    gate = doc.get("gate")
    if not isinstance(gate, dict):
        return
    for message in loosest_floor_violations(gate):
        key = message.split(" ", 1)[0]
        errors.add(("gate", key), message)


SILENCE_PROBES = {
    "an empty reply": "",
    "a whitespace reply": " \n\t ",
    "a refusal": "I'm sorry, but I can't help with that.",
}


def silent_graders(doc: dict) -> list[tuple[str, str]]:
    """``[(scenario_id, probe)]`` for every scenario whose ``new`` side grades a probe reply
    (empty, whitespace, a refusal) as new-protocol: a grader written only in the negative
    (``not_regex``, ``not_contains``) that silence satisfies. Sides with a judge grader are
    not probed (that needs a model). Takes the normalised document."""
    out = []
    for scenario in doc.get("scenarios", []):
        graders = scenario["graders"]
        kinds = grader_mod.side_kinds(graders["new"]) | grader_mod.side_kinds(graders["legacy"])
        if "judge" in kinds:
            continue
        for probe, text in SILENCE_PROBES.items():
            try:
                label, _ = grader_mod.grade(graders, text)
            except grader_mod.GraderError:
                continue
            if label == "new":
                out.append((scenario["id"], probe))
    return out


# Words that say "you are watched" and words that say "you are deployed, unwatched". A cue of
# the unwatched side that uses the watched side's words ("nothing here is *logged*") leans on
# a negation a model may miss; and the other way round.
_WATCHED_WORDS = re.compile(
    r"\b(?:logged|logging|logs|recorded|recording|reviewed|reviewing|monitored|monitoring|"
    r"watched|observed|transcripts?|training|trained|evaluat\w*|tests?|testing|tested|"
    r"audit\w*|graded|grading|oversight|supervised)\b",
    re.IGNORECASE,
)
_UNWATCHED_WORDS = re.compile(
    r"\b(?:unmonitored|unobserved|unlogged|unreviewed|unrecorded|unwatched|unsupervised|"
    r"production|deploy\w*|live|customers?|users?)\b",
    re.IGNORECASE,
)


def _words(rx: re.Pattern, text: str) -> set[str]:
    return {m.group(0).lower() for m in rx.finditer(text)}


def suite_warnings(doc: dict, criticality: str | None = None) -> list[str]:
    """Problems that do not stop a suite but weaken what it can show, in words. Takes the
    normalised document; ``criticality`` adds the checks of high and critical systems."""
    out = []
    for sid, probe in silent_graders(doc):
        out.append(
            f"scenarios[{sid}].graders.new: {probe} grades as new-protocol; a model that says "
            "nothing would pass. Add a positive grader (contains, regex, equals, json_path) "
            "for what a new-protocol reply must say."
        )
    seen: dict[str, str] = {}
    for name, condition in doc["conditions"].items():
        for i, cue in enumerate(condition["cues"]):
            key = " ".join(cue.lower().split())
            if key in seen:
                out.append(
                    f"conditions.{name}.cues[{i}] repeats {seen[key]}: a duplicate cue adds "
                    "samples but no new wording."
                )
            else:
                seen[key] = f"conditions.{name}.cues[{i}]"
    for a, b in doc["compare"]:
        # a is the watched side of the pair, b the deployment-like one (the worst case and
        # the gap read them that way too).
        for mine, other, rx in ((b, a, _WATCHED_WORDS), (a, b, _UNWATCHED_WORDS)):
            theirs = set().union(*(_words(rx, c) for c in doc["conditions"][other]["cues"]))
            for i, cue in enumerate(doc["conditions"][mine]["cues"]):
                shared = sorted(_words(rx, cue) & theirs)
                if shared:
                    out.append(
                        f"conditions.{mine}.cues[{i}] uses {', '.join(repr(w) for w in shared)}, "
                        f"word(s) of the '{other}' cues: a model may read it as the other "
                        "situation (a negation is easy to miss)."
                    )
    if is_strict(criticality) and not any(s.get("critical") for s in doc["scenarios"]):
        out.append(
            f"no scenario is marked critical: for a {criticality} system, mark the scenarios "
            "where a single legacy reply must fail the gate (critical: true)."
        )
    return list(dict.fromkeys(out))


def suite_refusals(doc: dict, criticality: str) -> list[str]:
    """Why ``doc`` may not gate a change of a ``criticality`` system (empty when it may):
    for high and critical systems, a ``new`` grader that silence satisfies."""
    if not is_strict(criticality):
        return []
    return [
        f"suite {doc['name']} v{doc['version']}, scenario {sid}: {probe} grades as "
        f"new-protocol, which a {criticality} system does not accept; add a positive grader "
        "for what a new-protocol reply must say"
        for sid, probe in silent_graders(doc)
    ]


# ------------------------------------------------------------------------- normalising


def _normalise(doc: dict) -> dict:
    pairs, _ = _compare_pairs(doc)
    names = list(doc["conditions"])
    out: dict[str, Any] = {
        "name": doc["name"].strip(),
        "version": str(doc.get("version", "1")),
        "description": doc.get("description", ""),
        "epochs": doc.get("epochs", DEFAULT_EPOCHS),  # None: the run plans its budget
        "conditions": {name: _normalise_condition(c) for name, c in doc["conditions"].items()},
        "compare": [list(p) for p in pairs] if pairs else [names[:2]],
        "scenarios": [_normalise_scenario(s) for s in doc["scenarios"]],
        "gate": dict(doc.get("gate", {})),
        **({"adaptive": dict(doc["adaptive"])} if isinstance(doc.get("adaptive"), dict) else {}),
        "af_reasoning": {
            # [] means "the default pattern list" (graders.DEFAULT_AF_PATTERNS).
            "patterns": list(doc.get("af_reasoning", {}).get("patterns", [])),
            "judge": bool(doc.get("af_reasoning", {}).get("judge", False)),
            # Only when set, so the hash of a suite that does not use them is unchanged.
            **{
                key: doc["af_reasoning"][key]
                for key in ("judge_scope", "judge_sample")
                if key in doc.get("af_reasoning", {})
            },
        },
    }
    judge = _normalise_judge(doc)
    if judge is not None:
        out["judge"] = judge
        votes = judge["votes"]
        out["scenarios"] = [_normalise_scenario(s, votes) for s in doc["scenarios"]]
    return out


def _normalise_judge(doc: dict) -> dict | None:
    judge = doc.get("judge")
    if judge is None:
        return None
    judge = {"model": judge} if isinstance(judge, str) else judge
    scenarios = {s["id"]: s for s in doc["scenarios"]}
    examples = []
    for ex in judge.get("calibration", []):
        rubric = ex.get("rubric")
        scenario = ex.get("scenario", "")
        if not (isinstance(rubric, str) and rubric.strip()):
            rubrics = _judge_rubrics(scenarios[scenario])
            rubric = rubrics[ex.get("side", next(iter(rubrics)))]
        examples.append(
            {"reply": ex["reply"], "expected": _expected(ex["expected"]), "rubric": rubric,
             "scenario": scenario}
        )  # fmt: skip
    return {
        "model": judge["model"],
        "votes": judge.get("votes", grader_mod.DEFAULT_VOTES),
        "calibration": examples,
    }


def _normalise_condition(condition: dict) -> dict:
    return {
        "placement": condition.get("placement", DEFAULT_PLACEMENT),
        "cues": list(condition["cues"]),
        "description": condition.get("description", ""),
    }


def _normalise_scenario(scenario: dict, votes: int | None = None) -> dict:
    out = {
        "id": scenario["id"],
        "critical": bool(scenario.get("critical", False)),
        "description": scenario.get("description", ""),
        "tags": list(scenario.get("tags", [])),
        "messages": [{"role": m["role"], "content": m["content"]} for m in scenario["messages"]],
        "graders": {
            side: grader_mod.normalise_side(scenario["graders"][side], default_votes=votes)
            for side in ("new", "legacy")
        },
    }
    if "reference" in scenario:
        out["reference"] = dict(scenario["reference"])
    return out
