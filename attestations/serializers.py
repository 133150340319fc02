"""API shapes for attestations: read-only rows, the list query, and verification."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .models import Attestation


class AttestationLinksSerializer(serializers.Serializer):
    self = serializers.CharField()
    pdf = serializers.CharField(allow_null=True)
    envelope = serializers.CharField(allow_null=True)


class StandingCauseSerializer(serializers.Serializer):
    code = serializers.CharField()
    why = serializers.CharField()
    at = serializers.CharField(allow_null=True)


class StandingSerializer(serializers.Serializer):
    standing = serializers.ChoiceField(choices=["current", "superseded"])
    superseded_by = serializers.DictField(
        allow_null=True, help_text="The newer attestation (id, version, reason), if any."
    )
    superseded_at = serializers.CharField(allow_null=True)
    why = serializers.CharField(allow_blank=True)
    causes = StandingCauseSerializer(many=True)


class AttestationSerializer(serializers.ModelSerializer):
    """One attestation version; the bytes are downloads (``links``), never inline."""

    change_reference = serializers.SerializerMethodField()
    system = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()
    standing = serializers.SerializerMethodField()

    class Meta:
        model = Attestation
        fields = [
            "id",
            "change",
            "change_reference",
            "system",
            "version",
            "reason",
            "status",
            "content_sha256",
            "statement_sha256",
            "envelope_sha256",
            "pdf_sha256",
            "pdf_size",
            "key_id",
            "audit_head_id",
            "audit_head_hash",
            "attempts",
            "error",
            "created_at",
            "rendered_at",
            "standing",
            "links",
        ]
        read_only_fields = fields

    def get_change_reference(self, obj) -> str:
        return f"CR-{obj.change_id}"

    @extend_schema_field(
        {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
        }
    )
    def get_system(self, obj) -> dict:
        system = obj.change.system
        return {"id": system.pk, "name": system.name}

    @extend_schema_field(StandingSerializer(allow_null=True))
    def get_standing(self, obj) -> dict | None:
        """``current``/``superseded`` (why, by which, when) for a ready row, else null.

        List views pass ``standings`` (computed for the page at once) in the context."""
        if obj.status != Attestation.READY:
            return None
        known = self.context.get("standings")
        if known is not None and obj.pk in known:
            return known[obj.pk].as_dict()
        from .standing import standing_of

        return standing_of(obj).as_dict()

    @extend_schema_field(AttestationLinksSerializer)
    def get_links(self, obj) -> dict:
        request = self.context.get("request")

        def url(name):
            path = reverse(name, kwargs={"pk": obj.pk})
            return request.build_absolute_uri(path) if request else path

        ready = obj.status == Attestation.READY
        return {
            "self": url("api-attestation-detail"),
            "pdf": url("api-attestation-pdf") if ready else None,
            "envelope": url("api-attestation-envelope") if ready else None,
        }


class AttestationDetailSerializer(AttestationSerializer):
    """One attestation with its signed statement (the predicate holds every fact)."""

    statement = serializers.JSONField(read_only=True, allow_null=True)

    class Meta(AttestationSerializer.Meta):
        fields = [*AttestationSerializer.Meta.fields, "statement"]
        read_only_fields = fields


class AttestationQuerySerializer(serializers.Serializer):
    """Filters of the auditor list."""

    system = serializers.CharField(
        required=False, help_text="An AI system id, or its exact name.", max_length=120
    )
    change = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    reason = serializers.ChoiceField(choices=Attestation.REASON_CHOICES, required=False)
    status = serializers.ChoiceField(choices=Attestation.STATUS_CHOICES, required=False)
    since = serializers.DateField(required=False, help_text="Issued on or after this day (UTC).")
    until = serializers.DateField(required=False, help_text="Issued on or before this day (UTC).")

    def validate(self, attrs):
        since, until = attrs.get("since"), attrs.get("until")
        if since and until and since > until:
            raise serializers.ValidationError({"until": "Must not be before 'since'."})
        return attrs


class VerifyUploadSerializer(serializers.Serializer):
    file = serializers.FileField(
        help_text="The attestation PDF (at most 20 MB).", allow_empty_file=True
    )


class CheckSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="Stable machine name of the check.")
    label = serializers.CharField(help_text="What was checked, in words.")
    ok = serializers.BooleanField()
    detail = serializers.CharField(allow_blank=True, help_text="What was found.")


class VerifyResultSerializer(serializers.Serializer):
    valid = serializers.BooleanField(
        help_text="True only when every check passed: the file is intact, signed by this "
        "deployment and issued by it."
    )
    standing = serializers.ChoiceField(
        choices=["current", "superseded"],
        allow_null=True,
        help_text="For a valid file: whether its facts are still the latest word (null when "
        "not valid).",
    )
    standing_detail = StandingSerializer(allow_null=True)
    failed = serializers.ListField(
        child=serializers.CharField(), help_text="Each failed check, as a sentence."
    )
    checks = CheckSerializer(many=True, help_text="Every check, in the order it ran.")
    change = serializers.IntegerField(
        allow_null=True, help_text="The change the signed statement names, if it exists."
    )
    attestation = serializers.IntegerField(
        allow_null=True, help_text="The stored attestation with that change and version."
    )
    envelope_sha256 = serializers.CharField(allow_null=True)
    pdf_sha256 = serializers.CharField()


class CertificateSerializer(serializers.Serializer):
    key_id = serializers.CharField(help_text="The Ed25519 key id that signs the statements.")
    ed25519_public_key_pem = serializers.CharField()
    certificate_pem = serializers.CharField(help_text="The PAdES signing certificate.")
    certificate_sha256 = serializers.CharField(help_text="SHA-256 fingerprint of its DER.")
    ca_certificate_pem = serializers.CharField(help_text="The deployment's attestation CA.")
    ca_certificate_sha256 = serializers.CharField()
    subject = serializers.CharField()
    not_after = serializers.CharField()
