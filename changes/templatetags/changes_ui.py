"""Template helpers for the web UI: ``|markdown``, state badges, short hashes, audit verbs."""

from __future__ import annotations

from django import template
from django.urls import NoReverseMatch, reverse
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
    "from", "to", "valid", "failed_checks", "change", "version", "reason", "reasons", "error",
    "fields", "environment", "decision", "approvals", "runs", "retrospective_pending", "title",
    "name", "filename", "source", "detail", "path",
    # attestation.verified (issue 15): the outcome and what failed, in words
    "outcome", "standing", "failed",
)  # fmt: skip
_SUMMARY_LABELS = {
    "valid": "result",
    "failed_checks": "failed checks",
    "filename": "file",
    "retrospective_pending": "retrospective pending",
}
#: Keys an ``attestation.verified`` event also states in words (``outcome``, ``failed``).
_WORDED_DUPLICATES = ("valid", "failed_checks")
#: Longest fact shown on a page; longer text is cut at a word boundary (the export has all).
FACT_CHARS = 1000


def clip(text: str, limit: int = FACT_CHARS) -> str:
    """``text`` up to ``limit`` characters, cut at a word boundary with an ellipsis."""
    text = str(text)
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(None, 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip(" ,;:") + "…"


def _fact_value(key: str, value):
    if key in ("from", "to"):
        return states.LABELS.get(value, value)
    if key == "valid":
        return "valid" if value else "INVALID"
    if key == "change" and isinstance(value, int):
        return f"CR-{value}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list) and key == "reasons" and len(value) > 1:
        return [clip(v) for v in value]  # sentences: one per line, never cut mid-word
    if isinstance(value, list):
        return clip(", ".join(str(v) for v in value)) if value else []
    return clip(value)


@register.filter
def event_summary(data) -> list[tuple[str, str | list[str]]]:
    """The readable facts of an audit event's data (hashes stay in the export). A value is
    text, or a list of texts (reasons, fields, failed checks) shown as a list."""
    if not isinstance(data, dict):
        return []
    out = []
    # A verification recorded with its outcome in words needs no machine-named duplicates.
    superseded = _WORDED_DUPLICATES if "outcome" in data else ()
    for key in _SUMMARY_KEYS:
        if key in superseded or key not in data or data[key] in (None, "", {}):
            continue
        if data[key] == [] and key != "failed_checks":
            continue
        value = _fact_value(key, data[key])
        if value == []:
            value = "none"
        out.append((_SUMMARY_LABELS.get(key, key.replace("_", " ")), value))
    return out


@register.filter
def is_list(value) -> bool:
    return isinstance(value, list)


@register.filter
def as_text(value) -> str:
    """A fact as one line: lists joined with "; "."""
    return "; ".join(str(v) for v in value) if isinstance(value, list) else str(value)


_OBJECT_NAMES = {
    "changes.changerequest": "Change",
    "changes.aisystem": "System",
    "changes.protocolversion": "Protocol version",
    "changes.team": "Team",
    "attestations.attestation": "Attestation",
    "evaluations.evaluationrun": "Evaluation run",
    "evaluations.suite": "Suite",
    "auth.user": "User",
}


def _url(name: str, *args) -> str:
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return ""


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@register.filter
def audit_object(event) -> dict:
    """A human label and, where a page shows it, a link for an audit event's object
    (``attestations.attestation:2`` -> "Attestation #2 of CR-1", linked to that change)."""
    kind, pk = event.object_type or "", _int(event.object_id)
    data = event.data if isinstance(event.data, dict) else {}
    name = _OBJECT_NAMES.get(kind)
    if not kind:
        return {"label": "", "url": ""}
    if kind == "changes.changerequest" and pk:
        return {"label": f"CR-{pk}", "url": _url("change-detail", pk)}
    if kind == "attestations.attestation":
        change = _int(data.get("change"))
        label = f"Attestation #{pk}" if pk else "An unrecognised attestation"
        if change:
            label += f" of CR-{change}"
            return {"label": label, "url": _url("change-detail", change) + "#attestation"}
        return {"label": label, "url": ""}
    if kind == "changes.protocolversion" and pk:
        system, version = _int(data.get("system")), data.get("version")
        label = f"Protocol {version}" if version else f"Protocol version #{pk}"
        url = _url("protocol-detail", system, pk) if system else ""
        return {"label": label + (f" of system #{system}" if system else ""), "url": url}
    if kind == "changes.aisystem" and pk:
        return {"label": f"System {data.get('name') or f'#{pk}'}", "url": _url("system-detail", pk)}
    if kind == "evaluations.evaluationrun" and pk:
        return {"label": f"Evaluation run {pk}", "url": _url("run-detail", pk)}
    if kind == "evaluations.suite" and pk:
        return {"label": f"Suite {data.get('name') or f'#{pk}'}", "url": _url("suite-detail", pk)}
    if kind == "changes.team":
        return {"label": f"Team {data.get('name') or f'#{pk}'}", "url": ""}
    if kind == "auth.user" and pk:
        # Logins and tokens name the user they concern; usually the actor.
        same = str(event.actor_id) == str(pk) and event.actor_username
        name = event.actor_username if same else data.get("username")
        return {"label": f"User {name}" if name else f"User #{pk}", "url": ""}
    if kind == "request":
        return {"label": "A request", "url": ""}
    label = name or kind.rsplit(".", 1)[-1].replace("_", " ").capitalize()
    return {"label": f"{label} #{event.object_id}" if event.object_id else label, "url": ""}


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
