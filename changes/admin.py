"""Django admin: teams and systems for admins; workflow records and the audit log read-only.

Records that services own are created through those services (so they are validated and
audited) and never edited here: protocol versions are immutable, change requests and reviews
move only through the workflow, and the audit log is append-only.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin

from core import roles
from core.admin import ReadOnlyAdmin, SafeLookupsAdmin, guard_registered_admins
from core.errors import DomainError

from . import audit, env_services, hooks, permissions, services
from .models import (
    AISystem,
    ApiToken,
    AuditCheckpoint,
    AuditEvent,
    ChangeRequest,
    Deployment,
    Environment,
    ProtocolVersion,
    Review,
    Team,
)


def _adopt(obj, created) -> None:
    """Point the admin's unsaved instance at the row a service created."""
    obj.pk = created.pk
    obj._state.adding = False
    obj._state.db = created._state.db
    for field in created._meta.concrete_fields:
        setattr(obj, field.attname, getattr(created, field.attname))


@admin.register(Team)
class TeamAdmin(SafeLookupsAdmin):
    list_display = ("name", "member_count")
    search_fields = ("name", "members__username")
    filter_horizontal = ("members",)

    @admin.display(description="Members")
    def member_count(self, obj):
        return obj.members.count()

    def has_add_permission(self, request):
        return roles.is_admin(request.user)

    def has_change_permission(self, request, obj=None):
        return roles.is_admin(request.user)

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return ("name",) if obj else ()

    def save_model(self, request, obj, form, change):
        if not change:
            created = services.team_create(
                actor=request.user, name=obj.name, members=form.cleaned_data.get("members", [])
            )
            _adopt(obj, created)

    def save_related(self, request, form, formsets, change):
        before = set(form.instance.members.values_list("pk", flat=True)) if change else None
        super().save_related(request, form, formsets, change)
        if change:
            after = set(form.instance.members.values_list("pk", flat=True))
            if before != after:
                # Membership decides independence for high-risk systems: keep it on record.
                audit.append(
                    actor=request.user,
                    verb="team.members_changed",
                    obj=form.instance,
                    data={"added": sorted(after - before), "removed": sorted(before - after)},
                )


class AISystemForm(forms.ModelForm):
    class Meta:
        model = AISystem
        fields = (
            "name",
            "description",
            "owner_team",
            "criticality",
            "target",
            "required_approvals",
        )

    def clean(self):
        """The service checks name and description for secrets too; here the refusal lands
        on the form field instead of a 500 from ``save_model``."""
        data = super().clean()
        for field in ("name", "description"):
            try:
                hooks.evaluation().refuse_secret_text({field: data.get(field) or ""})
            except DomainError as error:
                self.add_error(field, error.detail)
        return data

    def clean_target(self):
        target = self.cleaned_data.get("target") or {"kind": "reference", "agent": "compliant"}
        if not isinstance(target, dict):
            raise forms.ValidationError('Must be an object such as {"kind": "reference"}.')
        try:
            return hooks.evaluation().validate_target(target)
        except DomainError as error:
            raise forms.ValidationError(error.detail) from None


@admin.register(AISystem)
class AISystemAdmin(SafeLookupsAdmin):
    form = AISystemForm
    list_display = ("name", "criticality", "owner_team", "approvals_required", "created_at")
    list_filter = ("criticality", "owner_team")
    search_fields = ("name", "description")

    def has_add_permission(self, request):
        return roles.is_admin(request.user)

    def has_change_permission(self, request, obj=None):
        # Systems are registered through the service and not edited here afterwards.
        return obj is None and roles.is_admin(request.user)

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        created = services.system_create(
            actor=request.user,
            name=data["name"],
            owner_team=data["owner_team"],
            criticality=data["criticality"],
            target=data.get("target"),
            description=data.get("description", ""),
            required_approvals=data.get("required_approvals"),
        )
        _adopt(obj, created)


@admin.register(ProtocolVersion)
class ProtocolVersionAdmin(SafeLookupsAdmin):
    list_display = ("system", "version", "short_sha", "created_by", "created_at")
    list_filter = ("system",)
    search_fields = ("version", "system__name", "content_sha256")
    fields = ("system", "version", "system_prompt", "body", "content_sha256", "created_by")

    @admin.display(description="SHA-256")
    def short_sha(self, obj):
        return obj.content_sha256[:12]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:  # immutable once created
            return self.fields
        return ("content_sha256", "created_by")

    def has_add_permission(self, request):
        return permissions.is_engineer_or_admin(request.user)

    def has_change_permission(self, request, obj=None):
        return obj is None and self.has_add_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        created = services.protocol_version_create(
            actor=request.user,
            system=obj.system,
            version=obj.version,
            body=obj.body,
            system_prompt=obj.system_prompt,
        )
        _adopt(obj, created)


class ReviewInline(admin.TabularInline):
    model = Review
    extra = 0
    can_delete = False
    fields = ("reviewer", "decision", "content_sha256", "voided_at", "created_at")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ChangeRequest)
class ChangeRequestAdmin(ReadOnlyAdmin):
    list_display = ("reference", "title", "system", "state", "risk", "author", "updated_at")
    list_filter = ("state", "risk", "change_type", "system")
    search_fields = ("title", "rationale", "content_sha256", "author__username")
    date_hierarchy = "created_at"
    list_select_related = ("system", "author")
    inlines = [ReviewInline]


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdmin):
    list_display = ("change", "reviewer", "decision", "short_sha", "voided_at", "created_at")
    list_filter = ("decision",)
    search_fields = ("reviewer__username", "content_sha256")
    list_select_related = ("change", "reviewer")

    @admin.display(description="Signed hash")
    def short_sha(self, obj):
        return obj.content_sha256[:12]


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyAdmin):
    list_display = ("change", "environment", "deployed_by", "created_at")
    list_filter = ("environment",)
    list_select_related = ("change", "deployed_by")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit log, read-only: the database itself refuses UPDATE and DELETE."""

    list_display = ("id", "created_at", "actor_username", "verb", "object_type", "object_id")
    list_filter = ("verb", "object_type")
    search_fields = ("verb", "actor_username", "object_id")
    date_hierarchy = "created_at"
    ordering = ("-id",)

    def get_actions(self, request):
        return {}  # not even the bulk "delete selected"


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(ReadOnlyAdmin):
    """The database copies of the signed audit checkpoints (the files are the anchor)."""

    list_display = ("file_name", "tree_size", "head_event_id", "published_at", "reason")
    list_filter = ("reason",)
    ordering = ("-tree_size", "-published_at")

    def get_actions(self, request):
        return {}


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """API tokens by prefix: the key itself is never stored, so it can never be shown here.
    Issue tokens through the API (the key is shown once); revoke them here."""

    list_display = ("prefix", "user", "name", "scopes", "created_at", "expires_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("prefix", "user__username", "name")
    list_select_related = ("user",)
    exclude = ("key_sha256",)
    actions = ["revoke_selected"]

    @admin.action(description="Revoke the selected tokens")
    def revoke_selected(self, request, queryset):
        from . import tokens

        for token in queryset.select_related("user"):
            tokens.revoke(token, reason="revoked by an admin", actor=request.user)


class EnvironmentForm(forms.ModelForm):
    """Reports an order already taken on the system's path on the form (the service would
    refuse it too, but too late for a form error)."""

    class Meta:
        model = Environment
        fields = (
            "system", "name", "order", "required_approvals", "requires_previous",
            "blackout_windows", "time_zone", "requires_staged_rollout",
        )  # fmt: skip

    def clean(self):
        data = super().clean()
        system = data.get("system") or getattr(self.instance, "system", None)
        order = data.get("order")
        if system is not None and order is not None:
            taken = Environment.objects.filter(system=system, order=order)
            if taken.exclude(pk=self.instance.pk).exists():
                self.add_error("order", f"{order} is already taken on {system.name}'s path.")
            else:
                self._check_floor(system, data)
        return data

    def _check_floor(self, system, data):
        """The service's approvals floor for the end of the path, as a form error."""
        from .environments import approvals_floor_problem
        from .models import DEFAULT_REQUIRED_APPROVALS

        name = data.get("name") or self.instance.name
        rows = Environment.objects.filter(system=system).exclude(pk=self.instance.pk)
        path = [(e.order, e.name, e.required_approvals) for e in rows]
        path.append((data["order"], name, data.get("required_approvals")))
        path = [(n, a) for _, n, a in sorted(path, key=lambda row: row[0])]
        floor = DEFAULT_REQUIRED_APPROVALS[system.criticality]
        problem = approvals_floor_problem(path, system.criticality, floor)
        if problem:
            self.add_error("required_approvals", problem)


@admin.register(Environment)
class EnvironmentAdmin(SafeLookupsAdmin):
    form = EnvironmentForm
    """Promotion paths per system (docs/ENVIRONMENTS.md); saved through the service, so the
    blackout windows are validated and the edit is audited. Never deleted: history names it."""

    list_display = ("system", "name", "order", "requires_previous", "required_approvals")
    list_filter = ("system",)
    fields = (
        "system", "name", "order", "required_approvals", "requires_previous",
        "blackout_windows", "time_zone", "requires_staged_rollout",
    )  # fmt: skip

    def has_add_permission(self, request):
        return roles.is_admin(request.user)

    def has_change_permission(self, request, obj=None):
        return roles.is_admin(request.user)

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return ("system", "name") if obj is not None else ()

    def save_model(self, request, obj, form, change):
        fields = {k: getattr(obj, k) for k in env_services.ENV_FIELDS}
        saved = env_services.environment_save(
            actor=request.user, system=obj.system, name=obj.name, **fields
        )
        _adopt(obj, saved)


# Last: every admin registered by now, from apps listed before this one, gets the guard.
guard_registered_admins()
