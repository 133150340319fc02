"""Render attestation HTML to PDF, and read back what a PDF carries.

Rendering is locked down because the HTML contains user text (rationales, protocol bodies,
reviewer comments). Even escaped, a crafted template input or a sanitiser gap could smuggle in
``<img src="file:///etc/passwd">``, ``<link rel="attachment" href="...">`` (which would embed a
server file into the PDF) or a CSS ``url()`` that calls an internal service. So WeasyPrint gets
``SafeURLFetcher``, which serves only files from the project's static directories under the
``asset:`` scheme (``asset:/fonts/DejaVuSans.ttf``, ``asset:/attestations/pdf.css``) and refuses
everything else (``file:``, ``http(s):``, ``data:``, ``ftp:``, any other scheme) by raising;
WeasyPrint then skips that resource and logs it. ``data:`` is refused too: nothing we
render needs it (charts are inline SVG), and allowing it would let input-controlled content
inject stylesheets or attachments.

Fonts are the DejaVu files shipped in ``static/fonts`` and loaded through ``@font-face`` in
``static/attestations/pdf.css``, so the output is the same on every machine.

The PDF is PDF/A-3b (ISO 19005-3, the archival profile that allows embedded files of any type).
``render_pdf`` can embed attachments itself (``AFRelationship /Data``, WeasyPrint 70); the
attestation service renders the pages without one, digests them (``page_digests_of``), and
embeds the signed envelope together with the PAdES signature (``attestations.pades``).
"""

import contextlib
import gc
import logging
import os
import threading
import urllib.parse
from collections.abc import Iterable, Sequence
from io import BytesIO
from pathlib import Path

from weasyprint import HTML, Attachment
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import URLFetcher, URLFetcherResponse

__all__ = [
    "ASSET_SCHEME",
    "ENVELOPE_ATTACHMENT_NAME",
    "PDF_VARIANT",
    "AssetRefused",
    "SafeURLFetcher",
    "asset_roots",
    "attachment_names",
    "extract_attachment",
    "pdf_text",
    "render_pdf",
    "resolve_asset",
]

logger = logging.getLogger(__name__)

ASSET_SCHEME = "asset"
ENVELOPE_ATTACHMENT_NAME = "attestation.dsse.json"
PDF_VARIANT = "pdf/a-3b"

# Teach urljoin that asset: URLs are hierarchical, so "../fonts/x.ttf" inside
# asset:/attestations/pdf.css resolves to asset:/fonts/x.ttf. Not added to uses_netloc:
# "//host/x" then becomes asset://host/x, which resolve_asset refuses.
if ASSET_SCHEME not in urllib.parse.uses_relative:
    urllib.parse.uses_relative.append(ASSET_SCHEME)

# Only what a PDF layout needs; a static directory may hold other things (JS, source maps)
# that have no business inside an attestation.
_CONTENT_TYPES = {
    ".css": "text/css",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
}

_PROJECT_STATIC = Path(__file__).resolve().parent.parent / "static"


class AssetRefused(ValueError):
    """A URL the PDF renderer will not load. WeasyPrint catches it and skips the resource."""


def _django_settings():
    """Django's settings when a project is configured, else None (scripts, bare tests)."""
    from django.conf import settings

    # ``configured`` stays False until first access even when DJANGO_SETTINGS_MODULE is set.
    if settings.configured or os.environ.get("DJANGO_SETTINGS_MODULE"):
        return settings
    return None


def _static_url_prefix() -> str:
    settings = _django_settings()
    if settings is None:
        return "static"
    return urllib.parse.urlsplit(settings.STATIC_URL or "").path.strip("/")


def asset_roots() -> list[tuple[str, Path]]:
    """(URL prefix, directory) pairs the fetcher may serve from.

    ``settings.STATICFILES_DIRS`` when Django is configured (entries may be ``(prefix, path)``
    pairs, as Django allows), otherwise the repository's ``static/`` directory, so rendering
    also works in scripts and tests without a Django project.
    """
    settings = _django_settings()
    dirs: Iterable = settings.STATICFILES_DIRS if settings is not None else [_PROJECT_STATIC]
    roots = []
    for entry in dirs:
        prefix, directory = entry if isinstance(entry, tuple | list) else ("", entry)
        roots.append((str(prefix).strip("/"), Path(directory)))
    return roots


def resolve_asset(url: str, roots: Sequence[tuple[str, Path]] | None = None) -> Path:
    """Map an ``asset:`` URL to a file inside the static roots, or raise ``AssetRefused``.

    Accepted: ``asset:/<path>`` or ``asset:<path>``; a leading ``STATIC_URL`` segment (what
    ``{% static %}`` produces, e.g. ``/static/fonts/x.ttf`` joined onto ``asset:/``) is
    stripped. Refused: any other scheme, a host part, empty, ``.`` or ``..`` or hidden path
    segments, backslashes, NUL, unknown file types, and anything whose real path (after
    symlinks) leaves its root.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except (ValueError, TypeError) as exc:
        raise AssetRefused(f"malformed URL: {exc}") from None
    if parts.scheme.lower() != ASSET_SCHEME:
        raise AssetRefused(f"the {parts.scheme or 'relative'!s} scheme is not served")
    if parts.netloc:
        raise AssetRefused("asset URLs have no host part")
    path = urllib.parse.unquote(parts.path).lstrip("/")
    segments = path.split("/")
    if any(not seg or seg.startswith(".") or "\\" in seg or "\x00" in seg for seg in segments):
        raise AssetRefused(f"unsafe asset path {path!r}")
    suffix = Path(segments[-1]).suffix.lower()
    if suffix not in _CONTENT_TYPES:
        raise AssetRefused(f"{suffix or 'extension-less'} files are not served")

    static_prefix = _static_url_prefix()
    candidates = [segments]
    if static_prefix and segments[0] == static_prefix and len(segments) > 1:
        candidates.insert(0, segments[1:])
    for prefix, root in roots if roots is not None else asset_roots():
        prefix_parts = prefix.split("/") if prefix else []
        root_real = root.resolve()
        for candidate in candidates:
            if candidate[: len(prefix_parts)] != prefix_parts:
                continue
            target = root_real.joinpath(*candidate[len(prefix_parts) :]).resolve()
            if target.is_relative_to(root_real) and target.is_file():
                return target
    raise AssetRefused(f"no static asset {path!r}")


class SafeURLFetcher(URLFetcher):
    """WeasyPrint's fetcher with every network and file handler replaced by static assets.

    WeasyPrint 70 requires a ``URLFetcher`` instance (it reads ``_fail_on_errors`` off it and
    expects ``URLFetcherResponse`` back); overriding ``fetch`` is its documented extension
    point. ``allowed_protocols`` and no redirects are set as well, as a second lock in case
    a future version routes a request around ``fetch``.
    """

    def __init__(self, roots: Sequence[tuple[str, Path]] | None = None, **kwargs):
        kwargs.setdefault("fail_on_errors", False)
        super().__init__(allowed_protocols={ASSET_SCHEME}, allow_redirects=False, **kwargs)
        self._roots = roots

    def fetch(self, url, headers=None):
        try:
            target = resolve_asset(url, self._roots)
        except AssetRefused as exc:
            logger.info("PDF renderer refused %.200s: %s", url, exc)
            raise
        content_type = _CONTENT_TYPES[target.suffix.lower()]
        return URLFetcherResponse(
            url, body=target.read_bytes(), headers={"Content-Type": content_type}
        )


_local = threading.local()


def _font_config() -> FontConfiguration:
    # Reusing one FontConfiguration per thread keeps the @font-face files registered after
    # the first render (a large part of a warm render's cost). Per thread because
    # Fontconfig/Pango objects are not safe to share between threads.
    config = getattr(_local, "font_config", None)
    if config is None:
        config = _local.font_config = FontConfiguration()
    return config


def _dedupe_associated_files(document, pdf) -> None:
    # WeasyPrint 70's PDF/A-3 code lists each attachment twice in the catalog's /AF array
    # (once from the EmbeddedFiles name tree, once from the Filespec scan). Harmless to
    # readers, but validators flag it, and an archival file should be clean.
    associated = pdf.catalog.get("AF")
    if associated:
        associated[:] = list(dict.fromkeys(associated))


@contextlib.contextmanager
def _collector_paused():
    """Keep the cyclic garbage collector out of a render, then collect once at the end.

    WeasyPrint allocates millions of short-lived objects per document, which triggers dozens
    of collections mid-render, several of them full ones that walk the whole process heap.
    Pausing the collector and collecting once afterwards does the same reclaiming in one pass:
    the render's p50 fell by about a fifth (bench/bench_attestation_render.py), and the final
    ``collect`` is inside the caller's time, so nothing is hidden from the benchmark. Memory
    stays bounded: a render peaks at a few tens of MiB, and the pause ends with the render.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.collect()


def render_pdf(
    html: str,
    *,
    attachments: Sequence[tuple[str, bytes, str]] = (),
    base_url: str = "asset:/",
    url_fetcher: URLFetcher | None = None,
) -> bytes:
    """Render ``html`` to PDF/A-3b bytes with embedded file attachments.

    ``attachments`` are ``(file name, content, description)``, e.g.
    ``(ENVELOPE_ATTACHMENT_NAME, envelope_bytes, "Signed DSSE envelope")``; the MIME type is
    guessed from the name. Relative URLs resolve against ``base_url`` (``asset:/``), so
    templates write ``href="attestations/pdf.css"`` or use ``{% static %}``. ``url_fetcher``
    exists for tests that count requests; it defaults to a fresh ``SafeURLFetcher``.
    Rendering is CPU-bound and may take seconds for long documents: call it from a worker with
    a time limit, not in a web request.
    """
    fetcher = url_fetcher or SafeURLFetcher()
    pdf_attachments = [
        Attachment(
            string=bytes(content),
            name=name,
            description=description,
            relationship="Data",
            url_fetcher=fetcher,
        )
        for name, content, description in attachments
    ]
    document = HTML(string=html, base_url=base_url, url_fetcher=fetcher)
    with _collector_paused():
        return document.write_pdf(
            font_config=_font_config(),
            attachments=pdf_attachments,
            pdf_variant=PDF_VARIANT,
            finisher=_dedupe_associated_files,
        )


def _reader(pdf_bytes: bytes):
    from pypdf import PdfReader

    return PdfReader(BytesIO(pdf_bytes), strict=False)


def attachment_names(pdf_bytes: bytes) -> list[str]:
    """Names of the embedded files (duplicates repeated), or [] for an unreadable PDF."""
    try:
        return [entry.name for entry in _reader(pdf_bytes).attachment_list]
    except Exception:
        return []


def extract_attachment(pdf_bytes: bytes, name: str) -> bytes | None:
    """The content of the embedded file called ``name``.

    None when the PDF cannot be read, has no such file, or has more than one: a second
    file with the envelope's name is ambiguous, and verification must not pick one. Never
    raises, because it runs on uploaded, untrusted files.
    """
    try:
        contents = _reader(pdf_bytes).attachments.get(name)
    except Exception:
        logger.debug("cannot read attachments", exc_info=True)
        return None
    if not contents or len(contents) != 1:
        return None
    return contents[0]


def pdf_text(pdf_bytes: bytes) -> str:
    """All page text, pages separated by newlines; "" when the PDF cannot be read.

    For tests and the auditor's view; the signed envelope, not this text, is what verifies.
    """
    try:
        return "\n".join(page.extract_text() or "" for page in _reader(pdf_bytes).pages)
    except Exception:
        logger.debug("cannot extract text", exc_info=True)
        return ""


# --- page digests (issue 15): what binds the pages to the signed statement --------------------

_SKIPPED_STREAM_KEYS = {"/Length", "/Filter", "/DecodeParms", "/DL"}
PAGE_KEYS = ("/MediaBox", "/CropBox", "/Rotate")


def _canonical(obj, memo: dict, depth: int = 0) -> bytes:
    """A layout-independent byte form of a PDF object (see ``page_digests_of``)."""
    from pypdf.generic import (
        ArrayObject,
        DictionaryObject,
        IndirectObject,
        StreamObject,
    )

    if depth > 64:
        raise ValueError("PDF objects nested too deeply")
    key = None
    if isinstance(obj, IndirectObject):
        key = (obj.idnum, obj.generation)
        if key in memo:
            return memo[key]
        memo[key] = b"<cycle>"
        obj = obj.get_object()
    if isinstance(obj, StreamObject):
        import hashlib

        head = {k: v for k, v in obj.items() if k not in _SKIPPED_STREAM_KEYS}
        out = b"S" + _canonical(DictionaryObject(head), memo, depth + 1)
        out += hashlib.sha256(obj.get_data()).hexdigest().encode()
    elif isinstance(obj, DictionaryObject):
        parts = [
            str(k).encode("utf-8", "surrogatepass") + b"=" + _canonical(v, memo, depth + 1)
            for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))
            if k != "/Parent"
        ]
        out = b"<<" + b";".join(parts) + b">>"
    elif isinstance(obj, ArrayObject):
        out = b"[" + b",".join(_canonical(v, memo, depth + 1) for v in obj) + b"]"
    elif obj is None:
        out = b"null"
    else:
        out = repr(obj).encode("utf-8", "surrogatepass")
    if key is not None:
        memo[key] = out
    return out


def page_digests_of(reader) -> list[str]:
    """SHA-256 of each page's content, in page order, from an open pypdf reader.

    A page's content is what draws it: its content streams (decoded, so re-compression does
    not matter), every resource they use (fonts with their glyphs and Unicode maps, images,
    form XObjects, decoded and walked recursively, independent of object numbers and of
    where in the file they sit) and its boxes and rotation. Annotations are not content: the
    signature's own widget is one, and any later annotation fails the PAdES checks anyway.
    Changing a glyph, a font's Unicode map, an image or a single drawn character changes the
    digest, which extracted text alone would miss (and costs ten times less to compute).
    """
    import hashlib

    memo: dict = {}
    digests = []
    for page in reader.pages:
        contents = page.get_contents()
        parts = [b"C" + hashlib.sha256(contents.get_data() if contents else b"").digest()]
        parts.append(b"R" + _canonical(page.get("/Resources"), memo))
        for name in PAGE_KEYS:
            parts.append(name.encode() + _canonical(page.get(name), memo))
        digests.append(hashlib.sha256(b"|".join(parts)).hexdigest())
    return digests


def page_digests(pdf_bytes: bytes) -> list[str] | None:
    """``page_digests_of`` for PDF bytes; None when the pages cannot be read."""
    try:
        return page_digests_of(_reader(pdf_bytes))
    except Exception:
        logger.debug("cannot digest the pages", exc_info=True)
        return None
