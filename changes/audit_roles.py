"""Audit every change to who holds which role, who is on which team, and who may log in.

Roles are Django groups, teams are ``Team.members`` and admin power is ``is_superuser``;
all three can be changed outside the workflow services (the Django admin, the shell, a data
migration). Signals are the one place that sees every such write, so the audit events are
appended here, inside the writer's transaction. Observation only: no workflow state moves.

The acting user comes from ``core.request_context.ActorMiddleware`` (the request's user);
outside a request it is empty and the event records ``actor_username=""`` (a shell or a
migration).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models.signals import m2m_changed, post_save, pre_save
from django.dispatch import receiver

from core.request_context import current_actor

from . import audit
from .models import Team

User = get_user_model()
WATCHED_USER_FLAGS = ("is_active", "is_superuser", "is_staff")


def _pairs(instance, reverse: bool, pk_set) -> list[tuple[int, int]]:
    """(owner pk, member pk) pairs whatever side of the relation the write came from."""
    if not pk_set:
        return []
    if reverse:
        return [(pk, instance.pk) for pk in sorted(pk_set)]
    return [(instance.pk, pk) for pk in sorted(pk_set)]


def _names(model, pks) -> dict[int, str]:
    field = "username" if model is User else "name"
    return dict(model.objects.filter(pk__in=set(pks)).values_list("pk", field))


def _record_m2m(*, verb_prefix, owner_model, member_model, instance, action, reverse, pk_set):
    if action == "pre_clear":
        # The set is gone by post_clear: remember what is about to be removed.
        if reverse:
            ids = set(
                getattr(instance, _reverse_accessor(owner_model)).values_list("pk", flat=True)
            )
        else:
            ids = set(_forward_manager(instance, owner_model).values_list("pk", flat=True))
        instance._pcm_cleared = ids
        return
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    if action == "post_clear":
        pk_set = getattr(instance, "_pcm_cleared", set())
    added = action == "post_add"
    if verb_prefix == "role":
        verb = "role.granted" if added else "role.revoked"
    else:
        verb = "team.member_added" if added else "team.member_removed"
    pairs = _pairs(instance, reverse, pk_set)
    if not pairs:
        return
    owners = _names(owner_model, [o for o, _ in pairs])
    members = _names(member_model, [m for _, m in pairs])
    actor = current_actor()
    for owner_pk, member_pk in pairs:
        user_pk, other_pk = (owner_pk, member_pk) if owner_model is User else (member_pk, owner_pk)
        other_names = members if owner_model is User else owners
        user_names = owners if owner_model is User else members
        audit.append(
            actor=actor,
            verb=verb,
            object_type="auth.user",
            object_id=user_pk,
            data={
                "user": user_names.get(user_pk, ""),
                "role" if verb_prefix == "role" else "team": other_names.get(other_pk, ""),
                "team_id" if verb_prefix == "team" else "group_id": other_pk,
            },
        )


def _reverse_accessor(owner_model) -> str:
    return "user_set" if owner_model is User else "teams"


def _forward_manager(instance, owner_model):
    return instance.groups if owner_model is User else instance.members


@receiver(m2m_changed, sender=User.groups.through, dispatch_uid="audit_role_change")
def _groups_changed(sender, instance, action, reverse, model, pk_set, **kwargs):
    # Forward: user.groups.add(group) (instance is a User); reverse: group.user_set.add(user).
    _record_m2m(
        verb_prefix="role",
        owner_model=User,
        member_model=Group,
        instance=instance,
        action=action,
        reverse=reverse,
        pk_set=pk_set,
    )


@receiver(m2m_changed, sender=Team.members.through, dispatch_uid="audit_team_change")
def _members_changed(sender, instance, action, reverse, model, pk_set, **kwargs):
    # Forward: team.members.add(user) (instance is a Team); reverse: user.teams.add(team).
    _record_m2m(
        verb_prefix="team",
        owner_model=Team,
        member_model=User,
        instance=instance,
        action=action,
        reverse=reverse,
        pk_set=pk_set,
    )


@receiver(pre_save, sender=User, dispatch_uid="audit_user_flags_before")
def _flags_before(sender, instance, raw=False, update_fields=None, **kwargs):
    if update_fields is not None and not set(update_fields) & set(WATCHED_USER_FLAGS):
        instance._pcm_flags = None  # e.g. last_login on every login: nothing to compare
        return
    if raw or instance.pk is None:
        instance._pcm_flags = None
        return
    before = User.objects.filter(pk=instance.pk).values(*WATCHED_USER_FLAGS).first()
    instance._pcm_flags = before


@receiver(post_save, sender=User, dispatch_uid="audit_user_flags_after")
def _flags_after(sender, instance, created, raw=False, **kwargs):
    if raw:
        return
    before = getattr(instance, "_pcm_flags", None)
    if created:
        before = {"is_active": True, "is_superuser": False, "is_staff": False}
    if before is None:
        return
    changed = {
        flag: {"from": before[flag], "to": getattr(instance, flag)}
        for flag in WATCHED_USER_FLAGS
        if before[flag] != getattr(instance, flag)
    }
    if not changed:
        return
    audit.append(
        actor=current_actor(),
        verb="user.flags_changed",
        object_type="auth.user",
        object_id=instance.pk,
        data={"user": instance.username, "changed": changed},
    )
