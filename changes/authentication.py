"""API token authentication that also reads the user's roles, in one query.

Every API request needs the user's role names (Django groups) to scope what it may see; with
DRF's ``TokenAuthentication`` that is a second query (token + user, then groups) on every call,
a large share of a cheap list request (bench/bench_change_list.py). Here the group names are
aggregated into the token lookup and stored where ``roles.role_names`` caches them, so the
checks that follow are free. Behaviour is otherwise DRF's: same header, same errors.
"""

from __future__ import annotations

from django.db.models import Aggregate, CharField, Value
from django.utils.translation import gettext_lazy as _
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

# Group names never contain control characters (roles are fixed names), so this cannot split
# one name in two.
_SEPARATOR = "\x1f"


class GroupConcat(Aggregate):
    """Text aggregate joining values with ``_SEPARATOR``: STRING_AGG on PostgreSQL,
    GROUP_CONCAT on SQLite (Django 5.2 has no portable StringAgg)."""

    function = "STRING_AGG"
    output_field = CharField()

    def __init__(self, expression, **extra):
        super().__init__(expression, Value(_SEPARATOR), **extra)

    def as_sqlite(self, compiler, connection, **extra_context):
        return super().as_sql(compiler, connection, function="GROUP_CONCAT", **extra_context)


def split_group_names(joined: str | None) -> frozenset[str]:
    return frozenset(name for name in (joined or "").split(_SEPARATOR) if name)


class TokenWithRolesAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        model = self.get_model()
        try:
            token = (
                model.objects.select_related("user")
                .annotate(group_names=GroupConcat("user__groups__name"))
                .get(key=key)
            )
        except model.DoesNotExist:
            raise AuthenticationFailed(_("Invalid token.")) from None
        if not token.user.is_active:
            raise AuthenticationFailed(_("User inactive or deleted."))
        token.user._role_names = split_group_names(token.group_names)
        return (token.user, token)
