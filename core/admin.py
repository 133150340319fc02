"""The admin base every app's ``admin.py`` builds on: NUL-safe lookups, input-limited JSON
fields, a read-only variant, and the guard for admins registered by third-party apps.

(Django's admin autodiscovery imports this module; it registers nothing itself.)
"""

from __future__ import annotations

import functools

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db import models

from .limits import LimitedJSONFormField


class NulSafeFilters:
    """ChangeList mixin that refuses filter values holding a NUL character.

    Why: the admin applies any ``?field=value`` of the query string as a lookup, and
    PostgreSQL cannot take a NUL in a text parameter, so ``?name=%00`` was a 500. Raising
    ``IncorrectLookupParameters`` takes Django's own path for a bad lookup: a redirect to the
    unfiltered list with ``?e=1``. (The search box already refuses NUL through its form.)
    """

    def get_filters_params(self, params=None):
        lookup_params = super().get_filters_params(params)
        for values in lookup_params.values():
            if any("\x00" in value for value in values):
                raise IncorrectLookupParameters("a filter value contains a NUL character")
        return lookup_params


@functools.cache
def _nul_safe(changelist_class: type) -> type:
    # Keeps whatever changelist an admin uses (DRF's TokenAdmin has its own) and adds the guard.
    if issubclass(changelist_class, NulSafeFilters):
        return changelist_class
    return type(f"NulSafe{changelist_class.__name__}", (NulSafeFilters, changelist_class), {})


class SafeLookups:
    """ModelAdmin mixin: lists through its changelist class plus :class:`NulSafeFilters`."""

    def get_changelist(self, request, **kwargs):
        return _nul_safe(super().get_changelist(request, **kwargs))


class SafeLookupsAdmin(SafeLookups, admin.ModelAdmin):
    """Base of every project ModelAdmin. JSON fields get the input limits (core.limits)."""

    formfield_overrides = {models.JSONField: {"form_class": LimitedJSONFormField}}


def guard_registered_admins(site=admin.site) -> None:
    """Give the admins other apps registered before this one (auth's users and groups, DRF's
    tokens, axes' logs) the same NUL guard, by re-registering each with :class:`SafeLookups`
    mixed in. Django offers no public way to list a site's registrations, hence ``_registry``.
    """
    for model, model_admin in list(site._registry.items()):
        if isinstance(model_admin, SafeLookups):
            continue
        guarded = type(f"Guarded{type(model_admin).__name__}", (SafeLookups, type(model_admin)), {})
        site.unregister(model)
        site.register(model, guarded)


class ReadOnlyAdmin(SafeLookupsAdmin):
    """View-only: no add, change or delete through the admin."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
