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
