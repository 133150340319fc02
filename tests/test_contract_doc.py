"""docs/CONTRACT.md and the generated OpenAPI schema describe the same API.

Every endpoint the contract lists exists in the schema with that method, and every public
``/api/v1/`` operation of the schema is listed in the contract. Path parameters match by
position, not by name (the contract may write ``{id}`` where the schema says ``{run_id}``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from drf_spectacular.generators import SchemaGenerator

from changes import longpoll, states

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = (ROOT / "docs" / "CONTRACT.md").read_text(encoding="utf-8")
METHODS = ("get", "post", "put", "patch", "delete")
ENDPOINT = re.compile(
    r"`((?:GET|POST|PUT|PATCH|DELETE)(?:/(?:GET|POST|PUT|PATCH|DELETE))*) (/api/v1/[^`\s?]*)"
)


def normalise(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def contract_operations() -> set[tuple[str, str]]:
    ops = set()
    for methods, path in ENDPOINT.findall(CONTRACT):
        for method in methods.split("/"):
            ops.add((method.lower(), normalise(path)))
    return ops


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def schema_operations(schema) -> set[tuple[str, str]]:
    return {
        (method, normalise(path))
        for path, item in schema["paths"].items()
        if path.startswith("/api/v1/")
        for method in item
        if method in METHODS
    }


def test_the_contract_lists_endpoints():
    ops = contract_operations()
    assert len(ops) >= 30
    assert ("get", "/api/v1/changes/{}/attestation.pdf") in ops
    assert ("patch", "/api/v1/changes/{}/") in ops


def test_every_endpoint_in_the_contract_is_in_the_schema(schema):
    assert len(schema_operations(schema)) >= 30
    missing = contract_operations() - schema_operations(schema)
    assert not missing, f"the contract lists endpoints the API does not have: {sorted(missing)}"


def test_every_api_operation_in_the_schema_is_in_the_contract(schema):
    missing = schema_operations(schema) - contract_operations()
    assert not missing, f"docs/CONTRACT.md does not list: {sorted(missing)}"


def test_the_long_poll_is_documented_in_both(schema):
    operation = schema["paths"]["/api/v1/changes/{id}/"]["get"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert set(params["wait_for"]["schema"]["enum"]) == set(states.STATES)
    assert params["timeout"]["schema"]["maximum"] == longpoll.MAX_TIMEOUT
    headers = operation["responses"]["200"]["headers"]
    assert set(headers["X-Wait-Outcome"]["schema"]["enum"]) == set(longpoll.OUTCOMES)
    assert {"400", "429"} <= set(operation["responses"])
    for word in (*longpoll.OUTCOMES, *states.STATES, "wait_for", "429", "Retry-After"):
        assert word in CONTRACT, word
    assert f"0 to {longpoll.MAX_TIMEOUT}" in CONTRACT
    assert f"default {longpoll.DEFAULT_TIMEOUT}" in CONTRACT


def test_the_attestation_202_is_documented_in_both(schema):
    responses = schema["paths"]["/api/v1/changes/{id}/attestation.pdf"]["get"]["responses"]
    assert {"200", "202", "404", "409"} <= set(responses)
    assert "Retry-After" in responses["202"]["headers"]
    for phrase in ("202 Accepted", "Retry-After", "attestation_pending", "no_attestation"):
        assert phrase in CONTRACT, phrase
