"""render_markdown: Markdown features survive, every XSS payload is neutralised.

The checks parse the output with html.parser (tags, attributes, URL schemes), not substrings.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.template import Context, Template
from django.utils.safestring import SafeString

from changes.markdown import render_markdown
from tests.changes.xss_payloads import (
    FORBIDDEN_TAGS,
    SAFE_URL_SCHEMES,
    URL_ATTRIBUTES,
    XSS_PAYLOADS,
)


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend((tag, name.lower(), value or "") for name, value in attrs)

    handle_startendtag = handle_starttag


def parse(html: str) -> _Collector:
    collector = _Collector()
    collector.feed(html)
    collector.close()
    return collector


_CONTROL = re.compile(r"[\x00-\x20\x7f]+")


def url_scheme(value: str) -> str | None:
    """The scheme a browser would see (control characters and whitespace dropped), or None."""
    cleaned = _CONTROL.sub("", value).lower()
    match = re.match(r"^([a-z][a-z0-9+.\-]*):", cleaned)
    return f"{match.group(1)}:" if match else None


def assert_safe(html: str) -> None:
    parsed = parse(html)
    bad_tags = FORBIDDEN_TAGS.intersection(parsed.tags)
    assert not bad_tags, f"forbidden tags {bad_tags} in {html!r}"
    for tag, name, value in parsed.attrs:
        assert not name.startswith("on"), f"event handler {name} on <{tag}> in {html!r}"
        assert name not in {"style", "srcdoc", "formaction", "xmlns", "id", "name"}, (
            f"attribute {name} on <{tag}> in {html!r}"
        )
        if name in URL_ATTRIBUTES:
            scheme = url_scheme(value)
            assert scheme is None or scheme in SAFE_URL_SCHEMES, (
                f"{name}={value!r} on <{tag}> in {html!r}"
            )
    for tag, name, value in parsed.attrs:
        if tag == "a" and name == "rel":
            assert {"noopener", "noreferrer"} <= set(value.split())
    assert "<script" not in html.lower()
    # the words may survive as visible text, never inside any attribute value
    for _, _, value in parsed.attrs:
        squeezed = _CONTROL.sub("", value).lower()
        assert "javascript:" not in squeezed and "vbscript:" not in squeezed


def test_there_are_at_least_100_payloads():
    # given the shared payload list
    # then it is big enough to be worth reusing and has no duplicates
    assert len(XSS_PAYLOADS) >= 100
    assert len(set(XSS_PAYLOADS)) == len(XSS_PAYLOADS)


@pytest.mark.parametrize(
    "payload", XSS_PAYLOADS, ids=[f"xss{i:03d}" for i in range(len(XSS_PAYLOADS))]
)
def test_payload_is_neutralised(payload):
    # given a hostile Markdown text
    # when it is rendered
    html = render_markdown(payload)
    # then no script, handler, dangerous tag or dangerous URL survives
    assert isinstance(html, SafeString)
    assert_safe(str(html))


@pytest.mark.parametrize("payload", XSS_PAYLOADS[:40], ids=[f"wrapped{i:03d}" for i in range(40)])
def test_payload_inside_markdown_structures_is_neutralised(payload):
    # given the payload inside a list, a table cell, a quote and a heading
    text = f"# {payload}\n\n- {payload}\n\n> {payload}\n\n| a |\n|---|\n| {payload} |\n"
    # when rendered, then it is still safe
    assert_safe(str(render_markdown(text)))


def test_markdown_features_render():
    # given Markdown with the extensions we promise
    text = (
        "# Title\n\nSome **bold** and *em* and `code`.\n\n"
        "1. one\n2. two\n\n"
        "| a | b |\n|:--|--:|\n| 1 | 2 |\n\n"
        "```python\nprint('hi')\n```\n\n"
        "> quoted\n\n"
        "[docs](https://example.com/docs) [mail](mailto:a@example.com) [rel](/changes/1/)\n"
    )
    # when rendered
    html = str(render_markdown(text))
    parsed = parse(html)
    # then the structure is there
    for tag in ("h1", "strong", "em", "code", "ol", "li", "table", "th", "td", "pre", "blockquote"):
        assert tag in parsed.tags, tag
    assert '<th align="left">a</th>' in html
    hrefs = [v for t, n, v in parsed.attrs if t == "a" and n == "href"]
    assert hrefs == ["https://example.com/docs", "mailto:a@example.com", "/changes/1/"]
    assert html.count('rel="noopener noreferrer"') == 3


def test_images_become_their_alt_text():
    # given a Markdown image pointing at a remote host
    html = str(render_markdown("See ![the chart](https://tracker.example/pixel.gif)."))
    # then no image is loaded, the alt text remains
    assert "img" not in parse(html).tags
    assert "[image: the chart]" in html
    assert "tracker.example" not in html


def test_plain_text_is_escaped_not_interpreted():
    # given text with angle brackets and ampersands
    html = str(render_markdown("if a < b && c > d then <unknown>tag</unknown>"))
    # then it reads as text
    assert "&lt;" in html and "&amp;&amp;" in html
    assert "<unknown>" not in html


def test_empty_input_renders_nothing():
    assert render_markdown("") == ""
    assert render_markdown(None) == ""
    assert render_markdown("   \n") == ""


def test_template_filter_renders_sanitised_html():
    # given a template using the |markdown filter
    template = Template("{% load changes_ui %}<div>{{ text|markdown }}</div>")
    # when rendered with hostile input
    html = template.render(Context({"text": "**ok** <script>alert(1)</script>"}))
    # then Markdown is applied and the script is gone
    assert "<strong>ok</strong>" in html
    assert "<script" not in html
