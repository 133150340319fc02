"""Standard in-toto statements derived from an attestation, for verifiers that know nothing
about our own predicate.

The attestation's signed statement uses our predicate type (every fact the PDF shows). This
module restates its decision-relevant facts with predicate types outside tools recognise
(docs/INTOTO.md has the mapping and examples):

* ``https://in-toto.io/attestation/test-result/v0.1``: one per evaluation run;
* ``https://in-toto.io/attestation/human-review/v0.1``: one per sign-off;
* ``https://slsa.dev/verification_summary/v1``: the deploy-gate decision, citing the others
  by digest in ``inputAttestations``.

Pure functions of the stored, signed statement: nothing here reads the database, so a bundle
built later says exactly what was attested when it was issued. ``bundle`` signs each statement
as a DSSE envelope and returns them as JSON Lines (the in-toto bundle format).
"""

from __future__ import annotations

from .canonical import canonical_bytes, sha256_hex
from .dsse import envelope_bytes, sign_envelope
from .statement import RUN_SUBJECT_PREFIX, STATEMENT_TYPE

TEST_RESULT = "https://in-toto.io/attestation/test-result/v0.1"
HUMAN_REVIEW = "https://in-toto.io/attestation/human-review/v0.1"
VSA = "https://slsa.dev/verification_summary/v1"
# Our deploy-gate policy, versioned in the path like PREDICATE_TYPE; its digest in each VSA
# covers the parameters the gate applied to this change (approvals required, cross-team).
GATE_POLICY_URI = "https://protocol-change.dev/policy/deploy-gate/v1"
# Custom VSA levels must not start with "SLSA_" (SLSA VSA v1, verifiedLevels).
GATE_LEVEL = "PCM_DEPLOY_GATE_V1"

_RESULTS = {"pass": "PASSED", "fail": "FAILED"}


def _statement(subject: list[dict], predicate_type: str, predicate: dict) -> dict:
    return {
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": predicate_type,
        "predicate": predicate,
    }


def _test_result(change_subject: dict, run: dict) -> dict:
    """One evaluation run. ``WARNED`` for an inconclusive verdict: neither pass nor fail."""
    checks = run.get("checks") or []

    def named(outcome_ok: bool) -> list[str]:
        names = []
        for c in checks:
            ok = str(c.get("outcome", "")).lower() in ("pass", "passed", "ok")
            if ok == outcome_ok:
                names.append(f"{c.get('check', '')}: {c.get('subject', '')}".strip(": "))
        return names

    suite = run.get("suite") or {}
    configuration = [
        {
            "name": f"suite/{suite.get('name', '')}@{suite.get('version', '')}",
            "digest": {"sha256": suite.get("sha256", "")},
        },
        {
            "name": "gate-policy",
            "digest": {"sha256": sha256_hex(canonical_bytes(run.get("policy") or {}))},
        },
    ]
    subject = [change_subject]
    if len(run.get("result_digest") or "") == 64:
        subject.append(
            {
                "name": f"{RUN_SUBJECT_PREFIX}{run['id']}",
                "digest": {"sha256": run["result_digest"]},
            }
        )
    return _statement(
        subject,
        TEST_RESULT,
        {
            "result": _RESULTS.get(run.get("verdict") or "", "WARNED"),
            "configuration": configuration,
            "passedTests": named(True),
            "warnedTests": [],
            "failedTests": named(False),
        },
    )


def _review(change_subject: dict, signoff: dict) -> dict:
    """One sign-off. ``result`` is the spec's field; the rest are our documented extensions."""
    reviewer = signoff.get("reviewer") or {}
    return _statement(
        [change_subject],
        HUMAN_REVIEW,
        {
            "result": "PASSED" if signoff.get("decision") == "approve" else "FAILED",
            "timestamp": signoff.get("signed_at"),
            "reviewer": reviewer.get("username") or reviewer.get("name") or "",
            "signatureMeaning": signoff.get("signature_meaning", ""),
            "independence": signoff.get("independence") or {},
            "evaluationDigest": signoff.get("evaluation_digest", ""),
            "retrospective": bool(signoff.get("retrospective")),
        },
    )


def _decision(change_subject: dict, predicate: dict, inputs: list[dict], verifier_id: str):
    gate = predicate.get("gate") or {}
    system = predicate.get("system") or {}
    policy_params = {
        "approvals_required": system.get("approvals_required"),
        "cross_team_review": system.get("cross_team_review"),
        "criticality": system.get("criticality"),
    }
    meta = predicate.get("attestation") or {}
    return _statement(
        [change_subject],
        VSA,
        {
            "verifier": {"id": verifier_id},
            "timeVerified": meta.get("issued_at"),
            "resourceUri": f"urn:protocol-change:{change_subject['name']}",
            "policy": {
                "uri": GATE_POLICY_URI,
                "digest": {"sha256": sha256_hex(canonical_bytes(policy_params))},
            },
            "inputAttestations": [
                {
                    "name": f"{s['predicateType']}#{i}",
                    "digest": {"sha256": sha256_hex(canonical_bytes(s))},
                }
                for i, s in enumerate(inputs)
            ],
            "verificationResult": "PASSED" if gate.get("deployable") else "FAILED",
            "verifiedLevels": [GATE_LEVEL] if gate.get("deployable") else [],
            "reasons": list(gate.get("reasons") or []),
        },
    )


def verifier_id(origin: str) -> str:
    """The VSA ``verifier.id`` of this deployment: its host (the first segment of the audit
    checkpoint origin) with a fixed path."""
    host = (origin or "localhost").split("/", 1)[0]
    return f"https://{host}/protocol-change/deploy-gate"


def interop_statements(statement: dict, *, verifier_id: str) -> list[dict]:
    """Test results, reviews, then the decision (last, citing the others), all about the
    same change subject as ``statement`` (our signed attestation statement)."""
    predicate = statement.get("predicate") or {}
    change_subject = statement["subject"][0]
    runs = (predicate.get("evaluation") or {}).get("runs") or []
    inputs = [_test_result(change_subject, run) for run in runs]
    inputs += [_review(change_subject, signoff) for signoff in predicate.get("signoffs") or []]
    return [*inputs, _decision(change_subject, predicate, inputs, verifier_id)]


def bundle(statements: list[dict], signer) -> bytes:
    """JSON Lines of DSSE envelopes, one statement each (``.intoto.jsonl``)."""
    return b"".join(
        envelope_bytes(sign_envelope(canonical_bytes(s), signer)) + b"\n" for s in statements
    )
