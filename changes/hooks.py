"""The seams through which later apps plug into the workflow without a reverse import.

``changes`` never imports ``evaluations`` or ``attestations``; those apps register an
implementation here from their ``AppConfig.ready``. Until they do, the null ports keep the
workflow coherent: no suites, a submitted change waits in ``evaluating``, and no
attestation is issued.
"""

from __future__ import annotations


class EvaluationPort:
    """What the workflow needs from the evaluation engine."""

    def link_suites(self, change, suite_ids: list[int]) -> None:
        """Replace the change's linked suites; raise ValidationFailed for unknown ids."""
        if suite_ids:
            from core.errors import ValidationFailed

            raise ValidationFailed("No evaluation engine is installed to run suites.")

    def validate_target(self, target: dict) -> dict:
        """Check an evaluation target config; return it normalised (no secrets inside)."""
        return dict(target)

    def refuse_secret_text(self, fields: dict) -> None:
        """Raise ValidationFailed naming the first of ``fields`` (name -> text shown to every
        user) that holds a secret value or a credential-shaped string. Without an engine
        there is no secret registry to compare against."""

    def suite_refs(self, change) -> list[dict]:
        """[{"id", "name", "version", "sha256"}] of the linked suites, for the content hash."""
        return []

    def start(self, change, *, actor) -> list:
        """Create this content's runs in the caller's transaction; enqueue them on commit."""
        return []

    def cancel(self, change, *, actor) -> None:
        """Cancel runs still in flight (the change was withdrawn or edited)."""

    def gate_reasons(self, change) -> list[str]:
        """Every evaluation condition a deploy of the current content does not meet."""
        return ["No evaluation has passed for this content (no evaluation engine installed)."]

    def panel(self, change, user) -> tuple[str, dict] | None:
        """(template name, context) for the evaluation section of the change page."""
        return None

    def gate_notes(self, change) -> list[str]:
        """What the gate says besides its reasons (e.g. a run judged under a policy
        exception); never a reason to close it."""
        return []

    def evaluation_digest(self, change) -> str:
        """A digest of the runs that evaluated the current content (approvals bind to it)."""
        return ""

    def suite_choices(self) -> list[tuple[int, str]]:
        """(id, label) of every suite an engineer may link, for the change form."""
        return []


class AttestationPort:
    """What the workflow needs from the attestation issuer."""

    def issue(self, change, *, reason: str) -> None:
        """Schedule an attestation for ``change`` (called inside the transition's transaction)."""

    def panel(self, change, user) -> tuple[str, dict] | None:
        """(template name, context) for the attestation section of the change page."""
        return None

    def statuses(self, change_ids) -> dict[int, str]:
        """Per change id, the status of its newest attestation ("ready", "pending",
        "rendering", "failed"); a change without one is absent. Lists use it to offer a
        download only where there is something to download."""
        return {}

    def ensure_demo_key(self) -> str:
        """Make sure a development signing key exists (``seed_demo``); what to tell the
        operator when one was just generated, else ""."""
        return ""


_evaluation: EvaluationPort = EvaluationPort()
_attestation: AttestationPort = AttestationPort()


def register_evaluation(port: EvaluationPort) -> None:
    global _evaluation
    _evaluation = port


def register_attestation(port: AttestationPort) -> None:
    global _attestation
    _attestation = port


def evaluation() -> EvaluationPort:
    return _evaluation


def attestation() -> AttestationPort:
    return _attestation


# --- listeners and extra panels (notifications, webhooks, review requests plug in here) ---

_listeners: list = []
_panels: dict[str, list] = {}


def register_listener(listener) -> None:
    """``listener(event)`` hears every audit event as it is appended, inside the writer's
    transaction; it must only schedule work (``transaction.on_commit``), never fail it."""
    if listener not in _listeners:
        _listeners.append(listener)


def publish(event) -> None:
    for listener in _listeners:
        listener(event)


def register_panel(slot: str, panel) -> None:
    """``panel(request, **objects) -> html | None`` for a page slot ("change", "dashboard")."""
    if panel not in _panels.setdefault(slot, []):
        _panels[slot].append(panel)


def panels(slot: str) -> list:
    return list(_panels.get(slot, ()))


_gate_rules: list = []


def register_gate_rule(rule) -> None:
    """``rule(change) -> list[str]``: more unmet deploy conditions, in words."""
    if rule not in _gate_rules:
        _gate_rules.append(rule)


def gate_rules() -> list:
    return list(_gate_rules)


# --- parts of the signed content that later apps declare (e.g. the monitor) ---

_content_parts: dict[str, object] = {}


def register_content_part(name: str, part) -> None:
    """``part(change) -> JSON value | None``: something another app stores about a change
    that reviewers approve with it (the monitoring app's monitor declaration). A value is
    hashed under ``name`` in the content document; ``None`` leaves the key out, so changes
    without one keep the hash they always had. The app voids approvals when it edits it
    (``changes.services.content_part_changed``)."""
    _content_parts[name] = part


def content_parts() -> dict:
    return dict(_content_parts)


# --- closing a deployed change (post-implementation review) ---

_close_parts: list = []


def register_close_part(part) -> None:
    """``part(change, now) -> (reasons, evidence)``: why ``change`` may not close yet (in
    words; any reason refuses the close with 409) and, when it may, the evidence it adds to the
    ``change.closed`` event (a JSON dict, or None). A close that carries evidence issues a
    post-deployment attestation quoting it."""
    if part not in _close_parts:
        _close_parts.append(part)


def close_parts() -> list:
    return list(_close_parts)


_stage_rules: list = []


def register_stage_rule(rule) -> None:
    """``rule(change, environment, number) -> list[str]``: why stage ``number`` (> 1) of a
    staged rollout may not start yet (e.g. an open incident, too little live evidence)."""
    if rule not in _stage_rules:
        _stage_rules.append(rule)


def stage_rules() -> list:
    return list(_stage_rules)
