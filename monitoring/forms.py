from django import forms

from .models import ReviewItem


class ReviewForm(forms.Form):
    verdict = forms.ChoiceField(choices=ReviewItem.VERDICTS, widget=forms.RadioSelect)
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


class IncidentActionForm(forms.Form):
    action = forms.ChoiceField(choices=[("acknowledge", "Acknowledge"), ("resolve", "Resolve")])
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100)
    rate_per_minute = forms.IntegerField(min_value=1, max_value=100_000, initial=600)


class MonitorForm(forms.Form):
    graders = forms.JSONField(
        widget=forms.Textarea(attrs={"rows": 8, "class": "mono"}),
        help_text='JSON: {"new": grader(s), "legacy": grader(s)}, the suite grader kinds.',
    )
    evaluated_condition = forms.CharField(max_length=60, required=False)
    alpha = forms.FloatField(min_value=0.001, max_value=0.49, initial=0.05)
