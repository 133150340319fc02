"""Template helpers for evaluation pages: charts, verdict badges, percentages, p-values."""

from __future__ import annotations

import json
import math

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from evaluations import charts, selectors
from evaluations import serializers as read

register = template.Library()

VERDICT_LABELS = {"pass": "Pass", "fail": "Fail", "inconclusive": "Inconclusive"}
STATUS_LABELS = {
    "queued": "Queued",
    "running": "Running",
    "completed": "Completed",
    "errored": "Errored",
    "cancelled": "Cancelled",
}


@register.simple_tag
def verdict_badge(run):
    """The run's outcome as one badge: its verdict once completed, else its status."""
    if run.status == "completed" and run.verdict:
        return format_html(
            '<span class="badge eval-badge eval-{}">{}</span>',
            run.verdict,
            VERDICT_LABELS.get(run.verdict, run.verdict),
        )
    return format_html(
        '<span class="badge eval-badge eval-{}">{}</span>',
        run.status,
        STATUS_LABELS.get(run.status, run.status),
    )


@register.simple_tag
def condition_chart(row):
    """SVG bars (new / legacy / other) with Wilson whiskers for one ``conditions_detail`` row."""
    bars = []
    for label in ("new", "legacy", "other"):
        cell = row.get(label) or {}
        ci = cell.get("ci") or [None, None]
        bars.append(
            {
                "label": label,
                "rate": cell.get("rate"),
                "low": ci[0],
                "high": ci[1],
                "count": cell.get("count"),
            }
        )
    return mark_safe(charts.rate_bars(row["condition"], bars, n=row.get("n")))  # noqa: S308 - built by xml.etree, escaped


@register.simple_tag
def gap_chart(gaps, max_gap=None):
    """A forest plot of ``gaps_detail`` rows against the policy's ``max_gap``."""
    rows = []
    several = len(gaps) > 1
    for g in gaps:
        ci = g.get("ci") or [None, None]
        a, b = (g.get("pair") or ["a", "b"])[:2]
        rows.append(
            {
                "label": f"{a} − {b}",
                "estimate": g.get("gap"),
                "low": ci[0],
                "high": ci[1],
                "p_value": g.get("p_holm") if several else g.get("p_value"),
            }
        )
    return mark_safe(charts.gap_forest(rows, max_gap=max_gap))  # noqa: S308 - built by xml.etree, escaped


@register.filter
def pct(value, digits=1):
    """0.123 -> '12.3%'."""
    return charts.pct(value, int(digits))


@register.filter
def pts(value, digits=1):
    """A signed difference in percentage points: 0.11 -> '+11.0 pts'."""
    return charts.signed_pct(value, int(digits))


@register.filter
def interval(ci, digits=1):
    """[0.1, 0.2] -> '10.0% to 20.0%'."""
    if not ci or len(ci) != 2 or ci[0] is None:
        return "n/a"
    return f"{charts.pct(ci[0], int(digits))} to {charts.pct(ci[1], int(digits))}"


@register.filter
def pts_interval(ci, digits=1):
    if not ci or len(ci) != 2 or ci[0] is None:
        return "n/a"
    return f"{ci[0] * 100:+.{int(digits)}f} to {ci[1] * 100:+.{int(digits)}f} pts"


@register.filter
def pvalue(value):
    return charts.format_p(value)


@register.filter
def p_text(value):
    """'p = 0.012' or 'p < 0.001'."""
    text = charts.format_p(value)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


@register.filter
def eta(seconds):
    """Seconds -> '2 min 05 s' (or '—' when unknown)."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "—"
    seconds = int(round(float(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@register.filter
def any_live(runs) -> bool:
    return any(getattr(run, "is_live", False) for run in runs or [])


@register.filter
def run_view(run):
    """The stored statistics of a finished run, reshaped for templates (no computing)."""
    result = selectors.run_result(run, compute=False)
    policy = run.policy or {}
    return {
        "conditions": read.conditions_detail(result),
        "gaps": read.gaps_detail(result),
        "max_gap": policy.get("max_gap"),
        "min_compliance": policy.get("min_compliance"),
        "has_stats": result.result is not None,
    }


@register.filter
def get_item(mapping, key):
    try:
        return mapping.get(key)
    except AttributeError:
        return None


@register.filter
def label_name(label):
    return charts.LABEL_NAMES.get(label, "Error" if label == "error" else label)


@register.filter
def as_json(value):
    """Pretty JSON text (escaped by the template like any other text)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
