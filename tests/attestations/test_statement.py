"""in-toto Statement v1 construction and the canonical bytes that get signed."""

import json

import pytest

from attestations.statement import (
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    build_statement,
    canonical_bytes,
    sha256_hex,
    statement_problems,
    subject_digests,
)


def test_statement_has_the_in_toto_v1_shape(statement):
    assert statement["_type"] == "https://in-toto.io/Statement/v1" == STATEMENT_TYPE
    assert statement["predicateType"] == PREDICATE_TYPE
    assert statement["subject"] == [
        {"name": "change/42", "digest": {"sha256": "a1" * 32}},
        {"name": "evaluation-run/7", "digest": {"sha256": "b2" * 32}},
        {"name": "evaluation-run/12", "digest": {"sha256": "c3" * 32}},
    ]
    assert statement["predicate"]["verdict"] == "pass"
    assert statement_problems(statement) == []


def test_run_ids_may_be_integers():
    statement = build_statement(
        change_name="change/1", content_sha256="0" * 64, run_digests={3: "1" * 64}, predicate={}
    )
    assert subject_digests(statement) == {"change/1": "0" * 64, "evaluation-run/3": "1" * 64}


@pytest.mark.parametrize("bad", ["", "A" * 64, "0" * 63, "g" * 64, None])
def test_malformed_digests_are_refused(bad):
    with pytest.raises(ValueError):
        build_statement(change_name="c", content_sha256=bad, run_digests={}, predicate={})
    with pytest.raises(ValueError):
        build_statement(
            change_name="c", content_sha256="0" * 64, run_digests={"1": bad}, predicate={}
        )


def test_a_predicate_that_is_not_json_is_refused_before_signing():
    with pytest.raises((TypeError, ValueError)):
        build_statement(
            change_name="c", content_sha256="0" * 64, run_digests={}, predicate={"x": object()}
        )
    with pytest.raises(ValueError):
        build_statement(
            change_name="c", content_sha256="0" * 64, run_digests={}, predicate={"x": float("nan")}
        )


def test_canonical_bytes_are_sorted_compact_utf8():
    assert canonical_bytes({"b": 1, "a": ["é", None]}) == '{"a":["é",null],"b":1}'.encode()
    assert json.loads(canonical_bytes({"z": {"y": 1, "x": 2}})) == {"z": {"x": 2, "y": 1}}


def test_sha256_hex_known_answer():
    assert sha256_hex(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda s: s.update(_type="https://in-toto.io/Statement/v0.1"), "_type"),
        (lambda s: s.update(predicateType="https://example.com/other"), "predicateType"),
        (lambda s: s.update(predicate=[]), "predicate"),
        (lambda s: s.update(subject=[]), "subject"),
        (lambda s: s["subject"][1].update(digest={"sha1": "0" * 40}), "sha256"),
        (lambda s: s["subject"].append(dict(s["subject"][0])), "twice"),
    ],
)
def test_statement_problems_names_what_is_wrong(statement, mutate, fragment):
    mutate(statement)
    problems = statement_problems(statement)
    assert problems and any(fragment in problem for problem in problems)


def test_statement_problems_accepts_any_json_value():
    for value in (None, [], "x", 3, {"subject": "x"}, {"subject": [None]}):
        assert statement_problems(value)
