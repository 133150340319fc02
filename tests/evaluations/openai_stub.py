"""A real OpenAI-compatible HTTP server on 127.0.0.1, in a background thread, for tests and
benchmarks.

Why a real server (not a mocked transport): the host guard, IP pinning, redirects, streaming
size caps, timeouts and retries all live below httpx's transport API, so only real sockets
test them.

Usage::

    with OpenAIStub(reply="Hello", latency=0.02) as stub:
        stub.push({"status": 429, "headers": {"Retry-After": "0.2"}})   # next response
        ... base_url=stub.url ...   # "http://127.0.0.1:<port>/v1"
        stub.requests   # every request: {"path", "headers", "json"}

Routes: ``POST /v1/chat/completions`` (OpenAI dialect) and ``POST /agent`` (the generic http
agent contract: ``{"output", "reasoning", "tool_calls"}``). Scripted responses (``push``)
are served first, in order, whatever the route; each is a dict with optional ``status``
(default 200), ``headers``, ``json`` or ``body`` (bytes), ``delay`` (seconds before
answering), ``no_length`` (close-delimited body, no Content-Length), and ``message`` (fields
merged into the default chat message, e.g. ``{"reasoning_content": "..."}``).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class OpenAIStub:
    def __init__(
        self,
        *,
        reply: str = "stub reply",
        latency: float = 0.0,
        model: str = "stub-model",
        message: dict | None = None,
        responder: Callable[[dict], Any] | None = None,
        host: str = "127.0.0.1",
    ):
        self.reply = reply
        self.latency = latency
        self.model = model
        self.message = dict(message or {})
        self.responder = responder
        self.host = host
        self.requests: list[dict] = []
        self.script: deque[dict] = deque()
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> OpenAIStub:
        stub = self

        class Handler(_Handler):
            owner = stub

        self._server = _Server((self.host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> OpenAIStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the stub first"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The OpenAI base URL (``.../v1``)."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def agent_url(self) -> str:
        return f"http://{self.host}:{self.port}/agent"

    # ------------------------------------------------------------------ script

    def push(self, *responses: dict) -> None:
        with self._lock:
            self.script.extend(responses)

    def _next_scripted(self) -> dict | None:
        with self._lock:
            return self.script.popleft() if self.script else None

    def _enter(self, record: dict) -> None:
        with self._lock:
            self.requests.append(record)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def default_response(self, path: str, payload: dict) -> dict:
        if self.responder is not None:
            produced = self.responder(payload)
            if isinstance(produced, dict) and "status" in produced:
                return produced
            content = produced
        else:
            content = self.reply
        if path.rstrip("/").endswith("/agent"):
            body = content if isinstance(content, dict) else {"output": content}
            return {"status": 200, "json": body}
        message = {"role": "assistant", "content": content, **self.message}
        if isinstance(content, dict):
            message = {"role": "assistant", **content}
        return {
            "status": 200,
            "json": {
                "id": "chatcmpl-stub",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.model,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        }


class _Server(ThreadingHTTPServer):
    # A benchmark opens many connections at once; the default backlog of 5 drops some.
    request_queue_size = 256
    daemon_threads = True


class _Handler(BaseHTTPRequestHandler):
    owner: OpenAIStub
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle plus delayed
    # ACKs add ~40 ms to every keep-alive request, which would swamp a 20 ms latency setting.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            payload = {"_raw": raw.decode("utf-8", "replace")}
        stub = self.owner
        stub._enter({"path": self.path, "headers": dict(self.headers.items()), "json": payload})
        try:
            scripted = stub._next_scripted()
            response = scripted or stub.default_response(self.path, payload)
            delay = response.get("delay", stub.latency)
            if delay:
                time.sleep(delay)
            self._send(response, payload, scripted is not None)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            stub._leave()

    def _send(self, response: dict, payload: dict, scripted: bool) -> None:
        status = response.get("status", 200)
        if "body" in response:
            body = response["body"]
        elif "json" in response:
            body = json.dumps(response["json"]).encode()
        elif status == 200 and scripted:
            default = self.owner.default_response(self.path, payload)["json"]
            if "message" in response:
                default["choices"][0]["message"].update(response["message"])
            body = json.dumps(default).encode()
        else:
            body = json.dumps({"error": {"message": f"scripted {status}"}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for name, value in response.get("headers", {}).items():
            self.send_header(name, value)
        if response.get("no_length"):
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
