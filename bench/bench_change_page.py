"""The change page with two 100 KB protocols, beside two 1 KB protocols in the same run.

Figures: p95 latency of the change page (HTML, logged-in engineer) with 100 KB protocols
(target < 1 s), with the baseline of the same page at 1 KB protocols; the first (uncached)
render of each 100 KB pair, including an adversarial pair in which every line changed and
the red team's repetitive single lines (each bounded by the diff's step budget).
"""

from __future__ import annotations

import os
import random
import time

from bench.support import django_setup, figure, percentiles

REQUESTS = int(os.environ.get("BENCH_CHANGE_PAGE_REQUESTS", "40"))
WORDS = [
    "the", "assistant", "must", "never", "reveal", "personal", "data", "and", "should",
    "redact", "e-mail", "addresses", "phone", "numbers", "account", "ids", "before", "writing",
    "any", "summary", "of", "a", "support", "ticket", "under", "policy",
]  # fmt: skip


def _markdown(rng: random.Random, size: int) -> str:
    lines, total = [], 0
    while total < size:
        if rng.random() < 0.08:
            line = f"## Section {len(lines)}"
        else:
            line = "- " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16))) + "."
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines)


def _edited(rng: random.Random, text: str, share: float) -> str:
    """A realistic new version: ``share`` of the lines reworded, a few added and removed."""
    out = []
    for line in text.split("\n"):
        roll = rng.random()
        if roll < share:
            words = line.split(" ")
            words[rng.randrange(len(words))] = rng.choice(WORDS).upper()
            out.append(" ".join(words))
        elif roll < share * 1.3:
            continue
        else:
            out.append(line)
            if roll > 1 - share * 0.3:
                out.append("- New rule: " + " ".join(rng.choice(WORDS) for _ in range(10)) + ".")
    return "\n".join(out)


def _seed():
    from django.contrib.auth.models import Group, User

    from changes import content, services
    from changes.models import AISystem, ProtocolVersion, Team

    team, _ = Team.objects.get_or_create(name="bench-page-team")
    author, _ = User.objects.get_or_create(username="bench-page-engineer")
    author.groups.add(Group.objects.get(name="engineer"))
    team.members.add(author)
    rng = random.Random(16)
    small = _markdown(rng, 1_000)
    large = _markdown(rng, 100_000)
    every_line = _markdown(rng, 100_000)
    pairs = {
        "1 KB": (small, _edited(rng, small, 0.1)),
        "100 KB": (large, _edited(rng, large, 0.05)),
        "100 KB, every line changed": (every_line, _markdown(rng, 100_000)),
        "100 KB, repetitive single line": ("a " * 50_000, "b " * 50_000),
    }
    changes = {}
    for n, (label, (old, new)) in enumerate(pairs.items()):
        system, _ = AISystem.objects.get_or_create(
            name=f"bench-page-{n}", defaults={"owner_team": team, "target": {}}
        )
        protos = []
        for version, text in (("v1", old), ("v2", new)):
            proto = ProtocolVersion.objects.filter(system=system, version=version).first()
            if proto is None:
                proto = ProtocolVersion.objects.create(
                    system=system, version=version, body=text, system_prompt=text[:4000] or "p",
                    content_sha256=content.protocol_sha256(
                        version=version, body=text, system_prompt=text[:4000] or "p"
                    ),
                )  # fmt: skip
            protos.append(proto)
        change = system.changes.first() or services.change_request_create(
            actor=author, system=system, base_protocol=protos[0], proposed_protocol=protos[1],
            suites=[], title=f"Bench page {label}", rationale="r", expected_changes=[],
            test_plan="t", risk="medium", change_type="normal", rollout_plan="", backout_plan="",
        )  # fmt: skip
        changes[label] = change.pk
    return author, changes


def run() -> dict:
    django_setup()
    from django.core.cache import cache
    from django.test import Client

    author, changes = _seed()
    client = Client(SERVER_NAME="localhost")
    client.force_login(author)

    def get(pk):
        response = client.get(f"/changes/{pk}/")
        assert response.status_code == 200, response.status_code
        return response

    cache.clear()
    first = {}
    for label, pk in changes.items():
        started = time.perf_counter()
        get(pk)
        first[label] = time.perf_counter() - started
    samples = {label: [] for label in ("1 KB", "100 KB")}
    for _ in range(REQUESTS):  # interleaved, so both see the same machine load
        for label in samples:
            started = time.perf_counter()
            get(changes[label])
            samples[label].append(time.perf_counter() - started)
    p_small, p_large = percentiles(samples["1 KB"]), percentiles(samples["100 KB"])
    figures = [
        figure("change page p95, 100 KB protocols", p_large["p95"] * 1000, "ms",
               baseline={"name": "1 KB protocols p95", "value": p_small["p95"] * 1000,
                         "unit": "ms"},
               ratio=p_large["p95"] / p_small["p95"], target="< 1000 ms",
               met=p_large["p95"] < 1.0),
        figure("change page p50, 100 KB protocols", p_large["p50"] * 1000, "ms",
               baseline={"name": "1 KB protocols p50", "value": p_small["p50"] * 1000,
                         "unit": "ms"}, ratio=p_large["p50"] / p_small["p50"]),
    ]  # fmt: skip
    for label in ("100 KB", "100 KB, every line changed", "100 KB, repetitive single line"):
        figures.append(
            figure(f"first (uncached) render, {label}", first[label] * 1000, "ms",
                   baseline={"name": "1 KB first render", "value": first["1 KB"] * 1000,
                             "unit": "ms"},
                   ratio=first[label] / first["1 KB"], target="< 1000 ms",
                   met=first[label] < 1.0)
        )  # fmt: skip
    return {
        "title": "Change page with 100 KB protocols",
        "figures": figures,
        "notes": [
            f"{REQUESTS} requests per size, interleaved, in-process Django test client, "
            "logged-in engineer; both the side-by-side and the unified view are in the HTML.",
            "The 100 KB pair is Markdown with about 5% of its lines reworded, added or removed; "
            "the system prompt is its first 4 KB. The diff of a pair is cached by the hashes "
            "of its texts, so the p95 figures are steady-state pages; the first-render figures "
            "include the diff itself.",
        ],
    }
