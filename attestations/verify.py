"""Verify an attestation PDF without trusting the database.

This is the record-independent half: the file is a PDF, it embeds exactly one envelope, the
envelope's Ed25519 signature is valid for a trusted key id, and the signed payload is one of our
in-toto statements. The other half (content hash still the change's, run digests, approvals, the
cited audit head still in the chain) needs the database and is plugged in as ``record_checker``
by the Django layer, so this module stays importable by a standalone verifier.

``verify_pdf`` is the full check of an attestation PDF (issue 15): the PAdES signature over
the whole file (``attestations.pades``), the embedded envelope, the statement, the binding of
the pages to the statement (page count and each page's text digest, recomputed here) and that
the PDF and the statement were signed by the same key. ``verify_pdf_envelope`` checks the
envelope alone: a PDF whose pages were edited but whose envelope is intact passes it, so it is
never the answer to "is this attestation valid".
"""

import json
from collections.abc import Callable, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .canonical import sha256_hex
from .checks import Check, check
from .dsse import verify_envelope
from .pades import signature_checks
from .pdf import (
    ENVELOPE_ATTACHMENT_NAME,
    attachment_names,
    extract_attachment,
    page_digests_of,
)
from .statement import page_binding_problems, statement_problems

__all__ = ["RecordChecker", "verify_envelope_bytes", "verify_pdf", "verify_pdf_envelope"]

RecordChecker = Callable[[dict], list[Check]]
# "/EmbeddedFile" markers (name tree key + file stream type) above which the attachments are
# not parsed at all; a genuine attestation has two or three.
MAX_EMBEDDED_MARKERS = 32


def _looks_like_pdf(pdf_bytes: bytes) -> bool:
    # The header may follow a little junk (ISO 32000 tolerates it within the first 1024
    # bytes); requiring it anywhere else would accept arbitrary files.
    return isinstance(pdf_bytes, bytes | bytearray) and b"%PDF-" in bytes(pdf_bytes[:1024])


def _run_record_checker(record_checker: RecordChecker, statement: dict) -> list[Check]:
    try:
        extra = list(record_checker(statement))
    except Exception as exc:  # a bug or a missing record must read as "invalid", not a 500
        return [check("record_checks", False, f"record checks failed: {type(exc).__name__}")]
    if not all(isinstance(item, dict) and {"name", "ok"} <= set(item) for item in extra):
        return [check("record_checks", False, "record checker returned malformed checks")]
    return [
        check(str(item["name"]), bool(item["ok"]), str(item.get("detail", ""))) for item in extra
    ]


def verify_envelope_bytes(
    envelope: bytes,
    public_keys: Mapping[str, Ed25519PublicKey],
    *,
    record_checker: RecordChecker | None = None,
) -> dict:
    """Verify a stored ``.dsse.json`` envelope on its own (the JSON download beside the PDF).

    Same result shape as ``verify_pdf_envelope``, minus the PDF checks.
    """
    checks: list[Check] = []
    result = {"valid": False, "checks": checks, "statement": None}
    if isinstance(envelope, bytes | bytearray):
        result["envelope_sha256"] = sha256_hex(bytes(envelope))
    signature_ok, payload, envelope_checks = verify_envelope(envelope, public_keys)
    checks.extend(envelope_checks)
    if not signature_ok or payload is None:
        return result

    try:
        statement = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        checks.append(check("statement", False, "the signed payload is not UTF-8 JSON"))
        return result
    problems = statement_problems(statement)
    checks.append(
        check(
            "statement",
            not problems,
            "; ".join(problems) or "in-toto Statement v1 with our predicate type",
        )
    )
    if problems:
        return result

    result["statement"] = statement
    if record_checker is not None:
        checks.extend(_run_record_checker(record_checker, statement))
    result["valid"] = all(item["ok"] for item in checks)
    return result


def verify_pdf_envelope(
    pdf_bytes: bytes,
    public_keys: Mapping[str, Ed25519PublicKey],
    *,
    record_checker: RecordChecker | None = None,
    envelope_name: str = ENVELOPE_ATTACHMENT_NAME,
) -> dict:
    """Verify the envelope embedded in an attestation PDF.

    Returns ``{"valid", "checks", "statement"}`` (plus ``envelope_sha256`` once the envelope
    is found). ``statement`` is set only when the signature is valid and the payload is well
    formed, so callers never act on unauthenticated claims; ``record_checker(statement)`` runs
    only then, and its checks are appended (an exception from it becomes a failing check).
    Never raises on a malformed file: every problem is a named, failing check.
    """
    checks: list[Check] = []
    result = {"valid": False, "checks": checks, "statement": None}

    is_pdf = _looks_like_pdf(pdf_bytes)
    checks.append(check("pdf_file", is_pdf, "PDF header found" if is_pdf else "not a PDF file"))
    if not is_pdf:
        return result

    envelope = extract_attachment(bytes(pdf_bytes), envelope_name)
    if envelope is None:
        count = attachment_names(bytes(pdf_bytes)).count(envelope_name)
        detail = (
            f"{count} attachments named {envelope_name}; expected exactly one"
            if count > 1
            else f"no readable attachment named {envelope_name}"
        )
        checks.append(check("envelope_attachment", False, detail))
        return result
    checks.append(check("envelope_attachment", True, f"{envelope_name}, {len(envelope)} bytes"))

    inner = verify_envelope_bytes(envelope, public_keys, record_checker=record_checker)
    checks.extend(inner["checks"])
    result.update(
        valid=inner["valid"],
        statement=inner["statement"],
        envelope_sha256=inner.get("envelope_sha256"),
    )
    return result


def _open(pdf_bytes: bytes):
    from io import BytesIO

    from pypdf import PdfReader

    try:
        return PdfReader(BytesIO(pdf_bytes), strict=False)
    except Exception:  # noqa: BLE001 - untrusted bytes
        return None


def _envelope_from(reader, envelope_name: str) -> tuple[bytes | None, Check]:
    name = "envelope_attachment"
    try:
        contents = reader.attachments.get(envelope_name) if reader is not None else None
    except Exception:  # noqa: BLE001
        contents = None
    if not contents:
        return None, check(name, False, f"no readable embedded file named {envelope_name}")
    if len(contents) != 1:
        return None, check(
            name, False, f"{len(contents)} embedded files are named {envelope_name}; one expected"
        )
    return contents[0], check(name, True, f"{envelope_name}, {len(contents[0])} bytes")


def _page_digests(reader) -> list[str] | None:
    if reader is None:
        return None
    try:
        return page_digests_of(reader)
    except Exception:  # noqa: BLE001
        return None


def verify_pdf(
    pdf_bytes: bytes,
    public_keys: Mapping[str, Ed25519PublicKey],
    *,
    trusted_cas: list,
    record_checker: RecordChecker | None = None,
    envelope_name: str = ENVELOPE_ATTACHMENT_NAME,
) -> dict:
    """Verify an attestation PDF completely; valid only when every check passes.

    Returns ``{"valid", "checks", "statement", "envelope_sha256"}`` like
    ``verify_pdf_envelope``. ``trusted_cas`` are the CA certificates whose signing
    certificates are accepted; ``public_keys`` the Ed25519 keys (the PAdES certificate must
    name one of them, and the same one that signed the envelope). Never raises.
    """
    data = bytes(pdf_bytes) if isinstance(pdf_bytes, bytes | bytearray | memoryview) else b""
    checks: list[Check] = []
    result = {"valid": False, "checks": checks, "statement": None}
    is_pdf = bool(data) and _looks_like_pdf(data)
    checks.append(
        check("pdf_file", is_pdf, "PDF header found" if is_pdf else "this file is not a PDF")
    )
    if not is_pdf:
        return result
    pades_checks, pdf_key_id, readable = signature_checks(
        data, trusted_cas=trusted_cas, trusted_key_ids=set(public_keys)
    )
    checks.extend(pades_checks)
    if not readable:
        return result  # unreadable, encrypted or absurd: nothing more to learn safely
    embedded = data.count(b"/EmbeddedFile")
    if embedded > MAX_EMBEDDED_MARKERS:
        # An attestation embeds one file; reading thousands is the cost an attacker wants.
        checks.append(
            check(
                "envelope_attachment",
                False,
                f"the file carries {embedded} embedded-file entries; an attestation embeds "
                "one file",
            )
        )
        return result
    reader = _open(data)
    envelope, attachment_check = _envelope_from(reader, envelope_name)
    checks.append(attachment_check)
    if envelope is None:
        return result
    inner = verify_envelope_bytes(envelope, public_keys)
    checks.extend(inner["checks"])
    result["envelope_sha256"] = inner.get("envelope_sha256")
    statement = inner["statement"]
    if statement is None:
        return result
    envelope_key_id = _envelope_key_id(envelope)
    same = pdf_key_id is not None and envelope_key_id == pdf_key_id
    checks.append(
        check(
            "same_key",
            same,
            f"both by {pdf_key_id}"
            if same
            else f"the statement is signed by {envelope_key_id or 'an unknown key'}, the PDF "
            f"by {pdf_key_id or 'no trusted key'}",
        )
    )
    problems = page_binding_problems(statement, _page_digests(reader))
    pages = (statement.get("predicate") or {}).get("pages") or {}
    checks.append(
        check(
            "page_binding",
            not problems,
            "; ".join(problems) or f"all {pages.get('count')} pages match the signed statement",
        )
    )
    result["statement"] = statement
    if record_checker is not None:
        checks.extend(_run_record_checker(record_checker, statement))
    result["valid"] = all(item["ok"] for item in checks)
    return result


def _envelope_key_id(envelope: bytes) -> str | None:
    try:
        return json.loads(envelope)["signatures"][0]["keyid"]
    except Exception:  # noqa: BLE001 - already verified; defensive only
        return None
