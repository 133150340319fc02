"""Admin. Suites, runs, batches and samples are read-only here: they are written only by
the ``evaluations.*_services`` modules (uploads through the API/UI, runs through submit and
the workers).
The secret registry and the judge models are managed here, by admins only, through
``evaluations.registry`` (which validates and audits every write)."""

import re

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from core import roles
from core.admin import ReadOnlyAdmin, SafeLookupsAdmin
from core.errors import DomainError

from . import registry
from .models import (
    Batch,
    ChangeSuite,
    EvaluationRun,
    JudgeModel,
    RegisteredSecret,
    Sample,
    Suite,
)


@admin.register(Suite)
class SuiteAdmin(ReadOnlyAdmin):
    list_display = ("name", "version", "content_sha256", "created_by", "created_at")
    search_fields = ("name", "content_sha256")


@admin.register(ChangeSuite)
class ChangeSuiteAdmin(ReadOnlyAdmin):
    list_display = ("change", "suite")
    list_select_related = ("change", "suite")


class BatchInline(admin.TabularInline):
    model = Batch
    fields = ("index", "status", "lease_owner", "lease_expires_at", "attempts", "enqueued_at",
              "finished_at")  # fmt: skip
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(EvaluationRun)
class EvaluationRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "change", "suite", "status", "verdict", "done_samples",
                    "total_samples", "error_samples", "created_at", "finished_at")  # fmt: skip
    list_filter = ("status", "verdict")
    list_select_related = ("change", "suite")
    search_fields = ("content_sha256", "result_digest")
    inlines = [BatchInline]


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdmin):
    list_display = ("id", "run", "index", "status", "attempts", "lease_owner", "lease_expires_at")
    list_filter = ("status",)


@admin.register(Sample)
class SampleAdmin(ReadOnlyAdmin):
    list_display = ("id", "run", "scenario_id", "condition", "cue_index", "epoch", "label",
                    "af_reasoning", "latency_ms")  # fmt: skip
    list_filter = ("label", "condition", "af_reasoning")
    search_fields = ("scenario_id",)


# --- the secret registry and judge models (admin-managed; see docs/SECRETS.md) ----------------


def _json_list(value, field: str) -> list:
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise forms.ValidationError(f'{field}: a JSON list of names, e.g. ["support-assistant"].')
    return value


class RegisteredSecretForm(forms.ModelForm):
    """Registers where a secret lives and who may use it. There is no field for the value:
    it stays in the workers' environment or secrets file and is never shown."""

    class Meta:
        model = RegisteredSecret
        fields = ("name", "source", "source_key", "allowed_systems", "allowed_suites",
                  "description")  # fmt: skip

    def clean(self):
        data = super().clean()
        data["allowed_systems"] = _json_list(data.get("allowed_systems"), "allowed_systems")
        data["allowed_suites"] = _json_list(data.get("allowed_suites"), "allowed_suites")
        errors = registry.secret_registration_errors(
            name=data.get("name") or "",
            source=data.get("source") or "",
            source_key=data.get("source_key") or "",
            allowed_systems=data["allowed_systems"],
            allowed_suites=data["allowed_suites"],
        )
        for field, message in errors.items():
            self.add_error(field, message)
        return data


@admin.register(RegisteredSecret)
class RegisteredSecretAdmin(SafeLookupsAdmin):
    form = RegisteredSecretForm
    list_display = ("name", "source", "source_key", "allowed_systems", "allowed_suites",
                    "updated_at")  # fmt: skip
    search_fields = ("name", "source_key")

    def has_module_permission(self, request):
        return roles.is_admin(request.user)

    def has_view_permission(self, request, obj=None):
        return roles.is_admin(request.user)

    def has_add_permission(self, request):
        return roles.is_admin(request.user)

    def has_change_permission(self, request, obj=None):
        return roles.is_admin(request.user)

    def has_delete_permission(self, request, obj=None):
        return roles.is_admin(request.user)

    def save_model(self, request, obj, form, change):
        try:
            registry.secret_save(actor=request.user, secret=obj, created=not change)
        except DomainError as exc:  # the form checked the same rules; a race is still a 400
            raise ValidationError(exc.detail) from None


class JudgeModelForm(forms.ModelForm):
    class Meta:
        model = JudgeModel
        fields = ("name", "description", "config", "enabled")

    def clean_name(self):
        name = self.cleaned_data.get("name") or ""
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$", name):
            raise forms.ValidationError("Letters, digits, _ . : - (suites name it like that).")
        return name

    def clean_config(self):
        try:
            return registry.judge_model_validate(self.cleaned_data.get("config"))
        except DomainError as exc:
            raise forms.ValidationError(exc.detail) from None


@admin.register(JudgeModel)
class JudgeModelAdmin(RegisteredSecretAdmin):
    form = JudgeModelForm
    list_display = ("name", "enabled", "created_at")
    search_fields = ("name",)

    def save_model(self, request, obj, form, change):
        try:
            registry.judge_model_save(actor=request.user, judge=obj, created=not change)
        except DomainError as exc:
            raise ValidationError(exc.detail) from None
