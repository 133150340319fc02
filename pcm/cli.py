"""``python -m pcm gate``: ask the deploy gate of a change, optionally waiting until it opens.

Exit codes: 0 deployable, 1 not deployable (or it stopped being able to become so), 2 error
(bad arguments, no token, authentication, unknown change, network, server error).
The token comes from ``PCM_TOKEN`` (never a command-line argument: those end up in logs),
the server from ``--url`` or ``PCM_URL``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

DEPLOYABLE, NOT_DEPLOYABLE, ERROR = 0, 1, 2
# States from which waiting cannot end in an open gate without a person acting first.
HOPELESS = {"rejected", "withdrawn", "closed", "deployed", "evaluation_failed", "draft"}
HOPELESS |= {"changes_requested"}
_CHANGE = re.compile(r"^(?:CR-)?([1-9][0-9]{0,17})$", re.I)


class CliError(Exception):
    pass


def _get(url: str, token: str, timeout: float) -> dict:
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked in main()
        url, headers={"Authorization": f"Token {token}", "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read() or b"{}").get("detail", "")
        except ValueError:
            detail = ""
        raise CliError(f"HTTP {exc.code} from {url}: {detail or exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise CliError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None
    except ValueError:
        raise CliError(f"{url} did not answer JSON") from None


def _print_gate(ref: str, env: str, gate: dict, out) -> None:
    # the environment the server judged (it names the one asked for; a system without
    # environments answers null, and then the name asked for is shown)
    env = gate.get("environment") or env
    verdict = "deployable" if gate.get("deployable") else "NOT deployable"
    print(
        f"{ref} -> {env}: {verdict} (state {gate.get('state')}, approvals "
        f"{gate.get('approvals')}/{gate.get('approvals_required')}, content "
        f"{str(gate.get('content_sha256', ''))[:12]})",
        file=out,
    )
    for reason in gate.get("reasons") or []:
        print(f"  - {reason}", file=out)


def gate(args, out=sys.stdout) -> int:
    match = _CHANGE.match(args.change.strip())
    if not match:
        raise CliError(f"--change: expected CR-<number> or a number, not {args.change!r}")
    token = os.environ.get(args.token_env, "")
    if not token:
        raise CliError(f"no token: set {args.token_env} to an API token (pipeline role)")
    base = (args.url or os.environ.get("PCM_URL") or "http://127.0.0.1:8000").rstrip("/")
    if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
        raise CliError(f"--url: use http:// or https://, not {base!r}")
    change_id = int(match.group(1))
    query = urllib.parse.urlencode({"environment": args.env})
    url = f"{base}/api/v1/changes/{change_id}/gate/?{query}"
    ref = f"CR-{change_id}"
    deadline = time.monotonic() + args.timeout
    while True:
        result = _get(url, token, timeout=min(30.0, max(1.0, args.timeout)))
        if result.get("deployable"):
            _print_gate(ref, args.env, result, out)
            return DEPLOYABLE
        if not args.wait or result.get("state") in HOPELESS or time.monotonic() >= deadline:
            _print_gate(ref, args.env, result, out)
            if args.wait and result.get("state") in HOPELESS:
                print(
                    f"  (stopped waiting: a change in '{result['state']}' needs a person)", file=out
                )
            elif args.wait:
                print(f"  (gave up after {args.timeout:g} s)", file=out)
            return NOT_DEPLOYABLE
        time.sleep(min(args.interval, max(0.0, deadline - time.monotonic())))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pcm", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("gate", help="ask (and optionally wait for) a change's deploy gate")
    g.add_argument("--change", required=True, help="CR-12 or 12")
    g.add_argument(
        "--env",
        default="production",
        help="environment whose gate is asked (?environment=); its own rules apply (production)",
    )
    g.add_argument("--wait", action="store_true", help="poll until deployable or hopeless")
    g.add_argument("--timeout", type=float, default=900.0, help="seconds to wait (900)")
    g.add_argument("--interval", type=float, default=10.0, help="seconds between polls (10)")
    g.add_argument("--url", help="server base URL (default $PCM_URL or http://127.0.0.1:8000)")
    g.add_argument("--token-env", default="PCM_TOKEN", help="env var holding the token")
    return p


def main(argv=None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # argparse: 2 on bad usage, 0 on --help
        return ERROR if exc.code else 0
    if args.timeout < 0 or args.interval <= 0:
        print("error: --timeout must be >= 0 and --interval > 0", file=sys.stderr)
        return ERROR
    try:
        return gate(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ERROR
    except KeyboardInterrupt:
        return ERROR
