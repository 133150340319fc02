"""Read-only admin for attestations: evidence is looked at, never edited or deleted here.

The one action, for admins, is retrying a failed render (through the service).
"""

from django.contrib import admin, messages

from core.admin import SafeLookupsAdmin
from core.errors import DomainError

from . import services
from .models import Attestation


@admin.register(Attestation)
class AttestationAdmin(SafeLookupsAdmin):
    list_display = ("id", "change", "version", "reason", "status", "key_id", "created_at")
    list_filter = ("status", "reason", "change__system")
    search_fields = ("=change__id", "content_sha256", "pdf_sha256", "envelope_sha256")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    list_select_related = ("change",)
    exclude = ("pdf", "envelope")
    readonly_fields = (
        "change",
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
        "claimed_at",
        "rendered_at",
        "facts",
        "statement",
    )
    actions = ["retry_render"]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("pdf", "envelope")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Retry rendering of the selected failed attestations")
    def retry_render(self, request, queryset):
        done = 0
        for attestation in queryset.filter(status=Attestation.FAILED):
            try:
                services.attestation_retry(actor=request.user, attestation=attestation)
                done += 1
            except DomainError as exc:
                self.message_user(request, exc.detail, level=messages.ERROR)
        self.message_user(request, f"{done} attestation(s) queued for rendering again.")
