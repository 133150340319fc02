"""What an attestation says: the facts (the signed predicate) and the PDF built from them.

Why two halves (facts read at issue time, HTML built without the database): docs/ARCHITECTURE.md,
section "The attestation document".
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from changes import diff as change_diff
from changes import hooks, selectors, states
from changes.markdown import render_markdown
from core import roles

from .statement import PREDICATE_TYPE

FACTS_SCHEMA = 1
MAX_DISCORDANT_PAIRS = 5
QUOTE_CHARS = 600
TRAIL_LIMIT = 1000
LABELS = ("new", "legacy", "other")
LABEL_NAMES = {"new": "New protocol", "legacy": "Legacy protocol", "other": "Other"}
# Only these target fields are identity; everything else (headers, key env names) stays out.
TARGET_IDENTITY_KEYS = ("kind", "model", "host", "agent", "endpoint_host")
MD_FIELDS = ("rationale", "test_plan", "rollout_plan", "backout_plan")
TEMPLATE = "attestations/attestation.html"
# The PDF embeds its own font: its charts must not name a system one (evaluations.charts).
CHART_FONT_FAMILY, CHART_FONT_SIZE = "Attestation Sans", "9.5"
INDEPENDENCE_LABELS = (
    ("holds_reviewer_role", "Holds the reviewer role"),
    ("not_author", "Is not the author"),
    ("not_editor", "Did not edit the change"),
    ("not_on_author_team", "Is not on the author's team"),
)


# --- helpers ---------------------------------------------------------------------------


def iso(value: datetime | None) -> str | None:
    """UTC ISO-8601 with seconds, or None."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def json_safe(value: Any) -> Any:
    """Round-trip through JSON: what is signed is exactly what a JSON column gives back.

    Non-finite floats (NaN from a statistic with no data) become None: they are not JSON.
    """

    def clean(obj):
        if isinstance(obj, float) and not math.isfinite(obj):
            return None
        if isinstance(obj, dict):
            return {str(k): clean(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [clean(v) for v in obj]
        return obj

    return json.loads(json.dumps(clean(value), default=str))


def _person(user) -> dict:
    if user is None:
        return {"username": "", "name": ""}
    return {"username": user.username, "name": user.get_full_name() or user.username}


def _quote(text: str | None) -> str:
    text = str(text or "")
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 1] + "…"


def _float(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


# --- evaluation statistics ------------------------------------------------------------------
#
# The engine's typed result (``evaluations.results``), read through its one selector; nothing
# here recomputes an interval or re-derives a pair from the samples, so the signed facts are
# exactly what the gate decided on.


def _condition_fact(name: str, c: dict) -> dict:
    out = {"name": name, "n": c["n"]}
    for label in LABELS:
        cell = c[label]
        low, high = cell["ci"]
        out[label] = {"count": cell["count"], "rate": cell["rate"], "low": low, "high": high}
    out["af_reasoning"] = {"count": c["af_reasoning"]["count"], "rate": c["af_reasoning"]["rate"]}
    return out


def _gap_fact(g: dict) -> dict:
    low, high = g["ci"]
    return {
        "label": " vs ".join(g["pair"]),
        "pair": list(g["pair"]),
        "estimate": g["gap"],
        "low": low,
        "high": high,
        "p_value": g["p_value"],
        "p_adjusted": g["p_holm"],
        "discordant": len(g["discordant"]),
        "pairs": g["n_pairs"],
        "only_a": g["b"],
        "only_b": g["c"],
        "method": g["method"],
        "power": {
            k: g[k]
            for k in ("min_detectable_gap", "epochs_to_detect", "epochs_to_bound")
            if g[k] is not None
        },
    }


def _power(gaps: list[dict]) -> dict:
    """The run's power facts: the engine's per-gap figures."""
    power = {}
    for gap in gaps:
        for key, value in gap["power"].items():
            power[key if len(gaps) == 1 else f"{key} ({gap['label']})"] = value
    return power


def _quote_pairs(run, pair: list[str], keys: list[tuple]) -> list[dict]:
    """Quote the first MAX_DISCORDANT_PAIRS pairs side by side (outputs and reasoning)."""
    quoted = []
    for scenario, cue, epoch in keys[:MAX_DISCORDANT_PAIRS]:
        samples = {
            s.condition: s
            for s in run.samples.filter(
                scenario_id=scenario, cue_index=cue, epoch=epoch, condition__in=pair
            )
        }
        sides = []
        for condition in pair:
            sample = samples.get(condition)
            sides.append(
                {
                    "condition": condition,
                    "label": getattr(sample, "label", ""),
                    "output": _quote(getattr(sample, "output", "")),
                    "reasoning": _quote(getattr(sample, "reasoning", "")),
                    "af_reasoning": bool(getattr(sample, "af_reasoning", False)),
                }
            )
        quoted.append({"scenario": scenario, "cue_index": cue, "epoch": epoch, "sides": sides})
    return quoted


# --- gate evidence (issue 10): missing replies, worst case, ignored values, reasoning flags ---

MISSING_KIND_NAMES = {
    "error": "errored",
    "timed_out": "timed out",
    "oversize": "too large",
    "empty": "empty",
}


def gate_evidence_facts(result, policy: dict) -> dict:
    """What the gate weighed besides rates and gaps, from the typed result: missing replies
    per condition (by kind), the paired missingness test per compared pair, the worst-case
    bound's verdict, the suite's gate values ignored because of the criticality floor, and
    the reasoning flags (with the acknowledgement they may require). Kept apart from
    :func:`run_facts` so other sections merge without touching it."""
    conditions = []
    for name, c in result.conditions.items():
        missing, af = c["missing"], c["af_reasoning"]
        conditions.append(
            {
                "name": name,
                "missing": missing["count"],
                "total": missing["total"],
                "rate": missing["rate"],
                "kinds": {k: int(missing["kinds"].get(k, 0)) for k in MISSING_KIND_NAMES},
                "af_reasoning": {
                    "count": af["count"],
                    "n": af["n"],
                    "rate": af["rate"],
                    "low": af["ci"][0],
                    "high": af["ci"][1],
                    "estimate": af.get("estimate"),
                },
            }
        )
    worst = result.worst_case or {}
    flags = (result.result or {}).get("reasoning_flags")
    return {
        "missing": conditions,
        "missingness_tests": [
            {
                k: m.get(k)
                for k in (
                    "pair",
                    "a_missing",
                    "a_total",
                    "b_missing",
                    "b_total",
                    "b",
                    "c",
                    "p_value",
                    "p_holm",
                )
            }
            for m in result.missingness
        ],  # fmt: skip
        "worst_case": {
            "missing": int(worst.get("missing") or 0),
            "verdict": str(worst.get("verdict") or ""),
        },
        "ignored": [
            {"key": str(i.get("key")), "value": i.get("value"), "floor": i.get("floor")}
            for i in (policy.get("ignored") or [])
            if isinstance(i, dict)
        ],
        "reasoning_flags": dict(flags) if isinstance(flags, dict) else None,
    }


def gate_evidence_context(evidence: dict | None) -> dict | None:
    """Display-ready rows for the "Missing replies and other gate evidence" block."""
    if not evidence:
        return None
    rows = []
    for c in evidence["missing"]:
        kinds = [f"{n} {MISSING_KIND_NAMES[k]}" for k, n in c["kinds"].items() if n]
        af = c["af_reasoning"]
        rows.append(
            {
                "name": c["name"],
                "missing": f"{c['missing']} of {c['total']} ({_pct(c['rate'])})",
                "kinds": ", ".join(kinds) or "none",
                "af": f"{af['count']} of {af['n']} ({_pct(af['rate'])})",
                "af_interval": f"{_pct(af['low'])} – {_pct(af['high'])}",
            }
        )
    tests = [
        {
            "label": " vs ".join(m["pair"] or []),
            "text": (
                f"{m['a_missing']} of {m['a_total']} vs {m['b_missing']} of {m['b_total']} "
                f"missing; {m['b']} vs {m['c']} pairs missing on one side only"
            ),
            "p_text": _p(m["p_value"]),
            "p_adjusted_text": _p(m["p_holm"]) if m.get("p_holm") is not None else "",
        }
        for m in evidence["missingness_tests"]
    ]
    worst = evidence["worst_case"]
    if not worst["missing"]:
        worst_text = "No reply was missing: the worst case is the result itself."
    else:
        worst_text = (
            f"Counting the {worst['missing']} missing sample(s) against the change, the gate "
            f"would say {worst['verdict'].upper() or 'n/a'}."
        )
    ignored = [
        f"{i['key']} {i['value']!r} (looser than the floor {i['floor']!r}, so the floor applied)"
        for i in evidence["ignored"]
    ]
    return {"rows": rows, "tests": tests, "worst_text": worst_text, "ignored": ignored,
            "flags": evidence.get("reasoning_flags")}  # fmt: skip


def target_identity(run) -> dict:
    """kind, model, endpoint host (and reference agent): never a key, header or env name."""
    identity = run.target_identity if isinstance(run.target_identity, dict) else {}
    out = {k: str(identity[k]) for k in TARGET_IDENTITY_KEYS if identity.get(k) not in (None, "")}
    if "kind" not in out and isinstance(run.target, dict) and run.target.get("kind"):
        out["kind"] = str(run.target["kind"])
    target = run.target if isinstance(run.target, dict) else {}
    if out.get("kind") == "reference" and "agent" not in out and target.get("agent"):
        out["agent"] = str(target["agent"])
    return out


def run_facts(run) -> dict:
    """Everything the PDF shows about one evaluation run, as JSON: the engine's result
    (``evaluations.selectors.run_result``) and quotes of the first discordant pairs."""
    from evaluations.selectors import run_result

    result = run_result(run)
    gaps = [_gap_fact(g) for g in result.gaps]
    conditions = [_condition_fact(name, c) for name, c in result.conditions.items()]
    pair = gaps[0]["pair"] if gaps else []
    keys = sorted(
        (str(d["scenario_id"]), int(d["cue_index"]), int(d["epoch"]))
        for d in (result.gaps[0]["discordant"] if result.gaps else [])
    )
    policy = run.policy if isinstance(run.policy, dict) else {}
    suite = run.suite
    return {
        "id": run.pk,
        "suite": {
            "id": suite.pk,
            "name": suite.name,
            "version": suite.version,
            "sha256": suite.content_sha256,
        },
        "content_sha256": run.content_sha256,
        "status": run.status,
        "verdict": run.verdict or "",
        "reasons": [str(r) for r in (run.reasons or [])],
        "checks": [dict(c) for c in result.checks],
        "target": target_identity(run),
        "policy": policy,
        "seed": run.seed,
        "samples": {
            "total": run.total_samples,
            "done": run.done_samples,
            "errors": run.error_samples,
            "per_condition": {c["name"]: c["n"] for c in conditions},
        },
        "compare": pair,
        "conditions": conditions,
        "gaps": gaps,
        "power": _power(gaps),
        "discordant_total": len(keys),
        "discordant_pairs": _quote_pairs(run, pair, keys) if len(pair) == 2 else [],
        "gate_evidence": gate_evidence_facts(result, policy) if result.result else None,
        "result_digest": run.result_digest,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
    }


def evaluation_runs(change) -> list:
    """The latest run of each suite on the change's current content hash."""
    from evaluations.models import EvaluationRun

    runs = (
        EvaluationRun.objects.filter(change=change, content_sha256=change.content_sha256)
        .select_related("suite")
        .order_by("suite__name", "suite_id", "-id")
    )
    latest: dict[int, Any] = {}
    for run in runs:
        latest.setdefault(run.suite_id, run)
    return list(latest.values())


def overall_verdict(runs: list[dict]) -> str:
    """pass only when every run passed; fail when any failed; else inconclusive; none: no runs."""
    if not runs:
        return "none"
    verdicts = [r.get("verdict") or "" for r in runs]
    if any(v == "fail" for v in verdicts):
        return "fail"
    if all(v == "pass" for v in verdicts):
        return "pass"
    return "inconclusive"


# --- gathering the facts ---------------------------------------------------------------------


def _signoff(review) -> dict:
    reviewer = review.reviewer
    return {
        "review_id": review.pk,
        "reviewer": _person(reviewer),
        "roles": sorted(roles.role_names(reviewer)),
        "teams": sorted(reviewer.teams.values_list("name", flat=True)),
        "decision": review.decision,
        "independence": review.independence or {},
        "signature_meaning": review.signature_meaning,
        "content_sha256": review.content_sha256,
        "evaluation_digest": review.evaluation_digest,
        "retrospective": review.is_retrospective,
        "acknowledges_flagged_reasoning": bool(review.acknowledges_flagged_reasoning),
        "comment": review.comment,
        "signed_at": iso(review.created_at),
    }


def _gate(change, reason: str) -> dict:
    if reason == "deployed":
        # The deploy service refuses a closed gate, so at this moment it was open.
        return {
            "deployable": True,
            "reasons": [],
            "note": "The deploy gate was open: the change was deployed through it.",
        }
    reasons = selectors.gate_reasons(change)
    return {"deployable": not reasons, "reasons": reasons, "note": ""}


def _trail(change, head_id: int | None) -> list[dict]:
    events = selectors.timeline(change)
    if head_id is not None:
        events = events.filter(id__lte=head_id)
    rows = list(events.order_by("-id")[:TRAIL_LIMIT])
    rows.reverse()
    return [
        {
            "id": e.pk,
            "verb": e.verb,
            "actor": e.actor_username,
            "at": iso(e.created_at),
            "hash": e.hash,
        }
        for e in rows
    ]


#: Facts later apps add to every attestation (name -> ``source(change) -> dict``), registered
#: from their ``ready()``: ``reviews`` adds its thread counts under "discussion". A registry,
#: because those apps sit above this one and are never imported from here.
_fact_sources: dict = {}


def register_facts(name: str, source) -> None:
    _fact_sources[name] = source


def post_deployment(change, head_id: int | None) -> dict | None:
    """The live evidence the change's ``change.closed`` event recorded (monitoring window,
    live rate against the evaluated band, review estimates, incidents): quoted, never
    recomputed, so the attestation cites exactly what the hash-chained event holds."""
    events = selectors.timeline(change).filter(verb="change.closed")
    if head_id is not None:
        events = events.filter(id__lte=head_id)
    event = events.order_by("-id").first()
    if event is None:
        return None
    evidence = (event.data or {}).get("post_deployment")
    if not evidence:
        return None
    return {"event": {"id": event.pk, "hash": event.hash, "at": iso(event.created_at)}, **evidence}


def stage_start_facts(change) -> list[dict]:
    """Every started rollout stage of ``change``, per environment in stage order: who
    reported it, when, which stage and what share of traffic (docs/ROLLOUTS.md). Stage 1 is
    the deployment itself; the later ones are promotions the deployment tool reported."""
    from changes.env_models import RolloutStage

    return [
        {
            "environment": s.environment,
            "stage": s.number,
            "percent": s.percent,
            "started_by": _person(s.started_by),
            "at": iso(s.started_at),
        }
        for s in RolloutStage.objects.filter(change=change)
        .select_related("started_by")
        .order_by("environment", "number", "id")
    ]


def policy_exception_facts(change) -> list[dict]:
    """Every policy exception requested on ``change`` (docs/GATE.md): the threshold, the
    looser value and the floor it loosens, why, who requested and approved it, and whether
    it stood for this content when the attestation was issued."""
    from evaluations import exception_selectors

    out = []
    for exc in exception_selectors.exceptions_for(change):
        out.append(
            {
                "reference": exc.reference,
                "key": exc.key,
                "value": exc.value,
                "floor": exc.floor,
                "criticality": exc.criticality,
                "reason": exc.reason,
                "content_sha256": exc.content_sha256,
                "requested_by": _person(exc.requested_by),
                "requested_at": iso(exc.requested_at),
                "admin_approver": _person(exc.admin_approver) if exc.admin_approver_id else None,
                "admin_approved_at": iso(exc.admin_approved_at),
                "reviewer_approver": (
                    _person(exc.reviewer_approver) if exc.reviewer_approver_id else None
                ),
                "reviewer_approved_at": iso(exc.reviewer_approved_at),
                "status": exception_selectors.status(exc, change),
                "problems": exception_selectors.problems(exc, change),
            }
        )
    return out


def attests_paragraph(facts: dict) -> str:
    change, system = facts["change"], facts["system"]
    ev = facts["evaluation"]
    n_runs = len(ev["runs"])
    approvals = len(facts["signoffs"])
    moment = (
        "its deployment to " + ", ".join(d["environment"] for d in facts["deployments"])
        if facts["attestation"]["reason"] == "deployed" and facts["deployments"]
        else "its final required approval"
    )
    if facts["attestation"]["reason"] == "closed":
        moment = "its close after the monitoring window (post-deployment review)"
    runs_text = (
        f"{n_runs} evaluation run(s) of that exact content ended with the overall verdict "
        f"'{ev['verdict']}'"
        if n_runs
        else "no evaluation run is recorded for that exact content"
    )
    return (
        f"This document attests that change {change['reference']} to the protocol of "
        f"{system['name']} ({system['criticality']} criticality), moving it from version "
        f"{facts['protocols']['base']['version']} to {facts['protocols']['proposed']['version']},"
        f" was in state '{change['state_label']}' at {moment}, with content hash "
        f"{change['content_sha256']}; that {runs_text}; that {approvals} independent "
        f"reviewer(s) signed that content hash; and that the audit log's hash chain ended at "
        f"event #{facts['audit']['head']['id']} when it was issued. The embedded, signed "
        f"statement ({facts['attestation']['attachment']}) carries these facts for machines."
        + _post_deployment_sentence(facts.get("post_deployment"))
    )


def _post_deployment_sentence(post: dict | None) -> str:
    monitoring = (post or {}).get("monitoring")
    if not monitoring:
        return ""
    w = monitoring["window"]
    decisions = sum(row["decisions"] or 0 for row in monitoring["live"])
    below = [row["environment"] for row in monitoring["live"] if row["below_evaluated"]]
    return (
        f" It also attests the post-deployment review: a {w['days']:g}-day monitoring window "
        f"from {w['started_at']} ({w['reviews_done']} human-reviewed live decisions), "
        f"{decisions} graded live decisions, "
        + (f"live rate below the evaluated band in {', '.join(below)}" if below
           else "no environment with a live rate shown below the evaluated band")
        + f", and {len(monitoring['incidents'])} incident(s), as recorded in audit event "
        f"#{post['event']['id']}."
    )  # fmt: skip


def gather_facts(change, *, reason: str, version: int, audit_head, issued_at: datetime) -> dict:
    """The predicate of attestation ``version`` of ``change``, read now (at issue time).

    ``audit_head`` is the audit event at the head of the chain (the transition's own event);
    the trail quoted ends there.
    """
    from .pdf import ENVELOPE_ATTACHMENT_NAME

    system = change.system
    base, proposed = change.base_protocol, change.proposed_protocol
    runs = [run_facts(run) for run in evaluation_runs(change)]
    deployments = [
        {
            "environment": d.environment,
            "deployed_by": _person(d.deployed_by),
            "content_sha256": d.content_sha256,
            "at": iso(d.created_at),
            # the live registry (docs/ENVIRONMENTS.md): what ran there before and after
            "live_before": d.previous_protocol.version if d.previous_protocol_id else None,
            "live_after": d.protocol.version if d.protocol_id else None,
            "blackout_override": d.blackout_override,
        }
        for d in change.deployments.select_related(
            "deployed_by", "previous_protocol", "protocol"
        ).order_by("created_at", "id")
    ]
    diff_parts = [
        {
            "label": part["label"],
            "key": part["key"],
            "changed": part["changed"],
            "stats": part["stats"],
            "lines": part["unified"],
        }
        for part in change_diff.protocol_diff(base, proposed)
    ]
    facts = {
        "schema": FACTS_SCHEMA,
        "attestation": {
            "version": version,
            "reason": reason,
            "issued_at": iso(issued_at),
            "attachment": ENVELOPE_ATTACHMENT_NAME,
        },
        "change": {
            "id": change.pk,
            "reference": change.reference,
            "title": change.title,
            "state": change.state,
            "state_label": states.LABELS.get(change.state, change.state),
            "risk": change.risk,
            "change_type": change.change_type,
            "revision": change.revision,
            "content_sha256": change.content_sha256,
            "author": _person(change.author),
            "editors": [_person(u) for u in change.editors.order_by("username")],
            "created_at": iso(change.created_at),
            "submitted_at": iso(change.submitted_at),
            "deployed_at": iso(change.deployed_at),
            "retrospective_pending": change.retrospective_pending,
            # docs/ENVIRONMENTS.md: the change it rolls back, its declared rollout stages
            "rollback_of": f"CR-{change.rollback_of_id}" if change.rollback_of_id else None,
            "stages": list(change.stages or []),
            "expected_changes": list(change.expected_changes or []),
            **{name: getattr(change, name) or "" for name in MD_FIELDS},
        },
        "system": {
            "id": system.pk,
            "name": system.name,
            "criticality": system.criticality,
            "owner_team": system.owner_team.name,
            "approvals_required": system.approvals_required,
            "cross_team_review": system.requires_cross_team_review,
        },
        "protocols": {
            "base": {"id": base.pk, "version": base.version, "sha256": base.content_sha256},
            "proposed": {
                "id": proposed.pk,
                "version": proposed.version,
                "sha256": proposed.content_sha256,
            },
        },
        "diff": diff_parts,
        "evaluation": {
            "verdict": overall_verdict(runs),
            "digest": hooks.evaluation().evaluation_digest(change),
            "runs": runs,
        },
        "gate": _gate(change, reason),
        "signoffs": [_signoff(r) for r in selectors.valid_approvals(change)],
        **{name: source(change) for name, source in _fact_sources.items()},
        "deployments": deployments,
        "stage_starts": stage_start_facts(change),
        "policy_exceptions": policy_exception_facts(change),
        "audit": {
            "head": {
                "id": getattr(audit_head, "pk", None),
                "hash": getattr(audit_head, "hash", ""),
                "verb": getattr(audit_head, "verb", ""),
                "at": iso(getattr(audit_head, "created_at", None)),
            },
            "trail": _trail(change, getattr(audit_head, "pk", None)),
        },
    }
    if reason == "closed":
        facts["post_deployment"] = post_deployment(change, getattr(audit_head, "pk", None))
    facts["attests"] = attests_paragraph(facts)
    return json_safe(facts)


def run_digests(facts: dict) -> dict[str, str]:
    """Subject digests of the runs: only runs that finished with a result digest."""
    out = {}
    for run in facts.get("evaluation", {}).get("runs", []):
        digest = run.get("result_digest") or ""
        if len(digest) == 64:
            out[str(run["id"])] = digest
    return out


# --- the PDF ---------------------------------------------------------------------------------


def _pct(value) -> str:
    value = _float(value)
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _pts(value) -> str:
    value = _float(value)
    return "n/a" if value is None else f"{value * 100:+.1f} pts"


def _p(value) -> str:
    value = _float(value)
    if value is None:
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


# How the PDF names and formats the gate policy and the power figures, in this order: a
# reader sees "Maximum compliance gap: 8.0 points", never "max gap 0.08".
def _points(value) -> str:
    value = _float(value)
    return "n/a" if value is None else f"{value * 100:.1f} points"


def _share(value) -> str:
    value = _float(value)
    return "n/a" if value is None else f"{value * 100:.0f}%"


def _key_names(value) -> str:
    if isinstance(value, list) and value:
        return ", ".join(str(v).replace("_", " ") for v in value)
    return "none"


POLICY_FACTS = (
    ("criticality", "Criticality", str),
    ("min_compliance", "Minimum new-protocol compliance (interval lower bound)", _share),
    ("max_gap", "Maximum compliance gap (interval upper bound)", _points),
    ("alpha", "Significance level (α)", lambda v: f"{_float(v):g}" if _float(v) else str(v)),
    ("power", "Required power", _share),
    ("require_power", "Verdict when power is too low", lambda v: "inconclusive" if v else "fail"),
    ("max_error_rate", "Maximum share of errored samples", _share),
    ("overrides", "Values overridden by the suite", _key_names),
)
POWER_FACTS = (
    ("min_detectable_gap", "Smallest gap detectable with the required power", _points),
    ("epochs_to_detect", "Epochs needed to detect the maximum gap", None),
    ("epochs_to_bound", "Epochs needed to bound the gap", None),
)


def _readable(value) -> str:
    """A policy value for people: yes/no, "none", lists and mappings spelled out."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value in (None, "", [], {}):
        return "none"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_readable(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{str(k).replace('_', ' ')} {_readable(v)}" for k, v in value.items())
    return str(value)


def readable_items(values: dict, known) -> list[tuple[str, str]]:
    """(label, text) pairs: the known keys first with their labels and formats, then any
    other key the engine recorded, humanised."""
    items = []
    for key, label, fmt in known:
        if key in values:
            value = values[key]
            items.append((label, fmt(value) if fmt else _readable(value)))
    labelled = {key for key, _, _ in known}
    for key in sorted(set(values) - labelled):
        items.append((key.replace("_", " ").capitalize(), _readable(values[key])))
    return items


def _chart(svg: str):
    return mark_safe(svg)  # noqa: S308 - built by xml.etree in evaluations.charts, escaped


def _run_context(run: dict) -> dict:
    from evaluations import charts

    font = charts.ChartFont(family=CHART_FONT_FAMILY, size=CHART_FONT_SIZE)
    conditions = []
    for c in run["conditions"]:
        bars = [
            {"label": label, **c[label]}
            for label in LABELS
            if isinstance(c.get(label), dict) and c[label].get("rate") is not None
        ]
        af = c.get("af_reasoning") or {}
        conditions.append(
            {
                "name": c["name"],
                "n": c.get("n"),
                "cells": [
                    {
                        "label": LABEL_NAMES[label],
                        "rate": _pct((c.get(label) or {}).get("rate")),
                        "interval": (
                            f"{_pct(c[label].get('low'))} – {_pct(c[label].get('high'))}"
                            if isinstance(c.get(label), dict) and c[label].get("low") is not None
                            else "n/a"
                        ),
                    }
                    for label in LABELS
                ],
                "af_rate": _pct(af.get("rate")),
                "chart": _chart(charts.rate_bars(c["name"], bars, n=c.get("n"), font=font)),
            }
        )
    policy = run.get("policy") or {}
    power = run.get("power") or {}
    max_gap = _float(policy.get("max_gap"))
    gaps = [
        {
            **g,
            "estimate_text": _pts(g.get("estimate")),
            "interval_text": f"{_pts(g.get('low'))} to {_pts(g.get('high'))}",
            "p_text": _p(g.get("p_value")),
            "p_adjusted_text": _p(g.get("p_adjusted")) if g.get("p_adjusted") is not None else "",
        }
        for g in run["gaps"]
    ]
    gap_chart = (
        _chart(
            charts.gap_forest(
                [g for g in run["gaps"] if g.get("estimate") is not None],
                max_gap=max_gap,
                font=font,
            )
        )  # fmt: skip
        if any(g.get("estimate") is not None for g in run["gaps"])
        else None
    )
    return {
        **run,
        "anchor": f"run-{run['id']}",
        "condition_rows": conditions,
        "gap_rows": gaps,
        "gap_chart": gap_chart,
        "policy_items": readable_items(policy, POLICY_FACTS),
        "power_items": readable_items(power, POWER_FACTS),
        "target_items": list((run.get("target") or {}).items()),
        "gate_evidence_view": gate_evidence_context(run.get("gate_evidence")),
    }


def _signoff_context(signoff: dict, cross_team: bool) -> dict:
    independence = signoff.get("independence") or {}
    checks = []
    for key, label in INDEPENDENCE_LABELS:
        if key == "not_on_author_team" and not independence.get("cross_team_required", cross_team):
            label += " (not required for this criticality)"
        if key in independence:
            checks.append({"label": label, "ok": bool(independence[key])})
    return {**signoff, "checks": checks}


def pdf_context(
    facts: dict,
    *,
    key_id: str,
    envelope_sha256: str = "",
    statement_sha256: str = "",
    facts_sha256: str = "",
    certificate_fingerprint: str = "",
) -> dict:
    """The template context for the PDF: the facts plus display-ready pieces (no database).

    The pages show the digest of the facts and the signing certificate's fingerprint, not the
    statement's or the envelope's digest: the statement carries a digest of each page's text
    (issue 15), so the pages cannot also carry a digest of the statement.
    ``envelope_sha256``/``statement_sha256`` are accepted for older callers and unused.
    """
    change = facts["change"]
    cross_team = facts["system"].get("cross_team_review", False)
    return {
        "facts": facts,
        "change": change,
        "system": facts["system"],
        "attestation": facts["attestation"],
        "protocols": facts["protocols"],
        "markdown": {name: render_markdown(change.get(name, "")) for name in MD_FIELDS},
        "expected_changes": change.get("expected_changes") or [],
        "diff_parts": [
            {
                **part,
                "lines": [
                    {
                        "css": {
                            "insert": "add",
                            "delete": "del",
                            "hunk": "hunk",
                            "header": "hunk",
                        }.get(line["kind"], "ctx"),
                        "text": line["text"],
                    }
                    for line in part["lines"]
                ],
            }
            for part in facts["diff"]
        ],
        "evaluation": facts["evaluation"],
        "runs": [_run_context(run) for run in facts["evaluation"]["runs"]],
        "gate": facts["gate"],
        "signoffs": [_signoff_context(s, cross_team) for s in facts["signoffs"]],
        # attestations issued before issue 14's threads carry no discussion facts
        "discussion": facts.get("discussion"),
        "deployments": facts["deployments"],
        "post_deployment": (facts.get("post_deployment") or {}).get("monitoring"),
        "post_deployment_event": (facts.get("post_deployment") or {}).get("event"),
        "stage_starts": facts.get("stage_starts") or [],
        "policy_exceptions": facts.get("policy_exceptions") or [],
        "audit": facts["audit"],
        "attests": facts["attests"],
        "signature": {
            "key_id": key_id,
            "envelope_sha256": envelope_sha256,
            "statement_sha256": statement_sha256,
            "facts_sha256": facts_sha256,
            "certificate_fingerprint": certificate_fingerprint,
            "predicate_type": PREDICATE_TYPE,
            "attachment": facts["attestation"]["attachment"],
        },
        "footer": (
            f"{change['reference']} · attestation v{facts['attestation']['version']} · "
            f"content {change['content_sha256'][:16]}"
        ),
    }


def render_html(context: dict) -> str:
    return render_to_string(TEMPLATE, context)
