"""Records of the review-collaboration app. Every write goes through ``reviews.services``."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from changes.models import AISystem, ChangeRequest

# The events people and endpoints can subscribe to (notification kinds = webhook types).
REVIEW_REQUESTED = "review.requested"
REVIEW_GIVEN = "review.given"
EVALUATION_FINISHED = "evaluation.finished"
APPROVALS_VOIDED = "approvals.voided"
DEPLOYED = "change.deployed"
ATTESTATION_READY = "attestation.ready"
INCIDENT_OPENED = "incident.opened"
COMMENT_ADDED = "comment.added"
EVENT_TYPES = [
    (REVIEW_REQUESTED, "A review is requested from you"),
    (REVIEW_GIVEN, "A review was given on your change"),
    (EVALUATION_FINISHED, "Evaluation finished (pass, fail or inconclusive)"),
    (APPROVALS_VOIDED, "Your approval was voided"),
    (DEPLOYED, "A change was deployed"),
    (ATTESTATION_READY, "An attestation is ready"),
    (INCIDENT_OPENED, "An incident was opened"),
    (COMMENT_ADDED, "A comment was added to a discussion"),
]
EVENT_TYPE_NAMES = frozenset(name for name, _ in EVENT_TYPES)


class Notification(models.Model):
    """One event told to one person: a row in their inbox and, if they want it, an e-mail.

    ``(event_id, recipient)`` is unique: a fan-out that runs twice (a retried task, a
    re-sent wake-up) finds the row and sends nothing more. ``email_state`` moves
    none | pending -> sending -> sent (or failed after the last retry) by conditional UPDATEs.
    """

    EMAIL_STATES = [
        ("none", "Not e-mailed"),
        ("pending", "Pending"),
        ("sending", "Sending"),
        ("sent", "Sent"),
        ("failed", "Failed"),
    ]

    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    event_id = models.BigIntegerField(help_text="The audit event this notification tells of.")
    kind = models.CharField(max_length=40, choices=EVENT_TYPES)
    change = models.ForeignKey(
        ChangeRequest, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    title = models.CharField(max_length=300)
    body = models.TextField(blank=True)
    url = models.CharField(max_length=300, blank=True)
    in_inbox = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)
    email_state = models.CharField(max_length=10, choices=EMAIL_STATES, default="none")
    email_attempts = models.PositiveSmallIntegerField(default=0)
    email_error = models.CharField(max_length=300, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["recipient", "read_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["event_id", "recipient"], name="one_notification_per_event_recipient"
            ),
        ]

    def __str__(self):
        return f"{self.kind} for {self.recipient} (event {self.event_id})"


class NotificationPreference(models.Model):
    """A person's choice per event kind; no row means both channels on."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_prefs"
    )
    kind = models.CharField(max_length=40, choices=EVENT_TYPES)
    in_app = models.BooleanField(default=True)
    email = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "kind"], name="one_pref_per_user_kind"),
        ]

    def __str__(self):
        return f"{self.user} {self.kind}: app={self.in_app} email={self.email}"


class ContentSnapshot(models.Model):
    """The exact content a change had under one content hash: what a reviewer saw.

    Written when a change is created or edited and when a review is given, so "what changed
    since your review" can diff the hash a reviewer signed against the current content.
    """

    change = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="+")
    content_sha256 = models.CharField(max_length=64)
    document = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["change", "content_sha256"], name="one_snapshot_per_change_hash"
            ),
        ]

    def __str__(self):
        return f"CR-{self.change_id} @ {self.content_sha256[:12]}"


class ReviewRequest(models.Model):
    """The author asked ``reviewer`` to review ``change``; pending until they review after
    ``requested_at``. A re-request (after an edit) moves ``requested_at`` and the hash."""

    change = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="+")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="review_requests"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField()
    content_sha256 = models.CharField(max_length=64)
    times = models.PositiveSmallIntegerField(default=1)

    class Meta:
        ordering = ["requested_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["change", "reviewer"], name="one_review_request_per_reviewer"
            ),
        ]

    def __str__(self):
        return f"{self.reviewer} on CR-{self.change_id}"


class Thread(models.Model):
    """A discussion on a change, or on one line of its protocol diff; resolvable.

    ``content_sha256`` is the change's hash when the thread was opened (each comment keeps
    its own); ``blocking`` threads left unresolved close the deploy gate.
    """

    PARTS = [("", "The change"), ("system_prompt", "System prompt"), ("body", "Protocol body")]
    SIDES = [("new", "Proposed"), ("old", "Base")]

    change = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="+")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    content_sha256 = models.CharField(max_length=64)
    part = models.CharField(max_length=20, choices=PARTS, blank=True)
    side = models.CharField(max_length=3, choices=SIDES, blank=True)
    line = models.PositiveIntegerField(null=True, blank=True)
    line_text = models.TextField(blank=True)
    blocking = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"thread {self.pk} on CR-{self.change_id}"


class Comment(models.Model):
    """One Markdown comment in a thread (rendered through the project's sanitiser)."""

    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    body = models.TextField()
    content_sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"comment {self.pk} in thread {self.thread_id}"


class WebhookEndpoint(models.Model):
    """An admin-registered receiver of signed event deliveries, for one system or all.

    ``secret`` (Standard Webhooks form ``whsec_<base64>``) is shown once when created; it is
    kept because every delivery is signed with it.
    """

    name = models.CharField(max_length=100)
    url = models.CharField(max_length=2000)
    system = models.ForeignKey(
        AISystem, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    events = models.JSONField(default=list)
    secret = models.CharField(max_length=100, editable=False)
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self):
        return self.name


class WebhookDelivery(models.Model):
    """One event for one endpoint: ``msg_id`` is the ``webhook-id`` header, stable across
    retries and redeliveries so receivers can drop duplicates. pending -> sending ->
    delivered | pending (retry) | failed, by conditional UPDATEs."""

    STATES = [
        ("pending", "Pending"),
        ("sending", "Sending"),
        ("delivered", "Delivered"),
        ("failed", "Failed"),
    ]

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_id = models.BigIntegerField()
    event_type = models.CharField(max_length=40)
    msg_id = models.CharField(max_length=64, unique=True)
    body = models.TextField(help_text="The exact JSON bytes that are signed and sent.")
    status = models.CharField(max_length=10, choices=STATES, default="pending")
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "event_id"], name="one_delivery_per_endpoint_event"
            ),
        ]

    def __str__(self):
        return f"{self.msg_id} -> {self.endpoint}"


class WebhookAttempt(models.Model):
    """The delivery log: one row per HTTP attempt, with its response code or error."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="log")
    at = models.DateTimeField(auto_now_add=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self):
        return f"attempt on {self.delivery_id}: {self.status_code or self.error[:40]}"


class ReviewerRuleSet(models.Model):
    """One version of a system's reviewer rules (CODEOWNERS-like); the newest is in force.

    ``rules`` is a list of {"name", "kind": team|users|any, "team"?, "users"?, "count"}; every
    rule must be met by valid approvals on the current content. Never edited: a save adds
    a version (audited as ``reviewer_rules.saved``).
    """

    system = models.ForeignKey(AISystem, on_delete=models.CASCADE, related_name="+")
    version = models.PositiveIntegerField()
    rules = models.JSONField(default=list)
    author_team_counts = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["system_id", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["system", "version"], name="one_ruleset_version"),
        ]

    def __str__(self):
        return f"rules v{self.version} of {self.system_id}"


class EventFanOut(models.Model):
    """Marks an audit event as fanned out, so the periodic sweep can find the ones whose
    wake-up was lost (broker down at commit) and send them again."""

    event_id = models.BigIntegerField(unique=True)
    done_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"fanned out {self.event_id}"
