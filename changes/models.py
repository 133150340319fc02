"""Workflow records: teams, AI systems, protocol versions, change requests, reviews,
deployments and the append-only audit log.

Models hold data and small derived facts; every write goes through ``changes.services``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from . import states

CRITICALITY_CHOICES = [
    ("low", "Low"),
    ("medium", "Medium"),
    ("high", "High"),
    ("critical", "Critical"),
]
CROSS_TEAM_CRITICALITIES = frozenset({"high", "critical"})
DEFAULT_REQUIRED_APPROVALS = {"low": 1, "medium": 1, "high": 2, "critical": 2}
# The fewest approvals a confirmed emergency change may deploy on, per criticality. An
# emergency never goes below this, and an unconfirmed one (declared only by its author or
# editors) lowers nothing. See docs/separation-of-duties.md.
EMERGENCY_MIN_APPROVALS = {"low": 1, "medium": 1, "high": 1, "critical": 2}


class Team(models.Model):
    """A group of people who own systems. Membership decides independence for high-risk systems."""

    name = models.CharField(max_length=100, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="teams", blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class AISystem(models.Model):
    """A deployed AI system whose protocol is changed through this product.

    ``target`` is the evaluation target as in the contract; API keys are referenced by the
    name of an environment variable, never stored.
    """

    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    owner_team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="systems")
    criticality = models.CharField(max_length=10, choices=CRITICALITY_CHOICES, default="medium")
    target = models.JSONField(default=dict, blank=True)
    required_approvals = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Leave empty for the default: 1 for low/medium, 2 for high/critical.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "AI system"

    def __str__(self):
        return self.name

    @property
    def approvals_required(self) -> int:
        return self.required_approvals or DEFAULT_REQUIRED_APPROVALS[self.criticality]

    @property
    def requires_cross_team_review(self) -> bool:
        return self.criticality in CROSS_TEAM_CRITICALITIES


class ProtocolVersion(models.Model):
    """One immutable version of a system's protocol (Markdown body and system prompt)."""

    system = models.ForeignKey(AISystem, on_delete=models.PROTECT, related_name="protocols")
    version = models.CharField(max_length=40)
    body = models.TextField(blank=True)
    system_prompt = models.TextField()
    content_sha256 = models.CharField(max_length=64, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["system_id", "created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["system", "version"], name="uniq_protocol_version"),
        ]

    def __str__(self):
        return f"{self.system.name} {self.version}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ValueError("Protocol versions are immutable once created.")
        super().save(*args, **kwargs)


class ChangeRequest(models.Model):
    """A proposed move of a system from one protocol version to another.

    ``content_sha256`` covers everything a reviewer signs (see ``changes.content``); it is
    recomputed by every service that edits the change, and approvals bind to it.
    """

    RISK_CHOICES = CRITICALITY_CHOICES
    TYPE_CHOICES = [("standard", "Standard"), ("normal", "Normal"), ("emergency", "Emergency")]
    STATE_CHOICES = [(s, states.LABELS[s]) for s in states.STATES]

    system = models.ForeignKey(AISystem, on_delete=models.PROTECT, related_name="changes")
    base_protocol = models.ForeignKey(
        ProtocolVersion, on_delete=models.PROTECT, related_name="changes_from"
    )
    proposed_protocol = models.ForeignKey(
        ProtocolVersion, on_delete=models.PROTECT, related_name="changes_to"
    )
    title = models.CharField(max_length=200)
    rationale = models.TextField()
    expected_changes = models.JSONField(default=list, blank=True)
    test_plan = models.TextField()
    risk = models.CharField(max_length=10, choices=RISK_CHOICES, default="medium")
    change_type = models.CharField(max_length=10, choices=TYPE_CHOICES, default="normal")
    rollout_plan = models.TextField(blank=True)
    backout_plan = models.TextField(blank=True)
    state = models.CharField(max_length=20, choices=STATE_CHOICES, default=states.DRAFT)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="authored_changes"
    )
    editors = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="edited_changes", blank=True
    )
    content_sha256 = models.CharField(max_length=64, db_index=True)
    revision = models.PositiveIntegerField(default=1)
    emergency_confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        null=True,
        blank=True,
        help_text="The independent reviewer who confirmed the emergency.",
    )
    emergency_confirmed_sha256 = models.CharField(
        max_length=64,
        blank=True,
        help_text="The content hash the emergency was confirmed for; any edit voids it.",
    )
    retrospective_pending = models.BooleanField(
        default=False, help_text="An emergency change deployed before full review."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    deployed_at = models.DateTimeField(null=True, blank=True)
    # Environments (docs/ENVIRONMENTS.md): a rollback names the change it undoes; ``stages``
    # are the declared rollout percentages, strictly increasing, ending at 100.
    rollback_of = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="rollbacks"
    )
    stages = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["state", "-id"]),
            models.Index(fields=["system", "-id"]),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(base_protocol=models.F("proposed_protocol")),
                name="change_base_differs_from_proposed",
            ),
        ]

    def __str__(self):
        return f"CR-{self.pk}: {self.title}"

    @property
    def reference(self) -> str:
        return f"CR-{self.pk}"

    @property
    def state_label(self) -> str:
        return states.LABELS[self.state]

    @property
    def is_emergency(self) -> bool:
        return self.change_type == "emergency"

    @property
    def emergency_confirmed(self) -> bool:
        """An emergency counts only when someone independent confirmed this exact content."""
        return (
            self.is_emergency
            and self.emergency_confirmed_by_id is not None
            and self.emergency_confirmed_sha256 == self.content_sha256
        )


class Review(models.Model):
    """A reviewer's signed decision on one exact content hash of a change.

    An approval stays valid while the change's ``content_sha256`` equals the one signed and
    ``voided_at`` is empty; an edit voids it. One live approval per reviewer per hash is a
    database constraint.
    """

    DECISIONS = [
        ("approve", "Approve"),
        ("request_changes", "Request changes"),
        ("reject", "Reject"),
    ]

    change = models.ForeignKey(ChangeRequest, on_delete=models.PROTECT, related_name="reviews")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews"
    )
    decision = models.CharField(max_length=20, choices=DECISIONS)
    comment = models.TextField(blank=True)
    content_sha256 = models.CharField(max_length=64)
    evaluation_digest = models.CharField(max_length=64, blank=True)
    signature_meaning = models.TextField()
    independence = models.JSONField(default=dict)
    is_retrospective = models.BooleanField(default=False)
    # An approving reviewer's explicit acknowledgement that the evaluation flagged the
    # model's reasoning as evaluation-aware (a gate with ``max_flagged_reasoning`` needs one
    # before deploy: docs/GATE.md, "Reasoning flags").
    acknowledges_flagged_reasoning = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    voided_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["change", "reviewer", "content_sha256"],
                condition=models.Q(decision="approve", voided_at__isnull=True),
                name="one_live_approval_per_reviewer_per_hash",
            ),
        ]

    def __str__(self):
        return f"{self.get_decision_display()} by {self.reviewer} on {self.change.reference}"

    @property
    def is_valid_approval(self) -> bool:
        return (
            self.decision == "approve"
            and self.voided_at is None
            and self.content_sha256 == self.change.content_sha256
        )


class Deployment(models.Model):
    """A recorded deployment of an approved change to one environment (once per environment)."""

    change = models.ForeignKey(ChangeRequest, on_delete=models.PROTECT, related_name="deployments")
    environment = models.CharField(max_length=50)
    content_sha256 = models.CharField(max_length=64)
    # What the environment ran before and after (null on deployments older than the registry).
    previous_protocol = models.ForeignKey(
        ProtocolVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    protocol = models.ForeignKey(
        ProtocolVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    blackout_override = models.BooleanField(default=False)
    deployed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["change", "environment"], name="one_deploy_per_env"),
        ]

    def __str__(self):
        return f"{self.change.reference} -> {self.environment}"


class AuditEvent(models.Model):
    """One append-only, hash-chained audit record.

    ``hash = sha256(prev_hash + canonical(event))``; the database rejects UPDATE and DELETE
    (triggers installed by migration 0002). Written only by ``changes.audit.append``.
    """

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        # DO_NOTHING: deleting a user must never try to rewrite history.
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
    )
    actor_username = models.CharField(max_length=150, blank=True)
    verb = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["object_type", "object_id"])]
        constraints = [
            # Two appends that read the same head would both claim it: the chain cannot fork.
            models.UniqueConstraint(fields=["prev_hash"], name="audit_prev_hash_unique"),
        ]

    def __str__(self):
        return f"#{self.pk} {self.verb} {self.object_type}:{self.object_id}"


class AuditCheckpoint(models.Model):
    """The database copy of one signed checkpoint of the audit chain.

    The anchor is the file in ``AUDIT_CHECKPOINT_DIR`` (written once, never overwritten);
    this copy lets ``verify_audit`` notice a directory that lost checkpoints, and lets the
    app list them without reading the directory. Written only by
    ``changes.checkpoints.publish_checkpoint``; see docs/AUDIT.md.
    """

    tree_size = models.PositiveBigIntegerField()
    root_hash = models.CharField(max_length=64)  # hex of the RFC 9162 Merkle root
    head_event_id = models.BigIntegerField(null=True, blank=True)
    head_hash = models.CharField(max_length=64, blank=True)
    published_at = models.DateTimeField()
    reason = models.CharField(max_length=32, blank=True)
    file_name = models.CharField(max_length=200, unique=True)
    note = models.TextField()

    class Meta:
        ordering = ["-tree_size", "-published_at"]

    def __str__(self):
        return f"checkpoint {self.tree_size} @ {self.published_at:%Y-%m-%d %H:%M:%S}"


TOKEN_SCOPES = ("read", "write", "deploy", "ingest")


class ApiToken(models.Model):
    """An API token, stored only as a SHA-256 of its key (the key is shown once, at issue).

    Tokens expire, can be rotated and revoked, are revoked when their owner's password
    changes, and carry scopes: ``read`` (safe methods), ``write`` (the rest of what the
    owner's roles allow), ``deploy`` (the deploy endpoint), ``ingest`` (documents fed in:
    suites, protocol versions, attestation uploads). See docs/api-tokens.md.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, db_index=True, help_text="Shown; not secret.")
    key_sha256 = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "API token"

    def __str__(self):
        return f"{self.prefix}… ({self.user})"


from .env_models import Environment, LiveVersion, RolloutStage  # noqa: E402, F401
