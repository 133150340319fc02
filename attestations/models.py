"""Issued attestations: one immutable, versioned row per (change, version).

A row is born ``pending`` inside the transaction that approved or deployed the change, with
the facts of that moment (``facts``) and the audit chain head it cites. A worker then claims it
(``pending -> rendering`` by conditional UPDATE), signs the statement, renders the PDF and
fills the row once (``rendering -> ready``), or records why it could not (``failed``), or
refuses to issue it because its facts moved meanwhile (``void``, issue 15). A ready
row is never updated again: ``save()`` refuses every update, the services only use
conditional UPDATEs, and a database trigger (migration 0002) rejects any UPDATE of a ready row.
"""

from __future__ import annotations

from django.db import models

from . import states


class Attestation(models.Model):
    """One attestation of one change at one moment (its last approval, its deployment, or
    its close after the monitoring window: the post-deployment attestation).

    ``version`` counts per change from 1; a new attestation never overwrites an old one. The
    PDF and the DSSE envelope are stored as bytes in the database (the source of truth, and
    reachable from every web and worker machine without shared storage), each with its SHA-256.
    """

    APPROVED = "approved"
    DEPLOYED = "deployed"
    # Post-deployment: issued when a monitored change closes after its monitoring window,
    # quoting the live evidence recorded in its ``change.closed`` event (docs/MONITORING.md).
    CLOSED = "closed"
    REASON_CHOICES = [(APPROVED, "Approved"), (DEPLOYED, "Deployed"), (CLOSED, "Post-deployment")]

    # The statuses are the state graph's (attestations/states.py).
    PENDING = states.PENDING
    RENDERING = states.RENDERING
    READY = states.READY
    FAILED = states.FAILED
    # Never issued: its facts (an approval, the content, the state) no longer held when it
    # was rendered. Terminal; ``error`` says why (issue 15).
    VOID = states.VOID
    STATUS_CHOICES = [
        (PENDING, "Pending"),
        (RENDERING, "Rendering"),
        (READY, "Ready"),
        (FAILED, "Failed"),
        (VOID, "Not issued"),
    ]
    IN_FLIGHT = (PENDING, RENDERING)

    change = models.ForeignKey(
        "changes.ChangeRequest", on_delete=models.PROTECT, related_name="attestations"
    )
    version = models.PositiveIntegerField()
    reason = models.CharField(max_length=10, choices=REASON_CHOICES)
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default=PENDING)
    content_sha256 = models.CharField(
        max_length=64, help_text="The change's content hash when the attestation was issued."
    )
    facts = models.JSONField(
        null=True, blank=True, help_text="The predicate: facts gathered at issue time."
    )
    statement = models.JSONField(null=True, blank=True, help_text="The signed in-toto statement.")
    statement_sha256 = models.CharField(max_length=64, blank=True)
    envelope = models.BinaryField(null=True, blank=True, help_text="The DSSE envelope bytes.")
    envelope_sha256 = models.CharField(max_length=64, blank=True)
    pdf = models.BinaryField(null=True, blank=True)
    pdf_sha256 = models.CharField(
        max_length=64,
        blank=True,
        help_text="SHA-256 of the issued file; verification looks uploads up by it.",
    )
    pdf_size = models.PositiveIntegerField(default=0)
    key_id = models.CharField(max_length=100, blank=True)
    audit_head_id = models.BigIntegerField(null=True, blank=True)
    audit_head_hash = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    rendered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["change", "version"], name="uniq_attestation_version"),
            models.CheckConstraint(
                condition=models.Q(version__gte=1), name="attestation_version_gte_1"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"]),
            models.Index(fields=["change", "-version"]),
            # AddIndex, not db_index: altering the field would remake the table on SQLite
            # and drop the trigger of migration 0002.
            models.Index(fields=["pdf_sha256"], name="attestation_pdf_sha256_idx"),
        ]

    def __str__(self):
        return f"Attestation v{self.version} of CR-{self.change_id} ({self.reason})"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ValueError(
                "Attestations are immutable; the render service fills a pending row once."
            )
        super().save(*args, **kwargs)

    @property
    def is_ready(self) -> bool:
        return self.status == self.READY

    @property
    def is_in_flight(self) -> bool:
        return self.status in self.IN_FLIGHT

    @property
    def file_stem(self) -> str:
        return f"CR-{self.change_id}-attestation-v{self.version}"
