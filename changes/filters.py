"""django-filter filter sets for the API lists (applied to querysets already scoped by the
selectors, so a filter can only narrow what the user may see)."""

from __future__ import annotations

import django_filters
from django_filters.rest_framework import DjangoFilterBackend

from core.ids import MAX_ID

from .models import ChangeRequest

CHANGE_ORDERING = (
    ("id", "id"),
    ("created_at", "created_at"),
    ("updated_at", "updated_at"),
    ("submitted_at", "submitted_at"),
    ("deployed_at", "deployed_at"),
    ("title", "title"),
    ("state", "state"),
    ("risk", "risk"),
)


class StableOrderingFilter(django_filters.OrderingFilter):
    """Ordering with ``-id`` as the last key, so pages never overlap on ties."""

    def filter(self, qs, value):
        qs = super().filter(qs, value)
        if value:
            qs = qs.order_by(*qs.query.order_by, "-id")
        return qs


class ChangeFilter(django_filters.FilterSet):
    # distinct=False: these are columns of the change itself, no join can repeat a row.
    state = django_filters.MultipleChoiceFilter(
        choices=ChangeRequest.STATE_CHOICES, distinct=False, help_text="Repeat for several."
    )
    # Bounded like the id column: a larger number is a 400, not an overflow in the query.
    system = django_filters.NumberFilter(
        field_name="system_id", help_text="AI system id.", min_value=1, max_value=MAX_ID
    )
    author = django_filters.CharFilter(field_name="author__username", help_text="Username.")
    risk = django_filters.MultipleChoiceFilter(choices=ChangeRequest.RISK_CHOICES, distinct=False)
    change_type = django_filters.MultipleChoiceFilter(
        choices=ChangeRequest.TYPE_CHOICES, distinct=False
    )
    search = django_filters.CharFilter(
        field_name="title", lookup_expr="icontains", help_text="Words in the title."
    )
    ordering = StableOrderingFilter(fields=CHANGE_ORDERING, help_text="Default: newest first.")

    class Meta:
        model = ChangeRequest
        fields = ["state", "system", "author", "risk", "change_type", "search"]


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend, skipped when the request names none of the filters.

    Building a FilterSet deep-copies every filter and builds and validates a form, about a
    millisecond per request, spent on the most common request of all: a plain page of a list.
    With no filter parameter in the query string every filter is a no-op and the form is
    valid, so the queryset is returned as is; any filter parameter (valid or not) takes
    django-filter's full path, errors included. A parameter that merely starts with a
    filter's name and ``_`` counts too, so multi-widget filters (``created_after`` for a
    range filter ``created``) are never skipped.
    """

    def filter_queryset(self, request, queryset, view):
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is None:
            return queryset
        names = tuple(filterset_class.base_filters)
        prefixes = tuple(f"{name}_" for name in names)
        if not any(param in names or param.startswith(prefixes) for param in request.query_params):
            return queryset
        return super().filter_queryset(request, queryset, view)
