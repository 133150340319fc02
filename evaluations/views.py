"""Web pages for suites and evaluation runs, and the htmx partials that keep them live.

Every run is reached through the change it evaluated, scoped to what the user may see
(``changes.selectors.visible_changes``): anything else is a 404. Writes go through services;
a domain error becomes a message on the page.
"""

from __future__ import annotations

import re

import yaml
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from changes import hooks
from changes.selectors import change_for, visible_changes
from core.errors import DomainError, as_domain_error
from core.ui import deny, or_404, paginate, report

from . import permissions, run_services, selectors, suite_services
from . import serializers as read
from .apis import visible_runs
from .filters import SampleFilter, SuiteFilter
from .models import EvaluationRun, Sample, Suite
from .parsers import MAX_SOURCE_BYTES
from .results import RunResult
from .suite_schema import suite_warnings

DISCORDANT_PREVIEW = 20
POLL_SECONDS = 2
_LINE_MESSAGE = re.compile(r"^line (\d+): ([^:]+): (.*)$", re.DOTALL)
_FIELD_MESSAGE = re.compile(r"^([\w.\[\]-]+): (.*)$", re.DOTALL)


def run_or_404(user, pk) -> EvaluationRun:
    try:
        return visible_runs(user).get(pk=pk)
    except EvaluationRun.DoesNotExist:
        raise Http404("No such evaluation run.") from None


# --- suites --------------------------------------------------------------------------------


@login_required
@require_GET
def suite_list(request):
    suites = Suite.objects.select_related("created_by").order_by("name", "-created_at", "-id")
    found = SuiteFilter(request.GET, queryset=suites)
    page = paginate(request, found.qs)
    return render(
        request,
        "evaluations/suite_list.html",
        {
            "page": page,
            "suites": page.object_list,
            "q": request.GET.get("q", ""),
            "name": request.GET.get("name", ""),
            "filtered": bool(request.GET.get("q") or request.GET.get("name")),
            "can_add": permissions.can_add_suites(request.user),
        },
    )


@login_required
@require_GET
def suite_detail(request, pk):
    suite = get_object_or_404(Suite.objects.select_related("created_by"), pk=pk)
    criticality = request.GET.get("criticality")
    if criticality not in read.CRITICALITIES:
        criticality = "medium"
    document = suite.document
    power = read.planned_power(document, criticality)
    linked = (
        visible_changes(request.user).filter(suite_links__suite=suite).order_by("-id").distinct()
    )
    return render(
        request,
        "evaluations/suite_detail.html",
        {
            "suite": suite,
            "document": document,
            "document_yaml": yaml.safe_dump(
                document, sort_keys=False, allow_unicode=True, width=100
            ),
            "power": power,
            "criticality": criticality,
            "criticalities": read.CRITICALITIES,
            "conditions": document.get("conditions", {}),
            "scenarios": document.get("scenarios", []),
            "linked_changes": linked[:20],
            "warnings": suite_warnings(document, criticality),
        },
    )


class SuiteUploadForm(forms.Form):
    text = forms.CharField(
        label="Suite document",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 22, "spellcheck": "false", "class": "mono"}),
        help_text="Paste YAML or JSON, or choose a file below.",
    )
    file = forms.FileField(
        label="…or upload a file",
        required=False,
        help_text=".yaml, .yml or .json, UTF-8, at most 2 MB.",
        widget=forms.ClearableFileInput(attrs={"accept": ".yaml,.yml,.json"}),
    )
    format = forms.ChoiceField(
        choices=[("auto", "Detect"), ("yaml", "YAML"), ("json", "JSON")],
        initial="auto",
        required=False,
    )

    def clean(self):
        data = super().clean()
        upload = data.get("file")
        text = data.get("text") or ""
        name = ""
        if upload is not None:
            if upload.size > MAX_SOURCE_BYTES:
                raise forms.ValidationError("The file is larger than 2 MB.")
            try:
                text = upload.read().decode("utf-8")
            except UnicodeDecodeError:
                raise forms.ValidationError("The file is not UTF-8 text.") from None
            name = upload.name or ""
        if not text.strip():
            raise forms.ValidationError("Paste a suite document or choose a file.")
        fmt = data.get("format") or "auto"
        if fmt == "auto":
            if name.lower().endswith(".json"):
                fmt = "json"
            elif name.lower().endswith((".yaml", ".yml")):
                fmt = "yaml"
            else:
                fmt = "json" if text.lstrip().startswith("{") else "yaml"
        data["source"] = text
        data["resolved_format"] = fmt
        return data


def split_errors(messages_: list[str]) -> list[dict]:
    """``"line 12: scenarios[0].id: bad"`` -> ``{"line": 12, "field": ..., "message": ...}``."""
    rows = []
    for text in messages_:
        m = _LINE_MESSAGE.match(text)
        if m:
            rows.append({"line": int(m[1]), "field": m[2], "message": m[3], "text": text})
            continue
        m = _FIELD_MESSAGE.match(text)
        rows.append(
            {
                "line": None,
                "field": m[1] if m else "",
                "message": m[2] if m else text,
                "text": text,
            }
        )
    return rows


@login_required
@require_http_methods(["GET", "POST"])
def suite_upload(request):
    if not permissions.can_add_suites(request.user):
        deny(request, "Only engineers add evaluation suites.")
    form = SuiteUploadForm(request.POST or None, request.FILES or None)
    problems: list[dict] = []
    source_lines: list[dict] = []
    if request.method == "POST" and form.is_valid():
        text, fmt = form.cleaned_data["source"], form.cleaned_data["resolved_format"]
        try:
            started = timezone.now()
            suite = suite_services.suite_create(actor=request.user, text=text, fmt=fmt)
        except DomainError as exc:
            problems = split_errors(exc.reasons or [exc.detail])
            bad = {p["line"] for p in problems if p["line"]}
            source_lines = [
                {"number": i, "text": line, "bad": i in bad}
                for i, line in enumerate(text.splitlines(), start=1)
            ]
            if exc.status_code != 400:
                report(request, exc)
                problems = []
        else:
            if suite.created_at < started:
                messages.info(
                    request, f"Suite {suite.name} v{suite.version} was already stored, unchanged."
                )
            else:
                messages.success(request, f"Suite {suite.name} v{suite.version} added.")
            return redirect("suite-detail", pk=suite.pk)
    return render(
        request,
        "evaluations/suite_upload.html",
        {"form": form, "problems": problems, "source_lines": source_lines},
    )


# --- runs ----------------------------------------------------------------------------------


def _cue(document: dict, condition: str, index: int) -> str:
    try:
        return document["conditions"][condition]["cues"][int(index)]
    except (KeyError, IndexError, TypeError, ValueError):
        return ""


def _prompt(document: dict, scenario_id: str) -> str:
    for scenario in document.get("scenarios", []):
        if scenario.get("id") == scenario_id:
            users = [m["content"] for m in scenario.get("messages", []) if m["role"] == "user"]
            return users[-1] if users else ""
    return ""


def discordant_rows(result: RunResult) -> list[dict]:
    """Every discordant pair of every compared pair of conditions (the faking-direction ones,
    new under the first condition only, first)."""
    rows = []
    for gap in result.gaps:
        a, b = gap["pair"][:2]
        for d in gap["discordant"]:
            rows.append(
                {
                    "a": a,
                    "b": b,
                    "scenario_id": d["scenario_id"],
                    "cue_index": int(d["cue_index"]),
                    "epoch": int(d["epoch"]),
                    "label_a": d["a"],
                    "label_b": d["b"],
                    "towards_a": d["a"] == "new",
                }
            )
    # Faking-direction pairs first; then by epoch and cue, so a short preview spans every
    # scenario and paraphrase instead of one scenario's repeats.
    rows.sort(key=lambda r: (not r["towards_a"], r["epoch"], r["cue_index"], r["a"], r["b"],
                             r["scenario_id"]))  # fmt: skip
    return rows


def attach_samples(run: EvaluationRun, rows: list[dict]) -> list[dict]:
    """Fetch both samples of each pair (one query) and the cue and prompt they were given."""
    if not rows:
        return rows
    wanted = Sample.objects.filter(
        run=run,
        scenario_id__in={r["scenario_id"] for r in rows},
        condition__in={r["a"] for r in rows} | {r["b"] for r in rows},
        cue_index__in={r["cue_index"] for r in rows},
        epoch__in={r["epoch"] for r in rows},
    )
    index = {(s.scenario_id, s.condition, s.cue_index, s.epoch): s for s in wanted}
    document = run.suite.document
    for r in rows:
        key = (r["scenario_id"], r["cue_index"], r["epoch"])
        r["sample_a"] = index.get((key[0], r["a"], key[1], key[2]))
        r["sample_b"] = index.get((key[0], r["b"], key[1], key[2]))
        r["cue_a"] = _cue(document, r["a"], r["cue_index"])
        r["cue_b"] = _cue(document, r["b"], r["cue_index"])
        r["prompt"] = _prompt(document, r["scenario_id"])
        r["sides"] = [
            {
                "condition": r["a"],
                "label": r["label_a"],
                "cue": r["cue_a"],
                "sample": r["sample_a"],
            },
            {
                "condition": r["b"],
                "label": r["label_b"],
                "cue": r["cue_b"],
                "sample": r["sample_b"],
            },
        ]
    return rows


def run_context(request, run: EvaluationRun) -> dict:
    result = selectors.run_result(run)
    policy = run.policy or {}
    gaps = read.gaps_detail(result)
    pairs = discordant_rows(result)
    return {
        "run": run,
        "change": run.change,
        "suite": run.suite,
        "result": result,
        "interim": result.interim,
        "conditions": read.conditions_detail(result),
        "gaps": gaps,
        "several_gaps": len(gaps) > 1,
        "policy": policy,
        "max_gap": policy.get("max_gap"),
        "checks": result.checks,
        "critical_legacy": result.critical_legacy,
        "missingness": result.missingness,
        "worst_case": result.worst_case or {},
        "policy_warnings": policy.get("warnings") or [],
        "scenario_table": _scenario_table(run, result),
        "discordant": attach_samples(run, pairs[:DISCORDANT_PREVIEW]),
        "discordant_total": len(pairs),
        "progress": selectors.run_progress(run),
        "can_cancel": permissions.can_cancel(request.user, run),
        "is_current": run.content_sha256 == run.change.content_sha256,
        "target": read._identity(run.target_identity),
        "planned": read.planned_power(run.suite.document, policy=policy) if policy else None,
        "poll_seconds": POLL_SECONDS,
    }


def _scenario_table(run: EvaluationRun, result: RunResult) -> list[dict]:
    per = result.scenarios
    conditions = list(run.suite.document.get("conditions", {}))
    rows = []
    for scenario in run.suite.document.get("scenarios", []):
        cells = per.get(scenario["id"], {})
        rows.append(
            {
                "id": scenario["id"],
                "critical": scenario.get("critical", False),
                "cells": [
                    {
                        "condition": c,
                        **cells.get(
                            c, {"n": 0, "new": 0, "legacy": 0, "other": 0, "empty": 0, "errors": 0}
                        ),
                    }  # fmt: skip
                    for c in conditions
                ],
            }
        )
    return rows


@login_required
@require_GET
def run_detail(request, pk):
    run = run_or_404(request.user, pk)
    return render(request, "evaluations/run_detail.html", run_context(request, run))


@login_required
@require_GET
def run_progress(request, pk):
    """The run's live progress (htmx polls it every 2 s while the run is live). When a run
    that was live finishes, the page is refreshed to show its results."""
    run = run_or_404(request.user, pk)
    response = HttpResponse(
        render_to_string(
            "evaluations/_run_progress.html",
            {
                "run": run,
                "progress": selectors.run_progress(run),
                "can_cancel": permissions.can_cancel(request.user, run),
                "poll_seconds": POLL_SECONDS,
            },
            request=request,
        )
    )
    if request.GET.get("live") and not run.is_live:
        response["HX-Refresh"] = "true"
    return response


@login_required
@require_GET
def run_samples(request, pk):
    run = run_or_404(request.user, pk)
    samples = Sample.objects.filter(run=run).order_by(
        "scenario_id", "condition", "cue_index", "epoch", "id"
    )
    found = SampleFilter(request.GET, queryset=samples)
    page = paginate(request, found.qs)
    document = run.suite.document
    return render(
        request,
        "evaluations/run_samples.html",
        {
            "run": run,
            "change": run.change,
            "page": page,
            "samples": page.object_list,
            "conditions": list(document.get("conditions", {})),
            "scenarios": [s["id"] for s in document.get("scenarios", [])],
            "labels": Sample.LABEL_CHOICES,
            "selected": {
                "condition": request.GET.get("condition", ""),
                "label": request.GET.get("label", ""),
                "scenario": request.GET.get("scenario", ""),
                "af_reasoning": request.GET.get("af_reasoning", ""),
            },
            "filtered": any(
                request.GET.get(k) for k in ("condition", "label", "scenario", "af_reasoning")
            ),
            "filter_errors": found.errors if not found.is_valid() else None,
        },
    )


@login_required
@require_GET
def run_discordant(request, pk):
    run = run_or_404(request.user, pk)
    rows = discordant_rows(selectors.run_result(run))
    page = Paginator(rows, DISCORDANT_PREVIEW).get_page(request.GET.get("page"))
    return render(
        request,
        "evaluations/run_discordant.html",
        {
            "run": run,
            "change": run.change,
            "page": page,
            "discordant": attach_samples(run, list(page.object_list)),
            "discordant_total": len(rows),
        },
    )


@login_required
@require_POST
def run_cancel(request, pk):
    run = run_or_404(request.user, pk)
    try:
        run_services.run_cancel(actor=request.user, run=run)
    except Exception as exc:
        error = as_domain_error(exc)
        if error is None:
            raise
        report(request, error)
    else:
        messages.success(request, f"Evaluation run {run.pk} cancelled.")
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("run-detail", args=[run.pk])
    return redirect(target)


@login_required
@require_GET
def change_panel(request, pk):
    """The change page's evaluation section on its own, for htmx polling while runs are live;
    when the last live run finishes the whole page is refreshed (its state has moved)."""
    change = or_404(change_for, request.user, pk, detail="No such change.")
    result = hooks.evaluation().panel(change, request.user)
    if result is None:
        raise Http404("No evaluation panel.")
    template_name, context = result
    response = HttpResponse(
        render_to_string(template_name, {"change": change, **context}, request=request)
    )
    runs = context.get("runs") or []
    if request.GET.get("live") and not any(run.is_live for run in runs):
        response["HX-Refresh"] = "true"
    return response
