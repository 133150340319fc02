"""XSS payloads in every user-written field never reach a page unescaped.

Each payload goes into the title, the Markdown fields, the expected changes and the proposed
protocol (body and system prompt); the change page, the list, the review page and the
protocol pages are parsed and compared with what our own templates emit.
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.urls import reverse

from changes import services
from changes.models import ChangeRequest
from tests.changes.test_markdown import url_scheme
from tests.changes.test_ui_change_form import form_data
from tests.changes.test_ui_pages import login
from tests.changes.xss_payloads import SAFE_URL_SCHEMES, XSS_PAYLOADS
from tests.factories import ProtocolFactory, SystemFactory, change_fields

pytestmark = [
    pytest.mark.heavy,
    pytest.mark.django_db,
    pytest.mark.usefixtures("passing_evaluations", "recorded_attestations"),
]

ALWAYS_FORBIDDEN = {"iframe", "frame", "frameset", "object", "embed", "applet", "svg", "math",
                    "img", "base", "style", "video", "audio", "portal", "template", "xmp",
                    "plaintext", "noscript", "marquee", "isindex", "keygen"}  # fmt: skip
URL_ATTRS = {"href", "src", "action", "formaction", "data", "xlink:href", "background", "cite",
             "poster"}  # fmt: skip


class Page(HTMLParser):
    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k.lower(): v or "" for k, v in attrs}))

    handle_startendtag = handle_starttag

    def named(self, name):
        return [attrs for tag, attrs in self.tags if tag == name]


def assert_page_is_clean(html: str) -> None:
    page = Page(html)
    names = {tag for tag, _ in page.tags}
    assert not names & ALWAYS_FORBIDDEN, names & ALWAYS_FORBIDDEN
    # only our two scripts, both from our static files
    scripts = page.named("script")
    assert len(scripts) == 2 and all(s.get("src", "").startswith("/static/") for s in scripts)
    # only our two <link>s and three <meta>s (charset, viewport, htmx-config), in the head
    assert [link.get("rel") for link in page.named("link")] == ["icon", "stylesheet"]
    assert [m.get("name") for m in page.named("meta")] == [None, "viewport", "htmx-config"]
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name, value)
            assert name not in {"style", "srcdoc", "formaction"}, (tag, name)
            if name in URL_ATTRS:
                scheme = url_scheme(value)
                allowed = scheme is None or scheme in SAFE_URL_SCHEMES
                allowed |= tag == "link" and attrs.get("rel") == "icon"  # our data: favicon
                assert allowed, (tag, name, value)
        if tag == "form":
            assert attrs.get("action", "/").startswith(("/", "?")) or "action" not in attrs
        if tag == "input":
            assert attrs.get("value") != "clobbered"


def _db_safe(text: str) -> str:
    # PostgreSQL text cannot hold NUL; the web form refuses it anyway (see the test below).
    return text.replace("\x00", "")


def hostile_change(author, payload: str) -> ChangeRequest:
    payload = _db_safe(payload)
    system = SystemFactory(owner_team=author.teams.first(), description=payload)
    base = ProtocolFactory(system=system, version="v1")
    proposed = ProtocolFactory(system=system, version="v2", body=payload,
                               system_prompt=payload or "x")  # fmt: skip
    fields = change_fields(
        title=payload[:200].strip() or "x",
        rationale=payload,
        test_plan=payload,
        rollout_plan=payload,
        backout_plan=payload,
        expected_changes=[
            {"behaviour": payload[:400] or "x", "before": payload, "after": payload}
        ],  # fmt: skip
    )
    return services.change_request_create(
        actor=author, system=system, base_protocol=base, proposed_protocol=proposed, **fields
    )


def test_baseline_pages_pass_the_checker(client, engineer):
    # given a benign change, then our own markup passes the same checks
    change = hostile_change(engineer, "A benign **title**")
    login(client, engineer)
    for url in (reverse("change-detail", args=[change.pk]), reverse("change-list")):
        assert_page_is_clean(client.get(url).content.decode())


@pytest.mark.parametrize(
    "payload", XSS_PAYLOADS, ids=[f"xss{i:03d}" for i in range(len(XSS_PAYLOADS))]
)
def test_payload_never_reaches_the_pages_unescaped(client, engineer, auditor, payload):
    # given a change whose every text field carries the payload
    change = hostile_change(engineer, payload)
    login(client, engineer)
    # when its pages are rendered
    pages = [
        reverse("change-detail", args=[change.pk]),
        reverse("change-list"),
        reverse("change-review", args=[change.pk]),
        reverse("protocol-detail", args=[change.system_id, change.proposed_protocol_id]),
        reverse("system-detail", args=[change.system_id]),
    ]
    for url in pages:
        response = client.get(url)
        # then each page is intact: no injected tag, handler or URL
        assert response.status_code == 200, url
        assert_page_is_clean(response.content.decode())
    login(client, auditor)
    for url in (reverse("audit-changes"), reverse("audit-log")):
        assert_page_is_clean(client.get(url).content.decode())


def test_hostile_title_is_escaped_in_place(client, engineer):
    change = hostile_change(engineer, '<script>alert("t")</script>')
    login(client, engineer)
    html = client.get(reverse("change-detail", args=[change.pk])).content.decode()
    assert "&lt;script&gt;alert(&quot;t&quot;)&lt;/script&gt;" in html


def test_markdown_preview_neutralises_every_payload(client, engineer):
    login(client, engineer)
    for payload in XSS_PAYLOADS:
        html = client.post(
            reverse("markdown-preview"), {"field": "rationale", "rationale": payload}
        ).content.decode()
        for tag, attrs in Page(html).tags:
            assert tag not in ALWAYS_FORBIDDEN | {"script", "form", "input", "meta", "link"}
            assert not any(name.startswith("on") for name in attrs), (payload, html)


def test_nul_characters_are_refused_by_the_form(client, engineer):
    # given a form with a NUL character in the title
    system = SystemFactory(owner_team=engineer.teams.first())
    v1 = ProtocolFactory(system=system, version="v1")
    v2 = ProtocolFactory(system=system, version="v2")
    login(client, engineer)
    response = client.post(
        reverse("change-create"), form_data(system, v1, v2, title="<scr\x00ipt>")
    )
    # then it is a field error and nothing is created
    assert response.status_code == 400
    assert "Null characters are not allowed." in response.content.decode()
    assert not ChangeRequest.objects.exists()
