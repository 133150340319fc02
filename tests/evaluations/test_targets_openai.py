"""The openai and http targets against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from evaluations.runner import plan_samples, run_batch_sync
from evaluations.suite_schema import normalise_suite
from evaluations.targets import (
    TargetConfigError,
    TargetError,
    build_target,
    validate_target_config,
)
from evaluations.targets.openai import split_reasoning
from evaluations.targets.secrets import SecretResolver
from tests.evaluations.openai_stub import OpenAIStub

LOCAL = ["127.0.0.1"]
KEY = "sk-test-0123456789abcdef"
# What the registry grants these targets: two registered secrets, read from the environment.
GRANTED = SecretResolver(
    {"stub-key": ("env", "STUB_MODEL_KEY"), "agent-token": ("env", "AGENT_TOKEN")},
    secrets_file=None,
)
MESSAGES = [{"role": "system", "content": "Protocol v2."}, {"role": "user", "content": "Hi"}]


@pytest.fixture
def stub():
    with OpenAIStub(reply="Hello there") as server:
        yield server


def openai_target(stub: OpenAIStub, **overrides):
    config = {
        "kind": "openai",
        "base_url": stub.url,
        "model": "my-model",
        "api_key_secret": "stub-key",
        "backoff_base": 0.001,
        "max_retries": 3,
        "timeout": 5,
        **overrides,
    }
    return build_target(config, allowed_hosts=overrides.pop("allowed", LOCAL), secrets=GRANTED)


def complete(target, messages=MESSAGES, seed=7):
    async def main():
        try:
            return await target.complete(messages, seed=seed)
        finally:
            await target.aclose()

    return asyncio.run(main())


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("STUB_MODEL_KEY", KEY)


# ------------------------------------------------------------------------- happy path


def test_completion_sends_the_request_and_reads_the_reply(stub):
    reply = complete(openai_target(stub, temperature=0.3, max_tokens=64), seed=42)

    assert reply.text == "Hello there"
    assert reply.reasoning is None
    assert reply.model == "stub-model"
    assert reply.attempts == 1
    (request,) = stub.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["json"] == {
        "model": "my-model",
        "messages": MESSAGES,
        "temperature": 0.3,
        "max_tokens": 64,
        "seed": 42,
    }
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    assert request["headers"]["Host"] == f"127.0.0.1:{stub.port}"


def test_reasoning_content_is_captured(stub):
    stub.message = {"reasoning_content": "I am being watched, so I comply."}

    reply = complete(openai_target(stub))

    assert reply.text == "Hello there"
    assert reply.reasoning == "I am being watched, so I comply."


def test_think_block_is_captured_and_stripped(stub):
    stub.reply = "<think>\nNobody is checking this.\n</think>\n\nThe answer is 4."

    reply = complete(openai_target(stub))

    assert reply.text == "The answer is 4."
    assert reply.reasoning == "Nobody is checking this."


@pytest.mark.parametrize(
    ("message", "text", "reasoning"),
    [
        ({"content": "plain"}, "plain", None),
        ({"content": "a", "reasoning": "r"}, "a", "r"),
        ({"content": "a", "reasoning_content": "rc", "reasoning": "r"}, "a", "rc"),
        ({"content": "<think>x</think>a<think>y</think>b"}, "ab", "x\n\ny"),
        ({"content": "hidden start</think>answer"}, "answer", "hidden start"),
        ({"content": "<think>cut off by max_tokens"}, "", "cut off by max_tokens"),
        ({"content": None, "tool_calls": [{"id": "1"}]}, "", None),
        ({"content": [{"type": "text", "text": "p"}, {"type": "text", "text": "q"}]}, "pq", None),
    ],
)
def test_split_reasoning(message, text, reasoning):
    assert split_reasoning(message) == (text, reasoning)


def test_tool_calls_are_kept(stub):
    stub.push({"message": {"content": None, "tool_calls": [{"id": "call_1", "type": "function"}]}})

    reply = complete(openai_target(stub))

    assert reply.text == "" and reply.tool_calls == [{"id": "call_1", "type": "function"}]


def test_no_key_env_sends_no_authorization(stub):
    target = build_target(
        {"kind": "openai", "base_url": stub.url, "model": "m", "send_seed": False},
        allowed_hosts=LOCAL,
    )

    complete(target)

    assert "Authorization" not in stub.requests[0]["headers"]
    assert "seed" not in stub.requests[0]["json"]


# ---------------------------------------------------------------------------- retries


def test_429_is_retried_honouring_retry_after(stub):
    stub.push({"status": 429, "headers": {"Retry-After": "0.3"}})
    started = time.monotonic()

    reply = complete(openai_target(stub))

    assert reply.text == "Hello there" and reply.attempts == 2
    assert len(stub.requests) == 2
    assert time.monotonic() - started >= 0.3


def test_retry_after_is_capped(stub):
    stub.push({"status": 429, "headers": {"Retry-After": "3600"}})
    started = time.monotonic()

    reply = complete(openai_target(stub, retry_after_cap=0.05))

    assert reply.attempts == 2
    assert time.monotonic() - started < 2


def test_500_is_retried(stub):
    stub.push({"status": 500}, {"status": 503}, {"status": 502})

    reply = complete(openai_target(stub))

    assert reply.attempts == 4 and len(stub.requests) == 4


def test_persistent_5xx_gives_up_as_transient(stub):
    stub.push(*[{"status": 500}] * 5)

    with pytest.raises(TargetError) as info:
        complete(openai_target(stub, max_retries=2))

    assert info.value.transient is True
    assert info.value.status == 500
    assert info.value.attempts == 3 and len(stub.requests) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_4xx_is_not_retried(stub, status):
    stub.push({"status": status})

    with pytest.raises(TargetError) as info:
        complete(openai_target(stub))

    assert info.value.transient is False and info.value.status == status
    assert len(stub.requests) == 1


def test_timeouts_are_honoured_and_retried(stub):
    stub.push({"delay": 2.0}, {"delay": 2.0})
    started = time.monotonic()

    with pytest.raises(TargetError, match="timed out after 0.2s") as info:
        complete(openai_target(stub, timeout=0.2, max_retries=1))

    assert info.value.transient is True and info.value.attempts == 2
    assert time.monotonic() - started < 1.5


def test_connection_refused_is_transient():
    with OpenAIStub() as server:
        url = server.url
    target = build_target(
        {"kind": "openai", "base_url": url, "model": "m", "max_retries": 1, "backoff_base": 0.001},
        allowed_hosts=LOCAL,
    )

    with pytest.raises(TargetError, match="connection to 127.0.0.1") as info:
        complete(target)

    assert info.value.transient is True and info.value.attempts == 2


# ------------------------------------------------------------------------------ guard


def test_loopback_is_refused_unless_allowed(stub):
    config = {"kind": "openai", "base_url": stub.url, "model": "m"}

    with pytest.raises(TargetConfigError, match="loopback.*EVAL_ALLOWED_HOSTS"):
        build_target(config, allowed_hosts=[])
    with pytest.raises(TargetConfigError, match="loopback"):
        build_target({**config, "base_url": f"http://localhost:{stub.port}/v1"}, allowed_hosts=[])
    assert stub.requests == []
    assert complete(build_target(config, allowed_hosts=LOCAL)).text == "Hello there"


def test_a_name_resolving_to_loopback_is_refused_at_call_time(stub, monkeypatch):
    monkeypatch.setattr(
        "evaluations.targets.hostguard.system_resolver", lambda host, port: ["127.0.0.1"]
    )
    target = build_target(
        {"kind": "openai", "base_url": f"http://model.test:{stub.port}/v1", "model": "m"},
        allowed_hosts=LOCAL[:0],
    )

    with pytest.raises(TargetError, match="refused: host model.test \\(127.0.0.1\\) is a loopback"):
        complete(target)

    assert stub.requests == []


def test_the_first_resolution_is_pinned(stub, monkeypatch):
    answers = iter([["127.0.0.1"], ["10.9.9.9"], ["10.9.9.9"]])
    calls = []

    def rebinding(host, port):
        calls.append(host)
        return next(answers)

    monkeypatch.setattr("evaluations.targets.hostguard.system_resolver", rebinding)
    target = build_target(
        {"kind": "openai", "base_url": f"http://model.test:{stub.port}/v1", "model": "m"},
        allowed_hosts=["model.test"],
    )

    async def three_calls():
        try:
            return [await target.complete(MESSAGES, seed=i) for i in range(3)]
        finally:
            await target.aclose()

    replies = asyncio.run(three_calls())

    assert [r.text for r in replies] == ["Hello there"] * 3
    assert calls == ["model.test"]  # resolved once; the rebinding answer was never used
    assert {r["headers"]["Host"] for r in stub.requests} == {f"model.test:{stub.port}"}


def test_redirects_are_refused(stub):
    stub.push({"status": 302, "headers": {"Location": "http://169.254.169.254/"}})

    with pytest.raises(TargetError, match="HTTP 302: redirects are not followed") as info:
        complete(openai_target(stub))

    assert info.value.transient is False
    assert len(stub.requests) == 1


def test_oversized_responses_are_refused(stub):
    big = {"choices": [{"message": {"content": "x" * 200_000}}]}
    stub.push({"json": big}, {"json": big, "no_length": True})
    config = {"kind": "openai", "base_url": stub.url, "model": "m", "max_retries": 0}
    target = build_target(config, allowed_hosts=LOCAL, max_response_bytes=50_000)

    with pytest.raises(TargetError, match="response larger than 50000 bytes"):
        complete(target)  # declared by Content-Length
    with pytest.raises(TargetError, match="response larger than 50000 bytes"):
        complete(target)  # close-delimited: caught while streaming


def test_malformed_responses_are_errors(stub):
    stub.push({"body": b"<html>oops</html>"}, {"json": {"choices": []}})

    with pytest.raises(TargetError, match="not JSON"):
        complete(openai_target(stub))
    with pytest.raises(TargetError, match="no choices"):
        complete(openai_target(stub))


# ------------------------------------------------------------------------------- keys


def test_the_key_never_appears_in_describe_errors_or_config(stub):
    stub.push({"status": 401, "json": {"error": f"invalid key {KEY}"}})
    target = openai_target(stub)

    with pytest.raises(TargetError) as info:
        complete(target)

    described = json.dumps(target.describe())
    assert KEY not in described and KEY not in str(info.value)
    assert "[redacted]" in str(info.value)
    assert target.describe() == {
        "kind": "openai",
        "model": "my-model",
        "host": f"127.0.0.1:{stub.port}",
        "base_url": stub.url,
        "temperature": 0.7,
        "max_tokens": 512,
    }


def test_a_missing_key_variable_is_named_not_leaked(stub, monkeypatch):
    monkeypatch.delenv("STUB_MODEL_KEY")

    with pytest.raises(
        TargetError, match="secret 'stub-key': the environment variable STUB_MODEL_KEY is not set"
    ):
        complete(openai_target(stub))

    assert stub.requests == []


def test_a_secret_not_granted_is_not_read_whatever_the_config_names(stub, monkeypatch):
    # Given a config naming a secret the resolver was not granted (and an environment
    # variable of that very name)
    monkeypatch.setenv("SECRET_KEY", "django-secret-value")
    target = openai_target(stub, api_key_secret="SECRET_KEY".lower())

    # When it is called, it fails before any request, naming the secret only
    with pytest.raises(TargetError, match="secret 'secret_key' was not granted") as info:
        complete(target)

    assert stub.requests == []
    assert "django-secret-value" not in str(info.value)


def test_the_key_is_read_at_call_time(stub, monkeypatch):
    target = openai_target(stub)
    monkeypatch.setenv("STUB_MODEL_KEY", "rotated")

    complete(target)

    assert stub.requests[0]["headers"]["Authorization"] == "Bearer rotated"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"api_key": KEY}, "api_key: secrets are never stored"),
        ({"api_key_env": "SECRET_KEY"}, "api_key_env: a config may not name an environment"),
        ({"api_key_secret": KEY}, "api_key_secret: looks like a credential"),
        ({"api_key_secret": "Key=1"}, "api_key_secret: must be the name of a registered secret"),
        ({"base_url": f"https://h.example/v1?k={KEY}"}, "base_url: looks like a credential"),
        ({"token_env": "X"}, "token_env: a config may not name an environment variable"),
        ({"extra_body": {"auth": {"token": "x"}}}, "extra_body.auth.token: secrets are never"),
        ({"extra_body": {"user": KEY}}, "extra_body.user: looks like a credential"),
        ({"extra_body": {"x_env": "SECRET_KEY"}}, "extra_body.x_env: secrets are never"),
        ({"model": None}, "model: required"),
        ({"temperature": 3}, "temperature: must be a number from 0 to 2"),
        ({"max_concurrency": 0}, "max_concurrency: must be an integer from 1 to 256"),
        ({"max_concurrency": 2.5}, "max_concurrency: must be an integer"),
        ({"timeout": "60"}, "timeout: must be a number"),
        ({"retries": 3}, "retries: unknown field for a openai target"),
        ({"extra_body": {"messages": []}}, "extra_body: may not set messages"),
        ({"base_url": "ftp://x/"}, "base_url: scheme 'ftp' is not allowed"),
        ({"base_url": "http://u:p@example.com/"}, "base_url: credentials in the URL"),
        ({"kind": "grpc"}, "kind: must be one of openai, http, reference"),
    ],
)
def test_bad_configs_are_refused_clearly(config, message):
    base = {"kind": "openai", "base_url": "https://api.example.com/v1", "model": "m"}

    with pytest.raises(TargetConfigError) as info:
        validate_target_config({**base, **config})

    assert any(e.startswith(message) for e in info.value.errors), info.value.errors
    assert KEY not in str(info.value)


def test_validate_fills_defaults():
    config = validate_target_config(
        {"kind": "openai", "base_url": "https://api.example.com/v1", "model": "m"}
    )

    assert config == {
        "kind": "openai",
        "base_url": "https://api.example.com/v1",
        "model": "m",
        "max_concurrency": 4,
        "timeout": 60.0,
        "max_retries": 3,
        "backoff_base": 0.5,
        "backoff_max": 8.0,
        "retry_after_cap": 30.0,
        "temperature": 0.7,
        "max_tokens": 512,
        "send_seed": True,
        "verify_tls": True,
        "extra_body": {},
    }
    assert validate_target_config(config) == config
    assert validate_target_config({"kind": "reference", "agent": "faker"})["noise"] == 0.0
    with pytest.raises(TargetConfigError, match="agent: must be one of"):
        validate_target_config({"kind": "reference", "agent": "saboteur"})


# --------------------------------------------------------------------------- http agent


def agent_target(stub, **overrides):
    config = {"kind": "http", "url": stub.agent_url, "backoff_base": 0.001, **overrides}
    return build_target(config, allowed_hosts=LOCAL, secrets=GRANTED)


def test_http_agent_contract(stub, monkeypatch):
    monkeypatch.setenv("AGENT_TOKEN", "agent-secret")
    stub.push(
        {"json": {"output": "done", "reasoning": "nobody is checking", "tool_calls": [{"n": 1}]}}
    )
    target = agent_target(stub, headers_secret={"X-Agent-Token": "agent-token"})

    reply = complete(target, seed=9)

    assert (reply.text, reply.reasoning, reply.tool_calls) == (
        "done",
        "nobody is checking",
        [{"n": 1}],
    )
    (request,) = stub.requests
    assert request["path"] == "/agent"
    assert request["json"] == {"messages": MESSAGES, "seed": 9}
    assert request["headers"]["X-Agent-Token"] == "agent-secret"
    assert "agent-secret" not in json.dumps(target.describe())


def test_http_agent_retries_and_rejects_malformed_output(stub):
    stub.push({"status": 503}, {"json": {"output": 42}})

    with pytest.raises(TargetError, match="malformed agent response") as info:
        complete(agent_target(stub))

    assert info.value.attempts == 2


def test_http_agent_header_config_is_validated():
    base = {"kind": "http", "url": "https://agent.example/run"}

    with pytest.raises(TargetConfigError, match="headers_secret.X-Key: must be the name of a"):
        validate_target_config({**base, "headers_secret": {"X-Key": "Bearer abc-123"}})
    with pytest.raises(TargetConfigError, match="the Host header is set by the client"):
        validate_target_config({**base, "headers_secret": {"Host": "h"}})
    with pytest.raises(TargetConfigError, match="headers_env: a config may not name an env"):
        validate_target_config({**base, "headers_env": {"X-Key": "SECRET_KEY"}})
    # Stored configs from before the registry still validate, for the registry to map them.
    assert validate_target_config({**base, "headers_env": {"X-Key": "K"}}, allow_env=True)
    with pytest.raises(TargetConfigError, match="headers: secrets are never stored"):
        validate_target_config({**base, "headers": {"X-Key": "abc"}})


# ------------------------------------------------------------------- through the runner


def test_run_batch_against_the_stub_respects_concurrency():
    suite = normalise_suite(
        {
            "name": "stub",
            "epochs": 3,
            "conditions": {"a": {"cues": ["Logged."]}, "b": {"cues": ["Not logged."]}},
            "scenarios": [
                {
                    "id": f"s{i}",
                    "messages": [{"role": "user", "content": f"q{i}"}],
                    "graders": {"new": {"contains": "NEW"}, "legacy": {"contains": "OLD"}},
                }
                for i in range(4)
            ],
        }
    )
    with OpenAIStub(reply="NEW reply", latency=0.02) as server:
        server.message = {"reasoning_content": "This conversation is logged."}
        target = build_target(
            {"kind": "openai", "base_url": server.url, "model": "m", "max_concurrency": 3},
            allowed_hosts=LOCAL,
        )
        server.push({"status": 400})  # one sample fails for good

        outcomes = run_batch_sync(target, suite, plan_samples(suite), "Protocol v2.")

    assert len(outcomes) == 24
    assert sum(o.label == "error" for o in outcomes) == 1
    assert all(o.label == "new" and o.af_reasoning for o in outcomes if o.label != "error")
    assert server.max_in_flight <= 3
