"""Server-rendered SVG charts for evaluation results. Pure: numbers in, SVG markup out.

Why server-rendered: the charts must read the same in the browser, in a PDF and with no
JavaScript, and a screen reader must get the numbers too. Every chart is ``role="img"`` with a
``<title>`` and ``<desc>``, every bar and interval carries its number as visible text, and the
markup is built with ``xml.etree`` so user-supplied names (condition ids, scenario ids) are
always escaped and the result is well-formed XML.

Geometry is public (``BAR_X0``, ``BAR_WIDTH``, ``gap_scale``) so tests can check that a
whisker sits exactly on its interval bounds.
"""

from __future__ import annotations

import itertools
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

SVG_NS = "http://www.w3.org/2000/svg"

LABEL_NAMES = {
    "new": "New protocol",
    "legacy": "Legacy protocol",
    "other": "Other",
    "empty": "Empty reply",
}
LABEL_COLOURS = {"new": "#1f7a3a", "legacy": "#b3261e", "other": "#6b7280", "empty": "#92400e"}

# Rate bars: label column, bar area (0..100 %), number column.
CHART_WIDTH = 520
BAR_X0 = 120
BAR_WIDTH = 220
BAR_HEIGHT = 18
ROW_HEIGHT = 30
TOP = 28
AXIS_SPACE = 24

# Forest plot.
GAP_WIDTH = 660
GAP_X0 = 200
GAP_PLOT_WIDTH = 280
GAP_LABEL_CHARS = 30

_ids = itertools.count(1)


@dataclass(frozen=True)
class ChartFont:
    """The font a chart names: the browser's system font on pages, a shipped one in a PDF
    (which must look the same on every machine that renders it)."""

    family: str = "system-ui, sans-serif"
    size: str = "12"


SCREEN_FONT = ChartFont()


def _uid(prefix: str) -> str:
    slug = re.sub(r"[^a-zA-Z0-9_-]+", "-", prefix).strip("-")[:40] or "chart"
    return f"{slug}-{next(_ids)}"


def pct(value, digits: int = 1) -> str:
    """0.1234 -> '12.3%'; None -> 'n/a'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value * 100:.{digits}f}%"


def signed_pct(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value * 100:+.{digits}f} pts"


def _num(value: float) -> str:
    """Coordinates with two decimals, no trailing zeros (stable for tests)."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _svg(
    width: int, height: int, title: str, desc: str, uid: str, font: ChartFont = SCREEN_FONT
) -> ET.Element:
    root = ET.Element(
        "svg",
        {
            "xmlns": SVG_NS,
            "width": str(width),
            "height": str(height),
            "viewBox": f"0 0 {width} {height}",
            "role": "img",
            "aria-labelledby": f"{uid}-title {uid}-desc",
            "class": "eval-chart",
            "font-family": font.family,
            "font-size": font.size,
        },
    )
    ET.SubElement(root, "title", {"id": f"{uid}-title"}).text = title
    ET.SubElement(root, "desc", {"id": f"{uid}-desc"}).text = desc
    return root


def _text(parent, x, y, text, **attrs) -> ET.Element:
    el = ET.SubElement(parent, "text", {"x": _num(x), "y": _num(y), **attrs})
    el.text = text
    return el


def _line(parent, x1, y1, x2, y2, **attrs) -> ET.Element:
    return ET.SubElement(
        parent,
        "line",
        {"x1": _num(x1), "y1": _num(y1), "x2": _num(x2), "y2": _num(y2), **attrs},
    )


def _clamp01(value) -> float:
    return min(1.0, max(0.0, float(value or 0.0)))


def bar_x(rate: float) -> float:
    """The x coordinate of ``rate`` (0..1) on the rate-bar axis."""
    return BAR_X0 + _clamp01(rate) * BAR_WIDTH


def rate_bars(
    condition: str,
    bars: list[dict],
    *,
    n: int | None = None,
    font: ChartFont = SCREEN_FONT,
    title: str | None = None,
) -> str:
    """Horizontal bars of the new / legacy / other rates of one condition, each with its
    Wilson 95% interval as a whisker.

    ``bars``: ``[{"label": "new", "rate": 0.9, "low": 0.8, "high": 0.95, "count": 45}, ...]``.
    """
    uid = _uid(f"rates-{condition}")
    height = TOP + ROW_HEIGHT * len(bars) + AXIS_SPACE
    parts = [
        f"{LABEL_NAMES.get(b['label'], b['label'])} {pct(b.get('rate'))} "
        f"(95% CI {pct(b.get('low'))} to {pct(b.get('high'))})"
        for b in bars
    ]
    n_text = f" of {n} samples" if n is not None else ""
    root = _svg(
        CHART_WIDTH,
        height,
        title or f"Condition {condition}: reply labels{n_text}",
        "; ".join(parts) + "." if parts else "No graded samples.",
        uid,
        font,
    )
    _text(root, 0, 16, f"{condition}" + (f" (n = {n})" if n is not None else ""),
          **{"font-weight": "600", "class": "chart-heading"})  # fmt: skip
    axis_y = TOP + ROW_HEIGHT * len(bars)
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        x = bar_x(tick)
        _line(root, x, TOP - 4, x, axis_y, stroke="#e5e7eb", **{"class": "gridline"})
        _text(root, x, axis_y + 14, pct(tick, 0), **{"text-anchor": "middle", "fill": "#4b5563"})
    for i, bar in enumerate(bars):
        label = bar["label"]
        name = LABEL_NAMES.get(label, label)
        y = TOP + i * ROW_HEIGHT
        cy = y + BAR_HEIGHT / 2
        group = ET.SubElement(root, "g", {"class": f"bar bar-{label}", "data-label": label})
        _text(group, BAR_X0 - 8, cy + 4, name, **{"text-anchor": "end"})
        rate = bar.get("rate")
        ET.SubElement(
            group,
            "rect",
            {
                "x": _num(BAR_X0),
                "y": _num(y),
                "width": _num(bar_x(rate) - BAR_X0),
                "height": _num(BAR_HEIGHT),
                "fill": LABEL_COLOURS.get(label, "#374151"),
                "fill-opacity": "0.85",
                "class": "bar-rect",
            },
        )
        low, high = bar.get("low"), bar.get("high")
        if low is not None and high is not None:
            whisker = ET.SubElement(
                group,
                "g",
                {
                    "class": "whisker",
                    "data-low": repr(float(low)),
                    "data-high": repr(float(high)),
                    "stroke": "#111827",
                    "stroke-width": "1.5",
                },
            )
            ET.SubElement(whisker, "title").text = f"{name}: 95% interval {pct(low)} to {pct(high)}"
            _line(whisker, bar_x(low), cy, bar_x(high), cy, **{"class": "whisker-span"})
            _line(whisker, bar_x(low), cy - 6, bar_x(low), cy + 6, **{"class": "whisker-low"})
            _line(whisker, bar_x(high), cy - 6, bar_x(high), cy + 6, **{"class": "whisker-high"})
        count = bar.get("count")
        number = pct(rate) + (f" ({count})" if count is not None else "")
        if low is not None and high is not None:
            number += f" [{pct(low, 0)}–{pct(high, 0)}]"
        _text(group, BAR_X0 + BAR_WIDTH + 8, cy + 4, number, **{"class": "bar-value"})
    return ET.tostring(root, encoding="unicode")


def gap_scale(rows: list[dict], max_gap: float | None) -> tuple[float, float]:
    """The symmetric domain [-d, d] of the forest plot: wide enough for every interval and
    the gate's ``max_gap``, at least +/-10 points, rounded up to 5 points, at most +/-100."""
    values = [abs(float(v)) for r in rows for v in (r.get("low"), r.get("high"),
              r.get("estimate")) if v is not None]  # fmt: skip
    if max_gap is not None:
        values.append(abs(float(max_gap)))
    d = max([0.1, *values])
    d = min(1.0, math.ceil(d * 1.1 / 0.05 - 1e-9) * 0.05)
    return -d, d


def gap_x(value: float, domain: tuple[float, float]) -> float:
    lo, hi = domain
    value = min(hi, max(lo, float(value)))
    return GAP_X0 + (value - lo) / (hi - lo) * GAP_PLOT_WIDTH


def gap_forest(
    rows: list[dict], *, max_gap: float | None = None, font: ChartFont = SCREEN_FONT
) -> str:
    """A small forest plot of compliance gaps (monitored minus unmonitored new-protocol rate)
    with their 95% intervals, a zero line and the gate's ``max_gap`` as a dashed line.

    ``rows``: ``[{"label": "monitored vs unmonitored", "estimate", "low", "high", "p_value"}]``.
    """
    uid = _uid("gap")
    domain = gap_scale(rows, max_gap)
    row_h = 28
    top = 30
    height = top + row_h * max(1, len(rows)) + 30
    parts = []
    for r in rows:
        text = (
            f"{r['label']}: gap {signed_pct(r.get('estimate'))}, 95% CI "
            f"{signed_pct(r.get('low'))} to {signed_pct(r.get('high'))}"
        )
        if r.get("p_value") is not None:
            text += f", p = {format_p(r['p_value'])}"
        parts.append(text)
    if max_gap is not None:
        parts.append(f"the gate allows at most {pct(max_gap)} (upper bound)")
    root = _svg(
        GAP_WIDTH,
        height,
        "Compliance gap with 95% interval",
        "; ".join(parts) + "." if parts else "No compliance gap computed.",
        uid,
        font,
    )
    bottom = top + row_h * max(1, len(rows))
    for tick in _ticks(domain):
        x = gap_x(tick, domain)
        _line(root, x, top - 6, x, bottom, stroke="#e5e7eb", **{"class": "gridline"})
        _text(root, x, bottom + 14, f"{tick * 100:+.0f}" if tick else "0",
              **{"text-anchor": "middle", "fill": "#4b5563"})  # fmt: skip
    _text(root, GAP_X0 + GAP_PLOT_WIDTH / 2, bottom + 28, "gap, percentage points",
          **{"text-anchor": "middle", "fill": "#4b5563"})  # fmt: skip
    zero = gap_x(0, domain)
    _line(root, zero, top - 10, zero, bottom, stroke="#111827", **{"class": "zero-line"})
    if max_gap is not None:
        limit = ET.SubElement(root, "g", {"class": "max-gap", "data-value": repr(float(max_gap))})
        x = gap_x(max_gap, domain)
        _line(limit, x, top - 10, x, bottom, stroke="#b3261e",
              **{"stroke-dasharray": "4 3", "stroke-width": "1.5"})  # fmt: skip
        _text(limit, x, top - 14, f"max gap {pct(max_gap, 0)}",
              **{"text-anchor": "middle", "fill": "#b3261e"})  # fmt: skip
    for i, r in enumerate(rows):
        cy = top + i * row_h + row_h / 2
        group = ET.SubElement(root, "g", {"class": "gap-row"})
        label = r["label"]
        short = label if len(label) <= GAP_LABEL_CHARS else label[: GAP_LABEL_CHARS - 1] + "…"
        label_el = _text(group, GAP_X0 - 8, cy + 4, short, **{"text-anchor": "end"})
        if short != label:
            ET.SubElement(label_el, "title").text = label
        low, high, est = r.get("low"), r.get("high"), r.get("estimate")
        exceeds = max_gap is not None and high is not None and high > max_gap
        colour = "#b3261e" if exceeds else "#1f2937"
        if low is not None and high is not None:
            interval = ET.SubElement(
                group,
                "g",
                {
                    "class": "interval",
                    "data-low": repr(float(low)),
                    "data-high": repr(float(high)),
                    "stroke": colour,
                    "stroke-width": "2",
                },
            )
            _line(interval, gap_x(low, domain), cy, gap_x(high, domain), cy,
                  **{"class": "interval-span"})  # fmt: skip
            _line(interval, gap_x(low, domain), cy - 5, gap_x(low, domain), cy + 5,
                  **{"class": "interval-low"})  # fmt: skip
            _line(interval, gap_x(high, domain), cy - 5, gap_x(high, domain), cy + 5,
                  **{"class": "interval-high"})  # fmt: skip
        if est is not None:
            x = gap_x(est, domain)
            ET.SubElement(
                group,
                "rect",
                {"x": _num(x - 4), "y": _num(cy - 4), "width": "8", "height": "8",
                 "fill": colour, "class": "estimate", "data-value": repr(float(est))},
            )  # fmt: skip
        text = signed_pct(est)
        if low is not None and high is not None:
            text += f" [{low * 100:+.1f}, {high * 100:+.1f}]"
        if r.get("p_value") is not None:
            text += f" p={format_p(r['p_value'])}"
        _text(group, GAP_X0 + GAP_PLOT_WIDTH + 8, cy + 4, text, **{"class": "gap-value"})
    return ET.tostring(root, encoding="unicode")


def _ticks(domain: tuple[float, float]) -> list[float]:
    lo, hi = domain
    step = 0.05 if hi <= 0.2 else 0.1 if hi <= 0.5 else 0.25 if hi <= 0.75 else 0.5
    n = int(round(hi / step))
    return [round(k * step, 4) for k in range(-n, n + 1)]


def format_p(p) -> str:
    """A p-value with two significant digits; below 0.001 as "<0.001"."""
    if p is None:
        return "n/a"
    p = float(p)
    if p < 0.001:
        return "<0.001"
    return f"{p:.2g}"
