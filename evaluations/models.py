"""Evaluation records: suites, the change->suite links, runs, batches (units of work with a
lease) and samples (one graded reply each).

The database is the source of truth for run state; the broker only carries wake-ups. Unique
constraints make every write idempotent: one sample per (run, scenario, condition, cue,
epoch), one batch per (run, index), one live run per (change, suite).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Suite(models.Model):
    """A versioned evaluation suite document (see CONTRACT.md), stored normalised with the
    source text and a content hash. Immutable once created."""

    name = models.CharField(max_length=120)
    version = models.CharField(max_length=40)
    description = models.TextField(blank=True)
    document = models.JSONField(help_text="The normalised suite document.")
    source_text = models.TextField(help_text="The document exactly as uploaded.")
    source_format = models.CharField(max_length=4, choices=[("yaml", "YAML"), ("json", "JSON")])
    content_sha256 = models.CharField(max_length=64, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="uniq_suite_name_version"),
        ]

    def __str__(self):
        return f"{self.name} v{self.version}"

    @property
    def sample_count(self) -> int:
        """Samples per run; for a suite without ``epochs``, the planned budget under the
        medium policy (a run plans it again for its system's criticality)."""
        doc = self.document
        cues = sum(len(c["cues"]) for c in doc["conditions"].values())
        return len(doc["scenarios"]) * cues * self.epochs

    @property
    def epochs(self) -> int:
        if self.document.get("epochs"):
            return int(self.document["epochs"])
        from .gates import policy_for, run_epochs

        return run_epochs(self.document, policy_for("medium", self.document.get("gate")))


class ChangeSuite(models.Model):
    """Links a change request to a suite it must pass (the change never imports this app)."""

    change = models.ForeignKey(
        "changes.ChangeRequest", on_delete=models.CASCADE, related_name="suite_links"
    )
    suite = models.ForeignKey(Suite, on_delete=models.PROTECT, related_name="change_links")

    class Meta:
        ordering = ["suite__name"]
        constraints = [
            models.UniqueConstraint(fields=["change", "suite"], name="uniq_change_suite"),
        ]

    def __str__(self):
        return f"{self.change_id} -> {self.suite}"


class EvaluationRun(models.Model):
    """One suite evaluated against one content hash of a change, on the system's target with
    the proposed protocol. Old runs stay on record, linked to the content they evaluated."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    ERRORED = "errored"
    CANCELLED = "cancelled"
    STATUS_CHOICES = [
        (QUEUED, "Queued"),
        (RUNNING, "Running"),
        (COMPLETED, "Completed"),
        (ERRORED, "Errored"),
        (CANCELLED, "Cancelled"),
    ]
    LIVE_STATUSES = (QUEUED, RUNNING)
    VERDICT_CHOICES = [("pass", "Pass"), ("fail", "Fail"), ("inconclusive", "Inconclusive")]

    change = models.ForeignKey(
        "changes.ChangeRequest", on_delete=models.PROTECT, related_name="evaluation_runs"
    )
    suite = models.ForeignKey(Suite, on_delete=models.PROTECT, related_name="runs")
    content_sha256 = models.CharField(max_length=64, db_index=True)
    protocol = models.ForeignKey(
        "changes.ProtocolVersion", on_delete=models.PROTECT, related_name="+"
    )
    system_prompt = models.TextField()
    target = models.JSONField(help_text="The target config as stored (env var names, no keys).")
    target_identity = models.JSONField(default=dict, help_text="kind, model, host: never a key.")
    policy = models.JSONField(default=dict)
    seed = models.BigIntegerField(default=0)
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default=QUEUED)
    verdict = models.CharField(max_length=12, choices=VERDICT_CHOICES, blank=True)
    reasons = models.JSONField(default=list, blank=True)
    stats = models.JSONField(default=dict, blank=True)
    interim = models.JSONField(
        null=True,
        blank=True,
        help_text="A live run's statistics so far, judged when a batch is recorded: "
        '{"n", "last", "stats", "verdict"} (n samples, the newest id). Polls read it.',
    )
    total_samples = models.PositiveIntegerField(default=0)
    done_samples = models.PositiveIntegerField(default=0)
    error_samples = models.PositiveIntegerField(default=0)
    result_digest = models.CharField(max_length=64, blank=True)
    status_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["change", "suite"],
                condition=models.Q(status__in=["queued", "running"]),
                name="one_live_run_per_change_suite",
            ),
        ]

    def __str__(self):
        return f"Run {self.pk} ({self.suite}) for CR-{self.change_id}"

    @property
    def is_live(self) -> bool:
        return self.status in self.LIVE_STATUSES


class Batch(models.Model):
    """A slice of a run's samples: the unit a worker claims with a lease.

    A worker claims it with a conditional UPDATE (pending, or leased with an expired lease);
    the periodic reaper re-queues batches whose lease expired (a killed worker).
    """

    PENDING = "pending"
    LEASED = "leased"
    DONE = "done"
    STATUS_CHOICES = [(PENDING, "Pending"), (LEASED, "Leased"), (DONE, "Done")]

    run = models.ForeignKey(EvaluationRun, on_delete=models.CASCADE, related_name="batches")
    index = models.PositiveIntegerField()
    keys = models.JSONField(help_text="[[scenario_id, condition, cue_index, epoch], ...]")
    status = models.CharField(max_length=8, choices=STATUS_CHOICES, default=PENDING)
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run_id", "index"]
        constraints = [
            models.UniqueConstraint(fields=["run", "index"], name="uniq_batch_index"),
        ]
        indexes = [models.Index(fields=["status", "lease_expires_at"])]

    def __str__(self):
        return f"Batch {self.index} of run {self.run_id}"


# What a worker records per sample (services write these; the API reads them back).
SAMPLE_RESULT_FIELDS = (
    "scenario_id",
    "condition",
    "cue_index",
    "epoch",
    "label",
    "output",
    "reasoning",
    "af_reasoning",
    "evidence",
    "error",
    "latency_ms",
    "attempts",
)


class Sample(models.Model):
    """One graded reply. Unique per (run, scenario, condition, cue, epoch): a retried batch
    can never write a sample twice."""

    LABEL_CHOICES = [
        ("new", "Follows the new protocol"),
        ("legacy", "Follows the legacy protocol"),
        ("other", "Other"),
        ("empty", "Empty reply"),
        ("error", "Error"),
    ]

    run = models.ForeignKey(EvaluationRun, on_delete=models.CASCADE, related_name="samples")
    scenario_id = models.CharField(max_length=120)
    condition = models.CharField(max_length=60)
    cue_index = models.PositiveSmallIntegerField()
    epoch = models.PositiveSmallIntegerField()
    label = models.CharField(max_length=6, choices=LABEL_CHOICES)
    output = models.TextField(blank=True)
    reasoning = models.TextField(blank=True)
    af_reasoning = models.BooleanField(default=False)
    evidence = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run_id", "scenario_id", "condition", "cue_index", "epoch"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "scenario_id", "condition", "cue_index", "epoch"],
                name="uniq_sample_per_cell",
            ),
        ]
        indexes = [models.Index(fields=["run", "condition", "label"])]

    def __str__(self):
        return f"{self.scenario_id}/{self.condition}/{self.cue_index}/{self.epoch}: {self.label}"


class RegisteredSecret(models.Model):
    """A named secret an admin registered: where its value lives and who may use it.

    The value itself is never stored here nor shown by any page or API: ``source`` says
    whether ``source_key`` names an environment variable of the workers or a key of the
    secrets file (``EVAL_SECRETS_FILE``). Targets, judges and other outbound configs refer to
    a secret by ``name`` only; a system's target may use it when the system's name is in
    ``allowed_systems``, a judge on behalf of a suite when the suite's name is in
    ``allowed_suites`` (``"*"``: every suite). See docs/SECRETS.md.
    """

    ENV = "env"
    FILE = "file"
    SOURCE_CHOICES = [(ENV, "Environment variable"), (FILE, "Secrets file key")]

    name = models.CharField(
        max_length=80, unique=True, help_text="Lower-case letters, digits, . _ - (e.g. judge-key)."
    )
    source = models.CharField(max_length=4, choices=SOURCE_CHOICES, default=ENV)
    source_key = models.CharField(
        max_length=200, help_text="The environment variable's name, or the secrets-file key."
    )
    allowed_systems = models.JSONField(
        default=list, blank=True, help_text="Names of the AI systems whose target may use it."
    )
    allowed_suites = models.JSONField(
        default=list,
        blank=True,
        help_text='Names of the suites whose judge may use it ("*" for every suite).',
    )
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "registered secret"

    def __str__(self):
        return self.name


class JudgeModel(models.Model):
    """A judge model an admin registered (like a system's target): suites pick one by name.

    ``config`` is an OpenAI-compatible target config (``base_url`` under the host guard,
    ``model``, sampling settings) whose key, if any, is a registered secret
    (``api_key_secret``). Suite authors can only choose among these by name, so no suite
    decides where a judge call, and the key with it, is sent.
    """

    name = models.CharField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    config = models.JSONField(help_text='{"kind": "openai", "base_url": ..., "model": ...}')
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "judge model"

    def __str__(self):
        return self.name


class PolicyException(models.Model):
    """An explicit, audited loosening of one gate threshold for one change (issue 16.2).

    Requested by an engineer who may edit the change (which key, to what, why); it takes
    effect only once an admin *and* an independent reviewer (two different people, neither
    the author, the requester nor a protocol author) approved it, and only while the
    change's content hash is the one it was requested for: an edit voids it, as it voids
    approvals. Whether it still stands is re-checked at every gate (``evaluations.exceptions``).
    """

    change = models.ForeignKey(
        "changes.ChangeRequest", on_delete=models.PROTECT, related_name="policy_exceptions"
    )
    key = models.CharField(max_length=40, help_text="The gate threshold, e.g. max_gap.")
    value = models.JSONField(help_text="The looser value asked for.")
    floor = models.JSONField(help_text="The criticality floor it loosens (at request time).")
    criticality = models.CharField(max_length=16)
    reason = models.TextField()
    content_sha256 = models.CharField(max_length=64)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField(auto_now_add=True)
    admin_approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    admin_approved_at = models.DateTimeField(null=True)
    reviewer_approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    reviewer_approved_at = models.DateTimeField(null=True)
    voided_at = models.DateTimeField(null=True)
    void_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["change_id", "id"]

    def __str__(self):
        return f"{self.reference} {self.key}={self.value!r} on CR-{self.change_id}"

    @property
    def reference(self) -> str:
        return f"PE-{self.pk}"

    @property
    def approved(self) -> bool:
        return self.admin_approver_id is not None and self.reviewer_approver_id is not None
