"""PAdES: the signature over the whole attestation PDF, and its strict verification.

Signing (``embed_and_sign``) appends one incremental update to WeasyPrint's output: the
signed DSSE envelope as a PDF/A-3 associated file, and a certifying PAdES signature (DocMDP
"no changes allowed") whose byte range covers the whole file except its own contents.

Verification (``signature_checks``) is deliberately stricter than a PDF reader's: a reader
accepts later "allowed" changes (annotations, form fill) and junk around the file, we accept
nothing. The file must be exactly what we wrote: header at byte 0, ``%%EOF`` at the end,
exactly two revisions (the render and the signature), one signature, a byte range that is
``[0, a, a + len(<contents>), rest]`` ending at the last byte, contents that are the CMS
bytes plus zero padding only, an intact CMS signature, and a certificate issued by a CA this
deployment trusts that names a trusted Ed25519 key. Never raises on untrusted input.
"""

from __future__ import annotations

import asyncio
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO

from cryptography import x509

from .certs import SigningIdentity, issued_by, named_key_id
from .checks import Check, check

__all__ = ["FIELD_NAME", "MAX_REVISIONS_SCANNED", "embed_and_sign", "signature_checks"]

logger = logging.getLogger(__name__)

FIELD_NAME = "AttestationSignature"
# The render is revision 1, the envelope + signature update revision 2.
EXPECTED_REVISIONS = 2
# Files with more ``startxref`` markers than this are refused before parsing: parsing
# thousands of incremental updates is the cost an attacker would like us to pay.
MAX_REVISIONS_SCANNED = 8
SIGNATURE_BYTES = 8192
_HEX = re.compile(rb"[0-9a-fA-F]*")


def embed_and_sign(
    pdf: bytes,
    *,
    identity: SigningIdentity,
    attachments: list[tuple[str, bytes, str]],
) -> bytes:
    """Append ``attachments`` (PDF/A-3 ``/AFRelationship /Data``) and a PAdES signature."""
    from pyhanko.keys.internal import (
        translate_pyca_cryptography_cert_to_asn1,
        translate_pyca_cryptography_key_to_asn1,
    )
    from pyhanko.pdf_utils import embed, generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
    for name, content, description in attachments:
        embed.embed_file(
            writer,
            embed.FileSpec(
                file_spec_string=name,
                file_name=name,
                embedded_data=embed.EmbeddedFileObject.from_file_data(
                    writer,
                    data=bytes(content),
                    mime_type="application/json" if name.endswith(".json") else None,
                    params=embed.EmbeddedFileParams(embed_size=True, embed_checksum=True),
                ),
                description=description,
                af_relationship=generic.pdf_name("/Data"),
            ),
        )
    ca = translate_pyca_cryptography_cert_to_asn1(identity.ca_certificate)
    signer = signers.SimpleSigner(
        signing_cert=translate_pyca_cryptography_cert_to_asn1(identity.certificate),
        signing_key=translate_pyca_cryptography_key_to_asn1(identity.private_key),
        cert_registry=SimpleCertificateStore.from_certs([ca]),
    )
    meta = signers.PdfSignatureMetadata(
        field_name=FIELD_NAME,
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
        certify=True,
        docmdp_permissions=fields.MDPPerm.NO_CHANGES,
        reason="Attestation issued by this deployment; any change to the file voids it.",
        embed_validation_info=False,
    )
    out = BytesIO()
    _outside_any_event_loop(
        lambda: signers.PdfSigner(meta, signer=signer).sign_pdf(
            writer, output=out, bytes_reserved=SIGNATURE_BYTES
        )
    )
    return out.getvalue()


def _outside_any_event_loop(fn):
    """pyHanko's synchronous API calls ``asyncio.run``, which refuses to start on a thread whose
    event loop is running (a caller inside async code; Playwright's sync API in a browser
    test that renders in-process). Such a caller gets a short-lived thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn).result()


# --- verification ----------------------------------------------------------------------------


def _frame_checks(data: bytes) -> list[Check]:
    checks = []
    head_ok = data.startswith(b"%PDF-")
    if head_ok:
        detail = "the file starts with the PDF header"
    elif b"%PDF-" in data[:1024]:
        detail = f"{data.find(b'%PDF-')} bytes of something else come before the PDF header"
    else:
        detail = "no PDF header at the start of the file"
    checks.append(check("file_start", head_ok, detail))
    tail = data[-1024:]
    eof = tail.rfind(b"%%EOF")
    trailing = tail[eof + 5 :] if eof >= 0 else b""
    end_ok = eof >= 0 and trailing in (b"", b"\n", b"\r\n", b"\r")
    if end_ok:
        detail = "the file ends with the PDF end marker"
    elif eof < 0:
        detail = "no PDF end marker (%%EOF) at the end: the file is truncated or has junk after it"
    else:
        detail = f"{len(trailing)} bytes of something else follow the PDF end marker"
    checks.append(check("file_end", end_ok, detail))
    return checks


def _contents_span(data: bytes, byte_range) -> tuple[int, int] | str:
    """(start, end) of the ``<hex>`` signature contents, or why the byte range is wrong."""
    try:
        values = [int(v) for v in byte_range]
    except (TypeError, ValueError):
        return "the byte range is not a list of numbers"
    if len(values) != 4:
        return f"the byte range has {len(values)} numbers instead of 4"
    start1, len1, start2, len2 = values
    if start1 != 0:
        return f"the signed bytes start at {start1}, not at the beginning of the file"
    if len1 <= 0 or start2 <= len1 or len2 < 0:
        return "the byte range is malformed"
    if start2 + len2 != len(data):
        uncovered = len(data) - (start2 + len2)
        if uncovered > 0:
            return f"the last {uncovered} bytes of the file are not covered by the signature"
        return "the byte range reaches past the end of the file"
    if data[len1 : len1 + 1] != b"<" or data[start2 - 1 : start2] != b">":
        return "the gap in the byte range is not exactly the signature's own contents"
    if not _HEX.fullmatch(data[len1 + 1 : start2 - 1]):
        return "the gap in the byte range holds more than the signature's own contents"
    return len1, start2


def _der_length(raw: bytes) -> int | None:
    """Length of the DER element at the start of ``raw`` (the CMS), or None."""
    if len(raw) < 2 or raw[0] != 0x30:
        return None
    if raw[1] < 0x80:
        return 2 + raw[1]
    width = raw[1] & 0x7F
    if not 0 < width <= 4 or len(raw) < 2 + width:
        return None
    total = 2 + width + int.from_bytes(raw[2 : 2 + width], "big")
    return total if total <= len(raw) else None


def _read_signature(data: bytes):
    """(reader, [EmbeddedPdfSignature], failing check or None)."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    try:
        reader = PdfFileReader(BytesIO(data), strict=False)
        if reader.encrypted:
            return None, [], check("pdf_readable", False, "the file is encrypted")
        revisions = reader.total_revisions
        signatures = list(reader.embedded_signatures)
    except Exception as exc:  # noqa: BLE001 - any parser error on untrusted bytes is a failure
        logger.debug("cannot read the PDF structure", exc_info=True)
        return (
            None,
            [],
            check("pdf_readable", False, f"the PDF cannot be read ({type(exc).__name__})"),
        )
    if revisions != EXPECTED_REVISIONS:
        return (
            reader,
            signatures,
            check(
                "pdf_revisions",
                False,
                f"the file has {revisions} revision{'s' if revisions != 1 else ''}; an "
                f"attestation has exactly {EXPECTED_REVISIONS} (the render and the signature), "
                "so it was changed",
            ),
        )
    return reader, signatures, None


def signature_checks(
    data: bytes, *, trusted_cas: list[x509.Certificate], trusted_key_ids: set[str]
) -> tuple[list[Check], str | None, bool]:
    """Every PAdES check of ``data``: (checks, the Ed25519 key id the cert names, readable).

    ``readable`` is False when the file could not (or should not) be parsed any further:
    unreadable, encrypted, or an absurd number of revisions.

    Later checks are skipped once an earlier one makes them meaningless (no signature to
    examine), but the frame checks always run so the report says everything cheap it can.
    """
    checks = _frame_checks(data)
    markers = data.count(b"startxref")
    if markers > MAX_REVISIONS_SCANNED:
        checks.append(
            check(
                "pdf_revisions",
                False,
                f"the file holds {markers} revisions; an attestation has exactly "
                f"{EXPECTED_REVISIONS}, so it was changed after it was signed",
            )
        )
        return checks, None, False
    reader, signatures, problem = _read_signature(data)
    if problem is not None and problem["name"] == "pdf_readable":
        checks.append(problem)
        return checks, None, False
    if problem is not None:
        checks.append(problem)
    else:
        checks.append(check("pdf_revisions", True, "no change after signing"))
    if len(signatures) != 1:
        detail = (
            "the file has no digital signature"
            if not signatures
            else f"the file has {len(signatures)} digital signatures; an attestation has one"
        )
        checks.append(check("pdf_signature_count", False, detail))
        return checks, None, True
    checks.append(check("pdf_signature_count", True, "one digital signature"))
    sig = signatures[0]

    span = _contents_span(data, sig.byte_range)
    if isinstance(span, str):
        checks.append(check("pdf_signature_coverage", False, span))
        return checks, None, True
    hex_text = data[span[0] + 1 : span[1] - 1]
    raw = sig.pkcs7_content
    der_len = _der_length(raw)
    padding_ok = (
        der_len is not None
        and not raw[der_len:].strip(b"\x00")
        and hex_text in (raw.hex().encode(), raw.hex().upper().encode())
    )
    if not padding_ok:
        checks.append(
            check(
                "pdf_signature_coverage",
                False,
                "the signature's contents hold bytes other than the signature",
            )
        )
        return checks, None, True
    checks.append(
        check(
            "pdf_signature_coverage",
            True,
            f"covers all {len(data)} bytes of the file except the signature itself",
        )
    )

    from pyhanko.sign.validation.generic_cms import validate_sig_integrity

    try:
        digest = sig.compute_digest()
        cert_asn1 = sig.signer_cert
        intact, valid = validate_sig_integrity(sig.signer_info, cert_asn1, "data", digest)
        cert = x509.load_der_x509_certificate(cert_asn1.dump())
    except Exception as exc:  # noqa: BLE001
        logger.debug("signature integrity check failed", exc_info=True)
        checks.append(
            check(
                "pdf_signature_intact",
                False,
                f"the signature cannot be checked ({type(exc).__name__})",
            )
        )
        return checks, None, True
    if not (intact and valid):
        detail = (
            "the file's bytes differ from the bytes that were signed"
            if not intact
            else "the signature does not verify with its certificate"
        )
        checks.append(check("pdf_signature_intact", False, detail))
    else:
        checks.append(check("pdf_signature_intact", True, "the file is byte for byte as signed"))

    key_id = named_key_id(cert)
    issuer = next((ca for ca in trusted_cas if issued_by(cert, ca)), None)
    subject = cert.subject.rfc4514_string()
    if issuer is None:
        checks.append(
            check(
                "pdf_signer",
                False,
                f"signed with a certificate ({subject}) that this deployment's CA did not issue",
            )
        )
    elif key_id not in trusted_key_ids:
        checks.append(
            check(
                "pdf_signer",
                False,
                f"the certificate names key {key_id or '(none)'}, which this deployment does "
                "not trust",
            )
        )
    else:
        checks.append(check("pdf_signer", True, f"this deployment's certificate for {key_id}"))
    return checks, key_id or None, True
