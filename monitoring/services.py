"""Writes of the monitoring app: ingestion tokens, decision batches, incidents, reviews."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from changes import audit, permissions
from core.errors import NotAllowed, ValidationFailed

from . import ingest, tickets
from .live import known_environments, live
from .models import Decision, GradeBatch, Incident, IncidentEvent, IngestToken
from .permissions import can_handle_incidents, can_manage_tokens

TOKEN_PREFIX = "pcm_ing_"
MAX_REPORTED_ERRORS = 1000


# ---------------------------------------------------------------------------- tokens


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@transaction.atomic
def ingest_token_create(
    *, actor, system, name: str, rate_per_minute: int = 600
) -> tuple[IngestToken, str]:
    """Create a token for ``system``; returns it with the secret (shown once, never stored)."""
    if not can_manage_tokens(actor, system):
        raise NotAllowed("Only admins and the system's owning team create ingestion tokens.")
    name = (name or "").strip()
    if not name or len(name) > 100 or "\x00" in name:
        raise ValidationFailed("name: required, at most 100 characters.")
    if not 1 <= int(rate_per_minute) <= 100_000:
        raise ValidationFailed("rate_per_minute: between 1 and 100000.")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = IngestToken.objects.create(
        system=system,
        name=name,
        prefix=secret[: len(TOKEN_PREFIX) + 4],
        secret_sha256=hash_secret(secret),
        rate_per_minute=rate_per_minute,
        created_by=actor,
    )
    audit.append(
        actor=actor,
        verb="monitoring.token_created",
        obj=token,
        data={"system": system.name, "name": name, "prefix": token.prefix},
    )
    return token, secret


@transaction.atomic
def ingest_token_revoke(*, actor, token: IngestToken) -> IngestToken:
    """Revoke a token at once (its next request is 401); audited. Idempotent."""
    if not can_manage_tokens(actor, token.system):
        raise NotAllowed("Only admins and the system's owning team revoke ingestion tokens.")
    token = IngestToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit.append(
            actor=actor,
            verb="monitoring.token_revoked",
            obj=token,
            data={"system": token.system.name, "prefix": token.prefix},
        )
    return token


def token_for_secret(secret: str) -> IngestToken | None:
    if not secret.startswith(TOKEN_PREFIX):
        return None
    return (
        IngestToken.objects.select_related("system")
        .filter(secret_sha256=hash_secret(secret), revoked_at__isnull=True)
        .first()
    )


def token_take(token: IngestToken, *, now=None) -> bool:
    """Count one request against the token's per-minute budget; False when spent.

    Two conditional UPDATEs, so concurrent web processes share the count: first take a slot
    in the current window, else start a new window if the old one is over.
    """
    now = now or timezone.now()
    window_start = now - timedelta(seconds=60)
    rows = IngestToken.objects.filter(
        pk=token.pk,
        window_started_at__gt=window_start,
        window_count__lt=F("rate_per_minute"),
    ).update(window_count=F("window_count") + 1)
    if rows:
        return True
    return bool(
        IngestToken.objects.filter(pk=token.pk)
        .filter(Q(window_started_at__isnull=True) | Q(window_started_at__lte=window_start))
        .update(window_started_at=now, window_count=1)
    )


# ---------------------------------------------------------------------------- ingestion


@dataclass
class IngestReport:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    truncated: int = 0
    unapproved: int = 0
    errors: list[dict] = field(default_factory=list)
    errors_omitted: int = 0
    incidents: list[int] = field(default_factory=list)

    def error(self, line: int, reason: str) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"line": line, "reason": reason})
        else:
            self.errors_omitted += 1

    def as_dict(self) -> dict:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "truncated": self.truncated,
            "unapproved": self.unapproved,
            "errors": self.errors,
            "errors_omitted": self.errors_omitted,
            "incidents": self.incidents,
        }


def decisions_ingest(*, token: IngestToken, records) -> IngestReport:
    """Validate and store ``records`` ((line, bytes | error) pairs) in batches.

    Each batch is one transaction: existing idempotency keys are skipped (a replayed batch
    stores nothing twice, and the unique constraint backs this under races), the live
    protocol of each environment is looked up once per request, and decisions served under
    another hash are flagged and open (or bump) an "unapproved protocol" incident.
    """
    system = token.system
    environments = known_environments(system)
    lives = {env: live(system, env) for env in environments}
    report = IngestReport()
    batch: list[tuple[int, ingest.Valid]] = []
    size, budget = settings.MONITORING_INGEST_BATCH, settings.MONITORING_INGEST_BATCH_BYTES
    held = 0  # characters of text the batch holds: the memory bound, whatever the count
    now = timezone.now()
    limits = ingest.Limits.at(now)
    for line, raw in records:
        if isinstance(raw, Exception):
            report.error(line, str(raw))
            continue
        try:
            valid = ingest.validate(raw, environments=environments, now=now, limits=limits)
        except ValueError as error:
            report.error(line, str(error))
            continue
        batch.append((line, valid))
        held += len(valid.input_text) + len(valid.output_text) + len(valid.reasoning)
        if len(batch) >= size or held >= budget:
            _store_batch(token, batch, lives, report)
            batch, held = [], 0
            now = timezone.now()
            limits = ingest.Limits.at(now)
    if batch:
        _store_batch(token, batch, lives, report)
    if report.accepted:
        from . import tasks

        transaction.on_commit(lambda: tasks.enqueue_grading(system.pk))
    return report


def _store_batch(token, batch, lives, report: IngestReport) -> None:
    system = token.system
    seen: dict[str, tuple[int, ingest.Valid]] = {}
    for line, valid in batch:
        if valid.idempotency_key in seen:
            report.duplicates += 1
            continue
        seen[valid.idempotency_key] = (line, valid)
    received = timezone.now()
    with transaction.atomic():
        existing = _existing_keys(system.pk, list(seen))
        rows = []
        flagged: dict[tuple[str, str], int] = {}
        for key, (_line, v) in seen.items():
            if key in existing:
                report.duplicates += 1
                continue
            current = lives[v.environment]
            unapproved = v.protocol_sha256 != current.protocol_sha256
            if unapproved:
                flagged[(v.environment, v.protocol_sha256)] = (
                    flagged.get((v.environment, v.protocol_sha256), 0) + 1
                )
            change_id = None if unapproved or current.change is None else current.change.pk
            rows.append(
                (
                    system.pk, change_id, token.pk, key, v.environment, v.protocol_sha256,
                    v.timestamp, received, v.input_text, v.output_text, v.output_truncated,
                    v.reasoning, v.model_label, v.is_probe, unapproved,
                )
            )  # fmt: skip
        stored = _insert(rows)
        inserted = len(stored)
        # The tickets list exactly the rows this batch stored (a replay stores none).
        tickets.write(system.pk, ((pk, row[1], row[6]) for pk, row in stored))
        report.duplicates += len(rows) - inserted
        report.truncated += sum(1 for _, r in stored if r[10])
        report.accepted += inserted
        report.unapproved += sum(flagged.values())
        for (env, digest), count in flagged.items():
            incident = incident_open(
                system=system,
                change=lives[env].change,
                kind="unapproved_protocol",
                key=f"unapproved:{system.pk}:{env}:{digest}",
                environment=env,
                summary=(
                    f"Unapproved protocol in {env}: decisions were served under protocol "
                    f"{digest[:12]}…, but the live approved protocol is "
                    f"{(lives[env].protocol_sha256 or 'none')[:12]}."
                ),
                details={"protocol_sha256": digest, "live": lives[env].protocol_sha256},
                count=count,
            )
            if incident.pk not in report.incidents:
                report.incidents.append(incident.pk)


DECISION_COLUMNS = (
    "system_id", "change_id", "token_id", "idempotency_key", "environment", "protocol_sha256",
    "timestamp", "received_at", "input_text", "output_text", "output_truncated", "reasoning",
    "model_label", "is_probe", "unapproved",
)  # fmt: skip


def _existing_keys(system_id: int, keys: list[str]) -> set[str]:
    """The keys among ``keys`` this system already stored. PostgreSQL: one array parameter
    bound server-side (``= ANY``): Django's ``__in`` builds and quotes one placeholder per
    key, which for a 1,000-key batch cost more than the COPY of its rows."""
    if connection.vendor != "postgresql":
        return set(
            Decision.objects.filter(system_id=system_id, idempotency_key__in=keys).values_list(
                "idempotency_key", flat=True
            )
        )
    import psycopg

    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            "SELECT idempotency_key FROM monitoring_decision "
            "WHERE system_id = %s AND idempotency_key = ANY(%s::text[])",
            [system_id, keys],
        )
        return {key for (key,) in cursor.fetchall()}


#: One statement for a batch's ids: the ids are taken before the COPY (which returns
#: nothing) so the batch's grade tickets can list them.
_NEXT_IDS_SQL = (
    "SELECT nextval(pg_get_serial_sequence('monitoring_decision', 'id')) "
    "FROM generate_series(1, %s)"
)


def _pg_integrity_error() -> type[Exception]:
    import psycopg

    return psycopg.errors.IntegrityError


def _insert(rows: list[tuple]) -> list[tuple[int, tuple]]:
    """Insert decision rows; returns ``(id, row)`` for each row stored (not the ones a
    concurrent request stored first), so the grade tickets list exactly those.

    PostgreSQL: ids are drawn from the sequence in one statement, then ``COPY`` with the id
    column (several times faster than INSERT for thousands of rows) inside a savepoint; if a
    concurrent request stored one of the keys meanwhile, the COPY fails as a whole and the
    rows go again as ``INSERT ... ON CONFLICT DO NOTHING RETURNING id``. SQLite (one writer
    at a time): the keys already present were skipped by the caller, so the ORM's bulk
    insert stores every row and returns their ids; a conflict re-checks the keys once.
    """
    if not rows:
        return []
    if connection.vendor == "postgresql":
        return _insert_postgresql(rows)
    keys = [row[3] for row in rows]

    def objects(chosen):
        return [Decision(**dict(zip(DECISION_COLUMNS, row, strict=True))) for row in chosen]

    try:
        with transaction.atomic():
            made = Decision.objects.bulk_create(objects(rows))
        return [(o.pk, row) for o, row in zip(made, rows, strict=True)]
    except IntegrityError:
        present = set(
            Decision.objects.filter(system_id=rows[0][0], idempotency_key__in=keys).values_list(
                "idempotency_key", flat=True
            )
        )
        rows = [row for row in rows if row[3] not in present]
        made = Decision.objects.bulk_create(objects(rows))
        return [(o.pk, row) for o, row in zip(made, rows, strict=True)]


def _insert_postgresql(rows: list[tuple]) -> list[tuple[int, tuple]]:
    cursor = connection.cursor().cursor
    cursor.execute(_NEXT_IDS_SQL, [len(rows)])
    ids = [pk for (pk,) in cursor.fetchall()]
    columns = ", ".join(("id", *DECISION_COLUMNS))
    try:
        with (
            transaction.atomic(),
            cursor.copy(f"COPY monitoring_decision ({columns}) FROM STDIN") as copy,
        ):
            for pk, row in zip(ids, rows, strict=True):
                copy.write_row((pk, *row))
        return list(zip(ids, rows, strict=True))
    except (IntegrityError, _pg_integrity_error()):
        # The raw psycopg cursor raises psycopg's own error, not Django's wrapper: both
        # mean a concurrent request stored one of these rows first.
        pass
    marks = ", ".join(["%s"] * (len(DECISION_COLUMNS) + 1))
    cursor = connection.cursor().cursor
    cursor.executemany(
        f"INSERT INTO monitoring_decision ({columns}) VALUES ({marks}) "  # noqa: S608
        "ON CONFLICT DO NOTHING RETURNING id",
        [(pk, *row) for pk, row in zip(ids, rows, strict=True)],
        returning=True,
    )
    stored: set[int] = set()
    while True:
        stored.update(pk for (pk,) in cursor.fetchall())
        if not cursor.nextset():
            break
    return [(pk, row) for pk, row in zip(ids, rows, strict=True) if pk in stored]


# ---------------------------------------------------------------------------- incidents


def incident_open(
    *,
    system,
    change,
    kind: str,
    key: str,
    environment: str,
    summary: str,
    details: dict,
    count: int = 1,
    actor=None,
) -> Incident:
    """Open the incident ``key`` or, if one is already open, add to its occurrences.

    A new incident writes ``incident.opened`` to the audit log; repeats only bump a counter
    (so a flood of bad decisions is one incident, not thousands of events).
    """
    with transaction.atomic():
        current = (
            Incident.objects.select_for_update().filter(key=key).exclude(state="resolved").first()
        )
        if current is not None:
            Incident.objects.filter(pk=current.pk).update(occurrences=F("occurrences") + count)
            return current
        incident = Incident.objects.create(
            system=system,
            change=change,
            kind=kind,
            key=key,
            environment=environment,
            summary=summary,
            details=details,
            occurrences=count,
            opened_at=timezone.now(),
        )
        IncidentEvent.objects.create(incident=incident, actor=actor, what="opened", note=summary)
        audit.append(
            actor=actor,
            verb="incident.opened",
            obj=incident,
            data={
                "system": system.name,
                "system_id": system.pk,
                "change_id": change.pk if change is not None else None,
                "kind": kind,
                "environment": environment,
                "summary": summary,
            },
        )  # the reviews app hears this event and notifies the owners on commit, once
        return incident


INCIDENT_MOVES = {"acknowledge": ("open", "acknowledged"), "resolve": (None, "resolved")}


@transaction.atomic
def incident_transition(*, actor, incident: Incident, action: str, note: str = "") -> Incident:
    """acknowledge (takes ownership) or resolve, with a note; audited."""
    if action not in INCIDENT_MOVES:
        raise ValidationFailed("action: acknowledge or resolve.")
    if not can_handle_incidents(actor, incident.system):
        raise NotAllowed("Only the system's team, engineers or admins handle incidents.")
    incident = Incident.objects.select_for_update().get(pk=incident.pk)
    source, target = INCIDENT_MOVES[action]
    if incident.state == "resolved" or (source and incident.state != source):
        raise ValidationFailed(f"The incident is {incident.state}; cannot {action} it.")
    incident.state = target
    incident.owner = incident.owner or actor
    if target == "resolved":
        incident.resolved_at = timezone.now()
    incident.save(update_fields=["state", "owner", "resolved_at"])
    IncidentEvent.objects.create(incident=incident, actor=actor, what=target, note=note[:2000])
    audit.append(actor=actor, verb=f"incident.{target}", obj=incident, data={"note": note[:2000]})
    return incident


# ---------------------------------------------------------------------------- monitors


def monitor_errors(spec) -> list[str]:
    """What is wrong with a monitor's graders, in words (the suite grader validation)."""
    from evaluations import graders

    from .grading import LIVE_KINDS

    if not isinstance(spec, dict) or set(spec) != {"new", "legacy"}:
        return ["graders: a mapping with exactly the keys new and legacy"]
    problems = []
    for side in ("new", "legacy"):
        for path, message in graders.grader_errors(spec[side]):
            where = ".".join(str(p) for p in (side, *path))
            problems.append(f"graders.{where}: {message}")
        if not problems and not graders.side_kinds(spec[side]) <= LIVE_KINDS:
            problems.append(
                f"graders.{side}: online grading uses local graders; judge graders run on a "
                "sample of live decisions: declare them under judge"
            )
    return problems


@transaction.atomic
def monitor_set(
    *, actor, change, graders: dict, evaluated_condition: str = "", alpha=0.05, judge=None
):
    """Declare how the change's protocol is recognised in live outputs.

    The monitor is part of what reviewers approve: while the change is editable its author
    (or an engineer of the owning team) sets it, the change's content hash moves with it and
    approvals are voided like any content edit (``changes.services.content_part_changed``
    writes the one ``monitoring.monitor_set`` event). A deployed change's monitor changes
    only through a new change; an admin may add the monitor of a deployed change that has
    none (audited, and marked as not approved with the change: its hash stays).
    """
    from changes.services import content_part_changed, lock_change
    from evaluations import graders as g

    from .models import Monitor

    change = lock_change(change.pk)  # the state now, not the caller's copy
    existing = Monitor.objects.filter(change=change).first()
    editable = permissions.can_edit_change(actor, change)
    if not editable and not (existing is None and permissions.can_manage_systems(actor)):
        raise NotAllowed("The monitor is set while the change is editable, by its author.")
    problems = monitor_errors(graders)
    if problems:
        raise ValidationFailed(problems[0], reasons=problems)
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        alpha = -1.0
    if not 0 < alpha < 0.5:  # NaN fails this too
        raise ValidationFailed("alpha: between 0 and 0.5.")
    from . import judging

    if judge is None:  # not given (the page's form): keep the declared judge; {} removes it
        judge = existing.judge if existing is not None else {}
    problems = judging.judge_errors(judge)
    if problems:
        raise ValidationFailed(problems[0], reasons=problems)
    normalised = {side: g.normalise_side(graders[side]) for side in ("new", "legacy")}
    monitor, _ = Monitor.objects.update_or_create(
        change=change,
        defaults={
            "graders": normalised,
            "evaluated_condition": (evaluated_condition or "")[:60],
            "alpha": float(alpha),
            "judge": judging.normalise(judge),
            "approved_with_change": editable,
            "created_by": actor,
        },
    )
    data = {
        "graders": normalised,
        "evaluated_condition": monitor.evaluated_condition,
        **({"judge": monitor.judge} if monitor.judge else {}),
    }
    if editable:
        content_part_changed(
            actor=actor, change_request=change, part="monitor", verb="monitoring.monitor_set",
            data=data,
        )  # fmt: skip
        change.refresh_from_db()
    else:
        audit.append(actor=actor, verb="monitoring.monitor_set", obj=change, data=data)
    return monitor


def monitor_content(change) -> dict | None:
    """The monitor part of ``change``'s signed content (``changes.hooks`` content part)."""
    from .models import Monitor

    if change.pk is None:
        return None
    monitor = Monitor.objects.filter(change_id=change.pk, approved_with_change=True).first()
    return monitor.declaration() if monitor else None


# ---------------------------------------------------------------------------- retention


def decisions_prune(*, older_than_days: int | None = None, chunk: int = 5000, now=None) -> int:
    """Delete graded decisions received more than ``older_than_days`` ago (default
    ``MONITORING_RETENTION_DAYS``), in chunks, and the grade-log rows written before the
    same cutoff. Kept: ungraded decisions (still listed in a grade ticket: not yet
    counted), sampled ones (their review is evidence, and the review item keeps its own
    label), and the rollups the charts read."""
    days = settings.MONITORING_RETENTION_DAYS if older_than_days is None else older_than_days
    if days < 1:
        raise ValidationFailed("older_than_days: at least 1.")
    cutoff = (now or timezone.now()) - timedelta(days=days)
    # Read once: a ticket only ever goes away (graded), and a decision received after the
    # cutoff is no candidate, so a set read before the loop can only keep too much.
    pending = tickets.pending_ids()
    removed, after = 0, 0
    while True:
        ids = list(
            Decision.objects.filter(received_at__lt=cutoff, review__isnull=True, pk__gt=after)
            .order_by("pk")
            .values_list("pk", flat=True)[:chunk]
        )
        if not ids:
            break
        after = ids[-1]
        doomed = [pk for pk in ids if pk not in pending]
        if doomed:
            removed += Decision.objects.filter(pk__in=doomed).delete()[0]
    GradeBatch.objects.filter(graded_at__lt=cutoff).delete()
    return removed
