"""A strict Content-Security-Policy on every page, and templates it does not break.

The policy allows scripts and styles only from our own origin, with no inline script and
no eval; the templates are checked for anything the policy would block (an inline script,
an on*= handler, a javascript: URL, an inline style).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

pytestmark = pytest.mark.django_db

TEMPLATES = Path(settings.BASE_DIR) / "templates"
# Rendered to PDF by WeasyPrint only, never served to a browser, so no CSP applies to them:
# the attestation, its base, and every part it includes (read from the template itself, so
# a new PDF block is exempt and a page template is never exempt by accident).
_PDF_ROOTS = ("attestations/attestation.html", "attestations/_base_pdf.html")
PDF_ONLY = set(_PDF_ROOTS) | {
    name
    for root in _PDF_ROOTS
    if (TEMPLATES / root).exists()
    for name in re.findall(r'{%\s*include\s+"([^"]+)"', (TEMPLATES / root).read_text())
}


def _directives(header: str) -> dict[str, list[str]]:
    out = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


@pytest.mark.parametrize(
    "name", ["dashboard", "change-list", "system-list", "suite-list", "audit-log"]
)
def test_pages_carry_a_strict_policy(client, admin_user, name):
    client.force_login(admin_user)
    response = client.get(reverse(name))
    assert response.status_code == 200
    policy = _directives(response["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]


def test_the_login_page_and_api_answers_carry_it_too(client):
    assert "script-src 'self'" in client.get(reverse("login"))["Content-Security-Policy"]
    response = client.get("/api/v1/changes/")
    assert "default-src 'self'" in response["Content-Security-Policy"]


def test_api_docs_load_their_script_from_a_file(client, engineer):
    client.force_login(engineer)
    page = client.get(reverse("api-docs"))
    assert page.status_code == 200
    policy = _directives(page["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]  # only styles are relaxed on this page
    html = page.content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert client.get(reverse("api-docs") + "?script").status_code == 200


def _served_templates():
    for path in sorted(TEMPLATES.rglob("*.html")):
        name = path.relative_to(TEMPLATES).as_posix()
        if name not in PDF_ONLY:
            yield name, path.read_text()


@pytest.mark.parametrize(("name", "text"), list(_served_templates()), ids=lambda v: v[:60])
def test_no_template_has_what_the_policy_blocks(name, text):
    # an executable inline <script> (a JSON data block with type="application/json" is fine)
    for tag in re.findall(r"<script\b[^>]*>", text, flags=re.I):
        assert "src=" in tag or "application/json" in tag, (name, tag)
    assert not re.search(r"\son[a-z]+\s*=", text, flags=re.I), name  # onclick= etc.
    assert "javascript:" not in text.lower(), name
    assert not re.search(r"\sstyle\s*=", text, flags=re.I), name
    assert not re.search(r"<style\b", text, flags=re.I), name


def test_htmx_inline_styles_and_eval_are_off(client, engineer):
    client.force_login(engineer)
    html = client.get(reverse("dashboard")).content.decode()
    assert '"includeIndicatorStyles": false' in html and '"allowEval": false' in html
