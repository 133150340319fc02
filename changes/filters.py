"""django-filter filter sets for the API lists (applied to querysets already scoped by the
selectors, so a filter can only narrow what the user may see)."""

from __future__ import annotations

import django_filters

from .models import ChangeRequest

MAX_ID = 2**63 - 1  # the largest primary key the database holds

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
