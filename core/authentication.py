"""API token authentication that also reads the user's roles, in one query.

Every API request needs the user's role names (Django groups) to scope what it may see. With
DRF's ``TokenAuthentication`` that is two queries per call (token + user, then the groups),
and the ORM's compile of the token join alone costs more than PostgreSQL's answer to it: on
the change list, authentication was a quarter of the request (bench/bench_change_list.py).
Here one hand-written, parameterised query returns the user, the token's creation time and
the group names, which are stored where ``roles.role_names`` caches them, so every role check
after it is free. Behaviour is otherwise DRF's: same header, same errors, same ``request.auth``.
"""

from __future__ import annotations

import json
from datetime import UTC
from functools import cache

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext_lazy as _
from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.exceptions import PermissionDenied as ScopeDenied

from . import ports, tokens

# Group names never contain control characters (roles are fixed names), so this cannot split
# one name in two.
_SEPARATOR = "\x1f"


def split_group_names(joined: str | None) -> frozenset[str]:
    return frozenset(name for name in (joined or "").split(_SEPARATOR) if name)


@cache
def _owner_sql(vendor: str, token_table: str) -> str:
    """SELECT the token owner's columns, the token's fields and the joined group names.

    Table and column names come from the models' metadata (quoted); the only values, the
    separator and the key's hash, are query parameters.
    """
    user_model = get_user_model()
    q = connection.ops.quote_name
    user, groups = q(user_model._meta.db_table), q(Group._meta.db_table)
    membership = q(user_model.groups.through._meta.db_table)
    join = "GROUP_CONCAT(g.name, %s)" if vendor == "sqlite" else "STRING_AGG(g.name, %s)"
    # Only quoted table names from model metadata are interpolated; values are parameters.
    sql = (
        "SELECT u.*, t.id AS token_id, t.created_at AS token_created, "
        "t.expires_at AS token_expires_at, t.revoked_at AS token_revoked_at, "
        "t.scopes AS token_scopes, t.prefix AS token_prefix, "
        "(SELECT {join} FROM {groups} g JOIN {membership} m ON m.group_id = g.id "
        "WHERE m.user_id = u.id) AS group_names "
        "FROM {tokens} t JOIN {user} u ON u.id = t.user_id WHERE t.key_sha256 = %s"
    )
    return sql.format(
        join=join, groups=groups, membership=membership, tokens=q(token_table), user=user
    )


def _scopes(value) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    return list(value or [])


class TokenWithRolesAuthentication(TokenAuthentication):
    """``Authorization: Token pcm_...`` (or ``Bearer``): a hashed, expiring, scoped token.

    The token must be live (not revoked, not expired), its owner active, and it must carry
    the scope this request needs (``core.tokens.required_scope``); otherwise 401 or 403.
    Keys of the old clear-text kind are refused.
    """

    keyword = "Token"

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() not in (b"token", b"bearer"):
            return None
        if len(header) != 2:
            raise AuthenticationFailed(_("Invalid token header: send one token, no spaces."))
        try:
            key = header[1].decode()
        except UnicodeError:
            raise AuthenticationFailed(_("Invalid token header.")) from None
        result = self.authenticate_credentials(key)
        user, token = result
        needed = tokens.required_scope(request)
        if needed not in token.scopes:
            raise ScopeDenied(
                f"This token lacks the '{needed}' scope (it has: "
                f"{', '.join(token.scopes) or 'none'})."
            )
        return result

    def authenticate_credentials(self, key):
        ApiToken = ports.token_model()  # noqa: N806 - a model class, lent by changes
        if not key.startswith(tokens.KEY_PREFIX):
            raise AuthenticationFailed(
                _("Invalid token. Exchange your password for a new one at /api/v1/auth/token/.")
            )
        sql = _owner_sql(connection.vendor, ApiToken._meta.db_table)
        owners = list(get_user_model().objects.raw(sql, [_SEPARATOR, tokens.hash_key(key)]))
        if not owners:
            raise AuthenticationFailed(_("Invalid token."))
        user = owners[0]
        if user.token_revoked_at is not None:
            raise AuthenticationFailed(_("Token revoked."))
        expires = user.token_expires_at
        if isinstance(expires, str):  # SQLite raw query without converters
            expires = parse_datetime(expires)
        if expires is not None and timezone.is_naive(expires):
            expires = timezone.make_aware(expires, UTC)
        if expires is None or expires <= timezone.now():
            raise AuthenticationFailed(_("Token expired."))
        if not user.is_active:
            raise AuthenticationFailed(_("User inactive or deleted."))
        user._role_names = split_group_names(user.group_names)
        token = ApiToken(
            pk=user.token_id,
            user=user,
            prefix=user.token_prefix,
            scopes=_scopes(user.token_scopes),
            expires_at=expires,
        )
        return (user, token)


class ThrottledModelBackend(ModelBackend):
    """Django's username/password backend with the per-account soft delay and the per-client
    limit of ``core.throttle`` (django-axes still locks a username+client pair first).

    A delayed attempt is refused before the password is checked and is not counted, so
    hammering an account cannot lengthen its delay beyond the cap.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        from . import throttle  # not at import time: DRF's APIView loads this module early

        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        wait = throttle.login_delay(username, request)
        if wait:
            if request is not None:
                target = getattr(request, "_request", request)
                target.pcm_login_delayed = True
                target.pcm_retry_after = wait
            raise PermissionDenied("Too many failed attempts: wait before trying again.")
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None:
            throttle.record_login_success(username, request)
        return user
