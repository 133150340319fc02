"""Locust scenario: engineers, reviewers and auditors working at once against a live server.

Run by ``scripts/load_test.sh`` (which seeds the demo data, starts gunicorn and a Celery worker
on 127.0.0.1 and verifies the audit chain afterwards). The users sign in like people do:

* engineers (most users) browse the dashboard, change list, change pages and systems, open
  the new-change form, file changes through the form and through the API, submit them (the
  worker evaluates them against the demo's reference agents) and deploy approved ones;
* reviewers look for changes awaiting review, read them, open the review page and sign
  (approve, or request changes) through the form or the API, re-entering their password;
* auditors page through the audit log (page and API), export it as JSON lines and verify
  the chain.

Every request is named ``page ...`` (an HTML page), ``api ...`` or ``auth ...`` (signing in:
deliberately slow password hashing, reported apart so it does not hide the pages' latency).
Latency percentiles cover the steady state (from the moment every user has started); 5xx
answers and connection errors count over the whole run. On exit the figures are written as
JSON to ``$LOAD_REPORT``.
Only 127.0.0.1 is ever targeted: the host comes from ``--host``, which the script sets.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import threading
from collections import Counter, defaultdict

from locust import HttpUser, between, events, task

# The demo logins created by ``manage.py seed_demo`` (demo-only passwords).
ENGINEERS = [("engineer", "engineer-demo-pass"), ("engineer2", "engineer2-demo-pass")]
REVIEWERS = [("reviewer", "reviewer-demo-pass"), ("reviewer2", "reviewer2-demo-pass")]
AUDITORS = [("auditor", "auditor-demo-pass"), ("admin", "admin-demo-pass")]
# The system whose reference agent follows the new protocol: its changes pass evaluation.
PASSING_SYSTEM = os.environ.get("LOAD_SYSTEM", "support-assistant")

_lock = threading.Lock()
_times: dict[str, list[float]] = defaultdict(list)
_ramp: Counter = Counter()  # requests made while users were still starting
_statuses: Counter = Counter()
_server_errors: list[str] = []
_counter = itertools.count(1)


@events.request.add_listener
def _record(request_type, name, response_time, response_length, response=None, exception=None,
            **kwargs):  # fmt: skip
    kind = name.split(" ", 1)[0]  # page, api or auth
    status = getattr(response, "status_code", 0) or 0
    with _lock:
        _times[kind].append(response_time)
        _statuses[status] += 1
        if status >= 500:
            _server_errors.append(f"{status} {request_type} {name}")


@events.spawning_complete.add_listener
def _steady_state(user_count, **kwargs):
    """Latency is measured once every user has started: the ramp-up is dominated by the
    deliberately slow password hashing of 50 sign-ins. Errors count from the first request."""
    with _lock:
        for kind in list(_times):
            _ramp[kind] = len(_times[kind])
            _times[kind] = []


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return round(ordered[index], 1)


@events.quitting.add_listener
def _write_report(environment, **kwargs):
    with _lock:
        report = {
            kind: {
                "requests": len(times),
                "p50_ms": _percentile(times, 50),
                "p95_ms": _percentile(times, 95),
                "p99_ms": _percentile(times, 99),
                "max_ms": round(max(times), 1) if times else None,
            }
            for kind, times in _times.items()
        }
        report["ramp_up_requests"] = dict(_ramp)
        report["statuses"] = {str(k): v for k, v in sorted(_statuses.items())}
        report["server_errors"] = sum(v for k, v in _statuses.items() if k >= 500)
        report["server_error_samples"] = _server_errors[:20]
        report["connection_errors"] = _statuses.get(0, 0)
        report["total_requests"] = sum(_statuses.values())
    path = os.environ.get("LOAD_REPORT")
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)


class _Person(HttpUser):
    """Signs in through the login form (session) and exchanges the password for a token."""

    abstract = True
    accounts: list[tuple[str, str]] = []
    wait_time = between(1, 3)

    def on_start(self):
        self.username, self.password = random.choice(self.accounts)
        self.client.get("/accounts/login/", name="auth login form")
        response = self.client.post(
            "/accounts/login/",
            {"username": self.username, "password": self.password},
            headers=self._csrf_header(),
            name="auth login (post)",
            allow_redirects=False,
        )
        if response.status_code != 302:
            raise RuntimeError(f"{self.username} could not sign in: {response.status_code}")
        token = self.client.post(
            "/api/v1/auth/token/",
            json={"username": self.username, "password": self.password},
            name="auth token",
        ).json()["token"]
        self.api_headers = {"Authorization": f"Token {token}"}

    # --- helpers -------------------------------------------------------------------------

    def _csrf_header(self) -> dict:
        token = self.client.cookies.get("csrftoken", "")
        return {"X-CSRFToken": token, "Referer": self.host + "/"}

    def page(self, path: str, name: str):
        return self.client.get(path, name=f"page {name}")

    def api_get(self, path: str, name: str, **kwargs):
        return self.client.get(path, headers=self.api_headers, name=f"api {name}", **kwargs)

    def api_post(self, path: str, name: str, body: dict | None = None):
        with self.client.post(
            path, json=body or {}, headers=self.api_headers, name=f"api {name}",
            catch_response=True,
        ) as response:  # fmt: skip
            # 4xx answers are the system refusing politely (a race with another user, a
            # state that moved on); only 5xx and transport errors count as failures.
            if response.status_code < 500:
                response.success()
            return response

    def form_post(self, path: str, name: str, data: dict):
        with self.client.post(
            path, data=data, headers=self._csrf_header(), name=f"page {name}",
            allow_redirects=False, catch_response=True,
        ) as response:  # fmt: skip
            if response.status_code < 500:
                response.success()
            return response

    def changes(self, **query) -> list[dict]:
        response = self.api_get("/api/v1/changes/", "changes list", params=query)
        return response.json().get("results", []) if response.ok else []


class Engineer(_Person):
    weight = 6
    accounts = ENGINEERS

    def on_start(self):
        super().on_start()
        systems = self.api_get("/api/v1/systems/", "systems list").json()["results"]
        system = next((s for s in systems if s["name"] == PASSING_SYSTEM), systems[0])
        self.system = system["id"]
        protocols = self.api_get(
            f"/api/v1/systems/{self.system}/protocols/", "protocols list"
        ).json()["results"]
        self.protocols = [p["id"] for p in protocols]
        suites = self.api_get("/api/v1/suites/", "suites list").json()["results"]
        self.suites = [s["id"] for s in suites if s["name"] == "pii-redaction"][:1] or [
            s["id"] for s in suites
        ][:1]
        self.mine: list[int] = []

    @task(4)
    def dashboard(self):
        self.page("/", "dashboard")

    @task(4)
    def change_list(self):
        self.page("/changes/", "change list")
        self.page("/changes/?state=awaiting_review", "change list (filtered)")

    @task(5)
    def change_page(self):
        rows = self.changes(page_size=20)
        if rows:
            change = random.choice(rows)["id"]
            self.page(f"/changes/{change}/", "change detail")
            self.api_get(f"/api/v1/changes/{change}/gate/", "change gate")

    @task(2)
    def systems(self):
        self.page("/systems/", "system list")
        self.page(f"/systems/{self.system}/", "system detail")

    @task(2)
    def file_through_the_form(self):
        self.page("/changes/new/", "change form")
        base, proposed = self.protocols[0], self.protocols[-1]
        response = self.form_post(
            "/changes/new/",
            "change form (post)",
            {
                "system": self.system,
                "base_protocol": base,
                "proposed_protocol": proposed,
                "title": f"Load change {next(_counter)} by {self.username} (form)",
                "rationale": "Summaries leak **PII**.",
                "test_plan": "Run the pii-redaction suite.",
                "risk": "medium",
                "change_type": "normal",
                "rollout_plan": "",
                "backout_plan": "",
                "suites": self.suites,
                "expected-TOTAL_FORMS": "1",
                "expected-INITIAL_FORMS": "0",
                "expected-MIN_NUM_FORMS": "0",
                "expected-MAX_NUM_FORMS": "50",
            },
        )
        match = re.search(r"/changes/(\d+)/$", response.headers.get("Location", ""))
        if match:
            self.mine.append(int(match.group(1)))

    @task(2)
    def file_through_the_api(self):
        response = self.api_post(
            "/api/v1/changes/",
            "changes create",
            {
                "system": self.system,
                "base_protocol": self.protocols[0],
                "proposed_protocol": self.protocols[-1],
                "title": f"Load change {next(_counter)} by {self.username} (API)",
                "rationale": "Summaries leak PII.",
                "test_plan": "Run the suite.",
                "expected_changes": [{"behaviour": "e-mail in summary", "after": "redacted"}],
                "suites": self.suites,
            },
        )
        if response.status_code == 201:
            self.mine.append(response.json()["id"])

    @task(2)
    def submit_a_draft(self):
        if self.mine:
            change = self.mine.pop(0)
            self.api_post(f"/api/v1/changes/{change}/submit/", "change submit")
            self.page(f"/changes/{change}/", "change detail")

    @task(1)
    def deploy_an_approved_change(self):
        rows = self.changes(state="approved", page_size=5)
        if rows:
            change = rows[0]["id"]
            self.api_post(
                f"/api/v1/changes/{change}/deploy/", "change deploy", {"environment": "prod"}
            )


class Reviewer(_Person):
    weight = 3
    accounts = REVIEWERS

    @task(3)
    def queue(self):
        self.page("/", "dashboard")
        self.page("/changes/?state=awaiting_review", "change list (filtered)")

    @task(4)
    def review(self):
        rows = self.changes(state="awaiting_review", page_size=10)
        if not rows:
            return
        change = random.choice(rows)
        self.page(f"/changes/{change['id']}/", "change detail")
        self.page(f"/changes/{change['id']}/review/", "review form")
        decision = random.choices(["approve", "request_changes"], weights=[4, 1])[0]
        comment = "Looks right." if decision == "approve" else "Add a rollback drill."
        if random.random() < 0.5:
            self.form_post(
                f"/changes/{change['id']}/review/",
                "review form (post)",
                {
                    "decision": decision,
                    "comment": comment,
                    "password": self.password,
                    "expected_sha256": change["content_sha256"],
                },
            )
        else:
            self.api_post(
                f"/api/v1/changes/{change['id']}/reviews/",
                "change review",
                {
                    "decision": decision,
                    "comment": comment,
                    "password": self.password,
                    "content_sha256": change["content_sha256"],
                },
            )

    @task(1)
    def read_evaluations(self):
        rows = self.changes(state="awaiting_review", page_size=5)
        if rows:
            runs = self.api_get(
                f"/api/v1/changes/{rows[0]['id']}/evaluations/", "change evaluations"
            ).json()
            for run in runs.get("results", [])[:1]:
                self.api_get(f"/api/v1/evaluations/{run['id']}/", "evaluation detail")
                self.page(f"/evaluations/runs/{run['id']}/", "run detail")


class Auditor(_Person):
    weight = 1
    accounts = AUDITORS

    @task(4)
    def audit_log_pages(self):
        self.page("/audit/", "audit log")
        first = self.api_get("/api/v1/audit/events/?page_size=100", "audit events").json()
        pages = max(1, -(-first.get("count", 0) // 100))
        self.api_get(
            f"/api/v1/audit/events/?page_size=100&page={random.randint(1, pages)}",
            "audit events (random page)",
        )

    @task(2)
    def audit_filtered(self):
        self.api_get("/api/v1/audit/events/?verb=change.", "audit events (filtered)")
        self.page("/audit/changes/", "audit changes")

    @task(1)
    def export_and_verify(self):
        self.api_get("/api/v1/audit/events/?format=jsonl&verb=review.", "audit export (jsonl)")
        self.api_get("/api/v1/audit/verify/", "audit verify")
