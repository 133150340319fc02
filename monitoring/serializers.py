"""API shapes of the monitoring app (input shapes document the schema; parsing is in
``monitoring.ingest``, which streams)."""

from rest_framework import serializers

from .models import Incident, IngestToken


class DecisionInSerializer(serializers.Serializer):
    """One decision, as a JSON array element or one JSONL line."""

    idempotency_key = serializers.CharField(max_length=128, help_text="Unique per system.")
    timestamp = serializers.DateTimeField(help_text="ISO 8601 with a UTC offset.")
    environment = serializers.CharField(max_length=50)
    protocol_sha256 = serializers.RegexField(
        r"^[0-9a-f]{64}$", help_text="Content hash of the protocol version the caller served."
    )
    input = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    output = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, help_text="Truncated past the cap."
    )
    reasoning = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    model_label = serializers.CharField(required=False, allow_blank=True, max_length=100)
    probe = serializers.BooleanField(required=False, help_text="Probe traffic: excluded.")


class LineErrorSerializer(serializers.Serializer):
    line = serializers.IntegerField(help_text="1-based line (JSONL) or element (array).")
    reason = serializers.CharField()


class IngestReportSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField(help_text="Idempotency keys already stored.")
    rejected = serializers.IntegerField()
    truncated = serializers.IntegerField(help_text="Outputs cut at the cap (flagged).")
    unapproved = serializers.IntegerField(help_text="Served under a protocol not live there.")
    errors = LineErrorSerializer(many=True)
    errors_omitted = serializers.IntegerField()
    incidents = serializers.ListField(child=serializers.IntegerField())


class IngestTokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    rate_per_minute = serializers.IntegerField(min_value=1, max_value=100_000, default=600)


class IngestTokenSerializer(serializers.ModelSerializer):
    secret = serializers.CharField(read_only=True, help_text="Shown once; store it now.")

    class Meta:
        model = IngestToken
        fields = ["id", "name", "prefix", "rate_per_minute", "created_at", "secret"]


class IncidentSerializer(serializers.ModelSerializer):
    state = serializers.CharField(help_text="open, acknowledged or resolved")
    kind = serializers.CharField(help_text="unapproved_protocol, discrepancy or override_rate")

    class Meta:
        model = Incident
        fields = [
            "id",
            "system",
            "change",
            "kind",
            "state",
            "environment",
            "summary",
            "details",
            "occurrences",
            "opened_at",
            "resolved_at",
        ]


class OtlpReportSerializer(IngestReportSerializer):
    spans = serializers.IntegerField()
    skipped = serializers.IntegerField(help_text="Spans without gen_ai.* attributes.")
    without_content = serializers.IntegerField(help_text="Accepted with no message content.")
    partialSuccess = serializers.DictField(required=False)  # noqa: N815 - OTLP's field name


class MonitorInSerializer(serializers.Serializer):
    graders = serializers.JSONField(help_text='{"new": grader(s), "legacy": grader(s)}')
    evaluated_condition = serializers.CharField(max_length=60, required=False, allow_blank=True)
    alpha = serializers.FloatField(required=False, default=0.05)
    judge = serializers.JSONField(
        required=False,
        help_text='Optional: {"model": registered judge model, "rate": 0..1, "graders": '
        '{"new": ..., "legacy": ...}}: judged on that fraction of live decisions. Omitted: '
        "the declared judge stays; {}: no judge.",
    )


class MonitorSerializer(serializers.Serializer):
    change = serializers.IntegerField(source="change_id")
    graders = serializers.JSONField()
    evaluated_condition = serializers.CharField()
    alpha = serializers.FloatField()
    judge = serializers.JSONField()
    created_at = serializers.DateTimeField()


class AssessmentSerializer(serializers.Serializer):
    change = serializers.IntegerField()
    environment = serializers.CharField()
    n = serializers.IntegerField()
    new = serializers.IntegerField()
    legacy = serializers.IntegerField()
    rate = serializers.FloatField(allow_null=True)
    cs = serializers.ListField(child=serializers.FloatField())
    alpha = serializers.FloatField()
    reference = serializers.DictField(allow_null=True)
    alarm = serializers.BooleanField()


class MonitoringStatusSerializer(serializers.Serializer):
    live = serializers.DictField(help_text="environment -> live protocol hash and change id")
    assessments = AssessmentSerializer(many=True)
    review = serializers.DictField(help_text="Horvitz-Thompson estimates")
    incidents = IncidentSerializer(many=True)
