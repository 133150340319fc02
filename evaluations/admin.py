"""Read-only admin: suites, runs, batches and samples are written only by
``evaluations.services`` (uploads through the API/UI, runs through submit and the workers)."""

from django.contrib import admin

from changes.admin import SafeLookupsAdmin

from .models import Batch, ChangeSuite, EvaluationRun, Sample, Suite


class ReadOnlyAdmin(SafeLookupsAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


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
