"""The README is exercised, not just read.

- The API walk-through (the ``sh`` block under "Through the API") runs verbatim with bash
  against a live server, a real Celery worker and the ``seed_demo`` data (marker ``worker``).
- Every other URL, ``$BASE`` path, ``make`` target, ``manage.py`` command, file and setting it
  names exists.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command, get_commands
from django.urls import Resolver404, resolve

from tests.evaluations.workers import start_worker, worker_queue  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level
    (``#`` lines inside fenced blocks are shell comments, not headings)."""
    level = len(heading.split(" ", 1)[0])
    lines = README.splitlines()
    start = lines.index(heading) + 1
    fenced = False
    for end in range(start, len(lines)):
        line = lines[end]
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(rf"#{{1,{level}}} ", line):
            return "\n".join(lines[start:end])
    return "\n".join(lines[start:])


def walkthrough() -> str:
    """The API walk-through: the first ``sh`` block under "Through the API", verbatim."""
    match = re.search(r"```sh\n(.*?)\n```", section("### Through the API"), re.S)
    assert match, "no ```sh block under '### Through the API'"
    return match.group(1) + "\n"


def prose() -> str:
    """The README without its fenced blocks (the walk-through has its own test)."""
    return re.sub(r"```.*?```", "", README, flags=re.S)


# --- the walk-through --------------------------------------------------------------------


def test_the_walkthrough_is_valid_bash():
    bash = shutil.which("bash")
    result = subprocess.run(
        [bash, "-n"], input=walkthrough(), text=True, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_walkthrough_hard_codes_no_ids():
    script = walkthrough()
    assert not re.search(r"\b[A-Z0-9_]+=\d+\b", script), "ids must come from the responses"
    assert not re.search(r'"(system|base_protocol|proposed_protocol)": \d', script)
    assert "wait_for=awaiting_review" in script  # no review before the evaluation ends
    assert "--fail-with-body" in script


def json_helper() -> str:
    match = re.search(r"^json\(\) \{.*?; \}$", walkthrough(), re.M | re.S)
    assert match, "the walk-through defines json()"
    return match.group(0)


@pytest.mark.parametrize(
    ("answer", "expr", "code", "shown"),
    [
        ('{"id": 7, "state": "draft"}', 'd["id"]', 0, "7"),
        ('{"results": [{"id": 2, "name": "b"}]}', 'next(s["id"] for s in d["results"])', 0, "2"),
        (
            '{"detail": "cannot move to Approved.", "code": "invalid_transition"}',
            'd["decision"]',
            1,
            "cannot move to Approved.",
        ),
        ("", 'd["id"]', 1, "(nothing)"),
        ("<html>Server Error</html>", 'd["id"]', 1, "Server Error"),
    ],
)
def test_the_json_helper_shows_an_error_answer_and_fails(answer, expr, code, shown):
    result = subprocess.run(
        [shutil.which("bash"), "-c", f"{json_helper()}\njson '{expr}'"],
        input=answer,
        text=True,
        capture_output=True,
        check=False,
    )
    assert result.returncode == code, result.stderr
    assert shown in (result.stdout if code == 0 else result.stderr)


def test_the_walkthrough_only_calls_endpoints_that_exist():
    for path in re.findall(r"\$BASE(/[^\"'\s]*)", walkthrough()):
        assert_resolves("/api/v1" + path)


@pytest.fixture
def demo_worker(start_worker, worker_queue, settings):  # noqa: F811 - fixtures by name
    """A real worker taking this test's evaluation batches and attestation renders."""
    settings.ATTESTATION_TASK_QUEUE = worker_queue
    return start_worker()


@pytest.mark.worker
@pytest.mark.skipif(not shutil.which("curl"), reason="the walk-through needs curl")
@pytest.mark.django_db(transaction=True)
def test_the_walkthrough_runs_verbatim_against_a_live_server(live_server, demo_worker, tmp_path):
    from attestations.models import Attestation
    from changes.models import ChangeRequest, Deployment

    call_command("seed_demo", stdout=open(os.devnull, "w"))  # noqa: SIM115
    script = tmp_path / "walkthrough.sh"
    script.write_text(walkthrough(), encoding="utf-8")
    env = {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    base = live_server.url.replace("://localhost:", "://127.0.0.1:")  # the address it binds
    env.update(BASE=f"{base}/api/v1", NO_PROXY="*", no_proxy="*")

    result = subprocess.run(
        [shutil.which("bash"), "-e", str(script)],  # as the README says to run it
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    out = result.stdout
    assert result.returncode == 0, f"exit {result.returncode}\n{out}\n{result.stderr}\n" + (
        demo_worker.output()
    )
    assert "state: awaiting_review" in out
    assert "review: approve" in out
    assert '"deployable":true' in out
    assert '"environment":"production"' in out  # the deploy answered 201 with the deployment
    assert "attestation.pdf: HTTP 200" in out
    assert "valid: True" in out
    assert '"verb":"attestation.verified"' in out  # the end of the audit log
    assert (tmp_path / "attestation.pdf").read_bytes().startswith(b"%PDF-")
    change = ChangeRequest.objects.get(title="Redact phone numbers too")
    assert change.state == "deployed"
    assert Deployment.objects.filter(change=change, environment="production").exists()
    assert Attestation.objects.filter(change=change, status=Attestation.READY).exists()


# --- everything else the README names ----------------------------------------------------


def assert_resolves(path: str) -> None:
    path = path.split("?", 1)[0]
    path = re.sub(r"\$[A-Z_]+|\{[a-z_]+\}", "1", path)
    try:
        resolve(path)
    except Resolver404:
        pytest.fail(f"README names {path}, which no URL pattern serves")


FILESYSTEM_PATHS = ("/usr/", "/app/")


def readme_urls() -> set[str]:
    text = prose()
    urls = set(re.findall(r"http://127\.0\.0\.1:8000(/[^\s>)`'\"]*)", text))
    urls |= {
        p for p in re.findall(r"`(/[a-z][^`\s]*)`", text) if not p.startswith(FILESYSTEM_PATHS)
    }
    urls |= {"/api/v1" + p for p in re.findall(r"\$BASE(/[^\"'\s`]*)", text)}
    urls |= {p for p in re.findall(r"`(?:GET|POST|PATCH) (/[^`\s]+)`", text)}
    return urls


def test_the_readme_names_urls():
    assert {"/", "/accounts/login/", "/api/docs/", "/api/schema/", "/healthz"} <= readme_urls()


@pytest.mark.parametrize("url", sorted(readme_urls()))
def test_every_url_in_the_readme_resolves(url):
    assert_resolves(url)


def readme_post_only_urls() -> set[str]:
    """URLs the README names only after POST: they resolve (checked above) but answer no GET."""
    text = README
    urls = {"/api/v1" + p for p in re.findall(r"POST \$BASE(/[^\"'\s`]*)", text)}
    return urls | set(re.findall(r"`POST (/[^`\s]+)`", text))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    sorted(u for u in readme_urls() - readme_post_only_urls() if "{" not in u and "$" not in u),
)
def test_every_concrete_url_in_the_readme_answers(client, admin_user, url):
    client.force_login(admin_user)
    response = client.get(url)
    assert response.status_code < 400, f"{url}: {response.status_code}"


def make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z][\w-]*):", makefile, re.M))


def readme_make_targets() -> set[str]:
    return set(re.findall(r"\bmake ([a-z][\w-]*)", README))


def test_every_make_target_in_the_readme_exists():
    named = readme_make_targets()
    assert {"run", "test", "lint", "fmt", "bench"} <= named
    assert named <= make_targets(), f"missing targets: {named - make_targets()}"


def test_every_manage_py_command_in_the_readme_exists():
    named = set(re.findall(r"manage\.py ([a-z_]+)", README))
    assert {"seed_demo", "run_suite", "verify_audit", "verify_attestation"} <= named
    assert named <= set(get_commands()), f"unknown commands: {named - set(get_commands())}"


def test_every_manage_py_option_in_the_readme_exists():
    from django.core.management import load_command_class

    commands = get_commands()
    seen = 0
    for name, rest in re.findall(r"manage\.py ([a-z_]+)([^`|\n]*)", README):
        parser = load_command_class(commands[name], name).create_parser("manage.py", name)
        known = {opt for action in parser._actions for opt in action.option_strings}
        for option in re.findall(r"(?<!\S)(--[a-z][a-z-]*)", rest):
            seen += 1
            assert option in known, f"manage.py {name} has no {option}"
    assert seen >= 3  # run_suite --target --protocol, check --deploy --fail-level


REPO_DIRS = r"(?:scripts|docker|bench|tests|docs|config|evaluations|changes|attestations|\.ci)"


def readme_files() -> set[str]:
    files = set(re.findall(rf"`(?:bash )?({REPO_DIRS}/[^`\s]*[^`\s/.,])`", README))
    files |= set(re.findall(r"\]\(((?!https?:)[^)#]+)(?:#[^)]*)?\)", README))
    files |= set(re.findall(rf"\b({REPO_DIRS}/[\w./-]*\.(?:md|py|sh|yaml|lock))\b", README))
    return files


def test_the_readme_names_files():
    assert {"docs/CONTRACT.md", "docker/env.example", ".ci/run"} <= readme_files()


# Files the README tells the reader to create.
CREATED_BY_THE_READER = {"docker/.env"}


@pytest.mark.parametrize("name", sorted(readme_files() - CREATED_BY_THE_READER))
def test_every_file_the_readme_names_exists(name):
    assert (ROOT / name).exists(), f"README names {name}, which is not in the repository"


def test_the_contract_mentions_point_at_the_document():
    mentions = re.findall(r"(\[?the contract\]?)(\([^)]*\))?", README, re.I)
    assert mentions
    for text, link in mentions:
        assert link.startswith("(docs/CONTRACT.md"), f"unlinked mention: {text}"


def production_variables() -> set[str]:
    names: set[str] = set()
    for line in section("## Production").splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell))
    return names


def test_every_production_variable_is_read_by_the_settings():
    names = production_variables()
    assert {"DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY"} <= names
    settings_text = (ROOT / "config" / "settings.py").read_text(encoding="utf-8")
    env_example = (ROOT / "docker" / "env.example").read_text(encoding="utf-8")
    for name in sorted(names):
        assert f'"{name}"' in settings_text, f"{name} is documented but not read by settings"
        assert name in env_example, f"{name} is missing from docker/env.example"
