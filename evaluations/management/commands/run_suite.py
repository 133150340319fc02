"""``manage.py run_suite SUITE_FILE --target JSON --protocol FILE``: a local evaluation for a
laptop or CI, without the database or a worker.

Prints per-condition rates with 95% intervals, the compliance gap with its interval and
p-value, the verdict and every reason. Exit status: 0 pass, 1 fail or inconclusive (the gate
did not open), 2 bad input.

Judge: a suite names its judge model; the command uses ``--judge CONFIG`` when given (an
OpenAI-compatible config like ``--target``), else the judge model of that name registered in
the database. A suite whose graders need a judge and gets none is bad input, explained
before anything runs. Keys: ``api_key_env`` in ``--target`` / ``--judge`` names a variable of
*your* shell (the command line is yours; a suite can never name one).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from evaluations import permissions

CRITICALITIES = permissions.CRITICALITIES
EXIT_PASS, EXIT_GATE_CLOSED, EXIT_BAD_INPUT = 0, 1, 2


def _bad(message: str) -> CommandError:
    return CommandError(message, returncode=EXIT_BAD_INPUT)


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _bad(f"{what}: no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad(f"{what}: cannot read {path}: {exc}") from None


def load_target(value: str, what: str = "--target") -> dict:
    """``--target`` (or ``--judge``) is inline JSON, ``@file.json`` or a path to a JSON file."""
    text = value.strip()
    if text.startswith("@"):
        text = _read(text[1:], what)
    elif not text.startswith("{") and Path(text).is_file():
        text = _read(text, what)
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(f"{what}: not valid JSON ({exc.msg} at line {exc.lineno}): {value}") from None
    if not isinstance(config, dict):
        raise _bad(f'{what}: must be a JSON object such as {{"kind": "reference", ...}}')
    return config


def _shell_secrets(config: dict):
    """A command-line config's ``api_key_env`` / ``headers_env`` (variables of the operator's
    own shell) as secret references with a resolver for exactly those variables."""
    from evaluations.targets.secrets import SecretResolver

    config = dict(config)
    sources: dict[str, tuple[str, str]] = {}

    def ref(variable: str) -> str:
        name = "shell-" + variable.lower().replace("_", "-")
        sources[name] = ("env", variable)
        return name

    if config.get("api_key_env"):
        config["api_key_secret"] = ref(config.pop("api_key_env"))
    if config.get("headers_env"):
        config["headers_secret"] = {h: ref(v) for h, v in config.pop("headers_env").items()}
    config.pop("api_key_env", None)
    config.pop("headers_env", None)
    # Registered-secret names do not apply on the command line: the resolver knows only these.
    return config, SecretResolver(sources, secrets_file=None)


def _registered_judge(suite: dict, build: dict):
    """(judge target, "") from the database's registry, or (None, why not)."""
    from evaluations import registry
    from evaluations.targets import TargetConfigError, build_target

    try:
        found = registry.judge_for_suite(suite, suite_name=suite["name"])
    except registry.JudgeUnavailable as exc:
        return None, str(exc)
    except Exception as exc:  # no database here (CI), not migrated, or not allowed
        return None, f"the judge registry (database) cannot be read here ({type(exc).__name__})"
    if found is None:
        return None, "the suite names no judge"
    config, secrets = found
    try:
        return build_target(config, secrets=secrets, **build), ""
    except (TargetConfigError, ValueError) as exc:
        return None, str(exc)


def _pct(x) -> str:
    return "   n/a" if x is None else f"{100 * float(x):5.1f}%"


def _interval(ci) -> str:
    if not ci:
        return ""
    lo, hi = (ci.get("low"), ci.get("high")) if isinstance(ci, dict) else ci
    if lo is None or hi is None:
        return ""
    return f" [{100 * float(lo):5.1f}%, {100 * float(hi):5.1f}%]"


class Command(BaseCommand):
    help = (
        "Run an evaluation suite locally against a target with a protocol's system prompt; "
        "exit 0 on pass, 1 when the gate fails or is inconclusive, 2 on bad input."
    )
    requires_system_checks = []  # no database, no models: usable in any CI job

    def add_arguments(self, parser):
        parser.add_argument("suite_file", help="the suite document (YAML, or JSON by extension)")
        parser.add_argument(
            "--target",
            required=True,
            help='target config: inline JSON, @file or a path, e.g. {"kind": "reference", '
            '"agent": "faker"}',
        )
        parser.add_argument(
            "--protocol", required=True, help="a file holding the proposed system prompt"
        )
        parser.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
        parser.add_argument(
            "--criticality",
            default="medium",
            help="the system's criticality, for the default gate policy (default medium)",
        )
        parser.add_argument(
            "--allow-host",
            action="append",
            default=[],
            help="also allow this private/loopback host (adds to EVAL_ALLOWED_HOSTS)",
        )
        parser.add_argument(
            "--judge",
            help="judge model config for the suite's judge graders: inline JSON, @file or a "
            'path, e.g. {"kind": "openai", "base_url": "http://127.0.0.1:8765/v1", '
            '"model": "judge", "api_key_env": "JUDGE_KEY"}; default: the registered judge '
            "model the suite names",
        )
        parser.add_argument("--json", action="store_true", help="print the full result as JSON")
        parser.add_argument(
            "--adaptive",
            action="store_true",
            help="run in waves and stop early when an anytime-valid test shows faking "
            "(a pass still needs the whole budget; see docs/GATE.md)",
        )

    def handle(self, *args, **opts):
        from evaluations import gates, runner
        from evaluations.suite_schema import SuiteError, parse_suite, suite_warnings
        from evaluations.targets import TargetConfigError, build_target, validate_target_config

        if opts["criticality"] not in CRITICALITIES:
            raise _bad(f"--criticality: must be one of {', '.join(CRITICALITIES)}.")
        path = opts["suite_file"]
        fmt = "json" if path.lower().endswith(".json") else "yaml"
        try:
            suite = parse_suite(_read(path, "SUITE_FILE"), fmt)
        except SuiteError as exc:
            raise _bad(f"{path}: invalid suite document:\n  " + "\n  ".join(exc.errors)) from None
        try:
            config, secrets = _shell_secrets(
                validate_target_config(load_target(opts["target"]), allow_env=True)
            )
        except TargetConfigError as exc:
            raise _bad(f"--target: {exc}") from None
        system_prompt = _read(opts["protocol"], "--protocol").strip()
        if not system_prompt:
            raise _bad(f"--protocol: {opts['protocol']} is empty; it must hold the system prompt.")
        allowed = [*getattr(settings, "EVAL_ALLOWED_HOSTS", []), *opts["allow_host"]]
        build = {"allowed_hosts": allowed, "max_response_bytes": settings.EVAL_MAX_RESPONSE_BYTES}
        try:
            target = build_target(config, secrets=secrets, **build)
        except (TargetConfigError, ValueError) as exc:
            raise _bad(f"--target: {exc}") from None
        judge, judge_line = self._judge(suite, opts["judge"], build)
        policy = gates.policy_for(opts["criticality"], suite.get("gate") or {})
        result = runner.run_suite_local(
            suite,
            target,
            system_prompt,
            run_seed=opts["seed"],
            policy=policy,
            judge=judge,
            adaptive=opts["adaptive"],
        )
        result["judge"] = judge_line
        result["suite_warnings"] = suite_warnings(suite, opts["criticality"])
        verdict = result.get("verdict") if result.get("status") != "errored" else "errored"
        if opts["json"]:
            self.stdout.write(json.dumps(result, indent=2, sort_keys=True, default=str))
        else:
            self._print(suite, result)
        if verdict != "pass":
            sys.stdout.flush()
            raise SystemExit(EXIT_GATE_CLOSED)

    def _judge(self, suite: dict, option: str | None, build: dict):
        """(judge target or None, a line saying which judge and why), or bad input that
        explains what is missing when the suite's graders need a judge."""
        from evaluations.graders import side_kinds
        from evaluations.targets import TargetConfigError, build_target, validate_target_config

        needs = sorted(
            s["id"]
            for s in suite["scenarios"]
            if "judge" in side_kinds(s["graders"]["new"]) | side_kinds(s["graders"]["legacy"])
        )
        name = (suite.get("judge") or {}).get("model")
        if option:
            try:
                config, secrets = _shell_secrets(
                    validate_target_config(load_target(option, what="--judge"), allow_env=True)
                )
                if config["kind"] != "openai":
                    raise TargetConfigError(
                        'a judge is an OpenAI-compatible model ("kind": "openai")'
                    )
                judge = build_target(config, secrets=secrets, **build)
            except (TargetConfigError, ValueError) as exc:
                raise _bad(f"--judge: {exc}") from None
            return judge, f"--judge {config['model']} at {judge.describe().get('host')}"
        if not needs and not name:
            return None, "none (no judge graders)"
        if name is None:
            raise _bad(
                f"judge: scenario(s) {', '.join(needs)} use judge graders but the suite names no "
                "judge model; add `judge: <name>` to the suite, or pass --judge CONFIG"
            )
        found, why = _registered_judge(suite, build)
        if found is None:
            if not needs:
                return None, f"{name} (unused: {why})"
            raise _bad(
                f"judge: the suite's judge graders (scenario(s) {', '.join(needs)}) need the "
                f"judge model {name!r}, which cannot be used here: {why}. Pass --judge CONFIG "
                "to run with a judge model of your own."
            )
        return found, f"{name} (registered) at {found.describe().get('host')}"

    def _print(self, suite: dict, result: dict) -> None:
        write = self.stdout.write
        stats = result.get("stats") or {}
        samples = len(result.get("outcomes") or [])
        errors = sum(1 for o in result.get("outcomes") or [] if o.get("label") == "error")
        target = (result.get("target") or {}).get("model") or (result.get("target") or {}).get(
            "kind", ""
        )
        write(f"Suite {suite['name']} v{suite['version']} against {target}: {samples} samples"
              f" ({errors} failed)")  # fmt: skip
        conditions = stats.get("conditions") or {}
        if conditions:
            write("")
            write(f"{'condition':<16} {'n':>5}  {'new':>6} [95% CI]          {'legacy':>6}"
                  f"  {'other':>6}  {'AF-reasoning':>12}")  # fmt: skip
            for name, c in conditions.items():
                write(
                    f"{name:<16} {c.get('n', 0):>5}  {_pct(_rate(c, 'new'))}"
                    f"{_interval(_ci(c, 'new')):<18} {_pct(_rate(c, 'legacy'))}"
                    f"  {_pct(_rate(c, 'other'))}  {_pct(_rate(c, 'af_reasoning'))}"
                )
        for gap in _gaps(stats):
            write("")
            pair = gap.get("pair") or [gap.get("a"), gap.get("b")]
            p = gap.get("p_holm", gap.get("p_value"))
            discordant = (gap.get("b") or 0) + (gap.get("c") or 0)
            write(
                f"Compliance gap {pair[0]} - {pair[1]}: {_pct(gap.get('gap'))}"
                f"{_interval(gap.get('ci'))}, exact McNemar p = {_p(p)}"
                f" ({discordant} discordant of {gap.get('n_pairs', '?')} pairs)"
            )
        write("")
        write(f"Judge: {result.get('judge') or 'none'}")
        judge_errors = [
            o for o in result.get("outcomes") or []
            if o.get("label") == "error" and "judge" in (o.get("error") or "")
        ]  # fmt: skip
        if judge_errors:
            write(
                f"  {len(judge_errors)} sample(s) failed in the judge (counted as missing), "
                f"e.g. {judge_errors[0]['error'][:160]}"
            )
        calibration = result.get("judge_calibration")
        if calibration:
            write(
                f"  Calibration: agrees with {calibration['agree']} of "
                f"{calibration['examples']} labelled examples "
                f"({_pct(calibration['agreement'])}); {calibration['errors']} without a majority"
            )
        for m in stats.get("missingness") or []:
            a, b = m["pair"]
            write(
                f"Missing replies: {a} {m['a_missing']} of {m['a_total']}, {b} {m['b_missing']}"
                f" of {m['b_total']}, exact McNemar p = {_p(m.get('p_holm', m['p_value']))}"
            )
        worst = stats.get("worst_case") or {}
        if worst.get("missing"):
            write(f"Worst case ({worst['missing']} missing counted against the change): "
                  f"{str(worst.get('verdict')).upper()}")  # fmt: skip
        sequential = stats.get("sequential") or {}
        if sequential.get("stopped_early"):
            done, planned = sequential["epochs_run"], sequential["planned_epochs"]
            write(f"Stopped early after {done} of {planned} epochs "
                  f"({sequential['samples']} samples)")  # fmt: skip
        policy = result.get("policy") or {}
        if policy.get("epochs"):
            how = "planned budget" if policy.get("epochs_source") == "planned" else "the suite's"
            write(f"Epochs: {policy['epochs']} ({how})")
        for warning in [*policy.get("warnings", []), *result.get("suite_warnings", [])]:
            write(self.style.WARNING(f"Warning: {warning}"))
        if result.get("status") == "errored":
            write("")
            write(self.style.ERROR(f"Run errored: {result.get('status_reason', '')}"))
        write("")
        style = self.style.SUCCESS if result.get("verdict") == "pass" else self.style.ERROR
        write(style(f"Verdict: {str(result.get('verdict', '?')).upper()}"))
        for reason in result.get("reasons") or []:
            write(f"  - {reason}")


def _rate(c: dict, label: str):
    value = c.get(label)
    if isinstance(value, dict):
        return value.get("rate")
    return c.get(f"{label}_rate", value)


def _ci(c: dict, label: str):
    value = c.get(label)
    if isinstance(value, dict):
        return value.get("ci") or (
            {"low": value.get("low"), "high": value.get("high")} if "low" in value else None
        )
    return c.get(f"{label}_ci")


def _gaps(stats: dict) -> list[dict]:
    gaps = stats.get("gaps")
    if gaps is None and stats.get("gap"):
        gaps = [stats["gap"]]
    return list(gaps or [])


def _p(p) -> str:
    if p is None:
        return "n/a"
    return f"{float(p):.2g}" if float(p) < 0.001 else f"{float(p):.3f}"
