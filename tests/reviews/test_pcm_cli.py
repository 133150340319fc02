"""``python -m pcm gate`` against a live server: exit 0 deployable, 1 not, 2 error."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from changes import hooks, services
from tests.changes.ports import PassingEvaluationPort
from tests.changes.test_api_support import approve, awaiting_review
from tests.conftest import token_for
from tests.factories import PASSWORD, make_change

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def passing(monkeypatch):
    monkeypatch.setattr(hooks, "_evaluation", PassingEvaluationPort())


def _cli(live_server, token, *args, wait=True):
    env = {**os.environ, "PCM_URL": live_server.url}
    env.pop("PCM_TOKEN", None)
    if token:
        env["PCM_TOKEN"] = token
    proc = subprocess.Popen(
        [sys.executable, "-m", "pcm", "gate", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if not wait:
        return proc
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def test_exit_codes_against_a_live_server(live_server, passing, engineer, reviewer, pipeline):
    token = token_for(pipeline)
    change = awaiting_review(make_change(author=engineer), engineer)

    code, out, _ = _cli(live_server, token, "--change", change.reference)
    assert code == 1 and "NOT deployable" in out and "0 of 1 required" in out

    approve(change, reviewer)
    code, out, _ = _cli(live_server, token, "--change", change.reference, "--env", "production")
    assert code == 0 and f"{change.reference} -> production: deployable" in out

    for args, token_used, message in [
        (["--change", "CR-999999"], token, "HTTP 404"),
        (["--change", change.reference], "not-a-token", "HTTP 401"),
        (["--change", change.reference], "", "no token"),
        (["--change", "twelve"], token, "--change"),
        (["--change", "1", "--url", "ftp://x"], token, "--url"),
    ]:
        code, _, err = _cli(live_server, token_used, *args)
        assert code == 2 and message in err, (args, err)


def test_wait_returns_as_soon_as_the_gate_opens(live_server, passing, engineer, reviewer, pipeline):
    token = token_for(pipeline)
    change = awaiting_review(make_change(author=engineer), engineer)
    proc = _cli(
        live_server,
        token,
        "--change",
        str(change.pk),
        "--wait",
        "--interval",
        "0.2",
        "--timeout",
        "30",
        wait=False,
    )
    time.sleep(0.8)
    assert proc.poll() is None  # still waiting
    approve(change, reviewer)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "deployable" in out


def test_wait_gives_up_on_a_hopeless_change_and_after_the_timeout(
    live_server, passing, engineer, reviewer, pipeline
):
    token = token_for(pipeline)
    change = awaiting_review(make_change(author=engineer), engineer)
    services.review_submit(  # changes requested: no approval can open it until an edit
        actor=reviewer,
        change_request=change,
        decision="request_changes",
        comment="Add a test.",
        password=PASSWORD,
    )
    code, out, err = _cli(live_server, token, "--change", change.reference, "--wait")
    assert code == 1 and "stopped waiting" in out, (out, err)
    waiting = awaiting_review(make_change(author=engineer), engineer)
    started = time.monotonic()
    code, out, _ = _cli(
        live_server,
        token,
        "--change",
        waiting.reference,
        "--wait",
        "--interval",
        "0.2",
        "--timeout",
        "1",
    )
    assert code == 1 and "gave up after 1 s" in out
    assert time.monotonic() - started < 15


def test_env_asks_that_environments_gate(
    live_server, passing, engineer, reviewer, pipeline, admin_user
):
    """``--env`` reaches the gate API as ``?environment=``: the answer and the exit code are
    that environment's (production waits for staging; an unknown name is an error)."""
    from changes import env_services

    token = token_for(pipeline)
    change = awaiting_review(make_change(author=engineer), engineer)
    env_services.environment_save(
        actor=admin_user, system=change.system, name="production", requires_previous=True
    )
    approve(change, reviewer)

    # production: closed until the change ran in staging
    code, out, _ = _cli(live_server, token, "--change", change.reference, "--env", "production")
    assert code == 1, out
    assert f"{change.reference} -> production: NOT deployable" in out
    assert "deploy to staging first" in out
    # staging: open, with the same change and token
    code, out, _ = _cli(live_server, token, "--change", change.reference, "--env", "staging")
    assert code == 0 and f"{change.reference} -> staging: deployable" in out, out
    # after the staging deploy, production opens and staging says it is done
    services.change_request_deploy(actor=engineer, change_request=change, environment="staging")
    code, out, _ = _cli(live_server, token, "--change", change.reference, "--env", "production")
    assert code == 0 and f"{change.reference} -> production: deployable" in out, out
    code, out, _ = _cli(live_server, token, "--change", change.reference, "--env", "staging")
    assert code == 1 and "already deployed to staging" in out, out
    # an environment the system does not have: exit 2 with the server's reason
    code, _, err = _cli(live_server, token, "--change", change.reference, "--env", "moon")
    assert code == 2 and "HTTP 400" in err and "not an environment" in err, err
