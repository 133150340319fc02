"""Warm render of a typical attestation: HTML, the PDF/A-3b pages, the page digests, the
statement and its DSSE signature, the envelope embedded and the PAdES signature over the whole
file (``attestations.services.build_artifacts``, the worker's own path), and verification of
the result (``attestations.services.verify_upload``, what the API and the page run).

Issue 15 targets, measured in the same run: render + sign p95 < 1.5 s; the signing steps
(page digests, statement, DSSE, embed, PAdES) add < 15% to the render of the pages (ratio of
the per-iteration medians, each iteration timing both parts); verification of a genuine
attestation p95 < 300 ms (full service path: PAdES, envelope, pages, records, audit write).

Typical: about 2 KB of Markdown across rationale, test plan, rollout and backout; two
evaluation runs with statistics, charts and discordant pairs; three sign-offs; a dozen audit
events. The facts are gathered from real records (``document.gather_facts``) once; each
timed iteration renders them again. Before timing, the process freezes its start-up heap
exactly as a worker child does (``config.heap.freeze_startup_heap``).

Baselines, measured in the same run and interleaved so machine load hits all alike:
- the issue's: a bare WeasyPrint render of a one-line page (the fixed cost of any render);
- a bare WeasyPrint render of the same HTML (WeasyPrint's defaults: no PDF/A, no attachment,
  no statement or signature, a fresh font configuration, the collector left alone). Its ratio
  is what our pipeline (signing, PDF/A-3b, the embedded envelope, the locked-down fetcher)
  costs on top of WeasyPrint laying out the same pages; the one-line ratio is mostly the
  document's length.
Also reported: peak Python memory of one render (tracemalloc) and the process's peak RSS.
Target (before issue 15): render p95 < 1 s and < 8x the bare render, on a 2-core machine.
"""

from __future__ import annotations

import hashlib
import os
import resource
import time
import tracemalloc

from bench.support import django_setup, figure, percentiles

N = int(os.environ.get("BENCH_ATTESTATION_RENDERS", "20"))

RATIONALE = """## Why

Ticket summaries written by the assistant quote customer e-mail addresses verbatim. Those
summaries flow into the analytics warehouse, where **PII is not allowed** (policy DP-7), and
the retention there is two years. The new protocol tells the assistant to redact every e-mail
address, phone number and postal address in summaries, and to keep the ticket id instead.

## Scope

- Applies to the *summary* tool only; replies to customers are unchanged.
- Redaction format: `[email]`, `[phone]`, `[address]`.
- Agents may still see the original ticket through the helpdesk UI.

| Field | Before | After |
|---|---|---|
| e-mail | quoted | `[email]` |
| phone | quoted | `[phone]` |

## Risks

The model may learn that redaction is only checked in monitored contexts: the suites pair
every scenario under a monitored and an unmonitored cue, so a compliance gap would show.
Over-redaction (ticket ids that look like phone numbers) is covered by scenario 4.
"""
TEST_PLAN = """Run the **pii-redaction** suite (v3) and the **access-review** suite (v1) under
monitored and unmonitored cues, two paraphrases each, five epochs. The compliance gap must stay
under the gate's `max_gap`; any legacy reply on a critical scenario fails the change.

1. Baseline the legacy protocol on the same suites.
2. Compare per-condition rates with Wilson intervals.
3. Inspect every discordant pair by hand before sign-off.
4. Re-run with a third paraphrase of each cue if any gap interval straddles the limit.

Reviewers: one from data protection, one from the assistant team's on-call rota; neither
may have edited the change.
"""
ROLLOUT = """Canary to 5% of tenants for 24 hours, watching the redaction-rate dashboard and
the complaint queue; then 50%, then 100% after a second day without regressions."""
BACKOUT = """Redeploy protocol v2 through the pipeline (one command); summaries written in the
meantime keep their redactions, which is the safe direction."""


def _records():
    """A deployed-looking change with 2 runs and 3 approvals, built directly in the DB."""
    from django.contrib.auth.models import Group, User

    from changes import audit, content, hooks, permissions, services
    from changes.models import AISystem, ChangeRequest, ProtocolVersion, Review, Team
    from evaluations.models import EvaluationRun, Sample, Suite

    suffix = f"{time.time_ns()}"
    author_team = Team.objects.create(name=f"bench-authors-{suffix}")
    review_team = Team.objects.create(name=f"bench-reviewers-{suffix}")
    engineer_group, _ = Group.objects.get_or_create(name="engineer")
    reviewer_group, _ = Group.objects.get_or_create(name="reviewer")
    author = User.objects.create(username=f"bench-author-{suffix}", first_name="Ada")
    author.groups.add(engineer_group)
    author_team.members.add(author)
    reviewers = []
    for i, name in enumerate(("Grace Hopper", "Alan Turing", "Edsger Dijkstra")):
        first, last = name.split()
        user = User.objects.create(
            username=f"bench-reviewer{i}-{suffix}", first_name=first, last_name=last
        )
        user.groups.add(reviewer_group)
        review_team.members.add(user)
        reviewers.append(user)
    system = AISystem.objects.create(
        name=f"bench-support-assistant-{suffix}",
        owner_team=author_team,
        criticality="high",
        required_approvals=3,
        target={"kind": "openai", "model": "support-7b", "base_url": "http://10.0.0.5/v1"},
    )
    bodies = [
        "# Support assistant\n\n" + "\n".join(f"- Rule {i}: be accurate." for i in range(30)),
        "# Support assistant\n\n"
        + "\n".join(f"- Rule {i}: be accurate." for i in range(30) if i % 7)
        + "\n- Redact e-mail addresses, phone numbers and postal addresses in summaries.",
    ]
    protocols = []
    for version, body in zip(("v2", "v3"), bodies, strict=True):
        prompt = f"You are the support assistant. Protocol {version}.\n{body}"
        protocols.append(
            ProtocolVersion.objects.create(
                system=system,
                version=version,
                body=body,
                system_prompt=prompt,
                content_sha256=content.protocol_sha256(
                    version=version, body=body, system_prompt=prompt
                ),
            )
        )
    change = ChangeRequest(
        system=system,
        base_protocol=protocols[0],
        proposed_protocol=protocols[1],
        title="Redact personal data in ticket summaries",
        rationale=RATIONALE,
        test_plan=TEST_PLAN,
        rollout_plan=ROLLOUT,
        backout_plan=BACKOUT,
        expected_changes=[
            {"behaviour": "e-mail in summary", "before": "quoted", "after": "[email]"},
            {"behaviour": "phone in summary", "before": "quoted", "after": "[phone]"},
        ],
        risk="high",
        author=author,
        state="approved",
        content_sha256="0" * 64,
    )
    change.save()
    change.content_sha256 = content.content_sha256(change)
    change.save(update_fields=["content_sha256"])
    for verb in ("change.created", "change.submitted", "change.evaluation_started",
                 "change.evaluation_passed"):  # fmt: skip
        audit.append(actor=author, verb=verb, obj=change, data={"bench": True})
    from evaluations import gates
    from evaluations.finish_services import result_digest

    n = 60
    suite_doc = {
        "epochs": 5,
        "conditions": {
            "monitored": {"placement": "system", "cues": ["Logged.", "Reviewed."]},
            "unmonitored": {"placement": "system", "cues": ["Not logged.", "Unreviewed."]},
        },
        "compare": [["monitored", "unmonitored"]],
        "scenarios": [{"id": f"scenario-{i}", "critical": i == 0} for i in range(6)],
    }
    for name in ("pii-redaction", "access-review"):
        suite = Suite.objects.create(
            name=f"{name}-{suffix}",
            version="3",
            document={**suite_doc, "name": name, "version": "3"},
            source_text="{}",
            source_format="json",
            content_sha256=hashlib.sha256(f"{name}{suffix}".encode()).hexdigest(),
        )
        rows = [
            {"scenario_id": f"scenario-{e % 6}", "condition": c, "cue_index": (e // 6) % 2,
             "epoch": e // 12, "af_reasoning": c == "unmonitored" and e % 20 == 1,
             "label": "legacy" if c == "unmonitored" and e % 20 == 1 else "new"}
            for c in ("monitored", "unmonitored") for e in range(n)
        ]  # fmt: skip
        policy = gates.policy_for("low", None)
        verdict = gates.evaluate(suite_doc, rows, policy)
        run = EvaluationRun.objects.create(
            change=change,
            suite=suite,
            content_sha256=change.content_sha256,
            protocol=protocols[1],
            system_prompt=protocols[1].system_prompt,
            target=system.target,
            target_identity={"kind": "openai", "model": "support-7b", "host": "10.0.0.5"},
            policy=policy,
            status="completed",
            verdict=verdict.verdict,
            reasons=verdict.reasons,
            stats=verdict.stats,
            total_samples=2 * n,
            done_samples=2 * n,
            result_digest=result_digest(rows, verdict.stats),
        )
        Sample.objects.bulk_create(
            Sample(run=run, output=f"Summary of ticket T-{1000 + i}: export crashes. [email].",
                   reasoning="The user cannot see this." if r["label"] == "legacy" else "", **r)
            for i, r in enumerate(rows)
        )  # fmt: skip
    digest = hooks.evaluation().evaluation_digest(change)
    for user in reviewers:
        check = permissions.check_independence(user, change)
        Review.objects.create(
            change=change,
            reviewer=user,
            decision="approve",
            content_sha256=change.content_sha256,
            evaluation_digest=digest,
            signature_meaning=services.signature_meaning(change, "approve"),
            independence=check.as_dict(),
        )
        audit.append(actor=user, verb="review.approved", obj=change, data={"bench": True})
    audit.append(actor=reviewers[-1], verb="change.approved", obj=change, data={"bench": True})
    return change


def _facts(change) -> dict:
    from django.utils import timezone

    from attestations import document
    from changes import audit

    return document.gather_facts(
        change, reason="approved", version=1, audit_head=audit.head(), issued_at=timezone.now()
    )


def _page_count(pdf: bytes) -> int:
    from io import BytesIO

    from pypdf import PdfReader

    return len(PdfReader(BytesIO(pdf)).pages)


def _same_html(facts: dict, signer) -> str:
    """The HTML ``build_artifacts`` lays out, for the bare baseline (hashes are placeholders
    of the same length, so the pages are the same)."""
    from attestations import document

    context = document.pdf_context(
        facts, key_id=signer.key_id, envelope_sha256="0" * 64, statement_sha256="0" * 64
    )
    return document.render_html(context)


def _store(change, facts: dict, artifacts: dict):
    """A ready row for the artifacts, so verification runs its record checks for real."""
    from attestations.models import Attestation

    return Attestation.objects.create(
        change=change,
        version=1,
        reason=Attestation.APPROVED,
        status=Attestation.READY,
        content_sha256=change.content_sha256,
        facts=facts,
        statement=artifacts["statement"],
        statement_sha256=artifacts["statement_sha256"],
        envelope=artifacts["envelope"],
        envelope_sha256=artifacts["envelope_sha256"],
        pdf=artifacts["pdf"],
        pdf_sha256=artifacts["pdf_sha256"],
        pdf_size=len(artifacts["pdf"]),
        key_id=artifacts["key_id"],
    )


def _timed(fn, wall: list, cpu: list):
    started, started_cpu = time.perf_counter(), time.process_time()
    result = fn()
    wall.append(time.perf_counter() - started)
    cpu.append(time.process_time() - started_cpu)
    return result


def run() -> dict:
    django_setup()
    from django.conf import settings
    from weasyprint import HTML

    from attestations import document, keys
    from attestations.pdf import SafeURLFetcher
    from attestations.services import build_artifacts, verify_upload
    from attestations.verify import verify_pdf
    from config.heap import freeze_startup_heap

    change = _records()
    facts = _facts(change)
    # Verification trusts the configured signer: make the bench's key the configured one.
    key_dir = os.path.dirname(settings.ATTESTATION_SIGNING_KEY_FILE)
    settings.ATTESTATION_SIGNING_KEY_FILE = os.path.join(key_dir, f"bench-{os.getpid()}.pem")
    keys.ensure_dev_key(settings.ATTESTATION_SIGNING_KEY_FILE)
    signer = keys.load_signer()
    markdown_bytes = sum(len(facts["change"][k].encode()) for k in document.MD_FIELDS)
    html = _same_html(facts, signer)
    freeze_startup_heap()  # what every worker child does at start (config/celery.py)

    split: list[dict] = []

    def ours():
        timings: dict = {}
        out = build_artifacts(
            facts, content_sha256=change.content_sha256, signer=signer, timings=timings
        )
        split.append(timings)
        return out

    def bare():
        # The safe fetcher only so the same stylesheet and fonts load (asset: URLs).
        return HTML(string=html, base_url="asset:/", url_fetcher=SafeURLFetcher()).write_pdf()

    def one_line():
        return HTML(string="<p>One line.</p>").write_pdf()

    artifacts = ours()  # warm: fonts registered, templates compiled
    _store(change, facts, artifacts)
    pdf = artifacts["pdf"]
    trusted, cas = keys.trusted_public_keys(), None
    from attestations.certs import trusted_ca_certificates

    cas = trusted_ca_certificates()

    def verify_full():
        result = verify_upload(actor=None, pdf_bytes=pdf, source="bench")
        assert result["valid"], result["failed"]

    def verify_file():
        assert verify_pdf(pdf, trusted, trusted_cas=cas)["valid"]

    verify_full()
    bare_pdf = bare()
    one_line()
    split.clear()
    durations, baseline, lines, cpu, cpu_bare, cpu_line = [], [], [], [], [], []
    verifies, verifies_cpu, file_verifies, file_verifies_cpu = [], [], [], []
    for _ in range(N):
        _timed(ours, durations, cpu)
        _timed(bare, baseline, cpu_bare)
        _timed(one_line, lines, cpu_line)
        for _ in range(3):
            _timed(verify_full, verifies, verifies_cpu)
            _timed(verify_file, file_verifies, file_verifies_cpu)
    render_only = percentiles([t["render_s"] for t in split])
    signing = percentiles([t["sign_s"] for t in split])
    overhead = percentiles([t["sign_s"] / t["render_s"] for t in split])
    verify_p = percentiles(verifies)
    file_verify_p = percentiles(file_verifies)

    tracemalloc.start()
    ours()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    mine, base, line = percentiles(durations), percentiles(baseline), percentiles(lines)
    pages = _page_count(artifacts["pdf"])
    bare_pages = _page_count(bare_pdf)
    return {
        "title": "Attestation render (warm)",
        "figures": [
            figure(
                "render + sign p95 (pages, page digests, statement, DSSE, embed, PAdES)",
                mine["p95"] * 1000,
                "ms",
                baseline={"name": "bare one-line render p95", "value": line["p95"] * 1000,
                          "unit": "ms"},
                ratio=mine["p95"] / line["p95"],
                target="p95 < 1500 ms",
                met=mine["p95"] < 1.5,
            ),
            figure(
                "render + sign CPU time p95 (process time: the same target, robust to load "
                "from other processes on the machine)",
                percentiles(cpu)["p95"] * 1000,
                "ms",
                target="p95 < 1500 ms",
                met=percentiles(cpu)["p95"] < 1.5,
            ),
            figure(
                "signing overhead: signing steps / page render, median of per-render ratios",
                overhead["p50"] * 100,
                "%",
                baseline={"name": "page render alone, p50", "value": render_only["p50"] * 1000,
                          "unit": "ms"},
                ratio=signing["p50"] / render_only["p50"],
                target="< 15%",
                met=overhead["p50"] < 0.15,
            ),
            figure(
                "signing steps p95 (page digests, statement, DSSE, embed, PAdES)",
                signing["p95"] * 1000,
                "ms",
                baseline={"name": "page render alone, p95", "value": render_only["p95"] * 1000,
                          "unit": "ms"},
                ratio=signing["p95"] / render_only["p95"],
            ),
            figure(
                "verify p95, genuine attestation (API/page/command path: PAdES, envelope, "
                "pages, records, audit write)",
                verify_p["p95"] * 1000,
                "ms",
                baseline={"name": "file checks only (offline verifier) p95",
                          "value": file_verify_p["p95"] * 1000, "unit": "ms"},
                ratio=verify_p["p95"] / file_verify_p["p95"],
                target="p95 < 300 ms",
                met=verify_p["p95"] < 0.3,
            ),
            figure(
                "verify CPU time p50 (process time)",
                percentiles(verifies_cpu)["p50"] * 1000,
                "ms",
                baseline={"name": "file checks only, CPU p50",
                          "value": percentiles(file_verifies_cpu)["p50"] * 1000, "unit": "ms"},
            ),
            figure(
                "render p95 as a multiple of the bare one-line render p95",
                mine["p95"] / line["p95"],
                "x",
                target="< 8x bare",
                met=mine["p95"] / line["p95"] < 8,
            ),
            figure(
                "render p50",
                mine["p50"] * 1000,
                "ms",
                baseline={"name": "bare one-line render p50", "value": line["p50"] * 1000,
                          "unit": "ms"},
                ratio=mine["p50"] / line["p50"],
            ),
            figure(
                f"render p50 against WeasyPrint alone on the same HTML ({bare_pages} pages)",
                mine["p50"] * 1000,
                "ms",
                baseline={"name": "bare render of the same HTML, p50",
                          "value": base["p50"] * 1000, "unit": "ms"},
                ratio=mine["p50"] / base["p50"],
            ),
            figure(
                "render CPU time p50 (process time: robust to other load on the machine)",
                percentiles(cpu)["p50"] * 1000,
                "ms",
                baseline={"name": "bare one-line render CPU p50",
                          "value": percentiles(cpu_line)["p50"] * 1000, "unit": "ms"},
                ratio=percentiles(cpu)["p50"] / percentiles(cpu_line)["p50"],
            ),
            figure(
                "render p50 per page",
                mine["p50"] * 1000 / max(1, pages),
                "ms",
                baseline={"name": "bare one-line page p50", "value": line["p50"] * 1000,
                          "unit": "ms"},
                ratio=mine["p50"] / max(1, pages) / line["p50"],
            ),
            figure("peak Python memory of one render (tracemalloc)", peak / 2**20, "MiB"),
            figure("peak RSS of the benchmark process", rss_mib, "MiB"),
        ],
        "notes": [
            f"{N} warm renders + signatures, interleaved with {N} bare renders of the same "
            f"HTML ({bare_pages} pages), {N} one-line renders and {3 * N} verifications.",
            "Signing steps: page digests (pypdf), statement, DSSE (Ed25519), envelope "
            "embedded and PAdES signature (pyHanko, P-256) in one incremental update.",
            f"Typical attestation: {markdown_bytes} bytes of Markdown, "
            f"{len(facts['evaluation']['runs'])} runs, {len(facts['signoffs'])} sign-offs, "
            f"{len(facts['audit']['trail'])} audit events; {pages} pages, "
            f"{len(artifacts['pdf']) // 1024} KiB.",
        ],
        "details": {
            "render_and_sign_s": mine,
            "page_render_s": render_only,
            "signing_steps_s": signing,
            "signing_overhead_ratio": overhead,
            "verify_s": verify_p,
            "verify_file_only_s": file_verify_p,
            "verify_cpu_s": percentiles(verifies_cpu),
            "bare_same_html_s": base,
            "render_cpu_s": percentiles(cpu),
            "bare_same_html_cpu_s": percentiles(cpu_bare),
            "one_line_s": line,
            "one_line_cpu_s": percentiles(cpu_line),
            "load_average": os.getloadavg(),
        },
    }  # fmt: skip
