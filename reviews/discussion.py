"""Discussion threads on a change and on lines of its protocol diff (issue 14, item 4)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from changes import audit
from changes.models import ChangeRequest
from core.errors import NotAllowed, ValidationFailed

from .models import Comment, Thread
from .permissions import may_comment, may_resolve

MAX_BODY = 20_000


def _clean_body(body) -> str:
    if not isinstance(body, str) or not body.strip():
        raise ValidationFailed("body: a comment needs text.")
    if "\x00" in body:
        raise ValidationFailed("body: null characters are not allowed.")
    if len(body) > MAX_BODY:
        raise ValidationFailed(f"body: at most {MAX_BODY} characters.")
    return body


def _anchor(change: ChangeRequest, part, side, line) -> tuple[str, str, int | None, str]:
    part = part or ""
    if part == "":
        if line not in (None, ""):
            raise ValidationFailed("line: give part (system_prompt or body) with a line.")
        return "", "", None, ""
    if part not in ("system_prompt", "body"):
        raise ValidationFailed("part: must be system_prompt or body (or empty for the change).")
    side = side or "new"
    if side not in ("new", "old"):
        raise ValidationFailed("side: must be new (proposed) or old (base).")
    try:
        line = int(line)
    except (TypeError, ValueError):
        raise ValidationFailed("line: a line number of the diff is required.")
    protocol = change.proposed_protocol if side == "new" else change.base_protocol
    lines = str(getattr(protocol, part) or "").replace("\r\n", "\n").split("\n")
    if not 1 <= line <= len(lines):
        raise ValidationFailed(
            f"line: {protocol.version} {part} has lines 1 to {len(lines)}, not {line}."
        )
    return part, side, line, lines[line - 1][:1000]


def _participants(thread: Thread) -> list[int]:
    ids = {thread.author_id, *thread.comments.values_list("author_id", flat=True)}
    return sorted(ids)


def _excerpt(body: str) -> str:
    return " ".join(body.split())[:200]


@transaction.atomic
def thread_open(
    *, actor, change: ChangeRequest, body, part="", side="", line=None, blocking=False
) -> Thread:
    """Open a thread with its first comment. Writes ``comment.added`` (participants are told)."""
    if not may_comment(actor):
        raise NotAllowed("Only engineers, reviewers and admins take part in discussions.")
    body = _clean_body(body)
    part, side, line, line_text = _anchor(change, part, side, line)
    if not isinstance(blocking, bool):
        raise ValidationFailed("blocking: must be true or false.")
    thread = Thread.objects.create(
        change=change,
        author=actor,
        content_sha256=change.content_sha256,
        part=part,
        side=side,
        line=line,
        line_text=line_text,
        blocking=blocking,
    )
    comment = Comment.objects.create(
        thread=thread, author=actor, body=body, content_sha256=change.content_sha256
    )
    _audit_comment(actor, change, thread, comment)
    return thread


@transaction.atomic
def comment_add(*, actor, thread: Thread, body) -> Comment:
    """Reply in a thread (a resolved one too). Writes ``comment.added``."""
    if not may_comment(actor):
        raise NotAllowed("Only engineers, reviewers and admins take part in discussions.")
    body = _clean_body(body)
    change = thread.change
    comment = Comment.objects.create(
        thread=thread, author=actor, body=body, content_sha256=change.content_sha256
    )
    _audit_comment(actor, change, thread, comment)
    return comment


def _audit_comment(actor, change, thread, comment) -> None:
    audit.append(
        actor=actor,
        verb="comment.added",
        obj=change,
        data={
            "thread": thread.pk,
            "comment": comment.pk,
            "content_sha256": comment.content_sha256,
            "part": thread.part,
            "line": thread.line,
            "blocking": thread.blocking,
            "excerpt": _excerpt(comment.body),
            "participants": _participants(thread),
        },
    )


@transaction.atomic
def thread_resolve(*, actor, thread: Thread, resolved: bool) -> Thread:
    """Resolve or reopen. The thread's author, the change's author or an admin may.
    Writes ``thread.resolved`` or ``thread.reopened``."""
    thread = Thread.objects.select_for_update().select_related("change").get(pk=thread.pk)
    change = thread.change
    if not may_resolve(actor, thread, change):
        raise NotAllowed("Only the thread's author, the change's author or an admin resolves it.")
    if not isinstance(resolved, bool):
        raise ValidationFailed("resolved: must be true or false.")
    if (thread.resolved_at is not None) == resolved:
        return thread  # already so: no event
    thread.resolved_at = timezone.now() if resolved else None
    thread.resolved_by = actor if resolved else None
    thread.save(update_fields=["resolved_at", "resolved_by"])
    audit.append(
        actor=actor,
        verb="thread.resolved" if resolved else "thread.reopened",
        obj=change,
        data={"thread": thread.pk},
    )
    return thread


def threads_of(change: ChangeRequest) -> list[Thread]:
    return list(
        Thread.objects.filter(change=change)
        .select_related("author", "resolved_by")
        .prefetch_related("comments__author")
    )


def gate_reasons(change: ChangeRequest) -> list[str]:
    """The gate rule: every unresolved blocking thread keeps the change from deploying."""
    open_blocking = Thread.objects.filter(change=change, blocking=True, resolved_at__isnull=True)
    return [
        f"Blocking discussion #{t.pk} by {t.author.username} is unresolved."
        for t in open_blocking.select_related("author")
    ]


def counts(change: ChangeRequest) -> dict:
    rows = Thread.objects.filter(change=change)
    return {
        "threads": rows.count(),
        "resolved": rows.filter(resolved_at__isnull=False).count(),
        "unresolved": rows.filter(resolved_at__isnull=True).count(),
        "unresolved_blocking": rows.filter(resolved_at__isnull=True, blocking=True).count(),
    }


def attestation_facts(change) -> dict:
    """Thread counts for the attested content hash, for the attestation's review section.

    Threads keep the hash they were opened on, so the counts are those of the content the
    attestation signs; threads opened on earlier content are counted apart, because a reader
    weighing "0 unresolved" must know whether the talk happened on this text or an older one.
    """
    rows = Thread.objects.filter(change=change)
    here = rows.filter(content_sha256=change.content_sha256)
    return {
        "content_sha256": change.content_sha256,
        "threads": here.count(),
        "resolved": here.filter(resolved_at__isnull=False).count(),
        "unresolved": here.filter(resolved_at__isnull=True).count(),
        "unresolved_blocking": here.filter(resolved_at__isnull=True, blocking=True).count(),
        "earlier_content_threads": rows.exclude(content_sha256=change.content_sha256).count(),
    }
