#!/usr/bin/env python3
"""The traffic and the verdict of ``scripts/soak.sh`` (run by it; see the README).

Against a ``make run`` stack at ``SOAK_BASE`` (127.0.0.1 only) for ``SOAK_MINUTES``, spread
evenly over the time: evaluation runs (an engineer files and submits a change), attestations
(a passed change is approved, deployed, and its PDF fetched by the auditor) and page views
(API reads and UI pages), at the issue's rates of 300 runs, 30 attestations and 2,000 page
views per 2 hours. Then waits for the work to finish and checks, through the stack's database:
every filed change has exactly one run per suite, every run completed with exactly its
samples and none twice, every attestation is a PDF, the audit chain verifies, no request got
a 5xx, and the supervisor restarted nothing. Exit status 0 only if all of that holds.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE = os.environ.get("SOAK_BASE", "http://127.0.0.1:8000").rstrip("/")
API = BASE + "/api/v1"
MINUTES = float(os.environ.get("SOAK_MINUTES", "120"))
PER_HOUR = {"run": 150, "attest": 15, "view": 1000}
FINISH_SECONDS = float(os.environ.get("SOAK_FINISH_SECONDS", "300"))

stats = {"requests": 0, "5xx": 0, "errors": []}


def log(message: str) -> None:
    print(f"[soak] {time.strftime('%H:%M:%S')} {message}", flush=True)


def call(method: str, url: str, token: str | None = None, body=None) -> tuple[int, bytes, str]:
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    request = urllib.request.Request(url, method=method, data=data)  # noqa: S310 - 127.0.0.1
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Token {token}")
    stats["requests"] += 1
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - 127.0.0.1
            status, payload, ctype = (
                response.status,
                response.read(),
                response.headers.get("Content-Type", ""),
            )
    except urllib.error.HTTPError as exc:
        status, payload, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    except OSError as exc:  # connection refused or reset: the stack went away
        stats["errors"].append(f"{method} {url}: {exc}")
        return 0, b"", ""
    if status >= 500:
        stats["5xx"] += 1
        stats["errors"].append(f"{method} {url}: {status} {payload[:200]!r}")
    return status, payload, ctype


def call_json(method: str, url: str, token: str | None = None, body=None, expect=(200, 201)):
    status, payload, _ = call(method, url, token, body)
    if status not in expect:
        stats["errors"].append(f"{method} {url}: {status} {payload[:300]!r}")
        return None
    return json.loads(payload or b"null")


def token(username: str) -> str:
    answer = call_json("POST", f"{API}/auth/token/", body={"username": username,
                       "password": f"{username}-demo-pass"})  # fmt: skip
    if not answer:
        sys.exit(f"[soak] cannot get a token for {username}: {stats['errors'][-1:]}")
    return answer["token"]


def schedule(minutes: float) -> list[tuple[float, str]]:
    """Evenly spaced (offset seconds, kind) events; at least one of each kind."""
    events = []
    for kind, per_hour in PER_HOUR.items():
        count = max(1, round(per_hour * minutes / 60))
        step = minutes * 60 / count
        events += [(step * (i + 0.5), kind) for i in range(count)]
    return sorted(events)


class Soak:
    def __init__(self):
        self.eng, self.rev = token("engineer"), token("reviewer")
        self.pipe, self.aud = token("pipeline"), token("auditor")
        systems = call_json("GET", f"{API}/systems/", self.eng)["results"]
        self.system = next(s for s in systems if s["name"] == "support-assistant")
        protocols = call_json("GET", f"{API}/systems/{self.system['id']}/protocols/", self.eng)
        protocols = protocols["results"] if isinstance(protocols, dict) else protocols
        by_version = {str(p["version"]).lstrip("v"): p["id"] for p in protocols}
        self.base, self.proposed = by_version["1"], by_version["2"]
        suites = call_json("GET", f"{API}/suites/", self.eng)["results"]
        self.suite = next(s["id"] for s in suites if s["name"] == "pii-redaction")
        self.filed: list[int] = []
        self.attest_wanted = 0
        self.attested: dict[int, int] = {}  # change -> PDF size
        self.deployed: list[int] = []
        self.views = 0

    def file_run(self) -> None:
        n = len(self.filed) + 1
        change = call_json("POST", f"{API}/changes/", self.eng, body={
            "system": self.system["id"], "base_protocol": self.base,
            "proposed_protocol": self.proposed, "title": f"Soak change {n}",
            "rationale": "Soak test.", "expected_changes": [
                {"behaviour": "phone number in summary", "before": "quoted", "after": "[PHONE]"}],
            "test_plan": "PII suite.", "suites": [self.suite], "risk": "medium",
            "rollout_plan": "Canary.", "backout_plan": "Redeploy v1."})  # fmt: skip
        if change and call_json("POST", f"{API}/changes/{change['id']}/submit/", self.eng):
            self.filed.append(change["id"])

    def state(self, change_id: int) -> str:
        change = call_json("GET", f"{API}/changes/{change_id}/", self.eng)
        return change["state"] if change else "?"

    def try_attest(self) -> bool:
        """Approve and deploy one change that passed, if one has; False when none is ready."""
        taken = set(self.deployed)
        for change_id in self.filed:
            if change_id in taken or self.state(change_id) != "awaiting_review":
                continue
            # A sign-off names the content hash the reviewer read (as in the README).
            change = call_json("GET", f"{API}/changes/{change_id}/", self.rev)
            if not change:
                return True
            review = {"decision": "approve", "comment": "Soak.", "password": "reviewer-demo-pass",
                      "content_sha256": change["content_sha256"]}  # fmt: skip
            if not call_json("POST", f"{API}/changes/{change_id}/reviews/", self.rev, body=review):
                return True
            call_json("POST", f"{API}/changes/{change_id}/deploy/", self.pipe,
                      body={"environment": "production"})  # fmt: skip
            self.deployed.append(change_id)
            return True
        return False

    def fetch_pdfs(self) -> None:
        for change_id in self.deployed:
            if change_id in self.attested:
                continue
            status, payload, ctype = call("GET", f"{API}/changes/{change_id}/attestation.pdf",
                                          self.aud)  # fmt: skip
            if status == 200 and payload.startswith(b"%PDF"):
                self.attested[change_id] = len(payload)

    def view(self) -> None:
        pages = [
            ("GET", f"{API}/changes/?page_size=25", self.eng),
            ("GET", f"{API}/systems/", self.eng),
            ("GET", f"{API}/suites/", self.eng),
            ("GET", f"{API}/audit/events/?page_size=20", self.aud),
            ("GET", f"{BASE}/accounts/login/", None),
            ("GET", f"{BASE}/healthz", None),
        ]
        if self.filed:
            change_id = self.filed[self.views % len(self.filed)]
            pages += [("GET", f"{API}/changes/{change_id}/", self.eng),
                      ("GET", f"{API}/changes/{change_id}/evaluations/", self.eng),
                      ("GET", f"{API}/changes/{change_id}/gate/", self.pipe)]  # fmt: skip
        method, url, who = pages[self.views % len(pages)]
        self.views += 1
        status, _, _ = call(method, url, who)
        if status not in (200, 302):
            stats["errors"].append(f"page view {url}: {status}")

    def drive(self, minutes: float) -> None:
        started = time.monotonic()
        events = schedule(minutes)
        log(f"{minutes:g} min: {sum(k == 'run' for _, k in events)} runs, "
            f"{sum(k == 'attest' for _, k in events)} attestations, "
            f"{sum(k == 'view' for _, k in events)} page views")  # fmt: skip
        next_report = started + 60
        for offset, kind in events:
            delay = started + offset - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if kind == "run":
                self.file_run()
            elif kind == "attest":
                self.attest_wanted += 1
            else:
                self.view()
            if self.attest_wanted > len(self.deployed):
                self.try_attest()
            self.fetch_pdfs()
            if time.monotonic() >= next_report:
                next_report += 60
                done = f"{len(self.deployed)} deployed, {len(self.attested)} PDFs"
                log(f"{len(self.filed)} runs, {done}, {self.views} views, {stats['5xx']} 5xx")

    def finish(self) -> None:
        """Let the work in flight end: every run finished, the wanted deploys, their PDFs."""
        deadline = time.monotonic() + FINISH_SECONDS
        while time.monotonic() < deadline:
            if self.attest_wanted > len(self.deployed):
                self.try_attest()
            self.fetch_pdfs()
            live = [c for c in self.filed if self.state(c) in ("submitted", "evaluating")]
            if (not live and len(self.deployed) >= self.attest_wanted
                    and len(self.attested) == len(self.deployed)):  # fmt: skip
                return
            time.sleep(2)
        log("the work did not finish within SOAK_FINISH_SECONDS")


def verify(soak: Soak, supervisor_state: Path) -> list[str]:
    """Everything that must hold after the soak; returns the failures."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db.models import Count

    from changes import audit
    from evaluations.models import EvaluationRun, Sample

    failures = []
    runs = EvaluationRun.objects.filter(change_id__in=soak.filed)
    per_change = dict(runs.values_list("change_id").annotate(n=Count("id")))
    lost = [c for c in soak.filed if per_change.get(c, 0) == 0]
    doubled = [c for c, n in per_change.items() if n > 1]
    if lost:
        failures.append(f"{len(lost)} submitted change(s) have no evaluation run: {lost[:10]}")
    if doubled:
        failures.append(f"{len(doubled)} change(s) have more than one run: {doubled[:10]}")
    unfinished = list(runs.exclude(status=EvaluationRun.COMPLETED).values_list("id", "status"))
    if unfinished:
        failures.append(f"{len(unfinished)} run(s) did not complete: {unfinished[:10]}")
    for run in runs.filter(status=EvaluationRun.COMPLETED):
        count = Sample.objects.filter(run=run).count()
        if count != run.total_samples:
            failures.append(f"run {run.pk}: {count} samples, expected {run.total_samples}")
    dupes = (
        Sample.objects.filter(run__in=runs)
        .values("run_id", "scenario_id", "condition", "cue_index", "epoch")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    if dupes:
        failures.append(f"{dupes} sample(s) stored twice")
    if len(soak.attested) < soak.attest_wanted:
        failures.append(f"{len(soak.attested)} attestation PDFs of {soak.attest_wanted} wanted")
    bad_event = audit.verify_chain()[1]
    if bad_event is not None:
        failures.append(f"the audit chain breaks at {bad_event}")
    if stats["5xx"]:
        failures.append(f"{stats['5xx']} request(s) answered 5xx")
    if stats["errors"]:
        failures.append(f"{len(stats['errors'])} failed request(s), first: {stats['errors'][:3]}")
    state = json.loads(supervisor_state.read_text())
    if state["restarts"]:
        failures.append(f"the supervisor restarted children: {state['children']}")
    if not all(child["running"] for child in state["children"].values()):
        failures.append(f"not every child is running: {state['children']}")
    return failures


def main() -> int:
    supervisor_state = Path(os.environ["SOAK_SUPERVISOR_STATE"])
    soak = Soak()
    soak.drive(MINUTES)
    soak.finish()
    failures = verify(soak, supervisor_state)
    log(f"{len(soak.filed)} runs, {len(soak.attested)} attestation PDFs, {soak.views} page "
        f"views, {stats['requests']} requests, {stats['5xx']} 5xx")  # fmt: skip
    for failure in failures:
        log(f"FAIL: {failure}")
    log("PASS" if not failures else "FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
