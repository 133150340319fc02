"""API shapes for environments, the live registry, rollback, rebase and rollout stages."""

from __future__ import annotations

from rest_framework import serializers

from .models import Deployment


class EnvironmentLiveSerializer(serializers.Serializer):
    name = serializers.CharField()
    order = serializers.IntegerField(help_text="Position on the promotion path.")
    requires_previous = serializers.BooleanField(
        help_text="Deploys here must first have reached every earlier environment."
    )
    required_approvals = serializers.IntegerField(allow_null=True)
    requires_staged_rollout = serializers.BooleanField()
    blackout_windows = serializers.ListField(
        child=serializers.DictField(child=serializers.CharField()),
        help_text='Weekday/time ranges such as {"start": "fri 18:00", "end": "mon 06:00"}.',
    )
    time_zone = serializers.CharField()
    live_protocol = serializers.IntegerField(allow_null=True, help_text="Protocol version id.")
    live_version = serializers.CharField(allow_null=True)
    since = serializers.DateTimeField(allow_null=True)
    deployment = serializers.IntegerField(allow_null=True)
    change = serializers.IntegerField(allow_null=True)
    change_reference = serializers.CharField(allow_null=True)
    deployed_by = serializers.CharField(allow_null=True)


class EnvironmentWriteSerializer(serializers.Serializer):
    """An admin's edit of one environment; on update every field is optional (PATCH)."""

    name = serializers.SlugField(max_length=50, help_text="e.g. staging; fixed once created.")
    order = serializers.IntegerField(min_value=1, max_value=32767)
    required_approvals = serializers.IntegerField(
        min_value=1,
        max_value=10,
        allow_null=True,
        required=False,
        help_text="Empty for the system's rule; the last environment may not go below the "
        "criticality floor.",
    )
    requires_previous = serializers.BooleanField(required=False)
    blackout_windows = serializers.ListField(
        child=serializers.JSONField(), required=False, max_length=50
    )
    time_zone = serializers.CharField(max_length=64, required=False)
    requires_staged_rollout = serializers.BooleanField(required=False)

    def validate(self, attrs):
        """A field this endpoint does not take (a rename, a typo) is refused, not dropped."""
        sent = set(self.initial_data) if isinstance(self.initial_data, dict) else set()
        unknown = sorted(sent - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                {k: ["Not an editable field here (the name is fixed once created)."]
                 for k in unknown}
            )  # fmt: skip
        return attrs


class EnvironmentUpdateSerializer(EnvironmentWriteSerializer):
    name = None
    order = serializers.IntegerField(min_value=1, max_value=32767, required=False)


class HistoryEntrySerializer(serializers.ModelSerializer):
    change_reference = serializers.CharField(source="change.reference", read_only=True)
    deployed_by = serializers.CharField(source="deployed_by.username", read_only=True)
    version = serializers.CharField(source="protocol.version", read_only=True, allow_null=True)
    previous_version = serializers.CharField(
        source="previous_protocol.version", read_only=True, allow_null=True
    )
    is_rollback = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = [
            "id", "change", "change_reference", "environment", "protocol", "version",
            "previous_protocol", "previous_version", "content_sha256", "deployed_by",
            "created_at", "blackout_override", "is_rollback",
        ]  # fmt: skip
        read_only_fields = fields

    def get_is_rollback(self, obj) -> bool:
        return obj.change.rollback_of_id is not None


class RollbackSerializer(serializers.Serializer):
    emergency = serializers.BooleanField(
        required=False,
        default=False,
        help_text="File it as an emergency change: one approval to deploy, full review after.",
    )


class RebaseSerializer(serializers.Serializer):
    environment = serializers.CharField(
        max_length=50, required=False, help_text="Default: the environment that moved on."
    )
    version = serializers.CharField(max_length=40, required=False)
    system_prompt = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=200_000,
        help_text="Your resolution of the merged text (omit to take the merge as is).",
    )
    body = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, max_length=200_000
    )


class RebasePreviewSerializer(serializers.Serializer):
    environment = serializers.CharField()
    onto_version = serializers.CharField()
    system_prompt = serializers.CharField()
    body = serializers.CharField(allow_blank=True)
    conflicts = serializers.IntegerField()


class StagesSerializer(serializers.Serializer):
    stages = serializers.ListField(
        child=serializers.JSONField(), help_text="Percentages, increasing, ending at 100."
    )


class StageStartSerializer(serializers.Serializer):
    environment = serializers.CharField(max_length=50)
    stage = serializers.IntegerField(min_value=1, max_value=100)


class StageGateSerializer(serializers.Serializer):
    may_start = serializers.BooleanField()
    reasons = serializers.ListField(child=serializers.CharField())
    environment = serializers.CharField()
    stage = serializers.IntegerField()
    percent = serializers.IntegerField(allow_null=True)


class StageSerializer(serializers.Serializer):
    environment = serializers.CharField()
    number = serializers.IntegerField()
    percent = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    started_by = serializers.CharField(source="started_by.username")
