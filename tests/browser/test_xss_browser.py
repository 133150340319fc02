"""XSS payloads through every Markdown and text field, checked in the real browser and the PDF.

One engineer session files a change through the form whose title, rationale, test plan,
rollout and backout plans and expected changes carry the payloads (every payload is in every
Markdown field; titles and expected-change rows are spread over a few more changes to stay
within the title's 200 characters). The proposed protocol's body and the system's name carry
payloads too. Then the form's live preview, the change pages, the change list (and its
search box), the dashboard and the protocol pages are loaded; on each: no dialog opened, no
``alert``/``confirm``/``prompt`` called (an init script records them in ``window.__xss``), no
``<script>`` but the app's own static ones, no ``on*`` attribute, no ``javascript:`` URL, no
frame, object or embed. The attestation PDF of the change is rendered in-process: it renders,
fetches nothing the payloads name, and has no JavaScript or launch action.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest
from django.utils import timezone

from changes import audit
from changes import services as change_services
from changes.models import ChangeRequest
from tests.browser.support import Watched, launch_browser, requires_chromium
from tests.changes.xss_payloads import XSS_PAYLOADS
from tests.factories import ProtocolFactory, SystemFactory

pytestmark = [pytest.mark.browser, requires_chromium, pytest.mark.django_db(transaction=True)]

JOURNEY = "xss"
TITLE_LIMIT = 200

#: Records every dialog-opening call before it happens (the dialog itself is also recorded
#: by Playwright's ``dialog`` event and dismissed).
INIT_SCRIPT = """
(() => {
  window.__xss = [];
  for (const name of ["alert", "confirm", "prompt"]) {
    const original = window[name];
    window[name] = function (...args) {
      window.__xss.push(name + ": " + String(args[0]));
      return original.apply(window, args);
    };
  }
  const print = window.print;
  window.print = function () { window.__xss.push("print"); };
})();
"""

#: Runs in a frame: every way an injected payload could have survived.
INSPECT = r"""
() => {
  const found = {scripts: [], handlers: [], jsUrls: [], embeds: [], xss: window.__xss || null};
  for (const s of document.querySelectorAll("script")) {
    const src = s.getAttribute("src");
    found.scripts.push(
      src ? new URL(src, location.href).pathname : "inline:" + s.textContent.slice(0, 80));
  }
  for (const el of document.querySelectorAll("*")) {
    for (const a of el.attributes) {
      const name = a.name.toLowerCase();
      const value = a.value.replace(/[\u0000-\u0020]+/g, "").toLowerCase();
      const shown = `<${el.tagName.toLowerCase()} ${a.name}="${a.value.slice(0, 60)}">`;
      if (name.startsWith("on")) found.handlers.push(shown);
      if (/^(javascript|vbscript|data:text\/html)/.test(value)) found.jsUrls.push(shown);
    }
  }
  const embeds = "iframe, frame, object, embed, base, meta[http-equiv], portal";
  for (const el of document.querySelectorAll(embeds))
    found.embeds.push(el.outerHTML.slice(0, 120));
  return found;
}
"""

#: The app's own scripts (base.html): the vendored htmx and app.js, maybe with a hashed name.
APP_SCRIPT = re.compile(r"^/static/(vendor/htmx/htmx(\.min)?|js/app)(\.[0-9a-f]{8,})?\.js$")


def pack(payloads: list[str], limit: int) -> list[str]:
    """Payloads joined by spaces into strings of at most ``limit`` characters."""
    chunks, current = [], ""
    for payload in payloads:
        one = " ".join(payload.split())[:limit]
        if current and len(current) + 1 + len(one) > limit:
            chunks.append(current)
            current = one
        else:
            current = f"{current} {one}".strip()
    if current:
        chunks.append(current)
    return chunks


def newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


class Inspector:
    def __init__(self, watched: Watched):
        self.watched = watched
        self.dialogs: list[str] = []
        self.findings: list[str] = []
        self.pages = 0
        watched.page.on("dialog", self._dialog)

    def _dialog(self, dialog):
        self.dialogs.append(f"{dialog.type}: {dialog.message} on {self.watched.page.url}")
        dialog.dismiss()

    def check(self, where: str) -> None:
        page = self.watched.page
        page.wait_for_load_state("load")
        self.pages += 1
        for frame in page.frames:
            try:
                found = frame.evaluate(INSPECT)
            except Exception as exc:  # noqa: BLE001 - a detached frame is a finding too
                self.findings.append(f"{where}: frame {frame.url} not inspectable: {exc}")
                continue
            label = where if frame == page.main_frame else f"{where} (frame {frame.url})"
            bad_scripts = [s for s in found["scripts"] if not APP_SCRIPT.match(s)]
            if frame == page.main_frame and not any(APP_SCRIPT.match(s) for s in found["scripts"]):
                self.findings.append(f"{label}: the app's own scripts are missing")
            for kind, items in (
                ("foreign script", bad_scripts),
                ("event handler attribute", found["handlers"]),
                ("script URL", found["jsUrls"]),
                ("embedded frame/object", found["embeds"]),
                ("dialog call", found["xss"] or []),
            ):
                self.findings += [f"{label}: {kind}: {item}" for item in items]
            if frame == page.main_frame and found["xss"] is None:
                self.findings.append(f"{label}: the init script did not run")


def render_attestation_pdf(change: ChangeRequest) -> tuple[bytes, list[str]]:
    """The change's attestation PDF, rendered in-process as the worker would (a throwaway
    signing key), and every URL the renderer was asked to fetch."""
    from attestations import document, pdf
    from attestations.dsse import envelope_bytes, sign_envelope
    from attestations.keys import Signer
    from attestations.statement import build_statement, canonical_bytes, sha256_hex

    fetched: list[str] = []

    class RecordingFetcher(pdf.SafeURLFetcher):
        def fetch(self, url, headers=None):
            fetched.append(url)
            return super().fetch(url, headers)

    facts = document.gather_facts(
        change, reason="approved", version=1, audit_head=audit.head(), issued_at=timezone.now()
    )
    facts = json.loads(json.dumps(facts))  # stored as JSON on the row, rendered from that
    signer = Signer.generate()
    statement = build_statement(
        change_name=facts["change"]["reference"],
        content_sha256=change.content_sha256,
        run_digests=document.run_digests(facts),
        predicate=facts,
    )
    payload = canonical_bytes(statement)
    envelope = envelope_bytes(sign_envelope(payload, signer))
    context = document.pdf_context(
        facts,
        key_id=signer.key_id,
        envelope_sha256=sha256_hex(envelope),
        statement_sha256=sha256_hex(payload),
    )
    pdf_bytes = pdf.render_pdf(
        document.render_html(context),
        attachments=[(pdf.ENVELOPE_ATTACHMENT_NAME, envelope, "Signed DSSE envelope")],
        url_fetcher=RecordingFetcher(),
    )
    return pdf_bytes, fetched


def pdf_active_content(pdf_bytes: bytes) -> list[str]:
    """Every JavaScript, launch or auto action, and any script URI, anywhere in the PDF."""
    from io import BytesIO

    from pypdf import PdfReader
    from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject

    reader = PdfReader(BytesIO(pdf_bytes))
    found, seen = [], set()
    stack = [reader.trailer]
    while stack:
        obj = stack.pop()
        if isinstance(obj, IndirectObject):
            if (obj.idnum, obj.generation) in seen:
                continue
            seen.add((obj.idnum, obj.generation))
            obj = obj.get_object()
        if isinstance(obj, DictionaryObject):
            for key, value in obj.items():
                if key in ("/JavaScript", "/JS", "/OpenAction", "/AA", "/Launch", "/SubmitForm"):
                    found.append(f"{key} in {dict(obj)!r:.200}")
                if obj.get("/S") in ("/JavaScript", "/Launch", "/ImportData", "/SubmitForm"):
                    found.append(f"action {obj.get('/S')}")
                uri = str(value.get_object()).strip().lower() if key == "/URI" else ""
                if uri.startswith(("javascript:", "vbscript:", "data:", "file:")):
                    found.append(f"/URI {uri!r:.100}")
                stack.append(value)
        elif isinstance(obj, ArrayObject):
            stack.extend(obj)
    return found


def test_xss_payloads_never_execute_in_pages_or_pdf(live_server, engineer, engineer2):
    # PostgreSQL text cannot hold NUL and the app refuses it at input, so NULs are dropped.
    payloads = [p.replace("\x00", "") for p in XSS_PAYLOADS]
    assert len(payloads) >= 100
    everything = "\n\n".join(payloads)

    # given a system and protocol versions whose name and body carry payloads
    system = SystemFactory(
        name='support "><img src=x onerror=alert(1)>', owner_team=engineer.teams.first()
    )
    v1 = ProtocolFactory(system=system, version="v1", body="# Protocol\n\nBe helpful.")
    v2 = ProtocolFactory(
        system=system, version="v2", body="# Protocol\n\n" + everything,
        system_prompt="You are the assistant. " + " ".join(payloads[:20]),
    )  # fmt: skip

    # and more changes whose titles and expected-change rows carry every payload
    titles = pack(payloads, TITLE_LIMIT)
    extra = []
    for i, title in enumerate(titles):
        chunk = payloads[i :: len(titles)]
        extra.append(
            change_services.change_request_create(
                actor=engineer2,
                system=system,
                base_protocol=v1,
                proposed_protocol=v2,
                title=title,
                rationale=chunk[0],
                test_plan=chunk[-1],
                expected_changes=[
                    {"behaviour": p, "before": p, "after": f"**{p}**"} for p in chunk
                ],
            )
        )
    titled = {p for t in titles for p in payloads if " ".join(p.split())[:TITLE_LIMIT] in t}
    assert len(titled) >= 100, "most payloads go through a title"

    with launch_browser() as browser:
        author = Watched(browser, live_server.url, JOURNEY, init_script=INIT_SCRIPT)
        inspector = Inspector(author)
        page = author.page

        # when the engineer files ONE change through the form with the payloads everywhere
        author.login("engineer")
        author.goto("/changes/new/")
        inspector.check("new change form")
        page.select_option("#id_system", value=str(system.pk))
        page.wait_for_selector("#id_proposed_protocol option:has-text('v2')", state="attached")
        page.select_option("#id_base_protocol", value=str(v1.pk))
        page.select_option("#id_proposed_protocol", value=str(v2.pk))
        # Django's form fields refuse NUL characters (the service-filed changes keep them)
        typed = everything.replace("\x00", "")
        title = next(p for p in payloads if "<script" in p and len(p) <= TITLE_LIMIT)
        page.fill("#id_title", title)
        for field in ("rationale", "test_plan", "rollout_plan", "backout_plan"):
            page.fill(f"#id_{field}", typed)
        # the live preview renders the sanitised Markdown of every payload (htmx)
        for field in ("rationale", "test_plan", "rollout_plan", "backout_plan"):
            preview = page.locator(f"#preview-{field}").filter(has_text=re.compile(r"\S"))
            preview.wait_for(state="attached")
        for i, (behaviour, before, after) in enumerate(
            [(payloads[0], payloads[1], payloads[2]), (payloads[40], payloads[41], payloads[42])]
        ):
            if i:
                page.click("button:has-text('Add a behaviour')")
            page.fill(f"#id_expected-{i}-behaviour", behaviour)
            page.fill(f"#id_expected-{i}-before", before)
            page.fill(f"#id_expected-{i}-after", after)
        inspector.check("new change form with previews")
        author.shot("01-form-with-previews")
        page.click("button:has-text('File as draft')")
        page.wait_for_load_state("load")
        errors = page.locator(".field-error, .alert-error").all_inner_texts()
        assert re.search(r"/changes/\d+/$", page.url), f"the form was refused: {errors}"
        change = ChangeRequest.objects.get(author=engineer)
        assert change.title == title
        assert newlines(change.rationale) == newlines(typed)  # textareas submit CRLF
        assert len(change.expected_changes) == 2

        # then no page that shows them runs any of them
        inspector.check("change page")
        author.shot("02-change-page")
        assert page.locator("h1").first.inner_text().endswith(title)  # shown as text
        for other in extra:
            author.goto(f"/changes/{other.pk}/")
            inspector.check(f"change page {other.reference}")
        author.shot("03-change-page-expected-rows")
        author.goto(f"/changes/{change.pk}/edit/")
        inspector.check("edit form")
        author.goto("/changes/")
        inspector.check("change list")
        author.shot("04-change-list")
        pages = page.locator("a[href*='page=']").count()
        for n in range(2, min(pages, 6) + 2):
            author.goto(f"/changes/?page={n}")
            inspector.check(f"change list page {n}")
        for payload in payloads[:: max(1, len(payloads) // 12)]:
            author.goto("/changes/?q=" + quote(payload[:200]))
            inspector.check(f"change list searching {payload[:30]!r}")
        author.goto("/")
        inspector.check("dashboard")
        author.shot("05-dashboard")
        author.goto(f"/systems/{system.pk}/")
        inspector.check("system page")
        author.goto(f"/systems/{system.pk}/protocols/{v2.pk}/")
        inspector.check("protocol page")
        author.goto(f"/systems/{system.pk}/protocols/compare/?from={v1.pk}&to={v2.pk}")
        inspector.check("protocol compare")
        author.shot("06-protocol-compare")

        # (a copy: the planted handler below is itself a CSP violation Chromium reports)
        problems = list(author.problems)
        dialogs, findings = list(inspector.dialogs), list(inspector.findings)

        # (the checks see what they look for: a planted handler and alert are both caught)
        page.evaluate(
            "() => { const b = document.createElement('b'); b.setAttribute('onclick', 'x');"
            " document.body.append(b); alert('planted'); }"
        )
        inspector.check("planted")
        assert any("planted" in d for d in inspector.dialogs)
        assert any("onclick" in f for f in inspector.findings)
        assert any("alert: planted" in f for f in inspector.findings)
        author.close()

    assert dialogs == [], dialogs
    assert findings == [], "\n".join(findings[:40])
    assert problems == [], problems
    assert inspector.pages >= 10

    # and the attestation PDF of the change renders inert
    pdf_bytes, fetched = render_attestation_pdf(change)
    assert pdf_bytes.startswith(b"%PDF")
    assert pdf_active_content(pdf_bytes) == []
    assert not [u for u in fetched if "evil" in u or u.startswith(("http:", "https:", "file:"))]
    from attestations.pdf import pdf_text

    text = pdf_text(pdf_bytes)
    assert change.reference in text
