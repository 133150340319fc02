"""Snapshots of reviewed content and the diff "since your review" (issue 14, item 3)."""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction

from changes import content, diff
from changes.models import ChangeRequest

from .models import ContentSnapshot

logger = logging.getLogger(__name__)

TEXT_FIELDS = [
    ("title", "Title"),
    ("rationale", "Rationale"),
    ("test_plan", "Test plan"),
    ("rollout_plan", "Rollout plan"),
    ("backout_plan", "Backout plan"),
    ("risk", "Risk"),
    ("change_type", "Change type"),
]


def document(change: ChangeRequest) -> dict:
    """The signed content document plus the protocol texts it names by hash."""
    doc = content.content_document(change)
    for side, protocol in (("base", change.base_protocol), ("proposed", change.proposed_protocol)):
        doc[f"{side}_texts"] = {"body": protocol.body, "system_prompt": protocol.system_prompt}
    return doc


def record(change: ChangeRequest) -> None:
    """Keep the current content under its hash (once; a second call is a no-op)."""
    if ContentSnapshot.objects.filter(
        change_id=change.pk, content_sha256=change.content_sha256
    ).exists():
        return
    try:
        with transaction.atomic():
            ContentSnapshot.objects.create(
                change=change, content_sha256=change.content_sha256, document=document(change)
            )
    except IntegrityError:
        pass  # a concurrent writer kept the same content


def record_for_event(event) -> None:
    """Listener part: snapshot the change an event names. Never fails the writer."""
    if event.object_type != "changes.changerequest" or not str(event.object_id).isdigit():
        return
    try:
        change = ChangeRequest.objects.select_related(
            "system", "base_protocol", "proposed_protocol"
        ).get(pk=int(event.object_id))
        record(change)
    except Exception:  # noqa: BLE001 - a missing snapshot only loses the "since" diff
        logger.exception("Could not snapshot change %s", event.object_id)


def _suite_label(ref: dict) -> str:
    return f"{ref.get('name', '?')} v{ref.get('version', '?')} ({str(ref.get('sha256', ''))[:12]})"


def since(change: ChangeRequest, content_sha256: str) -> dict | None:
    """The diff from the content under ``content_sha256`` to the current content.

    None when there is no snapshot of that hash (content from before snapshots existed).
    {"same": True} when nothing changed. Otherwise {"fields": [...], "protocol": [...],
    "suites": {"added", "removed"}} ready for the template and the API.
    """
    snap = ContentSnapshot.objects.filter(change=change, content_sha256=content_sha256).first()
    if snap is None:
        return None
    if content_sha256 == change.content_sha256:
        return {"same": True}
    old, new = snap.document, document(change)
    fields = []
    for key, label in TEXT_FIELDS:
        a, b = str(old.get(key) or ""), str(new.get(key) or "")
        if a != b:
            fields.append(
                {"key": key, "label": label, "unified": diff.unified_lines(a, b, context=2)}
            )
    if old.get("expected_changes") != new.get("expected_changes"):
        fields.append(
            {
                "key": "expected_changes",
                "label": "Expected behaviour changes",
                "unified": diff.unified_lines(
                    _rows(old.get("expected_changes")), _rows(new.get("expected_changes"))
                ),
            }
        )
    protocol = []
    for side in ("base", "proposed"):
        for attr, label in (("system_prompt", "system prompt"), ("body", "protocol body")):
            a = (old.get(f"{side}_texts") or {}).get(attr, "")
            b = (new.get(f"{side}_texts") or {}).get(attr, "")
            if a != b:
                protocol.append(
                    {
                        "key": f"{side}.{attr}",
                        "label": f"{side.title()} {label}",
                        "versions": (
                            (old.get(f"{side}_protocol") or {}).get("version"),
                            (new.get(f"{side}_protocol") or {}).get("version"),
                        ),
                        "unified": diff.unified_lines(a, b, context=2),
                    }
                )
    old_suites = {_suite_label(s) for s in old.get("suites") or []}
    new_suites = {_suite_label(s) for s in new.get("suites") or []}
    return {
        "same": False,
        "from_sha256": content_sha256,
        "to_sha256": change.content_sha256,
        "fields": fields,
        "protocol": protocol,
        "suites": {
            "added": sorted(new_suites - old_suites),
            "removed": sorted(old_suites - new_suites),
        },
    }


def _rows(rows) -> str:
    return "\n".join(
        f"{r.get('behaviour', '')}: {r.get('before', '')} -> {r.get('after', '')}"
        for r in rows or []
        if isinstance(r, dict)
    )
