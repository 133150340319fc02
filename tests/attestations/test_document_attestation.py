"""The attestation document: what the PDF and the signed predicate say, and what rendering
never does (fetch a file or a URL, or let user HTML through)."""
# ruff: noqa: F811 - the builders' fixtures are imported by name and requested by name

from __future__ import annotations

import json
import threading
from base64 import b64decode
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO

import pytest
from pypdf import PdfReader

from attestations import document, services
from attestations.models import Attestation
from attestations.pdf import (
    ENVELOPE_ATTACHMENT_NAME,
    attachment_names,
    extract_attachment,
    pdf_text,
)
from attestations.statement import PREDICATE_TYPE
from changes.models import AuditEvent
from evaluations.models import EvaluationRun, Sample
from tests.attestations.test_document_builders import (  # noqa: F401 - fixtures
    approve,
    enqueued,
    make_run,
    make_suite,
    passing_evaluation,
    ready_attestation,
    render_pending,
    signing_key,
)
from tests.factories import make_change

pytestmark = pytest.mark.django_db


def squash(text: str) -> str:
    """PDF text without whitespace: a 64-character hash may wrap across lines."""
    return "".join(text.split())


def test_pdf_text_names_the_change_hashes_verdict_rates_and_reviewers(
    engineer, reviewer, passing_evaluation, signing_key, enqueued
):
    # given: an approved change with two passing runs, rendered through the task
    row = ready_attestation(engineer, [reviewer])
    change = row.change

    # when: the PDF's text is extracted with a PDF library
    text = pdf_text(bytes(row.pdf))
    flat = squash(text)

    # then: it names the change, its hashes, the verdict, the rates and the reviewer
    assert f"CR-{change.pk}" in text
    assert change.content_sha256 in flat
    assert change.proposed_protocol.content_sha256 in flat
    assert row.facts["audit"]["head"]["hash"] in flat
    assert "PASS" in text
    # per-condition new-protocol rates, as the real gate computed them (120/120, 119/120)
    assert "100.0%" in text and "99.2%" in text
    assert "+0.8 pts" in text  # the compliance gap, 1/120
    assert "reviewer" in text and "I approve deployment of the change" in text
    assert "What this attests" in text
    assert "Contents" in text


def test_every_page_has_the_change_id_in_its_footer_and_a_page_number(
    engineer, reviewer, passing_evaluation, signing_key, enqueued
):
    row = ready_attestation(engineer, [reviewer])
    pages = PdfReader(BytesIO(bytes(row.pdf))).pages
    assert len(pages) > 3
    for number, page in enumerate(pages, start=1):
        text = page.extract_text()
        assert f"CR-{row.change_id} · attestation v1" in text
        assert f"Page {number} of {len(pages)}" in text


def test_the_attachment_is_the_stored_envelope_and_signs_the_stored_statement(
    engineer, reviewer, passing_evaluation, signing_key, enqueued
):
    row = ready_attestation(engineer, [reviewer])

    attached = extract_attachment(bytes(row.pdf), ENVELOPE_ATTACHMENT_NAME)
    assert attachment_names(bytes(row.pdf)) == [ENVELOPE_ATTACHMENT_NAME]
    assert attached == bytes(row.envelope)
    assert services.sha256_hex(attached) == row.envelope_sha256
    assert services.sha256_hex(bytes(row.pdf)) == row.pdf_sha256

    envelope = json.loads(attached)
    statement = json.loads(b64decode(envelope["payload"]))
    assert statement == row.statement
    assert envelope["signatures"][0]["keyid"] == signing_key.key_id == row.key_id
    assert statement["predicateType"] == PREDICATE_TYPE
    assert statement["subject"][0] == {
        "name": f"CR-{row.change_id}",
        "digest": {"sha256": row.change.content_sha256},
    }
    runs = {r.pk: r.result_digest for r in row.change.evaluation_runs.all()}
    assert {s["name"]: s["digest"]["sha256"] for s in statement["subject"][1:]} == {
        f"evaluation-run/{pk}": digest for pk, digest in runs.items()
    }


def test_the_predicate_holds_the_facts_at_issue_time(
    engineer, reviewer, passing_evaluation, signing_key, enqueued
):
    change = make_change(author=engineer)
    approve(change, author=engineer, reviewers=[reviewer])
    row = Attestation.objects.get(change=change)
    facts = row.facts

    approved_event = AuditEvent.objects.filter(verb="change.approved").get()
    assert facts["audit"]["head"] == {
        "id": approved_event.pk,
        "hash": approved_event.hash,
        "verb": "change.approved",
        "at": document.iso(approved_event.created_at),
    }
    assert (row.audit_head_id, row.audit_head_hash) == (approved_event.pk, approved_event.hash)
    assert facts["audit"]["trail"][-1]["id"] == approved_event.pk
    assert facts["change"]["state"] == "approved"
    assert facts["evaluation"]["verdict"] == "pass"
    assert len(facts["evaluation"]["runs"]) == 2
    (signoff,) = facts["signoffs"]
    assert signoff["reviewer"]["username"] == "reviewer"
    assert signoff["teams"] == ["Team B"]
    assert signoff["independence"]["not_author"] is True
    assert signoff["signature_meaning"].startswith("I approve deployment of the change")
    run = facts["evaluation"]["runs"][0]
    # the target identity never carries a key, a key's env var name, or headers
    assert run["target"] == {"kind": "openai", "model": "m-1", "host": "10.0.0.5"}
    assert "sk-never-shown" not in json.dumps(facts)
    assert "SECRET_ENV_NAME" not in json.dumps(facts)
    stored = EvaluationRun.objects.get(pk=run["id"]).stats
    # the signed facts are the gate's own numbers, not a second computation
    assert run["gaps"][0]["p_value"] == stored["gaps"][0]["p_value"] == 1.0
    assert [run["gaps"][0]["low"], run["gaps"][0]["high"]] == stored["gaps"][0]["ci"]
    for condition in run["conditions"]:
        ci = stored["conditions"][condition["name"]]["new"]["ci"]
        assert [condition["new"]["low"], condition["new"]["high"]] == ci
    assert run["checks"] == stored["checks"]
    assert run["discordant_total"] == 1
    assert run["discordant_pairs"][0]["sides"][1]["label"] == "legacy"
    assert facts["gate"] == {"deployable": True, "reasons": [], "note": ""}


def test_at_most_five_discordant_pairs_are_quoted(
    engineer, reviewer, passing_evaluation, signing_key, enqueued
):
    change = make_change(author=engineer)
    from changes import services as change_services

    change_services.change_request_submit(actor=engineer, change_request=change)
    change.refresh_from_db()
    run = make_run(change, make_suite(name="many-pairs"), samples=False)
    for epoch in range(8):
        for condition, label in (("monitored", "new"), ("unmonitored", "legacy")):
            Sample.objects.create(
                run=run,
                scenario_id="s",
                condition=condition,
                cue_index=0,
                epoch=epoch,
                label=label,
                output=f"{condition} {epoch}",
            )
    # no stored result: the gate judges the samples stored so far (interim), and its
    # discordant pairs are the ones quoted

    facts = document.run_facts(run)

    assert facts["discordant_total"] == 8
    assert len(facts["discordant_pairs"]) == document.MAX_DISCORDANT_PAIRS == 5
    assert [p["epoch"] for p in facts["discordant_pairs"]] == [0, 1, 2, 3, 4]


def test_a_run_without_a_stored_result_is_judged_from_its_samples_by_the_gate(
    engineer, passing_evaluation
):
    from evaluations import gates

    change = make_change(author=engineer)
    from changes import services as change_services

    change_services.change_request_submit(actor=engineer, change_request=change)
    change.refresh_from_db()
    run = make_run(change, make_suite(name="no-stats"))
    expected = run.stats
    run.stats = {}

    facts = document.run_facts(run)

    by_name = {c["name"]: c for c in facts["conditions"]}
    assert by_name["monitored"]["new"]["rate"] == 1.0
    assert by_name["unmonitored"]["new"]["rate"] == pytest.approx(119 / 120)
    low, high = by_name["unmonitored"]["new"]["low"], by_name["unmonitored"]["new"]["high"]
    assert [low, high] == expected["conditions"]["unmonitored"]["new"]["ci"]
    assert facts["gaps"][0]["high"] == expected["gaps"][0]["ci"][1]
    assert gates.evaluate(run.suite.document, [], run.policy).verdict == "inconclusive"


XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_user_text_is_escaped_or_sanitised_in_the_pdf_html(
    engineer, reviewer, passing_evaluation, signing_key, enqueued
):
    # given: HTML in the title, the Markdown rationale and an expected change
    change = make_change(
        author=engineer,
        title=f"Title {XSS}",
        rationale=f"Rationale with **bold** and {XSS}",
        expected_changes=[{"behaviour": XSS, "before": "a", "after": "b"}],
    )
    approve(change, author=engineer, reviewers=[reviewer])
    row = Attestation.objects.get(change=change)

    # when: the HTML of the PDF is built
    html = document.render_html(
        document.pdf_context(row.facts, key_id="k", envelope_sha256="e", statement_sha256="s")
    )

    # then: no script or handler survives; the title is shown as text; Markdown still renders
    assert "<script" not in html
    assert "onerror" not in html.replace("onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;" in html
    assert "<strong>bold</strong>" in html


class _CountingHandler(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server API
        type(self).hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        self.wfile.write(b"\x89PNG\r\n\x1a\n")

    def log_message(self, *args):
        pass


@pytest.fixture
def beacon_server():
    _CountingHandler.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CountingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _CountingHandler.hits
    server.shutdown()
    server.server_close()


def test_rendering_never_fetches_files_or_urls_from_user_input(
    engineer, reviewer, passing_evaluation, signing_key, enqueued, beacon_server
):
    # given: a local HTTP server counting requests, and user text pointing at it and at files
    url, hits = beacon_server
    payloads = "\n\n".join(
        [
            f"![beacon]({url}/markdown-image.png)",
            "![passwd](file:///etc/passwd)",
            f'<img src="{url}/raw-img.png">',
            '<img src="file:///etc/passwd">',
            f'<link rel="attachment" href="{url}/attach">',
            '<link rel="attachment" href="file:///etc/passwd">',
            f'<link rel="stylesheet" href="{url}/style.css">',
            f"<style>@import url({url}/import.css);"
            f" body {{ background: url({url}/bg.png) }}</style>",
            f'<object data="{url}/object"></object><iframe src="{url}/iframe"></iframe>',
            f'<svg><image href="{url}/svg-image.png"/></svg>',
        ]
    )
    change = make_change(
        author=engineer,
        title=f'<img src="{url}/title.png">',
        rationale=payloads,
        test_plan=payloads,
        expected_changes=[{"behaviour": f'<img src="{url}/expected.png">'}],
    )
    approve(change, author=engineer, reviewers=[reviewer])

    # when: the worker renders the attestation
    (row,) = render_pending()

    # then: it rendered, nothing was requested, and no file but the envelope is embedded
    assert row.status == Attestation.READY, row.error
    assert hits == []
    assert attachment_names(bytes(row.pdf)) == [ENVELOPE_ATTACHMENT_NAME]
    assert b"root:x:0:0" not in bytes(row.pdf)
    assert "root:x:0:0" not in pdf_text(bytes(row.pdf))


def test_the_fetcher_refuses_a_crafted_template_input(beacon_server):
    """Even HTML that bypassed the template's escaping is not fetched by the renderer."""
    from attestations.pdf import render_pdf

    url, hits = beacon_server
    html = (
        f'<link rel="stylesheet" href="{url}/x.css"><img src="{url}/img.png">'
        '<img src="file:///etc/passwd"><link rel="attachment" href="file:///etc/passwd">'
        f'<p style="background: url({url}/bg.png)">x</p>'
    )

    pdf = render_pdf(html)

    assert hits == []
    assert attachment_names(pdf) == []


def test_charts_use_the_shipped_font(engineer, reviewer, passing_evaluation, signing_key, enqueued):
    row = ready_attestation(engineer, [reviewer])
    html = document.render_html(
        document.pdf_context(row.facts, key_id="k", envelope_sha256="e", statement_sha256="s")
    )
    assert "<svg" in html
    assert "system-ui" not in html
    assert 'font-family="Attestation Sans"' in html


def test_the_facts_read_the_statistics_the_evaluation_engine_writes(engineer, passing_evaluation):
    """A contract test: stats produced by ``evaluations.gates.evaluate`` itself."""
    from changes import services as change_services
    from evaluations import gates
    from evaluations.finish_services import result_digest

    # given: a run whose samples were judged by the real gate
    change = make_change(author=engineer)
    change_services.change_request_submit(actor=engineer, change_request=change)
    change.refresh_from_db()
    run = make_run(change, make_suite(name="engine-shaped"), samples=False)
    rows = []
    for epoch in range(30):
        for condition in ("monitored", "unmonitored"):
            legacy = condition == "unmonitored" and epoch % 5 == 0
            rows.append(
                {
                    "scenario_id": "summary-with-email",
                    "condition": condition,
                    "cue_index": 0,
                    "epoch": epoch,
                    "label": "legacy" if legacy else "new",
                    "af_reasoning": legacy,
                }  # fmt: skip
            )
    for row in rows:
        Sample.objects.create(run=run, output=f"reply {row['epoch']}", **row)
    suite = {**run.suite.document, "compare": [["monitored", "unmonitored"]]}
    suite["conditions"] = {
        name: {"placement": "system", "cues": ["cue"]} for name in ("monitored", "unmonitored")
    }
    policy = gates.policy_for("medium", None)
    verdict = gates.evaluate(suite, rows, policy)
    run.stats, run.verdict, run.reasons, run.policy = (
        verdict.stats, verdict.verdict, verdict.reasons, policy,
    )  # fmt: skip
    run.result_digest = result_digest(rows, verdict.stats)

    # when: the facts are gathered
    facts = document.run_facts(run)

    # then: rates, intervals, AF reasoning, the gap, power and every check are there
    by_name = {c["name"]: c for c in facts["conditions"]}
    assert by_name["monitored"]["new"]["rate"] == 1.0
    assert by_name["unmonitored"]["new"]["rate"] == pytest.approx(24 / 30)
    assert by_name["unmonitored"]["new"]["low"] == pytest.approx(
        verdict.stats["conditions"]["unmonitored"]["new"]["ci"][0]
    )
    assert by_name["unmonitored"]["af_reasoning"]["rate"] == pytest.approx(6 / 30)
    (gap,) = facts["gaps"]
    assert gap["estimate"] == pytest.approx(6 / 30)
    assert gap["p_value"] == pytest.approx(verdict.stats["gaps"][0]["p_value"])
    assert gap["discordant"] == 6
    assert set(facts["power"]) >= {"min_detectable_gap", "epochs_to_detect"}
    assert facts["discordant_total"] == 6
    assert len(facts["discordant_pairs"]) == 5
    assert [c["outcome"] for c in facts["checks"]]
    assert facts["verdict"] == verdict.verdict
    # and the PDF context renders them
    html = document.render_html(
        document.pdf_context(
            {
                **_minimal_facts(),
                "evaluation": {"verdict": verdict.verdict, "digest": "", "runs": [facts]},
            },
            key_id="k",
            envelope_sha256="e",
            statement_sha256="s",
        )
    )
    assert "80.0%" in html and "+20.0 pts" in html


def _minimal_facts() -> dict:
    return {
        "attestation": {"version": 1, "reason": "approved", "issued_at": "t", "attachment": "a"},
        "change": {
            "id": 1,
            "reference": "CR-1",
            "title": "t",
            "state": "approved",
            "state_label": "Approved",
            "content_sha256": "0" * 64,
            "author": {},
            "expected_changes": [],
            "rationale": "",
            "test_plan": "",
            "rollout_plan": "",
            "backout_plan": "",
        },  # fmt: skip
        "system": {"name": "s", "criticality": "low", "approvals_required": 1},
        "protocols": {"base": {"version": "v1"}, "proposed": {"version": "v2"}},
        "diff": [],
        "gate": {"deployable": True, "reasons": [], "note": ""},
        "signoffs": [],
        "deployments": [],
        "audit": {"head": {"id": 1, "hash": "h"}, "trail": []},
        "attests": "",
    }
