"""The machine-readable claim inside an attestation: an in-toto Statement v1.

in-toto's Statement layer is the common format for "these artifacts, identified by digest, have
this property", so auditors can process our attestations with generic tooling. The subjects are
what the attestation is about: the change (named, with the hash of the exact content that was
evaluated and approved) and each evaluation run (with the digest of its result), so altering
either one after signing breaks the match. The predicate carries the remaining facts (verdicts,
sign-offs, audit chain head) as plain JSON; its schema is ours and is named by
``PREDICATE_TYPE``.

Spec: https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md
"""

import re
from collections.abc import Mapping
from typing import Any

from .canonical import canonical_bytes, sha256_hex

__all__ = [
    "PREDICATE_TYPE",
    "RUN_SUBJECT_PREFIX",
    "STATEMENT_TYPE",
    "build_statement",
    "canonical_bytes",
    "sha256_hex",
    "statement_problems",
    "subject_digests",
    "with_audit_checkpoint",
]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
# A URI we control; version it in the path so a future schema gets a new type, not a mutation.
PREDICATE_TYPE = "https://protocol-change.dev/attestation/v1"
RUN_SUBJECT_PREFIX = "evaluation-run/"

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _run_sort_key(run_id: str) -> tuple[int, int, str]:
    # Numeric ids in numeric order ("2" before "10") so the statement reads naturally; the
    # order only has to be deterministic, the verifier matches subjects by name.
    numeric = run_id.isascii() and run_id.isdigit()  # "²".isdigit(), but int() refuses it
    return (0, int(run_id), "") if numeric else (1, 0, run_id)


def _require_sha256(value: str, what: str) -> str:
    if not isinstance(value, str) or not _SHA256_HEX.fullmatch(value):
        raise ValueError(f"{what} must be 64 lower-case hex characters, got {value!r}")
    return value


def build_statement(
    *,
    change_name: str,
    content_sha256: str,
    run_digests: Mapping[str, str],
    predicate: dict,
) -> dict:
    """Assemble the Statement for one attestation.

    ``change_name`` identifies the change (e.g. ``"change/42"``), ``content_sha256`` is the hash
    of its content at approval, ``run_digests`` maps evaluation run ids to the SHA-256 of each
    run's result, ``predicate`` holds the facts shown in the PDF. Raises ``ValueError`` on a
    malformed digest, and ``TypeError``/``ValueError`` when the predicate is not JSON, because
    signing something that cannot be re-serialised identically would make it unverifiable.
    """
    if not change_name:
        raise ValueError("change_name must not be empty")
    subjects = [
        {"name": change_name, "digest": {"sha256": _require_sha256(content_sha256, "content")}}
    ]
    # Ids may arrive as ints from the ORM; subject names are strings either way.
    runs = {str(run_id): digest for run_id, digest in run_digests.items()}
    if len(runs) != len(run_digests):
        raise ValueError("run_digests names the same run twice")
    for run_id in sorted(runs, key=_run_sort_key):
        digest = runs[run_id]
        subjects.append(
            {
                "name": f"{RUN_SUBJECT_PREFIX}{run_id}",
                "digest": {"sha256": _require_sha256(digest, f"run {run_id} digest")},
            }
        )
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }
    canonical_bytes(statement)  # fail now, not at verification time, on non-JSON values
    return statement


def statement_problems(statement: Any) -> list[str]:
    """Say what keeps ``statement`` from being one of our Statement v1 documents.

    An empty list means it is well formed. Used by verification, which must report a named
    failure instead of raising on whatever an uploaded file contains.
    """
    if not isinstance(statement, dict):
        return ["the payload is not a JSON object"]
    problems = []
    if statement.get("_type") != STATEMENT_TYPE:
        problems.append(f"_type is {statement.get('_type')!r}, expected {STATEMENT_TYPE!r}")
    if statement.get("predicateType") != PREDICATE_TYPE:
        problems.append(
            f"predicateType is {statement.get('predicateType')!r}, expected {PREDICATE_TYPE!r}"
        )
    if not isinstance(statement.get("predicate"), dict):
        problems.append("predicate is not a JSON object")
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        problems.append("subject is not a non-empty list")
        return problems
    names = set()
    for index, subject in enumerate(subjects):
        name = subject.get("name") if isinstance(subject, dict) else None
        digest = subject.get("digest") if isinstance(subject, dict) else None
        if not isinstance(name, str) or not name:
            problems.append(f"subject[{index}] has no name")
        elif name in names:
            problems.append(f"subject name {name!r} appears twice")
        names.add(name)
        sha = digest.get("sha256") if isinstance(digest, dict) else None
        if not isinstance(sha, str) or not _SHA256_HEX.fullmatch(sha):
            problems.append(f"subject[{index}] has no valid sha256 digest")
    return problems


def subject_digests(statement: dict) -> dict[str, str]:
    """Map subject name to SHA-256 for a statement that passed ``statement_problems``.

    The record checks compare these with the database: the first subject against the change's
    content hash, the ``evaluation-run/<id>`` ones against each run's result digest.
    """
    return {subject["name"]: subject["digest"]["sha256"] for subject in statement["subject"]}


AUDIT_CHECKPOINT_FIELD = "audit_checkpoint"


def with_audit_checkpoint(predicate: dict, checkpoint: Mapping | None) -> dict:
    """The predicate plus the newest signed checkpoint of the audit chain, verbatim.

    ``checkpoint`` is ``changes.checkpoints.Checkpoint.as_dict()`` (the C2SP note and its
    parsed fields) or None when none was published yet. Signed into the statement, it lets an
    auditor holding only the PDF check the checkpoint's own signature and, with an evidence
    package, the inclusion of events under its root (docs/AUDIT.md).
    """
    return {**predicate, AUDIT_CHECKPOINT_FIELD: dict(checkpoint) if checkpoint else None}


# --- page binding (issue 15): the statement names the pages it was issued with ---------------

PAGES_KEY = "pages"
PAGE_DIGEST_METHOD = (
    "per page: SHA-256 over its decoded content streams, its resources (fonts, images, "
    "XObjects) walked recursively and decoded, its boxes and rotation; see "
    "attestations.pdf.page_digests_of"
)


def bind_pages(statement: dict, page_sha256: list[str]) -> dict:
    """A copy of ``statement`` whose predicate carries the page count and each page's content
    digest (see ``attestations.pdf.page_digests_of``), so a verifier recomputes them from the
    PDF it holds: pages added, removed, reordered or rewritten no longer match."""
    digests = [_require_sha256(d, f"page {i + 1} digest") for i, d in enumerate(page_sha256)]
    predicate = {
        **statement["predicate"],
        PAGES_KEY: {
            "count": len(digests),
            "sha256": digests,
            "method": PAGE_DIGEST_METHOD,
        },
    }
    bound = {**statement, "predicate": predicate}
    canonical_bytes(bound)
    return bound


def page_binding_problems(statement: dict, page_sha256: list[str] | None) -> list[str]:
    """What differs between the pages a statement names and the pages of a PDF, in words.

    ``page_sha256`` is None when the PDF's pages could not be read.
    """
    pages = (statement.get("predicate") or {}).get(PAGES_KEY)
    if not isinstance(pages, dict) or not isinstance(pages.get("sha256"), list):
        return ["the statement does not describe the pages it was issued with"]
    expected = pages["sha256"]
    if page_sha256 is None:
        return ["the pages of this PDF cannot be read"]
    if pages.get("count") != len(expected):
        return ["the statement's page count and page digests disagree"]
    if len(page_sha256) != len(expected):
        return [
            f"the PDF has {len(page_sha256)} pages; the statement was issued for {len(expected)}"
        ]
    changed = [
        str(i + 1) for i, (a, b) in enumerate(zip(expected, page_sha256, strict=True)) if a != b
    ]
    if changed:
        which = ", ".join(changed[:10]) + (" …" if len(changed) > 10 else "")
        return [f"page(s) {which} differ from the pages that were signed"]
    return []
