"""Environments on a system's promotion path and the live registry (what runs where).

Imported by ``changes.models`` so Django sees these models as part of the ``changes`` app.
Design notes: docs/ENVIRONMENTS.md.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

DEFAULT_PATH = (("staging", 10), ("production", 20))


class Environment(models.Model):
    """One environment of one AI system, in the order of its promotion path.

    ``requires_previous``: a change may deploy here only after it was deployed to every
    earlier environment on the path. ``blackout_windows`` are weekday/time ranges in
    ``time_zone`` (see ``changes.environments.parse_windows``).
    """

    system = models.ForeignKey(
        "changes.AISystem", on_delete=models.CASCADE, related_name="environments"
    )
    name = models.SlugField(max_length=50)
    order = models.PositiveSmallIntegerField(help_text="Position on the promotion path.")
    required_approvals = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Leave empty for the system's rule; e.g. 1 for staging.",
    )
    requires_previous = models.BooleanField(
        default=False,
        help_text="Deploys here must first have reached every earlier environment.",
    )
    blackout_windows = models.JSONField(
        default=list,
        blank=True,
        help_text='e.g. [{"start": "fri 18:00", "end": "mon 06:00"}] in the time zone below.',
    )
    time_zone = models.CharField(max_length=64, default="UTC")
    requires_staged_rollout = models.BooleanField(default=False)

    class Meta:
        ordering = ["system_id", "order", "id"]
        constraints = [
            models.UniqueConstraint(fields=["system", "name"], name="uniq_env_name"),
            models.UniqueConstraint(fields=["system", "order"], name="uniq_env_order"),
        ]

    def __str__(self):
        return f"{self.system.name}/{self.name}"

    def clean(self):
        from .environments import check_environment

        check_environment(self)


class LiveVersion(models.Model):
    """The live-registry row of one environment: which protocol runs there now.

    Every deploy locks this row (SELECT ... FOR UPDATE) before comparing the change's base
    with ``protocol``; that lock is what makes two racing deploys serialise.
    """

    environment = models.OneToOneField(Environment, on_delete=models.CASCADE, related_name="live")
    protocol = models.ForeignKey(
        "changes.ProtocolVersion", on_delete=models.PROTECT, null=True, related_name="+"
    )
    deployment = models.ForeignKey(
        "changes.Deployment", on_delete=models.PROTECT, null=True, related_name="+"
    )
    since = models.DateTimeField(null=True)

    def __str__(self):
        return f"{self.environment}: {self.protocol_id}"


class RolloutStage(models.Model):
    """A started stage of a change's staged rollout in one environment (audited)."""

    change = models.ForeignKey(
        "changes.ChangeRequest", on_delete=models.PROTECT, related_name="rollout_stages"
    )
    environment = models.CharField(max_length=50)
    number = models.PositiveSmallIntegerField()
    percent = models.PositiveSmallIntegerField()
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    started_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["change_id", "environment", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["change", "environment", "number"], name="one_start_per_stage"
            ),
        ]

    def __str__(self):
        return f"{self.change_id}/{self.environment} stage {self.number} ({self.percent}%)"
