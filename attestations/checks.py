"""The one shape every verification step reports in.

Verification answers "valid / invalid with each check named" (issue 4), through the API, the
auditor page and ``manage.py verify_attestation``. Keeping the check a plain dict makes it JSON
ready, and a single constructor keeps the keys identical for the envelope checks written here and
the record checks added by the Django layer.

Each check has a stable machine ``name`` (for scripts and the audit log) and a ``label``: what
was checked, in words a person understands (issue 15), shown on the page and by the command.
"""

from typing import TypedDict

__all__ = ["LABELS", "Check", "check", "failure_text", "label_for"]

LABELS = {
    "file_size": "The file is no larger than an attestation can be",
    "pdf_file": "The file is a PDF",
    "file_start": "Nothing was added before the start of the PDF",
    "file_end": "Nothing was added after the end of the PDF, and nothing was cut off",
    "pdf_readable": "The PDF can be read (not encrypted, not damaged)",
    "pdf_revisions": "Nothing was changed or added after signing",
    "pdf_signature_count": "The PDF carries exactly one digital signature",
    "pdf_signature_coverage": "The digital signature covers the whole file",
    "pdf_signature_intact": "Every byte of the file is as it was signed",
    "pdf_signer": "The PDF was signed with this deployment's certificate",
    "envelope_attachment": "The signed statement is embedded exactly once",
    "envelope_parses": "The embedded statement can be read",
    "envelope_fields": "The embedded statement's envelope is complete",
    "payload_type": "The envelope holds an in-toto statement",
    "payload_base64": "The statement is encoded correctly",
    "signature": "The statement's signature is valid for a key this deployment trusts",
    "same_key": "The PDF and its statement were signed by the same key",
    "statement": "The statement is an attestation statement of this system",
    "page_binding": "The pages are exactly the pages the statement was issued with",
    "record_change": "The change the statement names exists",
    "record_attestation": "This deployment issued this statement",
    "record_file": "This deployment issued this exact file",
    "record_content_hash": "The attested content is content the change really had",
    "record_runs": "The evaluation results match the evaluation records",
    "record_approvals": "The approvals match the review records",
    "audit_chain_head": "The audit log still holds the event the attestation cites",
    "record_checks": "The records could be checked",
}


class Check(TypedDict):
    name: str
    ok: bool
    detail: str
    label: str


def label_for(name: str) -> str:
    return LABELS.get(name) or name.replace("_", " ").capitalize()


def check(name: str, ok: bool, detail: str = "") -> Check:
    """Build a named check; ``detail`` says what was found, for people reading the result."""
    return {"name": name, "ok": bool(ok), "detail": detail, "label": label_for(name)}


def failure_text(item: Check) -> str:
    """One failed check as a sentence: what was checked, then what was found."""
    detail = f": {item['detail']}" if item.get("detail") else ""
    return f"{item.get('label') or label_for(item['name'])}{detail}"
