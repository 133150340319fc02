"""API tokens: issue (shown once), look up by hash, rotate, revoke (``core.tokens``: scopes).

Why hashed: a database or admin page that leaks stored keys must not leak usable tokens.
The key is ``pcm_<prefix>_<secret>`` with 256 bits of randomness; only its SHA-256 is
stored, so a lookup is one indexed equality and nothing secret is ever compared in Python.
Design notes: ``docs/api-tokens.md``.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver
from django.utils import timezone

from core.errors import ValidationFailed
from core.tokens import KEY_PREFIX, hash_key

from . import audit
from .models import TOKEN_SCOPES, ApiToken

ALL_SCOPES = list(TOKEN_SCOPES)


def max_ttl_days() -> int:
    return int(getattr(settings, "API_TOKEN_TTL_DAYS", 90))


def clean_scopes(scopes) -> list[str]:
    if scopes is None:
        return list(ALL_SCOPES)
    if isinstance(scopes, str):
        scopes = [s for s in scopes.replace(",", " ").split() if s]
    unknown = sorted(set(scopes) - set(TOKEN_SCOPES))
    if unknown or not scopes:
        raise ValidationFailed(
            f"scopes: choose from {', '.join(TOKEN_SCOPES)}"
            + (f" (unknown: {', '.join(unknown)})." if unknown else "."),
            fields={"scopes": ["Invalid scopes."]},
        )
    return [s for s in TOKEN_SCOPES if s in scopes]


@transaction.atomic
def issue(user, *, scopes=None, days: int | None = None, name: str = "", actor=None):
    """A new token for ``user``; returns ``(token, key)``. The key is never stored."""
    days = max_ttl_days() if days is None else int(days)
    if not 1 <= days <= max_ttl_days():
        raise ValidationFailed(
            f"expires_in_days: between 1 and {max_ttl_days()} (API_TOKEN_TTL_DAYS).",
            fields={"expires_in_days": ["Out of range."]},
        )
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(
        user=user,
        name=(name or "")[:100],
        prefix=prefix,
        key_sha256=hash_key(key),
        scopes=clean_scopes(scopes),
        expires_at=timezone.now() + timedelta(days=days),
    )
    audit.append(
        actor=actor or user,
        verb="auth.token_issued",
        obj=user,
        data={"token": token.prefix, "scopes": token.scopes, "expires_at": token.expires_at},
    )
    return token, key


@transaction.atomic
def rotate(token: ApiToken, *, actor=None):
    """Replace ``token`` by a new one with the same owner, name and scopes (new expiry)."""
    new, key = issue(token.user, scopes=token.scopes, name=token.name, actor=actor)
    revoke(token, reason=f"rotated (replaced by {new.prefix})", actor=actor or token.user)
    return new, key


def revoke(token: ApiToken, *, reason: str, actor=None) -> None:
    if token.revoked_at is not None:
        return
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_reason=reason[:200]
    )
    audit.append(
        actor=actor,
        verb="auth.token_revoked",
        obj=token.user,
        data={"token": token.prefix, "reason": reason[:200]},
    )


def revoke_all(user, *, reason: str, actor=None) -> int:
    live = list(ApiToken.objects.filter(user=user, revoked_at__isnull=True))
    for token in live:
        revoke(token, reason=reason, actor=actor)
    return len(live)


def find(key: str) -> ApiToken | None:
    """The live token for ``key`` (not revoked, not expired), with its user, or None."""
    if not key.startswith(KEY_PREFIX):
        return None
    token = ApiToken.objects.select_related("user").filter(key_sha256=hash_key(key)).first()
    if token is None or token.revoked_at is not None or token.expires_at <= timezone.now():
        return None
    return token


# --- a password change revokes every token ----------------------------------------------------

User = get_user_model()


@receiver(pre_save, sender=User, dispatch_uid="tokens_password_before")
def _password_before(sender, instance, raw=False, update_fields=None, **kwargs):
    instance._pcm_password_changed = False
    if raw or instance.pk is None:
        return
    if update_fields is not None and "password" not in update_fields:
        return
    rehash = getattr(instance, "_password", None) is None and list(update_fields or []) == [
        "password"
    ]  # Django upgrading the stored hash of the same password at login: not a change
    if rehash:
        return
    old = User.objects.filter(pk=instance.pk).values_list("password", flat=True).first()
    instance._pcm_password_changed = old is not None and old != instance.password


@receiver(post_save, sender=User, dispatch_uid="tokens_password_after")
def _password_after(sender, instance, created, raw=False, **kwargs):
    if getattr(instance, "_pcm_password_changed", False):
        instance._pcm_password_changed = False
        revoke_all(instance, reason="password changed")
