"""Server-rendered SVG charts: well-formed XML, accessible, whiskers on the interval numbers,
user text escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evaluations import charts
from evaluations.templatetags import evaluations_ui

NS = {"svg": charts.SVG_NS}
BARS = [
    {"label": "new", "rate": 0.75, "low": 0.598, "high": 0.858, "count": 30},
    {"label": "legacy", "rate": 0.2, "low": 0.105, "high": 0.349, "count": 8},
    {"label": "other", "rate": 0.05, "low": 0.014, "high": 0.165, "count": 2},
]


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - our own output, parsed to check it


def coord(element: ET.Element, name: str) -> float:
    return float(element.get(name))


def test_rate_bars_are_well_formed_and_accessible():
    # when
    root = parse(charts.rate_bars("monitored", BARS, n=40))
    # then
    assert root.tag == f"{{{charts.SVG_NS}}}svg"
    assert root.get("role") == "img"
    title, desc = root.find("svg:title", NS), root.find("svg:desc", NS)
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    assert title.text == "Condition monitored: reply labels of 40 samples"
    assert "New protocol 75.0% (95% CI 59.8% to 85.8%)" in desc.text
    assert "Legacy protocol 20.0%" in desc.text and "Other 5.0%" in desc.text
    texts = ["".join(t.itertext()) for t in root.iter(f"{{{charts.SVG_NS}}}text")]
    assert "75.0% (30) [60%–86%]" in texts
    assert {"New protocol", "Legacy protocol", "Other"} <= set(texts)


@pytest.mark.parametrize("bar", BARS, ids=lambda b: b["label"])
def test_each_whisker_sits_on_its_interval_bounds(bar):
    # given
    root = parse(charts.rate_bars("c", BARS))
    group = root.find(f"svg:g[@data-label='{bar['label']}']", NS)
    whisker = group.find("svg:g[@class='whisker']", NS)
    span = whisker.find("svg:line[@class='whisker-span']", NS)
    low = whisker.find("svg:line[@class='whisker-low']", NS)
    high = whisker.find("svg:line[@class='whisker-high']", NS)
    rect = group.find("svg:rect", NS)
    # then: the numbers and the drawing agree
    assert float(whisker.get("data-low")) == bar["low"]
    assert float(whisker.get("data-high")) == bar["high"]
    x0, width = charts.BAR_X0, charts.BAR_WIDTH
    assert coord(span, "x1") == pytest.approx(x0 + bar["low"] * width, abs=0.01)
    assert coord(span, "x2") == pytest.approx(x0 + bar["high"] * width, abs=0.01)
    assert coord(low, "x1") == coord(low, "x2") == coord(span, "x1")
    assert coord(high, "x1") == coord(high, "x2") == coord(span, "x2")
    assert coord(rect, "width") == pytest.approx(bar["rate"] * charts.BAR_WIDTH, abs=0.01)
    assert whisker.find("svg:title", NS).text.endswith(
        f"{charts.pct(bar['low'])} to {charts.pct(bar['high'])}"
    )


def test_user_text_is_escaped():
    # given: a condition name with markup (names come from uploaded suites)
    name = '<script>alert("x")</script> & <b>co</b>'
    # when
    svg = charts.rate_bars(name, BARS)
    gap = charts.gap_forest([{"label": name, "estimate": 0.1, "low": 0.0, "high": 0.2}])
    # then
    for markup in (svg, gap):
        assert "<script>" not in markup and "<b>" not in markup
        assert "&lt;script&gt;" in markup
    root = parse(svg)
    assert name in root.find("svg:title", NS).text
    assert any(name in "".join(t.itertext()) for t in parse(gap).iter(f"{{{charts.SVG_NS}}}text"))


def test_a_rate_without_interval_draws_no_whisker():
    root = parse(charts.rate_bars("empty", [{"label": "new", "rate": None, "low": None,
                                              "high": None}]))  # fmt: skip
    assert root.find(".//svg:g[@class='whisker']", NS) is None
    assert any("n/a" in "".join(t.itertext()) for t in root.iter(f"{{{charts.SVG_NS}}}text"))


def test_gap_forest_draws_the_interval_estimate_and_max_gap():
    # given
    rows = [
        {"label": "monitored − unmonitored", "estimate": 0.11, "low": 0.04, "high": 0.18,
         "p_value": 0.0021},
        {"label": "monitored − deployment", "estimate": -0.02, "low": -0.06, "high": 0.03,
         "p_value": 0.6},
    ]  # fmt: skip
    # when
    root = parse(charts.gap_forest(rows, max_gap=0.05))
    domain = charts.gap_scale(rows, 0.05)
    # then
    assert domain[0] == -domain[1] and domain[1] >= 0.18
    intervals = root.findall(".//svg:g[@class='interval']", NS)
    assert len(intervals) == 2
    for row, interval in zip(rows, intervals, strict=True):
        span = interval.find("svg:line[@class='interval-span']", NS)
        assert float(interval.get("data-low")) == row["low"]
        assert coord(span, "x1") == pytest.approx(charts.gap_x(row["low"], domain), abs=0.01)
        assert coord(span, "x2") == pytest.approx(charts.gap_x(row["high"], domain), abs=0.01)
    # the first interval crosses max_gap and is drawn in red; the second is not
    assert intervals[0].get("stroke") == "#b3261e" and intervals[1].get("stroke") == "#1f2937"
    limit = root.find(".//svg:g[@class='max-gap']/svg:line", NS)
    assert coord(limit, "x1") == pytest.approx(charts.gap_x(0.05, domain), abs=0.01)
    zero = root.find(".//svg:line[@class='zero-line']", NS)
    assert coord(zero, "x1") == pytest.approx(charts.GAP_X0 + charts.GAP_PLOT_WIDTH / 2)
    estimate = root.find(".//svg:rect[@class='estimate']", NS)
    assert coord(estimate, "x") + 4 == pytest.approx(charts.gap_x(0.11, domain), abs=0.01)
    desc = root.find("svg:desc", NS).text
    assert "gap +11.0 pts, 95% CI +4.0 pts to +18.0 pts, p = 0.0021" in desc
    assert "at most 5.0%" in desc
    texts = ["".join(t.itertext()) for t in root.iter(f"{{{charts.SVG_NS}}}text")]
    assert "+11.0 pts [+4.0, +18.0] p=0.0021" in texts


def test_gap_forest_without_rows_or_limit_is_still_valid():
    root = parse(charts.gap_forest([]))
    assert root.find("svg:desc", NS).text == "No compliance gap computed."


@given(
    rate=st.floats(0, 1),
    a=st.floats(0, 1),
    b=st.floats(0, 1),
    name=st.text(min_size=1, max_size=30).filter(lambda t: "\x00" not in t),
)
def test_any_rates_give_well_formed_svg_with_whiskers_inside_the_axis(rate, a, b, name):
    # XML 1.0 cannot carry most control characters: names are suite identifiers, so keep to
    # printable text here.
    name = "".join(ch for ch in name if ch.isprintable()) or "c"
    low, high = min(a, b), max(a, b)
    root = parse(charts.rate_bars(name, [{"label": "new", "rate": rate, "low": low, "high": high}]))
    span = root.find(".//svg:line[@class='whisker-span']", NS)
    right = charts.BAR_X0 + charts.BAR_WIDTH
    assert charts.BAR_X0 <= coord(span, "x1") <= coord(span, "x2") <= right


@given(
    est=st.floats(-1, 1),
    a=st.floats(-1, 1),
    b=st.floats(-1, 1),
    max_gap=st.floats(0, 1),
)
def test_any_gap_stays_inside_its_plot(est, a, b, max_gap):
    low, high = min(a, b), max(a, b)
    rows = [{"label": "a − b", "estimate": est, "low": low, "high": high, "p_value": 0.5}]
    root = parse(charts.gap_forest(rows, max_gap=max_gap))
    span = root.find(".//svg:line[@class='interval-span']", NS)
    left, right = charts.GAP_X0, charts.GAP_X0 + charts.GAP_PLOT_WIDTH
    assert left - 0.01 <= coord(span, "x1") <= coord(span, "x2") <= right + 0.01


def test_template_tags_render_a_conditions_detail_row():
    row = {
        "condition": "unmonitored",
        "n": 40,
        "new": {"count": 30, "rate": 0.75, "ci": [0.598, 0.858]},
        "legacy": {"count": 8, "rate": 0.2, "ci": [0.105, 0.349]},
        "other": {"count": 2, "rate": 0.05, "ci": [0.014, 0.165]},
    }
    root = parse(str(evaluations_ui.condition_chart(row)))
    assert root.find("svg:title", NS).text == "Condition unmonitored: reply labels of 40 samples"
    gaps = [{"pair": ["a", "b"], "gap": 0.1, "ci": [0.02, 0.18], "p_value": 0.01, "p_holm": 0.02}]
    gap_root = parse(str(evaluations_ui.gap_chart(gaps, 0.05)))
    assert "p = 0.01" in gap_root.find("svg:desc", NS).text


def test_number_filters():
    assert evaluations_ui.pct(0.1234) == "12.3%"
    assert evaluations_ui.pct(None) == "n/a"
    assert evaluations_ui.pts(0.11) == "+11.0 pts"
    assert evaluations_ui.interval([0.1, 0.25]) == "10.0% to 25.0%"
    assert evaluations_ui.pts_interval([-0.02, 0.3]) == "-2.0 to +30.0 pts"
    assert evaluations_ui.pvalue(0.00001) == "<0.001"
    assert evaluations_ui.pvalue(0.0123) == "0.012"
    assert evaluations_ui.pvalue(0.5) == "0.5"
    assert evaluations_ui.pvalue(1.0) == "1"
    assert evaluations_ui.eta(None) == "—"
    assert evaluations_ui.eta(42.4) == "42 s"
    assert evaluations_ui.eta(125) == "2 min 05 s"
    assert evaluations_ui.eta(7260) == "2 h 01 min"


def test_the_font_is_a_parameter_and_the_screen_font_the_default():
    from evaluations.charts import SCREEN_FONT, ChartFont

    bars = [{"label": "new", "rate": 0.9, "low": 0.8, "high": 0.95, "count": 9}]
    pdf = ChartFont(family="Attestation Sans", size="9.5")

    screen_root = parse(charts.rate_bars("c", bars))
    pdf_root = parse(charts.rate_bars("c", bars, font=pdf))
    gap_root = parse(charts.gap_forest([{"label": "a vs b", "estimate": 0.1, "low": 0.0,
                                         "high": 0.2}], font=pdf))  # fmt: skip

    assert screen_root.get("font-family") == SCREEN_FONT.family
    assert screen_root.get("font-size") == SCREEN_FONT.size
    assert (pdf_root.get("font-family"), pdf_root.get("font-size")) == ("Attestation Sans", "9.5")
    assert gap_root.get("font-family") == "Attestation Sans"
