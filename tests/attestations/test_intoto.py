"""Standard in-toto statements derived from an attestation: the predicate types, their required
fields, the decision citing its inputs by digest, and the signed bundle. No database."""

import json

import pytest

from attestations import intoto
from attestations.canonical import canonical_bytes, sha256_hex
from attestations.dsse import verify_envelope
from attestations.keys import Signer

CONTENT = "c" * 64


def _run(run_id, verdict, digest):
    return {
        "id": run_id,
        "suite": {"id": 1, "name": "pii-redaction", "version": 3, "sha256": "a" * 64},
        "verdict": verdict,
        "policy": {"max_gap": 0.05},
        "checks": [
            {"check": "gap", "subject": "monitored vs unmonitored", "outcome": "pass"},
            {"check": "rate", "subject": "deployment-like", "outcome": verdict},
        ],
        "result_digest": digest,
    }


def _statement(*, verdicts=("pass", "pass"), deployable=True, decisions=("approve",)):
    runs = [_run(i + 1, v, f"{i + 1}" * 64) for i, v in enumerate(verdicts)]
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "CR-7", "digest": {"sha256": CONTENT}}],
        "predicateType": "https://protocol-change.dev/attestation/v1",
        "predicate": {
            "attestation": {"version": 1, "reason": "approved", "issued_at": "2026-12-04T21:00Z"},
            "system": {"approvals_required": 1, "cross_team_review": False, "criticality": "m"},
            "evaluation": {"runs": runs},
            "signoffs": [
                {
                    "reviewer": {"username": f"rev{i}"},
                    "decision": d,
                    "signed_at": "2026-12-04T20:59:00Z",
                    "signature_meaning": "approved for deployment",
                    "independence": {"author": False},
                    "evaluation_digest": "e" * 64,
                }
                for i, d in enumerate(decisions)
            ],
            "gate": {"deployable": deployable, "reasons": [] if deployable else ["no approval"]},
        },
    }


def test_one_test_result_per_run_one_review_per_signoff_then_the_decision():
    statements = intoto.interop_statements(
        _statement(decisions=("approve", "approve")), verifier_id="https://x/gate"
    )
    types = [s["predicateType"] for s in statements]
    assert types == [intoto.TEST_RESULT] * 2 + [intoto.HUMAN_REVIEW] * 2 + [intoto.VSA]
    for s in statements:
        assert s["_type"] == "https://in-toto.io/Statement/v1"
        assert s["subject"][0] == {"name": "CR-7", "digest": {"sha256": CONTENT}}


@pytest.mark.parametrize(
    ("verdict", "result"), [("pass", "PASSED"), ("fail", "FAILED"), ("inconclusive", "WARNED")]
)
def test_a_test_result_carries_the_required_fields(verdict, result):
    (test, *_rest) = intoto.interop_statements(
        _statement(verdicts=(verdict,)), verifier_id="https://x/gate"
    )
    predicate = test["predicate"]
    # required by test-result v0.1: result and configuration (ResourceDescriptors)
    assert predicate["result"] == result
    assert predicate["configuration"][0] == {
        "name": "suite/pii-redaction@3",
        "digest": {"sha256": "a" * 64},
    }
    assert "gap: monitored vs unmonitored" in predicate["passedTests"]
    assert ("rate: deployment-like" in predicate["failedTests"]) == (verdict != "pass")
    # the run itself is a subject, by its result digest
    assert {"name": "evaluation-run/1", "digest": {"sha256": "1" * 64}} in test["subject"]


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_review_says_passed_only_for_an_approval(decision):
    review = intoto.interop_statements(
        _statement(decisions=(decision,)), verifier_id="https://x/gate"
    )[-2]
    assert review["predicateType"] == intoto.HUMAN_REVIEW
    assert review["predicate"]["result"] == ("PASSED" if decision == "approve" else "FAILED")
    assert review["predicate"]["reviewer"] == "rev0"


@pytest.mark.parametrize("deployable", [True, False])
def test_the_decision_is_a_vsa_citing_every_input_by_digest(deployable):
    *inputs, vsa = intoto.interop_statements(
        _statement(deployable=deployable), verifier_id="https://x/gate"
    )
    predicate = vsa["predicate"]
    # required by SLSA VSA v1
    for key in ("verifier", "timeVerified", "resourceUri", "policy", "verificationResult"):
        assert predicate[key], key
    assert predicate["verifier"]["id"] == "https://x/gate"
    assert predicate["verificationResult"] == ("PASSED" if deployable else "FAILED")
    assert predicate["verifiedLevels"] == ([intoto.GATE_LEVEL] if deployable else [])
    assert not any(level.startswith("SLSA_") for level in predicate["verifiedLevels"])
    assert [d["digest"]["sha256"] for d in predicate["inputAttestations"]] == [
        sha256_hex(canonical_bytes(s)) for s in inputs
    ]


def test_a_statement_without_runs_or_signoffs_still_gets_a_decision():
    statement = _statement(verdicts=(), decisions=(), deployable=False)
    (vsa,) = intoto.interop_statements(statement, verifier_id="https://x/gate")
    assert vsa["predicate"]["inputAttestations"] == []


def test_the_bundle_is_one_signed_envelope_per_line():
    signer = Signer.generate()
    statements = intoto.interop_statements(_statement(), verifier_id="https://x/gate")
    lines = intoto.bundle(statements, signer).splitlines()
    assert len(lines) == len(statements)
    for line, statement in zip(lines, statements, strict=True):
        valid, payload, _ = verify_envelope(line, {signer.key_id: signer.public_key})
        assert valid and json.loads(payload) == statement
    # another key does not verify
    other = Signer.generate()
    assert not verify_envelope(lines[0], {other.key_id: other.public_key})[0]


def test_the_verifier_id_comes_from_the_deployment_origin():
    assert intoto.verifier_id("audit.example.org/pcm/audit") == (
        "https://audit.example.org/protocol-change/deploy-gate"
    )
