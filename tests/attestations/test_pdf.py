"""PDF rendering: attachments, text, layout, shipped fonts, and the locked-down URL fetcher."""

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO

import pytest
from pypdf import PdfReader
from weasyprint import HTML

from attestations.pdf import (
    ENVELOPE_ATTACHMENT_NAME,
    AssetRefused,
    SafeURLFetcher,
    attachment_names,
    extract_attachment,
    pdf_text,
    render_pdf,
    resolve_asset,
)

from .conftest import CONTENT_SHA, REPO


class RecordingFetcher(SafeURLFetcher):
    """Counts what the renderer asked for and what was served or refused."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.served: list[str] = []
        self.refused: list[str] = []

    def fetch(self, url, headers=None):
        try:
            response = super().fetch(url, headers)
        except AssetRefused:
            self.refused.append(url)
            raise
        self.served.append(url)
        return response


def page_texts(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(BytesIO(pdf)).pages]


# ------------------------------------------------------------------ attachments and text


def test_the_envelope_attachment_equals_the_original_bytes(attestation_pdf, envelope):
    assert attestation_pdf.startswith(b"%PDF-")
    assert attachment_names(attestation_pdf) == [ENVELOPE_ATTACHMENT_NAME]
    assert extract_attachment(attestation_pdf, ENVELOPE_ATTACHMENT_NAME) == envelope


def test_several_attachments_keep_their_names_and_bytes():
    blobs = [("a.json", b'{"a":1}', "first"), ("b.bin", bytes(range(256)) * 40, "second")]
    pdf = render_pdf("<p>two files</p>", attachments=blobs)
    assert sorted(attachment_names(pdf)) == ["a.json", "b.bin"]
    for name, content, _ in blobs:
        assert extract_attachment(pdf, name) == content
    assert extract_attachment(pdf, "c.json") is None


def test_output_is_pdf_a_3b_with_the_envelope_as_an_associated_file(attestation_pdf):
    reader = PdfReader(BytesIO(attestation_pdf))
    root = reader.trailer["/Root"]
    xmp = root["/Metadata"].get_object().get_data().decode()
    assert 'pdfaid:part="3"' in xmp and 'pdfaid:conformance="B"' in xmp
    associated = [ref.get_object() for ref in root["/AF"]]
    assert len(associated) == 1  # listed once (WeasyPrint 70 lists it twice; we dedupe)
    assert associated[0]["/F"] == ENVELOPE_ATTACHMENT_NAME
    assert associated[0]["/AFRelationship"] == "/Data"
    assert "/OutputIntents" in root


def test_pdf_text_contains_the_rendered_facts(attestation_pdf):
    text = pdf_text(attestation_pdf)
    for expected in ("Redact e-mail addresses", CONTENT_SHA, "pass", "monitored", "0.93"):
        assert expected in text


def test_user_text_is_escaped_not_interpreted(render_child):
    pdf = render_pdf(render_child(user_text="<b>bold</b> <script>alert(1)</script>"))
    assert "<b>bold</b> <script>alert(1)</script>" in pdf_text(pdf)


@pytest.mark.parametrize(
    "broken", [b"", b"%PDF-1.7\n", b"not a pdf at all", b"%PDF-1.7\n" + os.urandom(2000)]
)
def test_readers_never_raise_on_broken_pdfs(broken):
    assert extract_attachment(broken, ENVELOPE_ATTACHMENT_NAME) is None
    assert attachment_names(broken) == []
    assert pdf_text(broken) == ""


def test_a_duplicated_attachment_name_is_ambiguous():
    pdf = render_pdf("<p>x</p>", attachments=[("a.json", b"1", ""), ("a.json", b"2", "")])
    assert attachment_names(pdf) == ["a.json", "a.json"]
    assert extract_attachment(pdf, "a.json") is None


# ------------------------------------------------------------------ layout


def test_every_page_has_the_change_id_and_page_x_of_y(attestation_pdf):
    pages = page_texts(attestation_pdf)
    assert len(pages) >= 4  # cover, contents, two chapters
    for number, text in enumerate(pages, start=1):
        assert "Change 42" in text
        assert f"Page {number} of {len(pages)}" in text


def test_table_of_contents_points_at_the_right_pages(attestation_pdf):
    pages = page_texts(attestation_pdf)
    toc = next(text for text in pages if "Contents" in text)
    for title in ("Protocol diff", "Evaluation evidence"):
        page = next(n for n, text in enumerate(pages, 1) if f"{title}\n" in text and text != toc)
        assert any(
            line.startswith(title) and line.rstrip().endswith(str(page))
            for line in toc.splitlines()
        ), (title, page, toc)


def test_diff_lines_keep_their_markers(attestation_pdf):
    text = pdf_text(attestation_pdf)
    assert "- Quote the customer's message verbatim." in text
    assert "+ Never repeat e-mail addresses." in text


def test_only_the_shipped_fonts_are_loaded_and_embedded(render_child):
    # given a thread of its own, so the per-thread font configuration starts empty
    fetcher, result = RecordingFetcher(), {}
    thread = threading.Thread(
        target=lambda: result.update(pdf=render_pdf(render_child(), url_fetcher=fetcher))
    )
    thread.start()
    thread.join()
    pdf = result["pdf"]
    # then the stylesheet and its three fonts came from static/, and nothing else was asked for
    assert fetcher.refused == []
    assert sorted(url.rsplit("/", 1)[-1] for url in fetcher.served) == [
        "DejaVuSans-Bold.ttf",
        "DejaVuSans.ttf",
        "DejaVuSansMono.ttf",
        "pdf.css",
    ]
    fonts = set()
    for page in PdfReader(BytesIO(pdf)).pages:
        for font in page["/Resources"]["/Font"].values():
            fonts.add(str(font.get_object()["/BaseFont"]).split("+", 1)[-1])
    assert fonts and all(name.startswith("Attestation-") for name in fonts), fonts


def test_shipped_fonts_and_licence_are_present():
    fonts = REPO / "static" / "fonts"
    for name in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansMono.ttf"):
        assert (fonts / name).read_bytes()[:4] == b"\x00\x01\x00\x00"
    assert "Bitstream" in (fonts / "LICENSE-DejaVu.txt").read_text()


# ------------------------------------------------------------------ the URL fetcher


@pytest.mark.parametrize(
    "url",
    [
        "asset:/fonts/DejaVuSans.ttf",
        "asset:fonts/DejaVuSans.ttf",
        "asset:/attestations/pdf.css",
        "asset:/static/attestations/pdf.css",  # what {% static %} joined onto asset:/ gives
        "asset:/fonts/DejaVu%53ans.ttf",
        "asset:/fonts/DejaVuSans.ttf?v=2#x",
    ],
)
def test_static_assets_are_served(url):
    assert resolve_asset(url).is_file()
    response = SafeURLFetcher().fetch(url)
    assert response.read()[:4] in (b"\x00\x01\x00\x00", b"/*\n ")


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "FILE:///etc/passwd",
        "http://127.0.0.1:9/x.png",
        "https://example.com/a.css",
        "ftp://example.com/x.ttf",
        "data:text/css,body{}",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "gopher://127.0.0.1/",
        "//example.com/x.css",
        "fonts/DejaVuSans.ttf",
        "asset://example.com/fonts/DejaVuSans.ttf",
        "asset:/../fonts/DejaVuSans.ttf",
        "asset:/fonts/../../pyproject.toml",
        "asset:/fonts/%2e%2e/%2e%2e/etc/passwd.css",
        "asset:/fonts/..%2f..%2fmanage.py",
        "asset:/fonts//DejaVuSans.ttf",
        "asset:/fonts\\DejaVuSans.ttf",
        "asset:/fonts/DejaVuSans.ttf%00.css",
        "asset:/fonts/LICENSE-DejaVu.txt",
        "asset:/.hidden/x.css",
        "asset:/fonts/missing.ttf",
        "asset:/",
    ],
)
def test_everything_else_is_refused(url):
    with pytest.raises(AssetRefused):
        SafeURLFetcher().fetch(url)


def test_a_symlink_out_of_the_static_root_is_refused(tmp_path):
    root = tmp_path / "static"
    root.mkdir()
    secret = tmp_path / "secret.css"
    secret.write_text("body{}")
    (root / "link.css").symlink_to(secret)
    (root / "ok.css").write_text("p{}")
    assert resolve_asset("asset:/ok.css", roots=[("", root)]) == (root / "ok.css").resolve()
    with pytest.raises(AssetRefused):
        resolve_asset("asset:/link.css", roots=[("", root)])


def test_prefixed_staticfiles_dirs_are_honoured(tmp_path):
    (tmp_path / "a.css").write_text("p{}")
    roots = [("vendor", tmp_path)]
    assert resolve_asset("asset:/vendor/a.css", roots=roots) == (tmp_path / "a.css").resolve()
    with pytest.raises(AssetRefused):
        resolve_asset("asset:/a.css", roots=roots)


def test_the_function_form_works_as_a_weasyprint_70_fetcher():
    html = '<link rel="stylesheet" href="attestations/pdf.css"><img src="file:///etc/passwd">x'
    pdf = HTML(string=html, base_url="asset:/", url_fetcher=SafeURLFetcher()).write_pdf()
    assert pdf.startswith(b"%PDF-")


@pytest.fixture
def local_http_server():
    """A 127.0.0.1 server that records every request it receives."""
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            requests.append(self.path)
            body = b"body { color: red }"
            self.send_response(200)
            self.send_header("Content-Type", "text/css")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_external_and_file_urls_in_crafted_input_are_never_fetched(local_http_server):
    # given HTML that tries every way WeasyPrint loads a resource
    base, requests = local_http_server
    targets = [
        "file:///etc/passwd",
        f"{base}/x.png",
        "https://example.com/a.css",
        "http://127.0.0.1:9/x.png",
    ]
    tags = []
    for n, url in enumerate(targets):
        tags += [
            f'<img src="{url}">',
            f'<link rel="stylesheet" href="{url}">',
            f'<link rel="attachment" href="{url}">',
            f'<a rel="attachment" href="{url}">attach {n}</a>',
            f'<object data="{url}"></object>',
            f'<svg width="10" height="10"><image href="{url}" width="10" height="10"/></svg>',
            f"<div style=\"background: url('{url}')\">bg {n}</div>",
            f"<style>@import url('{url}'); @font-face {{ font-family: X{n}; src: url('{url}') }}"
            f" p.x{n} {{ font-family: X{n}; list-style-image: url('{url}') }}</style>",
        ]
    html = (
        f'<html><head><link rel="stylesheet" href="{base}/head.css">'
        f'<base href="{base}/"></head><body><p>Safe</p>{"".join(tags)}'
        '<img src="relative.png"></body></html>'
    )
    fetcher = RecordingFetcher()
    # when
    pdf = render_pdf(html, attachments=[("keep.json", b"{}", "")], url_fetcher=fetcher)
    # then nothing left the process and nothing from disk was embedded
    assert requests == []
    assert fetcher.served == []
    for url in targets:
        assert url in fetcher.refused
    assert any(url.startswith(base) for url in fetcher.refused)
    assert attachment_names(pdf) == ["keep.json"]
    assert "root:" not in pdf_text(pdf)
    assert b"root:x:0:0" not in pdf
