"""Read-mostly admin views: decisions and incidents are written by services only."""

from django.contrib import admin

from .models import (
    Decision,
    GradeBatch,
    GradeTicket,
    Incident,
    IngestToken,
    Monitor,
    ReviewConfig,
    ReviewItem,
    Rollup,
)


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(IngestToken)
class IngestTokenAdmin(ReadOnly):
    list_display = ("name", "system", "prefix", "rate_per_minute", "created_at", "revoked_at")
    exclude = ("secret_sha256",)


@admin.register(Decision)
class DecisionAdmin(ReadOnly):
    list_display = ("id", "system", "environment", "timestamp", "grader_label", "unapproved")
    list_filter = ("environment", "unapproved", "is_probe")

    @admin.display(description="grader label")
    def grader_label(self, obj):
        """From the grade log (the decision row holds no grading state); one indexed query
        per row of an admin page of 100."""
        from .selectors import labels_for

        found = labels_for([obj.pk]).get(obj.pk)
        return "(pending)" if found is None else (found[0] or f"error: {found[1]}")


@admin.register(Incident)
class IncidentAdmin(ReadOnly):
    list_display = ("id", "system", "kind", "state", "environment", "occurrences", "opened_at")
    list_filter = ("kind", "state")


admin.site.register(Monitor, ReadOnly)
admin.site.register(Rollup, ReadOnly)
admin.site.register(ReviewItem, ReadOnly)
admin.site.register(GradeTicket, ReadOnly)
admin.site.register(GradeBatch, ReadOnly)


@admin.register(ReviewConfig)
class ReviewConfigAdmin(admin.ModelAdmin):
    """Sampling fractions are configuration: admins edit them here."""

    list_display = ("system", "fraction", "label_fractions", "max_override_rate")
