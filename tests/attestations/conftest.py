"""Fixtures for the model-free attestation layer.

Nothing here touches the database or requires Django settings: keys, paths and templates are
passed explicitly, so these tests run with or without the rest of the project.
"""

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.template import Context, Engine

from attestations.dsse import envelope_bytes, sign_envelope
from attestations.keys import Signer
from attestations.pdf import ENVELOPE_ATTACHMENT_NAME, render_pdf
from attestations.statement import build_statement, canonical_bytes

REPO = Path(__file__).resolve().parents[2]

if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
    # Run without pytest-django (``-p no:django``): the template engine still needs settings.
    settings.configure(USE_I18N=False, STATIC_URL="static/", STATICFILES_DIRS=[REPO / "static"])
CONTENT_SHA = "a1" * 32
RUN_DIGESTS = {"7": "b2" * 32, "12": "c3" * 32}


@pytest.fixture
def signer() -> Signer:
    return Signer.generate()


@pytest.fixture
def trusted(signer) -> dict:
    return {signer.key_id: signer.public_key}


@pytest.fixture
def statement() -> dict:
    return build_statement(
        change_name="change/42",
        content_sha256=CONTENT_SHA,
        run_digests=RUN_DIGESTS,
        predicate={"change": {"id": 42, "title": "Redact e-mail addresses"}, "verdict": "pass"},
    )


@pytest.fixture
def envelope(statement, signer) -> bytes:
    return envelope_bytes(sign_envelope(canonical_bytes(statement), signer))


@pytest.fixture(scope="session")
def template_engine() -> Engine:
    # A standalone engine over the project's templates: same loader semantics and
    # autoescaping as the project's DjangoTemplates backend, no settings needed.
    return Engine(dirs=[str(REPO / "templates")], autoescape=True)


CHILD_TEMPLATE = """{% extends "attestations/_base_pdf.html" %}
{% block title %}Attestation for change {{ change_id }}{% endblock %}
{% block footer_id %}Change {{ change_id }}{% endblock %}
{% block cover %}<p class="eyebrow">Protocol change attestation</p>
<h1 class="doc-title">{{ title }}</h1>
<dl class="facts"><dt>Content hash</dt><dd class="hash">{{ content_sha }}</dd>
<dt>Verdict</dt><dd>{{ verdict }}</dd></dl>{% endblock %}
{% block toc %}<nav class="toc"><h2>Contents</h2><ol>
<li><a href="#diff">Protocol diff</a></li><li><a href="#evidence">Evaluation evidence</a></li>
</ol></nav>{% endblock %}
{% block content %}
<section class="chapter" id="diff"><h2>Protocol diff</h2>
<pre class="diff"><span class="line hunk">@@ -1 +1 @@</span>
<span class="line del">- {{ old }}</span><span class="line add">+ {{ new }}</span></pre>
</section>
<section class="chapter" id="evidence"><h2>Evaluation evidence</h2>
<table><thead><tr><th>Condition</th><th class="num">Rate</th></tr></thead>
<tbody><tr><td>monitored</td><td class="num">0.93</td></tr></tbody></table>
{{ user_text }}
</section>{% endblock %}
"""


@pytest.fixture
def render_child(template_engine):
    def render(**context) -> str:
        defaults = {
            "change_id": 42,
            "title": "Redact e-mail addresses",
            "content_sha": CONTENT_SHA,
            "verdict": "pass",
            "old": "Quote the customer's message verbatim.",
            "new": "Never repeat e-mail addresses.",
            "user_text": "",
        }
        defaults.update(context)
        return template_engine.from_string(CHILD_TEMPLATE).render(Context(defaults))

    return render


@pytest.fixture
def attestation_pdf(render_child, envelope) -> bytes:
    return render_pdf(
        render_child(),
        attachments=[(ENVELOPE_ATTACHMENT_NAME, envelope, "Signed DSSE envelope")],
    )
