"""Markdown for user-written text (rationale, test plan, rollout and backout plans, protocols).

Python-Markdown turns the text into HTML (it passes raw HTML through), then nh3 (ammonia)
sanitises that HTML against the explicit allow-list below. The sanitiser is the security
boundary, so nothing Markdown produces is trusted.

Decisions:

* Tags: text structure only (headings, lists, tables, code, quotes, emphasis, links).
  No script, style, iframe, object, embed, form, input, svg, math, base, meta or link;
  script/style/template and friends are removed together with their content.
* Attributes: a short list per tag (``href`` and ``title`` on links, table alignment,
  ``start`` on ordered lists, ``title`` on abbreviations). No ``style``, no ``class``,
  no ``id`` (ids could clobber the page's own DOM names), never any ``on*`` handler.
* URLs: only ``http``, ``https`` and ``mailto`` schemes, plus relative links; every link
  gets ``rel="noopener noreferrer"``. As defence in depth, a link whose text would spell a
  scheme once whitespace and control characters are removed (``java  script:``) must spell an
  allowed one, or the ``href`` is dropped.
* Images are not rendered at all. A remote image is a tracking beacon (it tells a third
  party who read a change and when) and change records are text. A Markdown image becomes
  its alt text in brackets, so the author's intent stays visible; raw ``<img>`` is dropped.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as etree  # noqa: S405 - builds elements, parses nothing

import markdown as md
import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown.treeprocessors import Treeprocessor

MAX_INPUT_CHARS = 200_000

ALLOWED_TAGS = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "caption", "code", "dd", "del", "details",
        "div", "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "ins", "kbd",
        "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strong", "sub",
        "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
    }
)  # fmt: skip

# Removed together with everything inside them (the rest are unwrapped, keeping their text).
DROP_WITH_CONTENT = frozenset(
    {
        "script", "style", "template", "iframe", "object", "embed", "noscript", "noembed",
        "noframes", "textarea", "title", "svg", "math", "select", "xmp", "plaintext",
    }
)  # fmt: skip

ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "ol": {"start"},
    "th": {"align", "colspan", "rowspan", "scope"},
    "td": {"align", "colspan", "rowspan"},
    "details": {"open"},
}

ALLOWED_URL_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener noreferrer"

MARKDOWN_EXTENSIONS = ["extra", "sane_lists", "fenced_code", "tables"]
MARKDOWN_CONFIG = {"tables": {"use_align_attribute": True}}


_SQUEEZE = re.compile(r"[\x00-\x20\x7f]+")
_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")
URL_ATTRIBUTES = frozenset({"href", "src", "cite", "action", "data"})


def _filter_attribute(element: str, attribute: str, value: str) -> str | None:
    if attribute not in URL_ATTRIBUTES:
        return value
    match = _SCHEME.match(_SQUEEZE.sub("", value).lower())
    if match and match.group(1) not in ALLOWED_URL_SCHEMES:
        return None
    return value


class _ImagesToText(Treeprocessor):
    """Replace every Markdown image by its alt text in brackets (see the module notes)."""

    def run(self, root):
        for parent in root.iter():
            for index, child in enumerate(list(parent)):
                if child.tag != "img":
                    continue
                span = etree.Element("span")
                span.text = f"[image: {child.get('alt') or 'untitled'}]"
                span.tail = child.tail
                parent.remove(child)
                parent.insert(index, span)


class _NoImagesExtension(md.Extension):
    def extendMarkdown(self, md_instance):  # noqa: N802 - Python-Markdown's API name
        md_instance.treeprocessors.register(_ImagesToText(md_instance), "images_to_text", 0)


def _converter() -> md.Markdown:
    return md.Markdown(
        extensions=[*MARKDOWN_EXTENSIONS, _NoImagesExtension()],
        extension_configs=MARKDOWN_CONFIG,
        output_format="html",
    )


def sanitize_html(html: str) -> str:
    """Clean an HTML fragment against the allow-list. Safe to call on any string."""
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(DROP_WITH_CONTENT),
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(ALLOWED_URL_SCHEMES),
        attribute_filter=_filter_attribute,
        link_rel=LINK_REL,
        strip_comments=True,
    )


def render_markdown(text: str | None) -> SafeString:
    """Markdown -> sanitised HTML, marked safe for templates."""
    text = str(text or "")[:MAX_INPUT_CHARS]
    if not text.strip():
        return mark_safe("")  # noqa: S308 - a constant empty string
    html = _converter().convert(text)
    return mark_safe(sanitize_html(html))  # noqa: S308 - nh3 output against the allow-list
