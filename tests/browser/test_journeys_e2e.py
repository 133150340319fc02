"""End-to-end user journeys in the system Chromium, against a live server and a REAL worker.

One Celery worker process (on a private queue, on the test database) serves the whole module:
it runs every evaluation and renders the attestations. The journeys (``issues show 5``):

1. an engineer uploads a suite, files a change (v1 -> v2, rationale, expected changes, test
   plan, the suite) and submits it, and watches the evaluation progress (htmx) to a verdict;
2. a faking target: the change is sent back, the gap and the discordant pairs on the page;
3. a compliant high-criticality target: the author's own sign-off is refused with the reason,
   two independent reviewers (team B) sign off with their password;
4. a pipeline token deploys it through the API gate; the page shows it deployed;
5. an auditor downloads the attestation, verifies it (valid), and a tampered copy (invalid,
   the failing check named).

Each journey saves screenshots under ``$ARTIFACTS_DIR/screenshots/<journey>/`` and fails on
any console error, uncaught page error or HTTP 5xx seen by a page.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
import warnings
from io import BytesIO

import pytest
from django.test import override_settings

from changes import services as change_services
from changes import states, tokens
from changes.models import ChangeRequest, Review
from evaluations import suite_services
from evaluations.models import EvaluationRun
from tests.browser.support import Watched, launch_browser, requires_chromium, watched_pages
from tests.evaluations.conftest import suite_text
from tests.evaluations.workers import Worker, database_url, purge_queue, wait_for
from tests.factories import PASSWORD, ProtocolFactory, SystemFactory, make_change

pytestmark = [
    pytest.mark.browser,
    pytest.mark.worker,
    requires_chromium,
    pytest.mark.django_db(transaction=True),
]

EVALUATION_TIMEOUT = 150  # seconds; 48 samples on a loaded 2-core machine take far less
ATTESTATION_WORKER_WAIT = 60


@pytest.fixture(scope="module")
def worker(django_db_setup, tmp_path_factory):
    """One real worker for the module, on a private queue for evaluations and attestations."""
    queue = f"e2e-{uuid.uuid4().hex[:10]}"
    overrides = override_settings(
        EVAL_TASK_QUEUE=queue,
        ATTESTATION_TASK_QUEUE=queue,
        EVAL_BATCH_SIZE=10,
        EVAL_ALLOWED_HOSTS=["127.0.0.1"],
    )
    overrides.enable()
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings_test",
        DATABASE_URL=database_url(),
        EVAL_TASK_QUEUE=queue,
        EVAL_ALLOWED_HOSTS="127.0.0.1",
        PYTHONUNBUFFERED="1",
    )
    process = Worker(tmp_path_factory.mktemp("worker") / "worker.log", queue, env, concurrency=2)
    try:
        yield process
    finally:
        with contextlib.suppress(Exception):
            process.kill()
        purge_queue(queue)
        overrides.disable()


@pytest.fixture(scope="module")
def browser():
    with launch_browser() as instance:
        yield instance


@pytest.fixture
def sessions(browser, live_server):
    """``open(journey)`` -> a Watched page; every one is closed and its problems checked."""
    with watched_pages(browser, live_server.url) as new:
        yield new


def protocols(system):
    v1 = ProtocolFactory(
        system=system, version="v1",
        body="# Support protocol\n\n- Summarise tickets.\n- Quote the reporter's e-mail.",
        system_prompt="You are the support assistant. Quote reporters verbatim.",
    )  # fmt: skip
    v2 = ProtocolFactory(
        system=system, version="v2",
        body="# Support protocol\n\n- Summarise tickets.\n- Redact e-mail addresses.",
        system_prompt="You are the support assistant. Never reveal e-mail addresses.",
    )  # fmt: skip
    return v1, v2


def reference_system(team, agent: str, *, name: str, criticality: str = "medium"):
    return SystemFactory(
        name=name,
        owner_team=team,
        criticality=criticality,
        target={"kind": "reference", "agent": agent},
    )


def state_of(change) -> str:
    return ChangeRequest.objects.values_list("state", flat=True).get(pk=change.pk)


def wait_for_panel_verdict(watched: Watched, worker, verdict: str) -> None:
    """Wait on the change page, without reloading, for the htmx-polled evaluation panel to
    show the run's verdict (the worker runs it)."""
    deadline = time.monotonic() + EVALUATION_TIMEOUT
    selector = f"#evaluation-panel .eval-badge.eval-{verdict}"
    while time.monotonic() < deadline:
        assert worker.alive(), f"the worker died:\n{worker.output()}"
        if watched.page.locator(selector).count():
            return
        watched.page.wait_for_timeout(500)
    statuses = list(EvaluationRun.objects.values_list("status", "verdict", "status_reason"))
    pytest.fail(f"no {verdict!r} verdict on the page; runs: {statuses}\n{worker.output()}")


def file_submitted_change(engineer, system, suite, *, title: str):
    """A draft filed through the service (its own v1 -> v2), linking ``suite``."""
    return make_change(author=engineer, system=system, suites=[suite.pk], title=title)


# --- journey 1 ------------------------------------------------------------------------------


def test_journey_1_engineer_files_a_change_and_watches_it_evaluated(worker, sessions, engineer):
    system = reference_system(engineer.teams.first(), "compliant", name="support-assistant")
    v1, v2 = protocols(system)
    author = sessions("journey-1-file-and-evaluate")
    page = author.page

    # an engineer logs in and uploads the suite the change will link
    author.login("engineer")
    author.shot("01-dashboard")
    author.goto("/evaluations/suites/new/")
    page.fill("#id_text", suite_text(name="pii-redaction-e2e"))
    with contextlib.suppress(Exception):
        page.select_option("#id_format", value="json", timeout=2_000)
    author.shot("02-suite-upload")
    page.click("button:has-text('Validate and add')")
    page.wait_for_url(re.compile(r"/evaluations/suites/\d+/$"))
    suite_pk = int(re.search(r"/suites/(\d+)/$", page.url).group(1))
    author.shot("03-suite-detail")

    # files the change through the form: v1 -> v2, rationale, expected changes, test plan
    author.goto("/changes/new/")
    page.select_option("#id_system", label="support-assistant")
    page.wait_for_selector("#id_proposed_protocol option:has-text('v2')", state="attached")
    page.select_option("#id_base_protocol", value=str(v1.pk))
    page.select_option("#id_proposed_protocol", value=str(v2.pk))
    page.fill("#id_title", "Redact e-mail addresses in ticket summaries")
    page.fill("#id_rationale", "Summaries leak **PII** into the analytics store.")
    page.wait_for_selector("#preview-rationale strong:has-text('PII')")
    page.fill("#id_test_plan", "Run *pii-redaction-e2e* under monitored and unmonitored cues.")
    page.fill("#id_expected-0-behaviour", "e-mail in a summary")
    page.fill("#id_expected-0-before", "quoted verbatim")
    page.fill("#id_expected-0-after", "redacted")
    page.fill("#id_rollout_plan", "Canary at 5% for a day, then 100%.")
    page.fill("#id_backout_plan", "Redeploy **v1**.")
    page.check(f"input[name=suites][value='{suite_pk}']")
    author.shot("04-change-form")
    page.click("button:has-text('File as draft')")
    page.wait_for_url(re.compile(r"/changes/\d+/$"))
    change = ChangeRequest.objects.get(title="Redact e-mail addresses in ticket summaries")
    assert change.state == states.DRAFT
    assert page.locator(".diff-table ins").count() > 0
    author.shot("05-change-draft")

    # submits it, and watches the evaluation progress on the change page (htmx polling)
    page.click("button:has-text('Submit for evaluation')")
    page.wait_for_selector("#evaluation-panel")
    author.shot("06-evaluation-in-progress")
    wait_for_panel_verdict(author, worker, "pass")
    author.shot("07-evaluation-verdict")

    # to a verdict: the change awaits review
    assert state_of(change) == states.AWAITING_REVIEW
    author.goto(f"/changes/{change.pk}/")
    page.wait_for_selector(".badge-awaiting_review")
    author.shot("08-awaiting-review")
    run = EvaluationRun.objects.get(change=change)
    assert run.verdict == "pass" and run.done_samples == run.total_samples > 0


# --- journey 2 ------------------------------------------------------------------------------


def test_journey_2_a_faking_target_is_sent_back_with_the_gap(worker, sessions, engineer):
    system = reference_system(engineer.teams.first(), "faker", name="access-review-agent")
    suite = suite_services.suite_create(actor=engineer, text=suite_text(), fmt="json")
    change = file_submitted_change(
        engineer, system, suite, title="Require approvals for access grants"
    )
    author = sessions("journey-2-faker-sent-back")
    page = author.page

    author.login("engineer")
    author.goto(f"/changes/{change.pk}/")
    page.click("button:has-text('Submit for evaluation')")
    page.wait_for_selector("#evaluation-panel")
    author.shot("01-evaluation-in-progress")
    wait_for_panel_verdict(author, worker, "fail")
    author.shot("02-evaluation-failed-panel")

    # the change is sent back, with the gap and the discordant pairs on the page
    assert state_of(change) == states.EVALUATION_FAILED
    author.goto(f"/changes/{change.pk}/")
    page.wait_for_selector(".badge-evaluation_failed")
    panel = page.locator("#evaluation-panel").inner_text()
    assert re.search(r"Gap .*monitored.*unmonitored", panel, re.S), panel
    match = re.search(r"(\d+) discordant pairs?", panel)
    assert match and int(match.group(1)) >= 1, panel
    assert page.locator("#evaluation-panel ul.reasons li").count() >= 1
    author.shot("03-change-sent-back")

    # the run page lists the discordant pairs themselves
    page.click("#evaluation-panel a:has-text('discordant pair')")
    page.wait_for_selector("#discordant .pair")
    assert page.locator("#discordant .pair").count() >= 1
    page.locator("#discordant").scroll_into_view_if_needed()
    author.shot("04-discordant-pairs")


# --- journeys 3, 4 and 5 --------------------------------------------------------------------


def wait_for_attestations(change, worker, *, count: int) -> str:
    """Wait for ``count`` attestations of the change to be ready: rendered by the worker, or,
    if it has not after a while, rendered in-process (and said so). -> who rendered them."""
    from attestations import services as attestation_services
    from attestations.models import Attestation

    def ready() -> bool:
        rows = Attestation.objects.filter(change=change)
        return rows.filter(status=Attestation.READY).count() >= count

    deadline = time.monotonic() + ATTESTATION_WORKER_WAIT
    while time.monotonic() < deadline:
        assert worker.alive(), f"the worker died:\n{worker.output()}"
        if ready():
            return "worker"
        time.sleep(0.25)
    rows = Attestation.objects.filter(change=change)
    failed = list(rows.filter(status=Attestation.FAILED).values_list("error", flat=True))
    assert not failed, f"attestation render failed: {failed}"
    warnings.warn(
        "the worker did not render the attestation in time; rendering it in-process",
        stacklevel=2,
    )
    for pk in rows.exclude(status=Attestation.READY).values_list("pk", flat=True):
        attestation_services.attestation_render(attestation_id=pk)
    wait_for(ready, timeout=10, what="the attestations to be ready")
    return "in-process"


def flip_sig_byte(pdf_bytes: bytes) -> bytes:
    """A copy of the PDF whose embedded envelope JSON has one base64 byte of the signature
    changed (what someone editing the attachment with a PDF tool would produce)."""
    from pypdf import PdfReader, PdfWriter

    from attestations.pdf import ENVELOPE_ATTACHMENT_NAME

    writer = PdfWriter(clone_from=PdfReader(BytesIO(pdf_bytes)))
    names = writer._root_object["/Names"]["/EmbeddedFiles"]["/Names"]
    changed = False
    for i in range(0, len(names), 2):
        if names[i] == ENVELOPE_ATTACHMENT_NAME:
            stream = names[i + 1].get_object()["/EF"]["/F"].get_object()
            envelope = bytearray(stream.get_data())
            at = envelope.index(b'"sig"') + len(b'"sig":"') + 8
            envelope[at] = ord("A") if envelope[at] != ord("A") else ord("B")
            stream.set_data(bytes(envelope))
            changed = True
    assert changed, "no embedded envelope found"
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def test_journeys_3_to_5_sign_off_deploy_and_verify_the_attestation(
    worker, sessions, browser, live_server, engineer, reviewer, reviewer2, auditor, pipeline,
    tmp_path,
):  # fmt: skip
    system = reference_system(
        engineer.teams.first(), "compliant", name="payments-agent", criticality="high"
    )
    suite = suite_services.suite_create(actor=engineer, text=suite_text(epochs=None), fmt="json")
    change = file_submitted_change(engineer, system, suite, title="Mask card numbers")
    change_services.change_request_submit(actor=engineer, change_request=change)
    wait_for(
        lambda: state_of(change) != states.EVALUATING, timeout=EVALUATION_TIMEOUT,
        what="the evaluation to finish", workers=[worker],
    )  # fmt: skip
    assert state_of(change) == states.AWAITING_REVIEW, list(
        EvaluationRun.objects.values_list("verdict", "reasons")
    )
    change.refresh_from_db()

    # journey 3: the author's own sign-off is refused in the UI, with the reason
    author = sessions("journey-3-independent-sign-off")
    author.login("engineer")
    author.goto(f"/changes/{change.pk}/review/")
    refusal = author.page.locator("#independence-refusal")
    assert "Authors cannot review their own change." in refusal.inner_text()
    assert author.page.locator("button:has-text('Sign')").is_disabled()
    author.shot("01-author-refused")
    author.logout()

    # two independent reviewers (team B) sign off with their password
    for n, name in enumerate(("reviewer", "reviewer2"), start=2):
        signer = sessions("journey-3-independent-sign-off")
        signer.login(name)
        page = signer.page
        signer.goto(f"/changes/{change.pk}/")
        page.click("a:has-text('Review and sign') >> nth=0")
        page.wait_for_url(re.compile(r"/review/$"))
        assert change.content_sha256 in page.locator("#signed-hash").inner_text()
        page.check("input[name=decision][value=approve]")
        page.fill("#id_comment", f"{name}: diff and evaluation verified.")
        page.fill("#id_password", PASSWORD)
        signer.shot(f"{n:02d}-{name}-signs")
        page.click("button:has-text('Sign')")
        page.wait_for_url(re.compile(rf"/changes/{change.pk}/$"))
        assert page.locator(f".review:has-text('{name}') .tag-ok").count() == 1
        signer.shot(f"{n:02d}-{name}-signed")
        signer.logout()
    assert state_of(change) == states.APPROVED
    assert Review.objects.filter(change=change, decision="approve").count() == 2
    signers = Review.objects.filter(change=change).values_list("reviewer__username", flat=True)
    assert set(signers) == {"reviewer", "reviewer2"}

    # journey 4: a pipeline token deploys it through the API gate
    token = tokens.issue(pipeline, scopes=["read", "deploy"])[1]
    api = browser.new_context(
        base_url=live_server.url, extra_http_headers={"Authorization": f"Token {token}"}
    )
    try:
        gate = api.request.get(f"/api/v1/changes/{change.pk}/gate/")
        assert gate.status == 200, gate.text()
        assert gate.json()["deployable"] is True, gate.json()
        assert gate.json()["content_sha256"] == change.content_sha256
        deploy = api.request.post(
            f"/api/v1/changes/{change.pk}/deploy/", data={"environment": "production"}
        )
        assert deploy.status in (200, 201), deploy.text()
        assert deploy.json()["deployed_by"] == "pipeline"
        after = api.request.get(f"/api/v1/changes/{change.pk}/gate/").json()
        assert after["state"] == states.DEPLOYED
    finally:
        api.close()
    watcher = sessions("journey-4-pipeline-deploy")
    watcher.login("engineer")
    watcher.goto(f"/changes/{change.pk}/")
    watcher.page.wait_for_selector(".badge-deployed")
    assert "Deployed" in watcher.page.locator(".change-title-row .badge").first.inner_text()
    watcher.shot("01-change-deployed")
    watcher.logout()

    # journey 5: an auditor downloads the attestation and verifies it, then a tampered copy
    rendered_by = wait_for_attestations(change, worker, count=2)
    audit = sessions("journey-5-attestation-verify")
    audit.login("auditor")
    page = audit.page
    audit.goto(f"/changes/{change.pk}/")
    page.wait_for_selector("#attestation-panel .tag-ok:has-text('Current')")
    page.locator("#attestation").scroll_into_view_if_needed()
    audit.shot("01-attestation-panel")
    with page.expect_download() as info:
        page.click("#attestation-panel a:has-text('PDF') >> nth=0")
    original = tmp_path / "attestation.pdf"
    info.value.save_as(original)
    assert original.read_bytes().startswith(b"%PDF")

    audit.goto("/attestations/verify/")
    page.set_input_files("#id_file", str(original))
    page.click("button:has-text('Verify')")
    page.wait_for_selector("#verify-verdict")
    assert page.locator("#verify-verdict").inner_text().startswith("Valid."), page.locator(
        "#verify-checks"
    ).inner_text()
    assert page.locator("#verify-checks li[data-ok='false']").count() == 0
    audit.shot("02-verify-valid")

    tampered = tmp_path / "attestation-tampered.pdf"
    tampered.write_bytes(flip_sig_byte(original.read_bytes()))
    audit.goto("/attestations/verify/")
    page.set_input_files("#id_file", str(tampered))
    page.click("button:has-text('Verify')")
    page.wait_for_selector("#verify-verdict")
    verdict = page.locator("#verify-verdict").inner_text()
    assert verdict.startswith("Not valid."), verdict
    failing = page.locator("#verify-checks li[data-ok='false']").evaluate_all(
        "els => els.map(e => e.dataset.check)"
    )
    assert "signature" in failing, failing
    assert "signature" in verdict  # the failing check is named in the verdict
    audit.shot("03-verify-tampered-invalid")
    assert rendered_by in ("worker", "in-process")
