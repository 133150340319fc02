"""Records of deployed behaviour: live decisions, the monitors that grade them, per-window
rollups, the review sample and incidents. Every write goes through ``monitoring.services``;
see docs/MONITORING.md for the method.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from changes.models import AISystem, ChangeRequest


def validate_label_fractions(value) -> None:
    """``{"new"|"legacy"|"other"|"error": fraction in [0, 1]}``."""
    if not isinstance(value, dict):
        raise ValidationError("A mapping of grader label to sampling fraction.")
    for key, fraction in value.items():
        if key not in ("new", "legacy", "other", "error"):
            raise ValidationError(f"Unknown grader label {key!r} (new, legacy, other, error).")
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise ValidationError(f"{key}: a number between 0 and 1.")
        if not 0 <= fraction <= 1:
            raise ValidationError(f"{key}: a number between 0 and 1.")


LABEL_CHOICES = [("new", "New protocol"), ("legacy", "Legacy protocol"), ("other", "Other")]


class IngestToken(models.Model):
    """A bearer token that may post decisions for ONE system (never a user token).

    Only the SHA-256 of the secret is stored; the secret is shown once at creation.
    ``window_*`` hold a fixed one-minute request counter (the per-token rate limit), updated
    with conditional UPDATEs so several web processes share one count.
    """

    system = models.ForeignKey(AISystem, on_delete=models.CASCADE, related_name="ingest_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="The first characters, to recognise it.")
    secret_sha256 = models.CharField(max_length=64, unique=True)
    rate_per_minute = models.PositiveIntegerField(default=600)
    window_started_at = models.DateTimeField(null=True, blank=True)
    window_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["system_id", "-id"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…) for {self.system}"


class Decision(models.Model):
    """One decision the deployed system made, as its operator reported it.

    ``unapproved`` is decided at ingestion: the hash the caller says it served is not the one
    live in that environment. ``change`` is the live change it was served under (when
    approved). The row is never updated after ingestion: pending grading is a
    :class:`GradeTicket`, the grader's label a :class:`GradeBatch` row (``monitoring.grading``;
    ``selectors.labels_for`` answers "what label did decision X get").
    """

    # No index of its own: the idempotency and (system, timestamp) indexes lead with it, and
    # every index costs each insert.
    system = models.ForeignKey(
        AISystem, on_delete=models.PROTECT, related_name="decisions", db_index=False
    )
    change = models.ForeignKey(
        ChangeRequest, on_delete=models.PROTECT, null=True, blank=True, related_name="decisions"
    )
    token = models.ForeignKey(IngestToken, on_delete=models.SET_NULL, null=True, blank=True)
    idempotency_key = models.CharField(max_length=128)
    environment = models.CharField(max_length=50)
    protocol_sha256 = models.CharField(max_length=64)
    timestamp = models.DateTimeField()
    received_at = models.DateTimeField()
    input_text = models.TextField(blank=True)
    output_text = models.TextField(blank=True)
    output_truncated = models.BooleanField(default=False)
    reasoning = models.TextField(blank=True)
    model_label = models.CharField(max_length=100, blank=True)
    is_probe = models.BooleanField(default=False)
    unapproved = models.BooleanField(default=False)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # With the timestamp: on PostgreSQL the table is partitioned by it, and unique
            # constraints must contain the partition key (monitoring/partitions.py). Ingestion
            # checks the key alone first; this is the backstop for racing replays.
            models.UniqueConstraint(
                fields=["system", "idempotency_key", "timestamp"],
                name="decision_idempotency_per_system_ts",
            ),
        ]
        indexes = [models.Index(fields=["system", "timestamp"])]

    def __str__(self):
        return f"decision {self.pk} of {self.system_id} in {self.environment}"


class GradeTicket(models.Model):
    """Decisions of one change waiting to be graded, written by ingestion in the same
    transaction as the decisions (at most ``MONITORING_GRADE_BATCH`` ids each). Grading
    claims tickets, appends the grades, and deletes the tickets in one transaction, so a
    decision is graded exactly once and the decision row itself is never rewritten (an
    UPDATE per decision cost more than the whole grading budget: docs/MONITORING.md).
    ``ts_min``/``ts_max`` let the grader's read prune the monthly partitions."""

    change = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="+")
    system = models.ForeignKey(AISystem, on_delete=models.CASCADE, related_name="+")
    ids = models.JSONField(help_text="The decision ids, ascending.")
    size = models.PositiveIntegerField(help_text="How many ids (the claim sums these).")
    first_id = models.BigIntegerField()
    last_id = models.BigIntegerField()
    ts_min = models.DateTimeField()
    ts_max = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"grade ticket {self.pk}: {len(self.ids)} decisions of {self.change_id}"


#: One character per decision in ``GradeBatch.labels``.
LABEL_CODES = {"new": "n", "legacy": "l", "other": "o", "": "e"}
CODE_LABELS = {code: label for label, code in LABEL_CODES.items()}


class GradeBatch(models.Model):
    """The grade log: the labels one grading batch gave the decisions of one change,
    appended once (never updated). ``labels[i]`` is the label of ``ids[i]`` (n/l/o/e, e for
    a grader error whose message is in ``errors`` by decision id). Pruned with the
    decisions' retention; review items and judge verdicts keep the label they need."""

    change = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="+")
    graded_at = models.DateTimeField()
    first_id = models.BigIntegerField()
    last_id = models.BigIntegerField()
    ids = models.JSONField()
    labels = models.TextField()
    errors = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["last_id"], name="gradebatch_last_id"),
            models.Index(fields=["graded_at"], name="gradebatch_graded_at"),
        ]

    def __str__(self):
        return f"grades of {len(self.labels)} decisions of {self.change_id}"


class Monitor(models.Model):
    """How a change's protocol is recognised in live outputs: the suite grader kinds
    (``{"new": ..., "legacy": ...}``, see ``evaluations.graders``), and which evaluated
    condition is the deployment-like one the live rate is compared with."""

    change = models.OneToOneField(ChangeRequest, on_delete=models.CASCADE, related_name="monitor")
    graders = models.JSONField()
    evaluated_condition = models.CharField(max_length=60, blank=True)
    alpha = models.FloatField(default=0.05)
    judge = models.JSONField(
        default=dict,
        blank=True,
        help_text='Optional: {"model": <registered judge model>, "rate": 0..1, "graders": '
        '{"new": ..., "legacy": ...}} graded on that fraction of live decisions.',
    )
    approved_with_change = models.BooleanField(
        default=True,
        help_text="Declared while the change was editable, so part of its content hash "
        "(False: added by an admin after deploy, outside what reviewers signed).",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"monitor of {self.change.reference}"

    def declaration(self) -> dict:
        """What reviewers approve with the change (hashed into its content)."""
        out = {
            "graders": self.graders,
            "evaluated_condition": self.evaluated_condition,
            "alpha": self.alpha,
        }
        if self.judge:  # only when declared: monitors without a judge keep their hash
            out["judge"] = self.judge
        return out


class Rollup(models.Model):
    """Graded-decision counts per change, environment and window (the charts read these)."""

    change = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="rollups")
    environment = models.CharField(max_length=50)
    window_start = models.DateTimeField()
    n = models.PositiveIntegerField(default=0)
    new = models.PositiveIntegerField(default=0)
    legacy = models.PositiveIntegerField(default=0)
    other = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(
        default=0, help_text="Graded with a grader error (not in n): part of the review population."
    )

    class Meta:
        ordering = ["change_id", "environment", "window_start"]
        constraints = [
            models.UniqueConstraint(
                fields=["change", "environment", "window_start"], name="one_rollup_per_window"
            ),
        ]

    def __str__(self):
        return f"{self.change_id}/{self.environment} @ {self.window_start:%Y-%m-%d %H:%M}"


class ReviewConfig(models.Model):
    """Per system: the base sampling fraction and per-grader-label overrides, e.g.
    ``{"legacy": 0.5, "other": 0.2}`` to oversample the suspicious strata."""

    system = models.OneToOneField(AISystem, on_delete=models.CASCADE, related_name="review_config")
    fraction = models.FloatField(
        default=0.02, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    label_fractions = models.JSONField(
        default=dict, blank=True, validators=[validate_label_fractions]
    )
    max_override_rate = models.FloatField(
        default=0.10,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="An incident opens when the override rate is shown above this.",
    )

    def __str__(self):
        return f"review sampling of {self.system_id}: {self.fraction:.3f}"


class ReviewItem(models.Model):
    """A sampled decision, with the inclusion probability it was drawn with (so estimates
    weight it by ``1 / probability``), and the human verdict once reviewed."""

    VERDICTS = [
        ("agree_new", "Agrees with the new protocol"),
        ("follows_legacy", "Follows the legacy protocol"),
        ("override", "Override: I would have decided differently"),
    ]

    # Not a database foreign key: PostgreSQL only references a partitioned table through a
    # key containing its partition key. The ORM still cascades; partition retention keeps
    # sampled decisions (monitoring/partitions.py).
    decision = models.OneToOneField(
        Decision, on_delete=models.CASCADE, related_name="review", db_constraint=False
    )
    system = models.ForeignKey(AISystem, on_delete=models.CASCADE, related_name="review_items")
    stratum = models.CharField(max_length=80)
    probability = models.FloatField()
    label = models.CharField(
        max_length=6,
        choices=LABEL_CHOICES,
        blank=True,
        help_text="The grader's label when sampled ('': a grader error).",
    )
    verdict = models.CharField(max_length=16, choices=VERDICTS, blank=True)
    comment = models.TextField(blank=True)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["system", "reviewed_at"])]

    def __str__(self):
        return f"review of decision {self.decision_id}"


class Incident(models.Model):
    """Something in live behaviour crossed its bound. One open incident per ``key``."""

    KINDS = [
        ("unapproved_protocol", "Unapproved protocol in production"),
        ("discrepancy", "Live rate below the evaluated rate"),
        ("override_rate", "Override rate above its bound"),
        ("probe_drift", "Deployment-like probes below the evaluated rate"),
    ]
    STATES = [("open", "Open"), ("acknowledged", "Acknowledged"), ("resolved", "Resolved")]

    system = models.ForeignKey(AISystem, on_delete=models.PROTECT, related_name="incidents")
    change = models.ForeignKey(
        ChangeRequest, on_delete=models.PROTECT, null=True, blank=True, related_name="incidents"
    )
    kind = models.CharField(max_length=24, choices=KINDS)
    key = models.CharField(max_length=200)
    state = models.CharField(max_length=12, choices=STATES, default="open")
    environment = models.CharField(max_length=50, blank=True)
    summary = models.TextField()
    details = models.JSONField(default=dict, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    occurrences = models.PositiveIntegerField(default=1)
    opened_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=~models.Q(state="resolved"), name="one_open_incident"
            ),
        ]

    def __str__(self):
        return f"INC-{self.pk}: {self.get_kind_display()}"


class IncidentEvent(models.Model):
    """The incident's timeline (the audit log carries the same events, hash-chained)."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    what = models.CharField(max_length=40)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{self.what} on incident {self.incident_id}"


class ProbeRun(models.Model):
    """One small deployment-like probe of a deployed change: its suite's deployment-like
    condition run against the system's target after deploy (``monitoring.probes``). Probe
    results never mix with live decisions; their cumulative rate is compared with the
    pre-deploy evaluation like the live one."""

    change = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="probes")
    suite_name = models.CharField(max_length=120)
    condition = models.CharField(max_length=60)
    n = models.PositiveIntegerField(default=0)
    new = models.PositiveIntegerField(default=0)
    legacy = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    reference_rate = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"probe of {self.change_id} ({self.new}/{self.n})"


class JudgeVerdict(models.Model):
    """The judge's label of one sampled live decision (``monitoring.judging``): the monitor's
    judge graders, asked through a registered judge model on ``judge.rate`` of the decisions.
    ``label`` "error" counts a call that failed or votes without a majority (unparsable
    votes count against both answers), never a guess. ``decision_id`` is not a foreign key
    so the decision table may be partitioned; one verdict per decision."""

    change = models.ForeignKey(
        ChangeRequest, on_delete=models.CASCADE, related_name="judge_verdicts"
    )
    decision_id = models.BigIntegerField(unique=True)
    environment = models.CharField(max_length=50)
    label = models.CharField(max_length=6)
    grader_label = models.CharField(max_length=6, blank=True)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"judge verdict {self.label} on decision {self.decision_id}"
