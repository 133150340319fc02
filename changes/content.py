"""The canonical content of a change request: exactly what a reviewer signs.

``content_sha256`` is SHA-256 over canonical JSON (sorted keys, compact, UTF-8) of this
document. It names both protocol versions by their own content hashes and the linked suites
by theirs, so an approval binds to the text that was evaluated.
"""

from __future__ import annotations

import hashlib
import json

from . import hooks

SIGNED_FIELDS = (
    "title",
    "rationale",
    "expected_changes",
    "test_plan",
    "risk",
    "change_type",
    "rollout_plan",
    "backout_plan",
)


def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_document(change) -> dict:
    doc = {name: getattr(change, name) for name in SIGNED_FIELDS}
    doc["system"] = {"id": change.system_id, "name": change.system.name}
    doc["base_protocol"] = {
        "id": change.base_protocol_id,
        "version": change.base_protocol.version,
        "sha256": change.base_protocol.content_sha256,
    }
    doc["proposed_protocol"] = {
        "id": change.proposed_protocol_id,
        "version": change.proposed_protocol.version,
        "sha256": change.proposed_protocol.content_sha256,
    }
    doc["suites"] = hooks.evaluation().suite_refs(change)
    if getattr(change, "stages", None):  # only when declared: older hashes stay valid
        doc["stages"] = list(change.stages)
    for name, part in sorted(hooks.content_parts().items()):
        value = part(change)
        if value is not None:  # declared only: older hashes stay valid
            doc[name] = value
    return doc


def content_sha256(change) -> str:
    return sha256_hex(canonical_json(content_document(change)))


def protocol_sha256(*, version: str, body: str, system_prompt: str) -> str:
    return sha256_hex(
        canonical_json({"version": version, "body": body, "system_prompt": system_prompt})
    )
