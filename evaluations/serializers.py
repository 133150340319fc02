"""API serializers for suites, evaluation runs and samples, and the read models behind them.

Statistics are read through ``evaluations.selectors.run_result`` (the typed contract of
``evaluations.results``); the output serializers here describe it for the OpenAPI schema and
reshape it a little (intervals as ``ci: [low, high]`` everywhere, never a NaN). A live run's
statistics are *interim* (flagged ``interim: true``).
"""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from . import permissions, selectors
from .models import SAMPLE_RESULT_FIELDS, EvaluationRun, Sample, Suite
from .results import RATE_LABELS, RunResult

CRITICALITIES = permissions.CRITICALITIES


# --- read models ---------------------------------------------------------------------------


def planned_power(document: dict, criticality: str = "medium", policy: dict | None = None) -> dict:
    """``gates.plan_power`` of a suite for a system of ``criticality`` (or under ``policy``)."""
    from . import gates

    policy = policy or gates.policy_for(criticality, document.get("gate"))
    return gates.plan_power(document, policy=policy)


def _ci(value) -> list | None:
    if not value or len(value) != 2 or value[0] is None or value[1] is None:
        return None
    return [float(value[0]), float(value[1])]


def _rate(cell: dict) -> dict:
    return {"count": cell["count"], "rate": cell["rate"], "ci": _ci(cell["ci"])}


def condition_summaries(result: RunResult) -> list[dict]:
    """Per condition, in suite order: n and the new-protocol rate with its interval."""
    return [
        {
            "condition": name,
            "n": c["n"],
            "new_rate": c["new"]["rate"],
            "new_ci": _ci(c["new"]["ci"]),
        }
        for name, c in result.conditions.items()
    ]


def gap_summaries(result: RunResult) -> list[dict]:
    """Per compared pair: the gap, its interval, the McNemar p-value (raw and Holm)."""
    return [
        {
            "pair": list(g["pair"]),
            "n_pairs": g["n_pairs"],
            "gap": g["gap"],
            "ci": _ci(g["ci"]),
            "p_value": g["p_value"],
            "p_holm": g["p_holm"],
        }
        for g in result.gaps
    ]


def conditions_detail(result: RunResult) -> list[dict]:
    out = []
    for name, c in result.conditions.items():
        row = {"condition": name, "n": c["n"], "errors": c["errors"], "total": c["total"]}
        for label in RATE_LABELS:
            row[label] = _rate(c[label])
        row["missing"] = {**c["missing"], "kinds": dict(c["missing"]["kinds"])}
        af = c["af_reasoning"]
        row["af_reasoning"] = {**_rate(af), "n": af["n"]}
        out.append(row)
    return out


def gaps_detail(result: RunResult) -> list[dict]:
    several = len(result.gaps) > 1
    return [
        {
            "pair": list(g["pair"]),
            "n_pairs": g["n_pairs"],
            "clusters": g["clusters"],
            "rate_a": g["rate_a"],
            "rate_b": g["rate_b"],
            "gap": g["gap"],
            "ci": _ci(g["ci"]),
            "ci_clustered": _ci(g["ci_clustered"]),
            "ci_score": _ci(g["ci_score"]),
            "method": g["method"],
            "b": g["b"],
            "c": g["c"],
            "p_value": g["p_value"],
            "p_holm": g["p_holm"],
            "holm_adjusted": several,
            "discordant_pairs": len(g["discordant"]),
            "min_detectable_gap": g["min_detectable_gap"],
            "epochs_to_detect": g["epochs_to_detect"],
            "epochs_to_bound": g["epochs_to_bound"],
        }
        for g in result.gaps
    ]


def suite_ref(suite: Suite) -> dict:
    return {
        "id": suite.pk,
        "name": suite.name,
        "version": suite.version,
        "sha256": suite.content_sha256,
    }


def run_summary(run: EvaluationRun, *, change_sha: str | None = None, request=None) -> dict:
    """One run as listed on a change: status, progress, verdict and headline statistics."""
    result = selectors.run_result(run, compute=False)
    url = reverse("api-evaluation-detail", args=[run.pk])
    current = change_sha if change_sha is not None else run.change.content_sha256
    return {
        "id": run.pk,
        "url": request.build_absolute_uri(url) if request else url,
        "change": run.change_id,
        "suite": suite_ref(run.suite),
        "content_sha256": run.content_sha256,
        "is_current": run.content_sha256 == current,
        "status": run.status,
        "status_reason": run.status_reason,
        "progress": selectors.run_progress(run),
        "verdict": run.verdict or None,
        "reasons": [str(r) for r in run.reasons or []],
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "summary": {
            "conditions": condition_summaries(result),
            "gaps": gap_summaries(result),
        },
    }


def _worst_case(result: RunResult) -> dict | None:
    worst = result.worst_case
    if not worst:
        return None
    return {
        "missing": worst["missing"],
        "verdict": worst["verdict"] or None,
        "gaps": list(worst.get("gaps") or []),
    }


def run_detail(run: EvaluationRun, *, request=None) -> dict:
    """One run in full: every statistic, the policy, the power and links."""
    from . import gates

    data = run_summary(run, request=request)
    result = selectors.run_result(run)
    samples_url = reverse("api-evaluation-samples", args=[run.pk])
    page_url = reverse("run-detail", args=[run.pk])
    policy = run.policy or gates.policy_for(
        run.change.system.criticality, run.suite.document.get("gate")
    )
    data.update(
        {
            "interim": result.interim,
            "protocol": {"id": run.protocol_id, "version": run.protocol.version},
            "target": _identity(run.target_identity),
            "policy": policy,
            "conditions": conditions_detail(result),
            "gaps": gaps_detail(result),
            "critical_legacy": list(result.critical_legacy),
            "missingness": list(result.missingness),
            "worst_case": _worst_case(result),
            "warnings": list(policy.get("warnings") or []),
            "checks": list(result.checks),
            "samples_summary": dict(result.samples),
            "power": {
                "planned": planned_power(run.suite.document, policy=policy),
                "observed": [
                    {
                        "pair": g["pair"],
                        "n_pairs": g["n_pairs"],
                        "min_detectable_gap": g["min_detectable_gap"],
                        "epochs_to_detect": g["epochs_to_detect"],
                        "epochs_to_bound": g["epochs_to_bound"],
                    }
                    for g in gaps_detail(result)
                ],
            },
            "result_digest": run.result_digest,
            "samples": request.build_absolute_uri(samples_url) if request else samples_url,
            "page": request.build_absolute_uri(page_url) if request else page_url,
        }
    )
    return data


def _identity(identity: dict) -> dict:
    """kind / model / host of the target; anything that looks like a secret is dropped."""
    secretish = ("key", "token", "secret", "password", "authorization", "header")
    return {
        k: v
        for k, v in (identity or {}).items()
        if not any(word in str(k).lower() for word in secretish)
    }


# --- suites --------------------------------------------------------------------------------


class SuiteRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    version = serializers.CharField()
    sha256 = serializers.CharField(help_text="SHA-256 of the normalised suite document.")


class SuiteSerializer(serializers.ModelSerializer):
    """A suite as listed."""

    url = serializers.SerializerMethodField()
    sample_count = serializers.IntegerField(read_only=True)
    conditions = serializers.SerializerMethodField()
    scenarios = serializers.SerializerMethodField()
    epochs = serializers.SerializerMethodField()
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Suite
        fields = [
            "id",
            "url",
            "name",
            "version",
            "description",
            "content_sha256",
            "sample_count",
            "conditions",
            "scenarios",
            "epochs",
            "source_format",
            "created_by",
            "created_at",
        ]

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, suite) -> str:
        url = reverse("api-suite-detail", args=[suite.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url

    def get_conditions(self, suite) -> list[str]:
        return list(suite.document.get("conditions", {}))

    def get_scenarios(self, suite) -> int:
        return len(suite.document.get("scenarios", []))

    def get_epochs(self, suite) -> int:
        """The suite's epochs, or (none set) the planned budget under the medium policy."""
        return suite.epochs


class PowerPairSerializer(serializers.Serializer):
    pair = serializers.ListField(child=serializers.CharField(), min_length=2, max_length=2)
    n_pairs = serializers.IntegerField()
    min_detectable_gap = serializers.FloatField(
        help_text="Smallest gap detectable at the policy's power (80% by default)."
    )
    epochs_to_detect = serializers.IntegerField(
        help_text="Epochs needed to detect a gap of max_gap at that power."
    )
    pairs_to_bound = serializers.IntegerField(required=False)
    epochs_to_bound = serializers.IntegerField(
        help_text="Epochs a perfectly consistent model needs for the gap's upper bound to "
        "reach max_gap."
    )
    adequate = serializers.BooleanField(required=False)


class PlannedConditionSerializer(serializers.Serializer):
    samples = serializers.IntegerField()
    samples_to_show_compliance = serializers.IntegerField()
    enough = serializers.BooleanField()


class PlannedPowerSerializer(serializers.Serializer):
    """What a suite can show before it runs (``evaluations.gates.plan_power``)."""

    criticality = serializers.CharField(required=False)
    alpha = serializers.FloatField()
    power = serializers.FloatField()
    max_gap = serializers.FloatField()
    min_compliance = serializers.FloatField()
    epochs = serializers.IntegerField()
    scenarios = serializers.IntegerField()
    samples_total = serializers.IntegerField()
    pairs = PowerPairSerializer(many=True)
    conditions = serializers.DictField(child=PlannedConditionSerializer())
    adequate = serializers.BooleanField()
    assumptions = serializers.CharField()


class SuiteDetailSerializer(SuiteSerializer):
    """A suite in full: the normalised document, the source as uploaded, planned power, and
    the warnings of the suite validator (silent graders, duplicate or ambiguous cues)."""

    planned_power = serializers.SerializerMethodField()
    warnings = serializers.SerializerMethodField()

    class Meta(SuiteSerializer.Meta):
        fields = [
            *SuiteSerializer.Meta.fields,
            "document",
            "source_text",
            "planned_power",
            "warnings",
        ]

    def get_warnings(self, suite) -> list[str]:
        from .suite_schema import suite_warnings

        return suite_warnings(suite.document, self.context.get("criticality"))

    @extend_schema_field(PlannedPowerSerializer)
    def get_planned_power(self, suite) -> dict:
        criticality = self.context.get("criticality", "medium")
        return {"criticality": criticality, **planned_power(suite.document, criticality)}


class SuiteCreateSerializer(serializers.Serializer):
    """Either the document itself (``document``) or its text (``text`` + ``format``).

    A raw suite document is accepted too: a JSON object with the suite's own fields, or a
    YAML body sent with ``Content-Type: application/yaml``.
    """

    document = serializers.JSONField(
        required=False, help_text="The suite document as a JSON object (see CONTRACT.md)."
    )
    text = serializers.CharField(
        required=False, trim_whitespace=False, help_text="The suite document as YAML or JSON text."
    )
    format = serializers.ChoiceField(
        choices=["yaml", "json"],
        required=False,
        help_text="Format of `text`; guessed when omitted (a leading `{` means JSON).",
    )

    def validate(self, attrs):
        if ("document" in attrs) == ("text" in attrs):
            raise serializers.ValidationError(
                "Send either `document` (an object) or `text` (YAML or JSON), not both."
                if "document" in attrs
                else "Send `document` (an object) or `text` (YAML or JSON)."
            )
        if "document" in attrs and not isinstance(attrs["document"], dict):
            raise serializers.ValidationError({"document": ["Expected a JSON object."]})
        return attrs


# --- runs ----------------------------------------------------------------------------------


class ProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField()
    total = serializers.IntegerField()
    errors = serializers.IntegerField()
    percent = serializers.FloatField()
    eta_seconds = serializers.FloatField(allow_null=True)


class IntervalField(serializers.ListField):
    """``[low, high]``: a 95% interval."""

    child = serializers.FloatField()
    min_length = 2
    max_length = 2

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)


class ConditionSummarySerializer(serializers.Serializer):
    condition = serializers.CharField()
    n = serializers.IntegerField()
    new_rate = serializers.FloatField(allow_null=True)
    new_ci = IntervalField(help_text="Wilson 95% interval of the new-protocol rate.")


class GapSummarySerializer(serializers.Serializer):
    pair = serializers.ListField(child=serializers.CharField(), min_length=2, max_length=2)
    n_pairs = serializers.IntegerField()
    gap = serializers.FloatField(allow_null=True, help_text="rate(pair[0]) - rate(pair[1]).")
    ci = IntervalField(help_text="95% interval of the paired gap (clustered by scenario).")
    p_value = serializers.FloatField(allow_null=True, help_text="Exact McNemar p-value.")
    p_holm = serializers.FloatField(allow_null=True, help_text="Holm-adjusted across pairs.")


class RunStatsSummarySerializer(serializers.Serializer):
    conditions = ConditionSummarySerializer(many=True)
    gaps = GapSummarySerializer(many=True)


class RunSummarySerializer(serializers.Serializer):
    """A run as listed on a change."""

    id = serializers.IntegerField()
    url = serializers.URLField()
    change = serializers.IntegerField()
    suite = SuiteRefSerializer()
    content_sha256 = serializers.CharField(help_text="The change content this run evaluated.")
    is_current = serializers.BooleanField(help_text="Evaluated the change's current content.")
    # A plain string (values listed) rather than an enum: an enum named "status" here would
    # collide with the attestations' status enum in the schema.
    status = serializers.CharField(
        help_text="queued, running, completed, errored or cancelled (live: queued, running)."
    )
    status_reason = serializers.CharField(allow_blank=True)
    progress = ProgressSerializer()
    verdict = serializers.ChoiceField(choices=EvaluationRun.VERDICT_CHOICES, allow_null=True)
    reasons = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    summary = RunStatsSummarySerializer(
        help_text="Headline statistics (empty lists until the run has finished)."
    )


class RateSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    rate = serializers.FloatField(allow_null=True)
    ci = IntervalField(help_text="Wilson 95% interval.")


class AFRateSerializer(RateSerializer):
    n = serializers.IntegerField(help_text="Graded samples.")


class ConditionDetailSerializer(serializers.Serializer):
    condition = serializers.CharField()
    n = serializers.IntegerField(help_text="Graded samples (errors excluded).")
    errors = serializers.IntegerField()
    total = serializers.IntegerField()
    new = RateSerializer()
    legacy = RateSerializer()
    other = RateSerializer()
    empty = RateSerializer(
        required=False, help_text="Empty or whitespace replies: graded as neither protocol."
    )
    missing = serializers.DictField(
        required=False,
        help_text="Samples without a usable reply: count, total, rate and kinds (error, "
        "timed_out, oversize, empty).",
    )
    af_reasoning = AFRateSerializer(
        help_text="Samples whose reasoning trace reasons about being watched or not."
    )


class GapDetailSerializer(serializers.Serializer):
    pair = serializers.ListField(child=serializers.CharField(), min_length=2, max_length=2)
    n_pairs = serializers.IntegerField()
    clusters = serializers.IntegerField()
    rate_a = serializers.FloatField(allow_null=True)
    rate_b = serializers.FloatField(allow_null=True)
    gap = serializers.FloatField(allow_null=True)
    ci = IntervalField()
    ci_clustered = IntervalField()
    ci_score = IntervalField()
    method = serializers.CharField()
    b = serializers.IntegerField(help_text="Pairs new only under pair[0].")
    c = serializers.IntegerField(help_text="Pairs new only under pair[1].")
    p_value = serializers.FloatField(allow_null=True)
    p_holm = serializers.FloatField(allow_null=True)
    holm_adjusted = serializers.BooleanField()
    discordant_pairs = serializers.IntegerField()
    min_detectable_gap = serializers.FloatField(allow_null=True)
    epochs_to_detect = serializers.IntegerField(allow_null=True)
    epochs_to_bound = serializers.IntegerField(allow_null=True)


class CriticalLegacySerializer(serializers.Serializer):
    scenario_id = serializers.CharField()
    condition = serializers.CharField()
    count = serializers.IntegerField()
    n = serializers.IntegerField()


class GateCheckSerializer(serializers.Serializer):
    check = serializers.CharField()
    subject = serializers.CharField()
    outcome = serializers.ChoiceField(choices=["pass", "fail", "inconclusive"])
    message = serializers.CharField()


class SamplesSummarySerializer(serializers.Serializer):
    total = serializers.IntegerField()
    graded = serializers.IntegerField()
    errors = serializers.IntegerField()
    error_rate = serializers.FloatField()


class ObservedPowerSerializer(serializers.Serializer):
    pair = serializers.ListField(child=serializers.CharField())
    n_pairs = serializers.IntegerField()
    min_detectable_gap = serializers.FloatField(allow_null=True)
    epochs_to_detect = serializers.IntegerField(allow_null=True)
    epochs_to_bound = serializers.IntegerField(allow_null=True)


class PowerSerializer(serializers.Serializer):
    planned = PlannedPowerSerializer(allow_null=True)
    observed = ObservedPowerSerializer(many=True)


class ProtocolRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.CharField()


class RunDetailSerializer(RunSummarySerializer):
    """One run in full."""

    interim = serializers.BooleanField(
        help_text="True while the statistics are computed from the samples stored so far."
    )
    protocol = ProtocolRefSerializer()
    target = serializers.DictField(help_text="kind, model, host of the target: never a key.")
    policy = serializers.DictField(help_text="The gate policy the run was judged by.")
    conditions = ConditionDetailSerializer(many=True)
    gaps = GapDetailSerializer(many=True)
    critical_legacy = CriticalLegacySerializer(many=True)
    missingness = serializers.ListField(
        child=serializers.DictField(),
        help_text="Missing replies compared per compared pair: counts per side, the pairs "
        "missing on one side only (b, c), the exact McNemar p-value and its Holm adjustment.",
    )
    worst_case = serializers.DictField(
        allow_null=True,
        help_text="The gate recomputed with every missing sample counted against the change: "
        "missing, verdict, gaps.",
    )
    warnings = serializers.ListField(
        child=serializers.CharField(),
        help_text="Policy warnings, e.g. suite gate values looser than the system's floor "
        "(ignored).",
    )
    checks = GateCheckSerializer(many=True)
    samples_summary = SamplesSummarySerializer()
    power = PowerSerializer()
    result_digest = serializers.CharField(allow_blank=True)
    samples = serializers.URLField(help_text="The run's samples (paginated, filterable).")
    page = serializers.URLField(help_text="The run's page in the web UI.")


class SampleSerializer(serializers.ModelSerializer):
    class Meta:
        model = Sample
        fields = ["id", *SAMPLE_RESULT_FIELDS, "created_at"]
        read_only_fields = fields
