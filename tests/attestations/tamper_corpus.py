"""Tampered variants of genuine attestation PDFs (issue 15), shared by the corpus tests.

Each builder takes the genuine bytes (and, where needed, a second change's genuine PDF or a
foreign signing identity) and returns the tampered bytes. Builders use the tools an attacker
would: pypdf (full rewrites and incremental updates), pyHanko's incremental writer and
signer, and plain byte surgery. No test here; ``variants`` returns ``{name: bytes}``.
"""

from __future__ import annotations

import re
from io import BytesIO
from unittest import mock

from pypdf import PdfReader, PdfWriter
from pypdf.generic import (
    ArrayObject,
    DecodedStreamObject,
    DictionaryObject,
    FloatObject,
    NameObject,
    NumberObject,
    TextStringObject,
)


def _out(writer) -> bytes:
    buf = BytesIO()
    writer.write(buf)
    return buf.getvalue()


def _rewrite(data: bytes, edit) -> bytes:
    """A full rewrite (new xref, objects renumbered) after ``edit(writer)``."""
    writer = PdfWriter(clone_from=PdfReader(BytesIO(data)))
    edit(writer)
    return _out(writer)


def _incremental(data: bytes, edit) -> bytes:
    """An incremental update with pypdf (the original bytes kept, changes appended)."""
    writer = PdfWriter(BytesIO(data), incremental=True)
    edit(writer)
    return _out(writer)


def _overlay_stream(writer, text: str):
    stream = DecodedStreamObject()
    stream.set_data(f"BT /HelvOverlay 14 Tf 60 60 Td ({text}) Tj ET".encode("latin-1"))
    return writer._add_object(stream)


def _add_overlay(writer, page_index: int = 0, text: str = "Also approved by: CISO") -> None:
    page = writer.pages[page_index]
    ref = _overlay_stream(writer, text)
    contents = page.get("/Contents")
    existing = contents if isinstance(contents, ArrayObject) else ArrayObject([contents])
    page[NameObject("/Contents")] = ArrayObject([*existing, ref])
    resources = page["/Resources"].get_object()
    fonts = resources.get("/Font")
    fonts = fonts.get_object() if fonts is not None else DictionaryObject()
    fonts[NameObject("/HelvOverlay")] = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    resources[NameObject("/Font")] = fonts


def _free_text_annotation(writer) -> None:
    from pypdf.annotations import FreeText

    writer.add_annotation(
        0,
        FreeText(
            text="Also approved by: CISO (override, no evaluation needed)",
            rect=(50, 50, 400, 80),
        ),
    )


def _replace_in_content(writer, page_index: int, old: bytes, new: bytes) -> None:
    page = writer.pages[page_index]
    content = page.get_contents()
    data = content.get_data()
    if old in data:
        data = data.replace(old, new, 1)
    else:  # no literal match (text is hex-encoded glyph ids): change a drawn number instead
        data = re.sub(rb"(\d+\.\d+) (\d+\.\d+) Td", rb"\1 7.5 Td", data, count=1)
    stream = DecodedStreamObject()
    stream.set_data(data)
    page[NameObject("/Contents")] = writer._add_object(stream)


def _stream_offsets(data: bytes, marker: bytes, limit: int = 2) -> list[int]:
    """Offsets inside the stream data of objects whose dictionary contains ``marker``."""
    offsets = []
    for match in re.finditer(re.escape(marker), data):
        start = data.find(b"stream", match.end())
        if start < 0:
            continue
        body = start + len(b"stream") + 2
        end = data.find(b"endstream", body)
        if end > body + 10:
            offsets.append(body + (end - body) // 2)
        if len(offsets) >= limit:
            break
    return offsets


def flip(data: bytes, index: int) -> bytes:
    b = bytearray(data)
    b[index] ^= 0x01
    return bytes(b)


def flip_offsets(data: bytes) -> list[int]:
    """20 offsets: in font programs, images and page content, and spread over the file."""
    special = _stream_offsets(data, b"/FontFile", 3) + _stream_offsets(data, b"/Subtype /Image", 2)
    special += _stream_offsets(data, b"/Length1", 1)
    offsets = set(sorted(set(special))[:6])
    n = 20 - len(offsets)
    offsets.update(int(len(data) * (k + 0.5) / n) for k in range(n))
    k = 1
    while len(offsets) < 20:
        offsets.add(k)
        k += 7
    return sorted(offsets)[:20]


def _pyhanko_overlay(data: bytes) -> bytes:
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    writer = IncrementalPdfFileWriter(BytesIO(data), strict=False)
    stream = generic.StreamObject(
        stream_data=b"BT /F1 14 Tf 60 60 Td (Also approved by: CISO) Tj ET"
    )
    ref = writer.add_object(stream)
    resources = generic.DictionaryObject(
        {
            generic.pdf_name("/Font"): generic.DictionaryObject(
                {
                    generic.pdf_name("/F1"): generic.DictionaryObject(
                        {
                            generic.pdf_name("/Type"): generic.pdf_name("/Font"),
                            generic.pdf_name("/Subtype"): generic.pdf_name("/Type1"),
                            generic.pdf_name("/BaseFont"): generic.pdf_name("/Helvetica"),
                        }
                    )
                }
            )
        }
    )
    writer.add_stream_to_page(0, ref, resources=resources)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def _pyhanko_metadata(data: bytes) -> bytes:
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    writer = IncrementalPdfFileWriter(BytesIO(data), strict=False)
    info = generic.DictionaryObject(
        {generic.pdf_name("/Title"): generic.TextStringObject("Approved by the CISO")}
    )
    writer.set_info(writer.add_object(info))
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def sign_again(data: bytes, identity) -> bytes:
    """A second (approval) PAdES signature by ``identity``, appended in a new field."""
    from pyhanko.keys.internal import (
        translate_pyca_cryptography_cert_to_asn1,
        translate_pyca_cryptography_key_to_asn1,
    )
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    signer = signers.SimpleSigner(
        signing_cert=translate_pyca_cryptography_cert_to_asn1(identity.certificate),
        signing_key=translate_pyca_cryptography_key_to_asn1(identity.private_key),
        cert_registry=SimpleCertificateStore.from_certs(
            [translate_pyca_cryptography_cert_to_asn1(identity.ca_certificate)]
        ),
    )
    meta = signers.PdfSignatureMetadata(
        field_name="SecondSignature",
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
    )
    out = BytesIO()
    writer = IncrementalPdfFileWriter(BytesIO(data), strict=False)
    # pyHanko honours our "no changes" certification and refuses; an attacker would not.
    with mock.patch("pyhanko.sign.validation.read_certification_data", return_value=None):
        signers.PdfSigner(meta, signer=signer).sign_pdf(writer, output=out)
    return out.getvalue()


def _many_attachments(count: int, incremental: bool):
    def edit(writer):
        for i in range(count):
            writer.add_attachment(f"extra-{i}.txt", b"x")

    return edit


def _many_updates(data: bytes, count: int) -> bytes:
    for i in range(count):
        data = _incremental(data, lambda w, i=i: w.add_metadata({"/Keywords": f"update {i}"}))
    return data


def _first_revision(data: bytes) -> bytes:
    end = data.find(b"%%EOF")
    return data[: end + 5] + b"\n"


def _remove_signature_field(writer) -> None:
    root = writer._root_object
    if "/AcroForm" in root:
        del root["/AcroForm"]
    for page in writer.pages:
        annots = page.get("/Annots")
        if annots is not None:
            kept = [a for a in annots.get_object() if a.get_object().get("/FT") != "/Sig"]
            page[NameObject("/Annots")] = ArrayObject(kept)
    if "/Perms" in root:
        del root["/Perms"]


def _byte_range_edit(data: bytes, mode: str) -> bytes:
    """Rewrite the /ByteRange numbers in place (same length where possible)."""
    match = re.search(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]", data)
    assert match, "no /ByteRange in a genuine attestation"
    a, b, c, d = (int(x) for x in match.groups())
    # "short" leaves the last bytes uncovered; "gap" starts the second range 10 bytes late
    numbers = (a, b, c, d - 10) if mode == "short" else (a, b, c + 10, d - 10)
    text = b"/ByteRange [%d %d %d %d" % numbers
    original = data[match.start() : match.end() - 1].rstrip()
    text = text.ljust(len(original), b" ")[: len(original)]
    return data[: match.start()] + text + data[match.start() + len(original) :]


def _encrypt(data: bytes) -> bytes:
    def edit(writer):
        writer.encrypt(user_password="", owner_password="owner", algorithm="AES-128")

    return _rewrite(data, edit)


def _pages_of_with_attachments_of(pages_from: bytes, attachments_from: bytes) -> bytes:
    """One change's pages carrying another change's embedded statement."""
    writer = PdfWriter(clone_from=PdfReader(BytesIO(attachments_from)))
    for index in range(len(writer.pages) - 1, -1, -1):
        writer.remove_page(index)
    for page in PdfReader(BytesIO(pages_from)).pages:
        writer.add_page(page)
    return _out(writer)


def variants(genuine: bytes, other: bytes, *, foreign_identity, own_identity) -> dict[str, bytes]:
    """At least 60 tampered copies of ``genuine``; ``other`` is another change's attestation."""
    from attestations.pdf import ENVELOPE_ATTACHMENT_NAME, extract_attachment
    from tests.attestations.test_document_builders import replace_envelope

    out: dict[str, bytes] = {}
    for index in flip_offsets(genuine):
        out[f"byte flip at {index}"] = flip(genuine, index)
    # Text overlays, as incremental updates and as rewritten content streams.
    out["overlay, pyHanko incremental update"] = _pyhanko_overlay(genuine)
    out["overlay, pypdf incremental update"] = _incremental(genuine, _add_overlay)
    out["free-text annotation, pypdf incremental update"] = _incremental(
        genuine, _free_text_annotation
    )
    out["overlay, full rewrite"] = _rewrite(genuine, _add_overlay)
    out["overlay on the sign-off page, full rewrite"] = _rewrite(
        genuine, lambda w: _add_overlay(w, len(w.pages) - 2, "Approved by: CISO")
    )
    out["content stream rewritten"] = _rewrite(
        genuine, lambda w: _replace_in_content(w, 0, b"Tj", b"TJ")
    )
    out["content stream rewritten, incremental"] = _incremental(
        genuine, lambda w: _replace_in_content(w, 1, b"Tj", b"TJ")
    )
    # Pages deleted, inserted, reordered.
    out["sign-off page deleted"] = _rewrite(genuine, lambda w: w.remove_page(len(w.pages) - 2))
    out["first page deleted"] = _rewrite(genuine, lambda w: w.remove_page(0))
    out["page deleted, incremental"] = _incremental(
        genuine, lambda w: w.remove_page(len(w.pages) - 1)
    )
    out["page inserted (blank)"] = _rewrite(genuine, lambda w: w.insert_blank_page(index=1))
    out["page inserted from another change"] = _rewrite(
        genuine, lambda w: w.insert_page(PdfReader(BytesIO(other)).pages[0], 1)
    )
    out["page inserted, incremental"] = _incremental(genuine, lambda w: w.add_blank_page())

    def reorder(writer):
        pages = writer._root_object["/Pages"]["/Kids"]
        pages[0], pages[1] = pages[1], pages[0]

    out["pages reordered"] = _rewrite(genuine, reorder)
    out["pages reordered, incremental"] = _incremental(genuine, reorder)
    # Metadata.
    out["metadata title, pypdf rewrite"] = _rewrite(
        genuine, lambda w: w.add_metadata({"/Title": "Approved by the CISO"})
    )
    out["metadata title, pypdf incremental"] = _incremental(
        genuine, lambda w: w.add_metadata({"/Title": "Approved by the CISO"})
    )
    out["metadata, pyHanko incremental"] = _pyhanko_metadata(genuine)
    producer = re.search(rb"/Producer\s*\(([^)]{4,})\)", genuine)
    if producer:
        start = producer.start(1)
        out["metadata producer edited in place"] = (
            genuine[:start] + b"X" * (producer.end(1) - start) + genuine[producer.end(1) :]
        )
    # Statements swapped between changes.
    other_envelope = extract_attachment(other, ENVELOPE_ATTACHMENT_NAME)
    out["attachment swapped from another change"] = replace_envelope(genuine, other_envelope)
    out["pages of one change, statement of another"] = _pages_of_with_attachments_of(genuine, other)
    out["pages of another change, this statement"] = _pages_of_with_attachments_of(other, genuine)
    # Signatures: another key, a second signature, removed, byte range games.
    out["re-signed by another deployment (second signature)"] = sign_again(
        genuine, foreign_identity
    )
    out["signed twice by this deployment"] = sign_again(genuine, own_identity)
    out["signature removed (first revision only)"] = _first_revision(genuine)
    out["signature field removed, full rewrite"] = _rewrite(genuine, _remove_signature_field)
    out["byte range leaves the end uncovered"] = _byte_range_edit(genuine, "short")
    out["byte range skips bytes after the signature"] = _byte_range_edit(genuine, "gap")
    # Truncation and junk.
    out["truncated to half"] = genuine[: len(genuine) // 2]
    out["truncated by 1 byte"] = genuine[:-1]
    out["truncated by 100 bytes"] = genuine[:-100]
    out["junk before"] = b"junk\n" + genuine
    out["junk after"] = genuine + b"junk"
    out["a second %%EOF after"] = genuine + b"\n%%EOF\n"
    out["whitespace after"] = genuine + b"\n\n"
    # Volume.
    out["2,000 extra attachments, incremental"] = _incremental(
        genuine, _many_attachments(2000, True)
    )
    out["2,000 extra attachments, rewrite"] = _rewrite(genuine, _many_attachments(2000, False))
    out["12 incremental updates"] = _many_updates(genuine, 12)
    out["encrypted"] = _encrypt(genuine)
    # Small numeric edits a person could make with a text editor.
    out["media box widened"] = _rewrite(
        genuine,
        lambda w: w.pages[0].__setitem__(
            NameObject("/MediaBox"),
            ArrayObject([NumberObject(0), NumberObject(0), FloatObject(600), FloatObject(842)]),
        ),
    )
    out["page rotated"] = _rewrite(genuine, lambda w: w.pages[0].rotate(90))
    out["author metadata added"] = _rewrite(
        genuine, lambda w: w.add_metadata({"/Author": TextStringObject("CISO")})
    )
    return out
