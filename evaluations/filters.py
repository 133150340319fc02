"""django-filter filter sets for suites and samples, shared by the API and the web pages.

They narrow querysets that are already scoped (a run's samples are only reachable through a
run the user may see), so a filter can never widen what someone sees.
"""

from __future__ import annotations

import django_filters
from django import forms
from django.db.models import Q

from .models import Sample, Suite

LABEL_CHOICES = Sample.LABEL_CHOICES


class SuiteFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(
        field_name="name", lookup_expr="icontains", help_text="Part of the suite name."
    )
    version = django_filters.CharFilter(field_name="version", help_text="Exact version.")
    q = django_filters.CharFilter(
        method="search", label="Search", help_text="Name or description contains."
    )

    class Meta:
        model = Suite
        fields = ["name", "version", "q"]

    def search(self, queryset, name, value):
        value = (value or "").strip()
        if not value:
            return queryset
        return queryset.filter(Q(name__icontains=value) | Q(description__icontains=value))


class SampleFilter(django_filters.FilterSet):
    condition = django_filters.CharFilter(field_name="condition", help_text="Condition name.")
    label = django_filters.MultipleChoiceFilter(
        choices=LABEL_CHOICES, help_text="new, legacy, other or error; repeat for several."
    )
    scenario = django_filters.CharFilter(field_name="scenario_id", help_text="Scenario id.")
    cue_index = django_filters.NumberFilter(field_name="cue_index", min_value=0)
    epoch = django_filters.NumberFilter(field_name="epoch", min_value=0)
    af_reasoning = django_filters.BooleanFilter(
        field_name="af_reasoning",
        widget=forms.NullBooleanSelect,
        help_text="Only samples whose reasoning was (true) or was not (false) flagged as "
        "reasoning about being watched.",
    )

    class Meta:
        model = Sample
        fields = ["condition", "label", "scenario", "cue_index", "epoch", "af_reasoning"]
