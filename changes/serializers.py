"""API serializers: input serializers parse and validate, output serializers render.

Input serializers never save: views hand ``validated_data`` to one service in
``changes.services``. Relation fields resolve ids through the selectors, scoped to the user.
"""

from __future__ import annotations

import re
from datetime import UTC

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from . import hooks, selectors, services, states
from .models import (
    CRITICALITY_CHOICES,
    TOKEN_SCOPES,
    AISystem,
    AuditEvent,
    ChangeRequest,
    Deployment,
    ProtocolVersion,
    Review,
    Team,
)

SHA256_RE = r"^[0-9a-f]{64}$"
MAX_ID = 2**63 - 1  # the largest primary key PostgreSQL's bigint and SQLite's INTEGER hold
# Target keys that would hold a secret in plain text. Targets name secrets registered by an
# admin (``api_key_secret``, ``headers_secret``; older rows may still name environment
# variables); anything else is refused on input and masked on output, in case a row was
# written some other way.
SECRET_KEY_RE = re.compile(
    r"(^|_)(api_?key|access_key|private_key|secret|password|passwd|token|authorization"
    r"|credentials?|headers)$",
    re.I,
)
MASK = "********"
# Fields that hold the *names* of secrets in the admin-managed registry (docs/SECRETS.md), not
# values: shown as stored. (The evaluation engine refuses any value-like content in them.)
SECRET_REFERENCE_KEYS = frozenset({"api_key_secret", "headers_secret"})


def _user_ref(user) -> str | None:
    return user.username if user is not None else None


# --- auth --------------------------------------------------------------------------------


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, style={"input_type": "password"})
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=list(TOKEN_SCOPES)),
        required=False,
        max_length=len(TOKEN_SCOPES),
        help_text="What the token may do; all of read, write, deploy, ingest when omitted.",
    )
    expires_in_days = serializers.IntegerField(
        required=False, min_value=1, help_text="At most API_TOKEN_TTL_DAYS (90)."
    )
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(
        help_text="Send as `Authorization: Token <token>`. Shown once: only its hash is kept."
    )
    prefix = serializers.CharField()
    scopes = serializers.ListField(child=serializers.CharField())
    expires_at = serializers.DateTimeField()


# --- teams, systems, protocols -----------------------------------------------------------


class UserRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class TeamSerializer(serializers.ModelSerializer):
    members = UserRefSerializer(many=True, read_only=True)

    class Meta:
        model = Team
        fields = ["id", "name", "members"]
        read_only_fields = fields


def mask_secrets(value):
    """A copy of ``value`` with every secret-looking key's value masked (``*_env`` names stay)."""
    if isinstance(value, dict):
        return {k: _mask_item(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value


def _mask_item(key, value):
    if str(key).endswith("_env") or key in SECRET_REFERENCE_KEYS:
        return value  # names of environment variables, never their values
    return MASK if SECRET_KEY_RE.search(str(key)) else mask_secrets(value)


def secret_keys(value, path="target") -> list[str]:
    """Paths of every key in ``value`` that would hold a secret in plain text."""
    found = []
    if isinstance(value, dict):
        for k, v in value.items():
            if str(k).endswith("_env") or k in SECRET_REFERENCE_KEYS:
                continue
            if SECRET_KEY_RE.search(str(k)):
                found.append(f"{path}.{k}")
            else:
                found += secret_keys(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += secret_keys(v, f"{path}[{i}]")
    return found


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": True,
        "description": "The evaluation target as stored: secrets are referenced by the name "
        'of a registered secret (`api_key_secret`, `headers_secret`), e.g. `{"kind": '
        '"openai", "base_url": "...", "model": "...", "api_key_secret": "my-model-key"}`.',
    }
)
class TargetField(serializers.JSONField):
    def to_representation(self, value):
        return mask_secrets(super().to_representation(value))


class SystemSerializer(serializers.ModelSerializer):
    owner_team_name = serializers.CharField(source="owner_team.name", read_only=True)
    target = TargetField(read_only=True)
    approvals_required = serializers.IntegerField(
        read_only=True, help_text="Independent approvals needed on the exact content."
    )
    requires_cross_team_review = serializers.BooleanField(
        read_only=True, help_text="High and critical systems need a reviewer from another team."
    )

    class Meta:
        model = AISystem
        fields = [
            "id",
            "name",
            "description",
            "criticality",
            "owner_team",
            "owner_team_name",
            "target",
            "required_approvals",
            "approvals_required",
            "requires_cross_team_review",
            "created_at",
        ]
        read_only_fields = fields


class _TeamField(serializers.PrimaryKeyRelatedField):
    def get_queryset(self):
        return selectors.visible_teams(self.context["request"].user)


class SystemCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    description = serializers.CharField(allow_blank=True, required=False, default="")
    criticality = serializers.ChoiceField(choices=CRITICALITY_CHOICES, default="medium")
    owner_team = _TeamField(queryset=Team.objects.none())
    target = serializers.JSONField(
        required=False,
        help_text='Defaults to {"kind": "reference", "agent": "compliant"}. Never put a secret '
        "here: name a secret an admin registered (api_key_secret, headers_secret).",
    )
    required_approvals = serializers.IntegerField(
        min_value=1, max_value=10, required=False, allow_null=True, default=None
    )

    def validate_target(self, value):
        if value is None:
            return None
        if not isinstance(value, dict):
            raise serializers.ValidationError('Must be an object such as {"kind": "reference"}.')
        leaks = secret_keys(value)
        if leaks:
            raise serializers.ValidationError(
                f"{', '.join(leaks)}: secrets are never stored; name a secret an admin "
                "registered instead (api_key_secret, headers_secret)."
            )
        return value


class ProtocolVersionSerializer(serializers.ModelSerializer):
    created_by = serializers.SerializerMethodField()

    class Meta:
        model = ProtocolVersion
        fields = [
            "id",
            "system",
            "version",
            "body",
            "system_prompt",
            "content_sha256",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields

    def get_created_by(self, obj) -> str | None:
        return _user_ref(obj.created_by)


class ProtocolVersionCreateSerializer(serializers.Serializer):
    version = serializers.CharField(max_length=40)
    body = serializers.CharField(
        allow_blank=True, required=False, default="", trim_whitespace=False,
        help_text="Markdown.",
    )  # fmt: skip
    system_prompt = serializers.CharField(trim_whitespace=False)


class ProtocolVersionRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.CharField()
    content_sha256 = serializers.CharField()


class ProtocolDiffQuerySerializer(serializers.Serializer):
    # ``from`` is a Python keyword: declare it through the class namespace.
    locals()["from"] = serializers.IntegerField(
        min_value=1, max_value=MAX_ID, help_text="Id of the older protocol version."
    )
    to = serializers.IntegerField(
        min_value=1, max_value=MAX_ID, help_text="Id of the newer protocol version."
    )


class ProtocolDiffSerializer(serializers.Serializer):
    locals()["from"] = ProtocolVersionRefSerializer()
    to = ProtocolVersionRefSerializer()
    diff = serializers.CharField(
        help_text="Unified diff (a patch with one file per part: system_prompt, body); empty "
        "when the versions are identical."
    )
    system_prompt_diff = serializers.CharField()
    body_diff = serializers.CharField()


# --- change requests ---------------------------------------------------------------------


class ExpectedChangeSerializer(serializers.Serializer):
    behaviour = serializers.CharField(max_length=5000)
    before = serializers.CharField(max_length=5000, allow_blank=True, required=False, default="")
    after = serializers.CharField(max_length=5000, allow_blank=True, required=False, default="")


class _SystemField(serializers.PrimaryKeyRelatedField):
    def get_queryset(self):
        return selectors.visible_systems(self.context["request"].user)


class _ProtocolField(serializers.PrimaryKeyRelatedField):
    def get_queryset(self):
        return selectors.visible_protocols(self.context["request"].user)


def _text(field: str, **kwargs):
    # Markdown keeps its leading whitespace (an indented first line is a code block).
    return serializers.CharField(
        max_length=services.TEXT_LIMITS[field], trim_whitespace=False, **kwargs
    )


class ChangeWriteSerializer(serializers.Serializer):
    """Filing (POST, every required field) and editing (PATCH, any subset) a change."""

    system = _SystemField(queryset=AISystem.objects.none())
    base_protocol = _ProtocolField(queryset=ProtocolVersion.objects.none())
    proposed_protocol = _ProtocolField(queryset=ProtocolVersion.objects.none())
    title = serializers.CharField(max_length=services.TEXT_LIMITS["title"])
    rationale = _text("rationale", help_text="Markdown.")
    expected_changes = ExpectedChangeSerializer(many=True, required=False)
    test_plan = _text("test_plan", help_text="Markdown.")
    suites = serializers.ListField(
        # Bounded like the id column: a larger number is a 400, not an overflow in the query.
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID),
        required=False,
        help_text="Ids of the evaluation suites to run on submit.",
    )
    risk = serializers.ChoiceField(choices=ChangeRequest.RISK_CHOICES, required=False)
    change_type = serializers.ChoiceField(choices=ChangeRequest.TYPE_CHOICES, required=False)
    rollout_plan = _text("rollout_plan", allow_blank=True, required=False)
    backout_plan = _text("backout_plan", allow_blank=True, required=False)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if "expected_changes" in value:
            value["expected_changes"] = [dict(row) for row in value["expected_changes"]]
        return value


class ChangeSummarySerializer(serializers.ModelSerializer):
    """One row of the change list: no per-row queries (no gate, no reviews)."""

    system_name = serializers.CharField(source="system.name", read_only=True)
    author = serializers.CharField(source="author.username", read_only=True)
    reference = serializers.CharField(read_only=True, help_text="CR-<id>")
    state_label = serializers.CharField(read_only=True)

    class Meta:
        model = ChangeRequest
        fields = [
            "id",
            "reference",
            "title",
            "system",
            "system_name",
            "state",
            "state_label",
            "risk",
            "change_type",
            "author",
            "content_sha256",
            "revision",
            "retrospective_pending",
            "created_at",
            "updated_at",
            "submitted_at",
            "deployed_at",
        ]
        read_only_fields = fields


class OpenChangeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    reference = serializers.CharField()
    title = serializers.CharField()
    state = serializers.CharField()
    base_version = serializers.CharField()
    author = serializers.CharField()


class GateSerializer(serializers.Serializer):
    deployable = serializers.BooleanField()
    reasons = serializers.ListField(
        child=serializers.CharField(), help_text="Every unmet condition, in words."
    )
    state = serializers.CharField()
    content_sha256 = serializers.CharField()
    approvals = serializers.IntegerField(help_text="Valid independent approvals now.")
    approvals_required = serializers.IntegerField()
    environment = serializers.CharField(
        allow_null=True, help_text="The environment judged (default: the last on the path)."
    )
    codes = serializers.ListField(
        child=serializers.CharField(),
        help_text="Machine codes of the reasons: stale_base, out_of_order, blackout, ...",
    )
    live_version = serializers.CharField(
        allow_null=True, required=False, help_text="The protocol version live there now."
    )
    open_changes = OpenChangeSerializer(many=True, help_text="Other open changes on the system.")
    notes = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Said beside the reasons, never closing the gate: e.g. a run judged under "
        "an approved policy exception (the loosened value, the floor, the approvers).",
    )


class ReviewSerializer(serializers.ModelSerializer):
    reviewer = serializers.CharField(source="reviewer.username", read_only=True)
    is_current = serializers.SerializerMethodField(
        help_text="An approval that is not voided and binds to the change's current content."
    )

    class Meta:
        model = Review
        fields = [
            "id",
            "change",
            "reviewer",
            "decision",
            "comment",
            "content_sha256",
            "evaluation_digest",
            "signature_meaning",
            "independence",
            "is_retrospective",
            "acknowledges_flagged_reasoning",
            "is_current",
            "created_at",
            "voided_at",
            "voided_reason",
        ]
        read_only_fields = fields

    def get_is_current(self, obj) -> bool:
        return obj.is_valid_approval


class ReviewSummarySerializer(serializers.Serializer):
    total = serializers.IntegerField()
    approvals = serializers.IntegerField(help_text="Live approvals on the current content.")
    approvals_required = serializers.IntegerField()
    changes_requested = serializers.IntegerField()
    rejections = serializers.IntegerField()
    voided = serializers.IntegerField()


class ChangeDetailSerializer(ChangeSummarySerializer):
    """Everything about one change, with its reviews and the deploy gate."""

    base_protocol_version = serializers.CharField(source="base_protocol.version", read_only=True)
    proposed_protocol_version = serializers.CharField(
        source="proposed_protocol.version", read_only=True
    )
    expected_changes = ExpectedChangeSerializer(many=True, read_only=True)
    suites = serializers.SerializerMethodField()
    editors = serializers.SerializerMethodField()
    reviews = ReviewSerializer(many=True, read_only=True)
    review_summary = serializers.SerializerMethodField()
    gate = serializers.SerializerMethodField()

    class Meta(ChangeSummarySerializer.Meta):
        fields = [
            *ChangeSummarySerializer.Meta.fields,
            "base_protocol",
            "base_protocol_version",
            "proposed_protocol",
            "proposed_protocol_version",
            "rationale",
            "expected_changes",
            "test_plan",
            "suites",
            "rollout_plan",
            "backout_plan",
            "editors",
            "reviews",
            "review_summary",
            "gate",
            "rollback_of",  # the change this one rolls back (docs/ENVIRONMENTS.md)
            "stages",
        ]
        read_only_fields = fields

    def get_suites(self, obj) -> list[int]:
        return [ref["id"] for ref in hooks.evaluation().suite_refs(obj)]

    def get_editors(self, obj) -> list[str]:
        return [u.username for u in obj.editors.all()]

    def _gate(self, obj) -> dict:
        cached = getattr(obj, "_api_gate", None)
        if cached is None:
            request = self.context.get("request")
            cached = obj._api_gate = selectors.gate(obj, user=getattr(request, "user", None))
        return cached

    @extend_schema_field(ReviewSummarySerializer)
    def get_review_summary(self, obj) -> dict:
        reviews = list(obj.reviews.all())
        gate = self._gate(obj)
        return {
            "total": len(reviews),
            "approvals": gate["approvals"],
            "approvals_required": gate["approvals_required"],
            "changes_requested": sum(r.decision == "request_changes" for r in reviews),
            "rejections": sum(r.decision == "reject" for r in reviews),
            "voided": sum(r.voided_at is not None for r in reviews),
        }

    @extend_schema_field(GateSerializer)
    def get_gate(self, obj) -> dict:
        return self._gate(obj)


class NoBodySerializer(serializers.Serializer):
    """Operations that take no input."""


class WithdrawSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=1000, allow_blank=True, required=False, default="")


class ReviewCreateSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=Review.DECISIONS)
    comment = serializers.CharField(
        max_length=20_000, allow_blank=True, required=False, default="",
        help_text="Required for request_changes and reject.",
    )  # fmt: skip
    password = serializers.CharField(
        write_only=True,
        max_length=4096,
        style={"input_type": "password"},
        help_text="Your current password: signing re-authenticates you.",
    )
    content_sha256 = serializers.RegexField(
        SHA256_RE,
        help_text="Required: the content hash you reviewed (from the change's detail). If the "
        "change moved on since, 409 stale_content: you never sign content you did not see.",
    )
    acknowledge_flagged_reasoning = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Approvals only: you acknowledge that the evaluation flagged the model's "
        "reasoning as evaluation-aware. A gate with max_flagged_reasoning stays closed until "
        "an approving reviewer does.",
    )


class DeploySerializer(serializers.Serializer):
    environment = serializers.CharField(
        max_length=50,
        required=False,
        default=None,
        help_text="Default: the last environment on the system's path (e.g. production).",
    )
    blackout_override = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Deploy inside a blackout window; needs one approval more than usual.",
    )


class DeploymentSerializer(serializers.ModelSerializer):
    deployed_by = serializers.CharField(source="deployed_by.username", read_only=True)

    class Meta:
        model = Deployment
        fields = [
            "id", "change", "environment", "content_sha256", "deployed_by", "created_at",
            "previous_protocol", "protocol", "blackout_override",
        ]  # fmt: skip
        read_only_fields = fields


# --- audit -------------------------------------------------------------------------------


def audit_time(value) -> str:
    """The timestamp exactly as ``audit.canonical_event`` hashes it (UTC, microseconds), so an
    exported event can be re-hashed by an auditor's script."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AuditTimeField(serializers.DateTimeField):
    def to_representation(self, value):
        return audit_time(value)


class AuditEventSerializer(serializers.ModelSerializer):
    created_at = AuditTimeField(read_only=True)
    actor_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor_id",
            "actor_username",
            "verb",
            "object_type",
            "object_id",
            "data",
            "prev_hash",
            "hash",
        ]
        read_only_fields = fields


class AuditQuerySerializer(serializers.Serializer):
    verb = serializers.CharField(
        required=False, max_length=64, help_text="Prefix: `change.` matches every change event."
    )
    actor = serializers.CharField(required=False, max_length=150, help_text="Username.")
    object_type = serializers.CharField(
        required=False, max_length=64, help_text="e.g. `changes.changerequest`."
    )
    object_id = serializers.CharField(required=False, max_length=64)
    since = serializers.DateTimeField(required=False, help_text="Inclusive.")
    until = serializers.DateTimeField(required=False, help_text="Inclusive.")


class AuditVerifySerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    events = serializers.IntegerField(help_text="Events verified (before the first bad one).")
    first_bad_event = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField(allow_null=True)
    head_id = serializers.IntegerField(allow_null=True)
    head_hash = serializers.CharField(allow_null=True)
    checkpoint = serializers.CharField(
        allow_null=True,
        help_text="The newest signed checkpoint the chain was checked against (its file name).",
    )


class ChangeWaitQuerySerializer(serializers.Serializer):
    """``?wait_for=<state>&timeout=<s>`` on a change's detail: a long-poll."""

    wait_for = serializers.ChoiceField(
        choices=list(states.STATES),
        required=False,
        help_text="Answer once the change is in this state, or can no longer get there in this "
        "round (the `X-Wait-Outcome` header says which), or when `timeout` runs out.",
    )
    timeout = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=60,
        help_text="Seconds to wait at most (0 to 60, default 30); only with `wait_for`.",
    )

    def validate(self, attrs):
        if "timeout" in attrs and "wait_for" not in attrs:
            raise serializers.ValidationError({"timeout": ["Only meaningful with `wait_for`."]})
        return attrs
