"""Writes of the evaluation suites: upload one, and link suites to a change.

A suite is immutable once stored (name + version identify it), so an upload either stores a
new one, returns the identical stored one, or is a conflict. Linking is called through the
workflow's port (``port.DjangoEvaluationPort.link_suites``) inside the change's own
transaction, and refuses, as submitting does again, a suite that may not gate the system.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import IntegrityError, transaction

from changes import audit
from core.errors import Conflict, NotAllowed, ValidationFailed

from . import permissions, registry
from .models import ChangeSuite, Suite
from .suite_schema import SuiteError, parse_suite, suite_sha256


@transaction.atomic
def suite_create(*, actor, text: str, fmt: str = "yaml") -> Suite:
    """Store a suite document (engineer). Writes ``suite.created``.

    Suites are immutable and identified by name + version: re-uploading identical content
    returns the stored suite (no event); the same name + version with other content is a
    conflict (bump the version).
    """
    if not permissions.can_add_suites(actor):
        raise NotAllowed("Only engineers add evaluation suites.")
    fmt = (fmt or "yaml").lower()
    if fmt not in ("yaml", "json"):
        raise ValidationFailed("format: a suite is YAML or JSON.")
    try:
        document = parse_suite(text, fmt)
    except SuiteError as exc:
        raise ValidationFailed(
            exc.errors[0] if exc.errors else "Invalid suite document.",
            code="invalid_suite",
            reasons=exc.errors,
            fields={"suite": exc.errors},
        ) from None
    # The source text is stored and shown as uploaded: comments included.
    registry.refuse_protected_values(text if isinstance(text, str) else text.decode(), "suite")
    registry.suite_judge_validate(document)
    sha = suite_sha256(document)
    existing = Suite.objects.filter(name=document["name"], version=document["version"]).first()
    if existing is not None:
        return _same_or_conflict(existing, sha)
    suite = Suite(
        name=document["name"],
        version=document["version"],
        description=document.get("description", ""),
        document=document,
        source_text=text if isinstance(text, str) else text.decode("utf-8"),
        source_format=fmt,
        content_sha256=sha,
        created_by=actor,
    )
    try:
        with transaction.atomic():
            suite.save()
    except IntegrityError:  # a concurrent upload of the same name + version won the race
        return _same_or_conflict(Suite.objects.get(name=suite.name, version=suite.version), sha)
    audit.append(
        actor=actor,
        verb="suite.created",
        obj=suite,
        data={
            "name": suite.name,
            "version": suite.version,
            "sha256": sha,
            "samples": suite.sample_count,
        },
    )
    return suite


def _same_or_conflict(existing: Suite, sha: str) -> Suite:
    if existing.content_sha256 == sha:
        return existing
    raise Conflict(
        f"Suite {existing.name} v{existing.version} already exists with different content; "
        "suites are immutable, so upload it under a new version.",
        code="duplicate",
    )


# --- links (called through the port, inside the workflow's transactions) ---------------------


def change_suites_set(*, change, suite_ids: Iterable) -> None:
    """Replace the suites linked to ``change`` (no event: the change's own edit event records
    the move of its content hash). Unknown ids are refused, all named."""
    try:
        wanted = {int(s) for s in suite_ids}
    except (TypeError, ValueError):
        raise ValidationFailed("suites: a list of suite ids is expected.") from None
    found = set(Suite.objects.filter(pk__in=wanted).values_list("id", flat=True))
    unknown = sorted(wanted - found)
    if unknown:
        raise ValidationFailed(
            f"suites: unknown suite id(s): {', '.join(map(str, unknown))}.",
            fields={"suites": [f"Unknown suite id {i}." for i in unknown]},
        )
    _refuse_unsafe_links(change, wanted)
    ChangeSuite.objects.filter(change=change).exclude(suite_id__in=wanted).delete()
    have = set(ChangeSuite.objects.filter(change=change).values_list("suite_id", flat=True))
    ChangeSuite.objects.bulk_create(
        [ChangeSuite(change=change, suite_id=s) for s in sorted(wanted - have)]
    )


def _refuse_unsafe_links(change, suite_ids: set) -> None:
    """A suite whose ``new`` grader silence satisfies may not be linked to a change of a high
    or critical system (the same rule is applied again at submit)."""
    from .suite_schema import suite_refusals

    system = getattr(change, "system", None)
    criticality = getattr(system, "criticality", None)
    if not permissions.is_strict(criticality):
        return
    problems = []
    for suite in Suite.objects.filter(pk__in=suite_ids).order_by("name", "version"):
        problems += suite_refusals(suite.document, criticality)
    if problems:
        raise ValidationFailed(
            problems[0], code="unsafe_suite", reasons=problems, fields={"suites": problems}
        )
