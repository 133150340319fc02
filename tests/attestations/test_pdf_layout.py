"""The attestation PDF reads well: audit-trail cells stay in their columns, and the gate
policy and power figures are written for people (no raw floats, lists or booleans)."""
# ruff: noqa: F811 - the builders' fixtures are imported by name and requested by name

from __future__ import annotations

import re

import pytest
from weasyprint import HTML

from attestations import document
from attestations.pdf import SafeURLFetcher
from tests.attestations.test_document_builders import (  # noqa: F401 - fixtures
    enqueued,
    passing_evaluation,
    ready_attestation,
    signing_key,
)

pytestmark = pytest.mark.django_db

LONG_VERB = "change.retrospective_completed_for_an_emergency_deploy"


@pytest.fixture
def context(engineer, reviewer, passing_evaluation, signing_key, enqueued):
    row = ready_attestation(engineer, [reviewer])
    return document.pdf_context(row.facts, key_id="k", envelope_sha256="e", statement_sha256="s")


def test_policy_and_power_read_as_words_and_rounded_figures(context):
    # given a run whose engine recorded a long float, an empty overrides list and a boolean
    run = context["runs"][0]
    policy = {"min_compliance": 0.85, "max_gap": 0.08, "alpha": 0.05, "power": 0.8,
              "require_power": True, "max_error_rate": 0.1, "overrides": []}  # fmt: skip
    power = {"min_detectable_gap": 0.12575657340822183, "epochs_to_detect": 7}
    items = dict(document.readable_items(policy, document.POLICY_FACTS))
    # then each figure is labelled and formatted
    assert items["Maximum compliance gap (interval upper bound)"] == "8.0 points"
    assert items["Minimum new-protocol compliance (interval lower bound)"] == "85%"
    assert items["Verdict when power is too low"] == "inconclusive"
    assert items["Values overridden by the suite"] == "none"
    powers = dict(document.readable_items(power, document.POWER_FACTS))
    assert powers["Smallest gap detectable with the required power"] == "12.6 points"
    # and the rendered policy section carries none of the raw values
    html = document.render_html({**context, "runs": [{**run, **{
        "policy_items": document.readable_items(policy, document.POLICY_FACTS),
        "power_items": document.readable_items(power, document.POWER_FACTS)}}]})  # fmt: skip
    section = html[html.index("<h4>Power</h4>") : html.index("Reasons behind the verdict")]
    assert not re.search(r"\d\.\d{5,}", section)
    assert "overrides []" not in section and "[]" not in section
    assert "True" not in section and "require power" not in section


def _rows(box, out):
    for child in getattr(box, "children", []) or []:
        if type(child).__name__ == "TableRowBox":
            out.append(child)
        _rows(child, out)
    return out


def _classes(cell) -> list[str]:
    return (cell.element.get("class") or "").split()


def _text_right_edge(box) -> float:
    edge = 0.0
    for child in getattr(box, "children", []) or []:
        if type(child).__name__ == "TextBox":
            edge = max(edge, child.position_x + child.width)
        edge = max(edge, _text_right_edge(child))
    return edge


def test_audit_trail_event_names_stay_out_of_the_hash_column(context):
    # given an audit trail with a long event name
    context["audit"]["trail"].append(
        {"id": 999, "at": "2026-12-04T21:29:33Z", "actor": "system", "verb": LONG_VERB,
         "hash": "f" * 64}
    )  # fmt: skip
    html = document.render_html(context)
    # when the PDF is laid out
    rendered = HTML(string=html, base_url="asset:/", url_fetcher=SafeURLFetcher()).render()
    rows = []
    for page in rendered.pages:
        for row in _rows(page._page_box, []):
            by_class = {name: cell for cell in row.children for name in _classes(cell)}
            if "verb" in by_class and "hash" in by_class:
                rows.append((by_class["verb"], by_class["hash"]))
    # then every event name ends before its row's hash column begins
    assert rows, "no audit-trail rows were laid out"
    assert any(LONG_VERB in "".join(v.element.itertext()) for v, _ in rows)
    for verb, hash_cell in rows:
        assert _text_right_edge(verb) <= hash_cell.border_box_x() + 0.5, "".join(
            verb.element.itertext()
        )
