"""Template helpers for the web UI: ``|markdown``, state badges, short hashes, audit verbs."""

from __future__ import annotations

from django import template
from django.utils.html import format_html

from changes import states
from changes.markdown import render_markdown

register = template.Library()

VERB_LABELS = {
    "change.created": "Filed the change",
    "change.edited": "Edited the change",
    "change.submitted": "Submitted for evaluation",
    "change.evaluation_started": "Evaluation started",
    "change.evaluation_passed": "Evaluation passed",
    "change.evaluation_failed": "Evaluation failed",
    "change.approved": "Change approved",
    "change.changes_requested": "Requested changes",
    "change.rejected": "Rejected the change",
    "change.deployed": "Deployed",
    "change.closed": "Closed the change",
    "change.withdrawn": "Withdrew the change",
    "change.retrospective_completed": "Retrospective review completed",
    "review.approved": "Signed an approval",
    "review.voided": "Approvals voided",
    "attestation.issued": "Attestation issued",
}


@register.filter(name="markdown")
def markdown_filter(value):
    """Render user Markdown as sanitised HTML (see ``changes.markdown``)."""
    return render_markdown(value)


@register.simple_tag
def state_badge(state: str):
    label = states.LABELS.get(state, state)
    return format_html('<span class="badge badge-{}">{}</span>', state, label)


@register.simple_tag
def level_badge(level: str, prefix: str = ""):
    """A low/medium/high/critical pill (risk or criticality)."""
    text = f"{prefix} {level}".strip() if prefix else level
    return format_html('<span class="level level-{}">{}</span>', level, text)


@register.filter
def short_hash(value, length: int = 12):
    value = str(value or "")
    return value[: int(length)] if value else ""


@register.filter
def verb_label(verb: str) -> str:
    return VERB_LABELS.get(verb, verb.replace(".", " ").replace("_", " ").capitalize())


@register.filter
def state_label(state: str) -> str:
    return states.LABELS.get(state, state)


@register.filter
def get_item(mapping, key):
    try:
        return mapping.get(key)
    except AttributeError:
        return None


_SUMMARY_KEYS = (
    "from", "to", "reason", "reasons", "fields", "environment", "decision", "approvals",
    "runs", "retrospective_pending", "title", "detail", "path",
    # attestation.verified (issue 15): the outcome and what failed, in words
    "outcome", "standing", "failed", "source",
)  # fmt: skip


@register.filter
def event_summary(data) -> list[tuple[str, str]]:
    """The readable facts of an audit event's data (hashes stay in the export)."""
    if not isinstance(data, dict):
        return []
    out = []
    for key in _SUMMARY_KEYS:
        if key not in data or data[key] in (None, "", [], {}):
            continue
        value = data[key]
        if key in ("from", "to"):
            value = states.LABELS.get(value, value)
        elif isinstance(value, list):
            value = "; ".join(str(v) for v in value)
        out.append((key.replace("_", " "), str(value)[:500]))
    return out


@register.filter
def independence_facts(facts) -> list[tuple[str, bool]]:
    """A review's recorded independence facts as (label, held) pairs."""
    if not isinstance(facts, dict):
        return []
    labels = [
        ("holds_reviewer_role", "Holds the reviewer role"),
        ("not_author", "Is not the author"),
        ("not_editor", "Did not edit the change"),
        ("not_on_author_team", "Is not on the author's team"),
    ]
    out = [(label, bool(facts[key])) for key, label in labels if key in facts]
    if "cross_team_required" in facts:
        out.append(
            (
                "Cross-team review required"
                if facts["cross_team_required"]
                else "Cross-team review not required",
                True,
            )
        )
    return out
