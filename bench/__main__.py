"""``python -m bench [NAME ...]``: run the benchmarks and write ``bench/RESULTS.md``.

Each figure is reported with its absolute value, the machine it ran on (nproc, CPU model,
RAM) and its ratio to a baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": ram_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "database": "PostgreSQL"
        if os.environ.get("DATABASE_URL", "").startswith("postgres")
        else "SQLite (temporary file)",
        "broker": os.environ.get("CELERY_BROKER_URL", "filesystem://"),
    }


def discover(names: list[str]) -> list[str]:
    modules = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if names:
        wanted = {n if n.startswith("bench_") else f"bench_{n}" for n in names}
        modules = [m for m in modules if m in wanted]
    return modules


def _fmt(value, unit="") -> str:
    if isinstance(value, float):
        text = f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.3f}"
    else:
        text = str(value)
    return f"{text} {unit}".strip()


def render(results: list[tuple[str, dict | None, str | None, float]], info: dict) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Run at {datetime.now(UTC):%Y-%m-%d %H:%M UTC} with `python -m bench`.",
        "",
        "## Machine",
        "",
        f"- nproc: {info['nproc']}",
        f"- CPU: {info['cpu']}",
        f"- RAM: {info['ram_gib']} GiB",
        f"- Python {info['python']} on {info['platform']}",
        f"- Database: {info['database']}; broker: `{info['broker']}`",
        "",
        "## Figures",
        "",
        "| benchmark | figure | value | baseline (same run) | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for module, result, error, _ in results:
        if error:
            lines.append(f"| {module} | **failed** | | | | | |")
            continue
        for fig in result.get("figures", []):
            base = fig.get("baseline") or {}
            base_text = (
                f"{base.get('name', '')}: {_fmt(base.get('value'), base.get('unit', ''))}"
                if base
                else ""
            )
            ratio = fig.get("ratio")
            met = fig.get("met")
            lines.append(
                f"| {result.get('title', module)} | {fig.get('name', '')} "
                f"| {_fmt(fig.get('value'), fig.get('unit', ''))} | {base_text} "
                f"| {'' if ratio is None else f'{ratio:.2f}'} | {fig.get('target', '')} "
                f"| {'' if met is None else ('yes' if met else '**no**')} |"
            )
    for module, result, error, elapsed in results:
        lines += ["", f"## {module} ({elapsed:.1f} s)", ""]
        if error:
            lines += ["```", error.strip(), "```"]
            continue
        for note in result.get("notes", []):
            lines.append(f"- {note}")
        if result.get("details"):
            lines += ["", "```json", json.dumps(result["details"], indent=2, default=str), "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help="only these benchmarks (e.g. eval_throughput)")
    parser.add_argument("--output", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    info = machine()
    results = []
    for name in discover(args.names):
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{name}")
            result, error = module.run(), None
            for fig in result.get("figures", []):
                print(f"   {fig.get('name')}: {_fmt(fig.get('value'), fig.get('unit', ''))}"
                      f" (ratio {fig.get('ratio')})", flush=True)  # fmt: skip
        except Exception:  # noqa: BLE001 - one failing benchmark must not hide the others
            result, error = None, traceback.format_exc()
            print(error, file=sys.stderr, flush=True)
        results.append((name, result, error, time.perf_counter() - started))
    Path(args.output).write_text(render(results, info))
    print(f"wrote {args.output}")
    return 1 if any(error for _, _, error, _ in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
