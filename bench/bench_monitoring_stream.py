"""Memory while a 1 GiB JSONL body streams into a live server (docs/MONITORING.md).

A gunicorn server (one sync worker, the production WSGI entry point) on 127.0.0.1 takes
``POST /api/v1/systems/<id>/decisions/`` with a ``BENCH_STREAM_BYTES`` (1 GiB) body. The
client generates the fixed-width JSONL lines lazily and writes them to the socket (the
body never exists whole on either side: the client holds one 512 KiB chunk). A sampler
reads the worker's ``VmRSS`` from /proc every 0.2 s. Reported: the worker's RSS after a
warm-up request (baseline), its peak during the stream, the growth, and the throughput.
The server's body cap is raised for this run (``MONITORING_MAX_BODY_BYTES``): by default
a body over 256 MiB is refused with 413 before it is read.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from .support import django_setup, figure

TOTAL = int(os.environ.get("BENCH_STREAM_BYTES", str(1024**3)))
LINE = 2048
CHUNK_LINES = 256
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _worker_pid(master: int) -> int:
    deadline = time.time() + 30
    while time.time() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError("gunicorn started no worker")


class Lines:
    """Fixed-width JSONL lines, made on demand."""

    def __init__(self, digest: str, tag: str):
        self.stamp = datetime.now(UTC).isoformat()
        self.digest, self.tag = digest, tag
        self.count = TOTAL // LINE

    def line(self, i: int) -> bytes:
        head = (
            f'{{"idempotency_key":"gb-{self.tag}-{i:09d}","timestamp":"{self.stamp}",'
            f'"environment":"production","protocol_sha256":"{self.digest}",'
            f'"input":"Access request AR-{i:09d}","output":"'
        )
        tail = '"}\n'
        pad = LINE - len(head) - len(tail)
        return (head + "NEEDS_SECOND_APPROVER " + "x" * (pad - 22) + tail).encode()

    def chunks(self):
        for start in range(0, self.count, CHUNK_LINES):
            yield b"".join(self.line(i) for i in range(start, min(start + CHUNK_LINES, self.count)))


def run() -> dict:
    django_setup()
    import orjson

    from .bench_monitoring_ingest import _seed

    system, _change, digest, secret = _seed()
    port = _free_port()
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECURE_SSL_REDIRECT": "false",
        "MONITORING_MAX_BODY_BYTES": str(2 * TOTAL + 1024),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    server = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "gunicorn", "config.wsgi:application", "-b", f"127.0.0.1:{port}",
         "-w", "1", "--timeout", "3600", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        worker = _worker_pid(server.pid)
        url = f"/api/v1/systems/{system.pk}/decisions/"
        headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/x-ndjson"}
        lines = Lines(digest, uuid.uuid4().hex[:6])
        warm = lines.line(10**8)  # a key outside the stream
        for _ in range(100):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
                conn.request("POST", url, body=warm, headers=headers)
                response = conn.getresponse()
                break
            except ConnectionRefusedError:
                time.sleep(0.2)
        assert response.status == 200, response.read()
        response.read()
        conn.close()
        baseline = _rss_kib(worker)

        peak = [baseline]
        done = threading.Event()

        def sample():
            while not done.is_set():
                try:
                    peak[0] = max(peak[0], _rss_kib(worker))
                except OSError:
                    return
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
        conn.putrequest("POST", url)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(lines.count * LINE))
        conn.endheaders()
        for chunk in lines.chunks():
            conn.send(chunk)
        response = conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        done.set()
        sampler.join()
        assert response.status == 200, body[:500]
        report = orjson.loads(body)
        assert report["accepted"] == lines.count, report
        hwm = _rss_kib(worker, "VmHWM")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    size_mib = lines.count * LINE / 1024**2
    growth = (peak[0] - baseline) / 1024
    return {
        "title": "1 GiB JSONL stream into a live server: memory",
        "figures": [
            figure("worker peak RSS growth during the stream", growth, "MiB",
                   baseline={"name": "worker RSS after warm-up", "value": baseline / 1024,
                             "unit": "MiB"},
                   ratio=growth / size_mib, target="flat (growth << body size)",
                   met=growth < 64),
            figure("stream ingestion", lines.count / elapsed, "decisions/s"),
            figure("stream ingestion", size_mib / elapsed, "MiB/s"),
        ],
        "notes": [
            f"{lines.count:,} decisions of {LINE} bytes = {size_mib:,.0f} MiB in one request, "
            f"{elapsed:.1f} s; gunicorn, 1 sync worker, 127.0.0.1.",
            f"Worker RSS: {baseline / 1024:.1f} MiB after warm-up, peak {peak[0] / 1024:.1f} "
            f"MiB (sampled every 0.2 s), VmHWM {hwm / 1024:.1f} MiB.",
        ],
    }  # fmt: skip
