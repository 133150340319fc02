"""Server-drawn SVG for the monitoring page: the live new-protocol rate over time with its
confidence-sequence band, against the evaluated band (same drawing helpers and palette as
``evaluations.charts``; no JavaScript)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from evaluations.charts import LABEL_COLOURS, _line, _num, _svg, _text, _uid, pct, rate_bars
from evaluations.stats import wilson

WIDTH, HEIGHT = 620, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 30


def _y(rate: float) -> float:
    return TOP + (1 - min(max(rate, 0.0), 1.0)) * (HEIGHT - TOP - BOTTOM)


def live_vs_evaluated(points: list[dict], reference: dict | None, *, title: str) -> str:
    """``points``: [{"at", "n", "rate", "cs": [lo, hi]}] cumulative per window."""
    uid = _uid("live")
    ref_text = (
        f"evaluated {reference['condition']} rate {pct(reference['rate'])} "
        f"[{pct(reference['lower'])}–{pct(reference['upper'])}]"
        if reference
        else "no completed evaluation"
    )
    last = points[-1] if points else None
    desc = (
        f"Live new-protocol rate {pct(last['rate'])} over {last['n']} decisions, "
        f"band {pct(last['cs'][0])}–{pct(last['cs'][1])}; {ref_text}."
        if last
        else f"No graded live decisions yet; {ref_text}."
    )
    root = _svg(WIDTH, HEIGHT, title, desc, uid)
    plot_w = WIDTH - LEFT - RIGHT
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        _line(root, LEFT, _y(tick), WIDTH - RIGHT, _y(tick), stroke="#e5e7eb")
        _text(root, LEFT - 6, _y(tick) + 4, pct(tick, 0), **{"text-anchor": "end"})
    if reference:
        ET.SubElement(
            root,
            "rect",
            {
                "class": "evaluated-band",
                "x": _num(LEFT),
                "y": _num(_y(reference["upper"])),
                "width": _num(plot_w),
                "height": _num(max(_y(reference["lower"]) - _y(reference["upper"]), 1)),
                "fill": "#2563eb",
                "fill-opacity": "0.15",
            },
        )
        _line(
            root,
            LEFT,
            _y(reference["rate"]),
            WIDTH - RIGHT,
            _y(reference["rate"]),
            stroke="#2563eb",
            **{"stroke-dasharray": "4 3"},
        )
    if points:
        step = plot_w / max(len(points) - 1, 1)
        xs = [LEFT + i * step for i in range(len(points))]
        upper = " ".join(
            f"{_num(x)},{_num(_y(p['cs'][1]))}" for x, p in zip(xs, points, strict=True)
        )
        lower = " ".join(
            f"{_num(x)},{_num(_y(p['cs'][0]))}"
            for x, p in reversed(list(zip(xs, points, strict=True)))
        )
        ET.SubElement(
            root,
            "polygon",
            {
                "class": "live-band",
                "points": f"{upper} {lower}",
                "fill": LABEL_COLOURS["new"],
                "fill-opacity": "0.2",
            },
        )
        ET.SubElement(
            root,
            "polyline",
            {
                "class": "live-rate",
                "points": " ".join(
                    f"{_num(x)},{_num(_y(p['rate']))}" for x, p in zip(xs, points, strict=True)
                ),
                "fill": "none",
                "stroke": LABEL_COLOURS["new"],
                "stroke-width": "2",
            },
        )
        _text(root, LEFT, HEIGHT - 8, points[0]["at"].strftime("%Y-%m-%d %H:%M"))
        _text(
            root,
            WIDTH - RIGHT,
            HEIGHT - 8,
            points[-1]["at"].strftime("%Y-%m-%d %H:%M"),
            **{"text-anchor": "end"},
        )
    else:
        _text(
            root,
            LEFT + plot_w / 2,
            HEIGHT / 2,
            "No graded live decisions yet",
            **{"text-anchor": "middle"},
        )
    return ET.tostring(root, encoding="unicode")


def judge_verdicts(summary: dict, *, heading: str) -> str:
    """The judge's labels of the sampled live decisions (``judging.summary``) as rate bars
    with Wilson 95% intervals. The rates are over the votes the judge decided: its errors
    (failed calls, no majority) are missing answers, said in the heading, not a label."""
    decided = summary["new"] + summary["legacy"] + summary["other"]
    bars = []
    for label in ("new", "legacy", "other"):
        count = summary[label]
        low, high = wilson(count, decided) if decided else (None, None)
        bars.append(
            {"label": label, "rate": count / decided if decided else None,
             "low": low, "high": high, "count": count}
        )  # fmt: skip
    return rate_bars(
        heading, bars, n=decided, title=f"{heading}: the judge's labels of {decided} decided votes"
    )
