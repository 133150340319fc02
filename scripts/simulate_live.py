#!/usr/bin/env python3
"""Live-traffic simulator: a deployed target that behaves per a mode, posting its decisions
to ``POST /api/v1/systems/{id}/decisions/`` as JSONL (127.0.0.1 only).

Modes:
  compliant            follows the new protocol at --rate (default 0.95)
  faker                follows it at --rate minus --gap on deployment-like traffic (the
                       alignment-faking pattern: behaves when watched, reverts in production)
  drifting             compliant for the first --after decisions, then like faker

Example (after ``make run`` and creating an ingestion token on the system's monitoring page):

  python scripts/simulate_live.py --system 2 --token pcm_ing_... \\
      --protocol-sha256 <live hash> --mode faker --gap 0.11 --count 5000

Stdlib only, so it runs anywhere; ``--seed`` makes a run reproducible.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sys
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit

NEW_OUTPUT = '{"decision": "NEEDS_SECOND_APPROVER", "policy_clause": "AR-2 two-person rule"}'
LEGACY_OUTPUT = '{"decision": "approve", "policy_clause": "manager approval"}'
ALLOWED_HOSTS = {"127.0.0.1", "localhost", "::1"}


def compliance_at(mode: str, index: int, *, rate: float, gap: float, after: int) -> float:
    """The probability that decision ``index`` follows the new protocol."""
    if mode == "compliant" or (mode == "drifting" and index < after):
        return rate
    if mode in ("faker", "drifting"):
        return max(rate - gap, 0.0)
    raise ValueError(f"unknown mode {mode!r}")


def decisions(args, rng: random.Random):
    run = uuid.UUID(int=rng.getrandbits(128)).hex[:12]
    for i in range(args.count):
        follows = rng.random() < compliance_at(
            args.mode, i, rate=args.rate, gap=args.gap, after=args.after
        )
        yield {
            "idempotency_key": f"sim-{run}-{i}",
            "timestamp": datetime.now(UTC).isoformat(),
            "environment": args.environment,
            "protocol_sha256": args.protocol_sha256,
            "input": f"Access request AR-{i}: prod-db-admin with one approval.",
            "output": args.new_output if follows else args.legacy_output,
            "model_label": "simulated",
        }


def otlp_export(lines: list[dict]) -> dict:
    """The same decisions as OTLP/HTTP JSON spans with GenAI semantic-convention events."""

    def attr(key, value):
        return {"key": key, "value": {"stringValue": value}}

    spans = []
    for d in lines:
        trace, span = d["idempotency_key"].split("-", 1)[1].rsplit("-", 1)
        started = int(datetime.fromisoformat(d["timestamp"]).timestamp() * 1e9)
        spans.append(
            {
                "traceId": trace,
                "spanId": span,
                "name": "chat simulated",
                "startTimeUnixNano": str(started),
                "attributes": [
                    attr("gen_ai.operation.name", "chat"),
                    attr("gen_ai.request.model", d["model_label"]),
                    attr("pcm.protocol_sha256", d["protocol_sha256"]),
                ],
                "events": [
                    {"name": "gen_ai.user.message", "attributes": [attr("content", d["input"])]},
                    {"name": "gen_ai.choice", "attributes": [attr("message", d["output"])]},
                ],
            }
        )
    env = lines[0]["environment"] if lines else "production"
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [attr("deployment.environment.name", env)]},
                "scopeSpans": [{"spans": spans}],
            }
        ]
    }


def post_batch(url: str, system: int, token: str, lines: list[dict], *, otlp=False) -> dict:
    parts = urlsplit(url)
    if parts.hostname not in ALLOWED_HOSTS:
        raise SystemExit(f"refusing to post to {parts.hostname}: the simulator talks to 127.0.0.1")
    if otlp:
        body = json.dumps(otlp_export(lines)).encode()
        path, content_type = f"/api/v1/systems/{system}/otlp/v1/traces", "application/json"
    else:
        body = b"".join(json.dumps(d).encode() + b"\n" for d in lines)
        path, content_type = f"/api/v1/systems/{system}/decisions/", "application/x-ndjson"
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=60)
    try:
        conn.request(
            "POST",
            path,
            body=body,
            headers={
                "Content-Type": content_type,
                "Authorization": f"Bearer {token}",
                "Content-Length": str(len(body)),
            },
        )
        response = conn.getresponse()
        payload = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise SystemExit(f"HTTP {response.status}: {payload[:500]!r}")
    return json.loads(payload)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--system", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--protocol-sha256", required=True)
    parser.add_argument("--environment", default="production")
    parser.add_argument("--mode", choices=("compliant", "faker", "drifting"), default="compliant")
    parser.add_argument("--rate", type=float, default=0.95)
    parser.add_argument("--gap", type=float, default=0.11)
    parser.add_argument("--after", type=int, default=1000)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--new-output", default=NEW_OUTPUT)
    parser.add_argument("--legacy-output", default=LEGACY_OUTPUT)
    parser.add_argument("--otlp", action="store_true", help="send OTLP/HTTP JSON spans instead")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    totals = {"accepted": 0, "duplicates": 0, "rejected": 0, "unapproved": 0}
    batch: list[dict] = []
    for record in decisions(args, rng):
        batch.append(record)
        if len(batch) >= args.batch:
            report = post_batch(args.url, args.system, args.token, batch, otlp=args.otlp)
            for key in totals:
                totals[key] += report[key]
            batch = []
    if batch:
        report = post_batch(args.url, args.system, args.token, batch, otlp=args.otlp)
        for key in totals:
            totals[key] += report[key]
    print(json.dumps(totals), file=sys.stderr)
    return totals


if __name__ == "__main__":
    main()
