"""Forms of the web UI. They validate input shape; the services decide and write."""

from __future__ import annotations

import contextlib

from django import forms
from django.db.models import Q
from django.urls import reverse

from core.ids import parse_id

from . import hooks, services, states
from .models import AISystem, ChangeRequest, ProtocolVersion

TEXTAREA = {"rows": 8, "class": "md-input"}
MARKDOWN_FIELDS = ("rationale", "test_plan", "rollout_plan", "backout_plan")


#: Protocol versions are listed oldest first, as they were added (v1 before v2).
PROTOCOL_ORDER = ("created_at", "id")


def protocols_for(system_id) -> list[ProtocolVersion]:
    """The system's versions, oldest first."""
    if not system_id:
        return []
    with contextlib.suppress(TypeError, ValueError):
        return list(
            ProtocolVersion.objects.filter(system_id=int(system_id)).order_by(*PROTOCOL_ORDER)
        )
    return []


def is_older(a: ProtocolVersion, b: ProtocolVersion) -> bool:
    """Whether ``a`` was added before ``b`` (a change from ``b`` to ``a`` goes backwards)."""
    return (a.created_at, a.pk) < (b.created_at, b.pk)


class ProtocolChoiceField(forms.ModelChoiceField):
    """A protocol version select whose labels say which version is live."""

    live_pk = None

    def label_from_instance(self, obj):
        live = " · live" if obj.pk == self.live_pk else ""
        return f"{obj.version}{live} · {obj.content_sha256[:10]}"


def live_protocol_of(system_id) -> ProtocolVersion | None:
    """The live version of the system (the furthest environment on its path running one)."""
    if not system_id:
        return None
    from .selectors import live_protocol

    system = AISystem.objects.filter(pk=system_id).first()
    if system is None:
        return None
    return live_protocol(system)


class ChangeRequestForm(forms.Form):
    """The fields of a change request. On edit the system is fixed."""

    system = forms.ModelChoiceField(
        queryset=AISystem.objects.select_related("owner_team"),
        empty_label="Choose a system…",
        help_text="The AI system whose protocol changes.",
    )
    base_protocol = ProtocolChoiceField(
        queryset=ProtocolVersion.objects.none(),
        empty_label="Choose a version…",
        label="Base version",
        help_text="The protocol running today.",
    )
    proposed_protocol = ProtocolChoiceField(
        queryset=ProtocolVersion.objects.none(),
        empty_label="Choose a version…",
        label="Proposed version",
        help_text="The protocol you want to deploy.",
    )
    title = forms.CharField(max_length=200, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    rationale = forms.CharField(
        widget=forms.Textarea(attrs=TEXTAREA),
        max_length=services.TEXT_LIMITS["rationale"],
        help_text="Why this change? Markdown.",
    )
    test_plan = forms.CharField(
        widget=forms.Textarea(attrs=TEXTAREA),
        max_length=services.TEXT_LIMITS["test_plan"],
        help_text="How you will know it works, under monitored and unmonitored cues. Markdown.",
    )
    risk = forms.ChoiceField(choices=ChangeRequest.RISK_CHOICES, initial="medium")
    change_type = forms.ChoiceField(
        choices=ChangeRequest.TYPE_CHOICES,
        initial="normal",
        help_text="Emergency changes may deploy on one approval; a retrospective review follows.",
    )
    rollout_plan = forms.CharField(
        widget=forms.Textarea(attrs={**TEXTAREA, "rows": 4}),
        required=False,
        max_length=services.TEXT_LIMITS["rollout_plan"],
        help_text="Markdown.",
    )
    backout_plan = forms.CharField(
        widget=forms.Textarea(attrs={**TEXTAREA, "rows": 4}),
        required=False,
        max_length=services.TEXT_LIMITS["backout_plan"],
        help_text="Markdown.",
    )
    suites = forms.TypedMultipleChoiceField(
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Evaluation suites run against the proposed protocol when you submit.",
    )

    def __init__(self, *args, change: ChangeRequest | None = None, **kwargs):
        self.change = change
        super().__init__(*args, **kwargs)
        self.fields["suites"].choices = hooks.evaluation().suite_choices()
        if change is not None:
            self.fields["system"].disabled = True
            self.fields["system"].help_text = "A change stays on the system it was filed for."
        else:
            # htmx: choosing a system reloads the two version selects for that system.
            self.fields["system"].widget.attrs.update(
                {
                    "hx-get": reverse("protocol-options"),
                    "hx-target": "#protocol-fields",
                    "hx-swap": "outerHTML",
                    "hx-trigger": "change",
                    # a system change supersedes a version reload still in flight
                    "hx-sync": "#protocol-picker:replace",
                }
            )
        for name in MARKDOWN_FIELDS:
            # htmx: a live preview of the sanitised Markdown, as the author types.
            self.fields[name].widget.attrs.update(
                {
                    "hx-post": reverse("markdown-preview"),
                    "hx-trigger": "input changed delay:350ms",
                    "hx-target": f"#preview-{name}",
                    "hx-swap": "innerHTML",
                    "hx-vals": f'{{"field": "{name}"}}',
                    "hx-sync": "this:replace",
                }
            )
        system_id = self._system_id()
        protocols = ProtocolVersion.objects.filter(system_id=system_id or 0).order_by(
            *PROTOCOL_ORDER
        )
        live = live_protocol_of(system_id)
        # The two version selects carry no htmx attributes of their own: the stable wrapper
        # around them in change_form.html (``#protocol-picker``) listens for their bubbling
        # change events and re-renders only the direction note. Selects wired one by one were
        # swapped on every choice, and a swapped-in select is only wired after htmx's settle
        # delay: a choice made in that window sent nothing (no warning), and a choice made
        # while a reload was in flight was overwritten by its answer.
        for name in ("base_protocol", "proposed_protocol"):
            self.fields[name].queryset = protocols
            self.fields[name].live_pk = live.pk if live else None
        if live:
            self.fields[
                "base_protocol"
            ].help_text = f"The protocol running today: {live.version} is live."
        elif system_id:
            self.fields["base_protocol"].help_text = (
                "The protocol running today. No version of this system has been deployed "
                "through this service yet."
            )

    @property
    def reload_system_id(self) -> int | None:
        """On the edit form the system select is disabled, so htmx does not send it: the
        version reloads carry it as a fixed value. On the new-change form the select itself is
        sent (a fixed value would go stale when the author picks another system)."""
        return self.change.system_id if self.change is not None else None

    def direction(self) -> dict | None:
        """Which way the chosen versions go: ``{"backwards": True, ...}`` when the proposed
        version is older than the base (a rollback), so the form can say so."""
        base = self._chosen("base_protocol")
        proposed = self._chosen("proposed_protocol")
        if base is None or proposed is None or base.pk == proposed.pk:
            return None
        return {"backwards": is_older(proposed, base), "base": base, "proposed": proposed}

    def _chosen(self, name):
        field = self.fields[name]
        value = self[name].value()
        if value in (None, ""):
            return None
        try:
            return field.queryset.get(pk=getattr(value, "pk", value))
        except (ProtocolVersion.DoesNotExist, TypeError, ValueError):
            return None

    def _system_id(self):
        if self.change is not None:
            return self.change.system_id
        value = self.data.get(self.add_prefix("system")) if self.is_bound else None
        if value in (None, ""):
            value = self.initial.get("system")
        value = getattr(value, "pk", value)
        try:
            return int(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            return None

    @classmethod
    def initial_for(cls, change: ChangeRequest, suite_ids: list[int]) -> dict:
        return {
            "system": change.system_id,
            "base_protocol": change.base_protocol_id,
            "proposed_protocol": change.proposed_protocol_id,
            "title": change.title,
            "rationale": change.rationale,
            "test_plan": change.test_plan,
            "risk": change.risk,
            "change_type": change.change_type,
            "rollout_plan": change.rollout_plan,
            "backout_plan": change.backout_plan,
            "suites": suite_ids,
        }

    def clean(self):
        cleaned = super().clean()
        # Browsers send textarea newlines as CRLF; the API stores LF. Without this an untouched
        # field would differ from the stored text (a false "edited" and a new content hash).
        for name in MARKDOWN_FIELDS:
            if isinstance(cleaned.get(name), str):
                cleaned[name] = cleaned[name].replace("\r\n", "\n")
        base, proposed = cleaned.get("base_protocol"), cleaned.get("proposed_protocol")
        if base and proposed and base.pk == proposed.pk:
            self.add_error(
                "proposed_protocol", "Choose a proposed version that differs from the base."
            )
        return cleaned


class ExpectedChangeForm(forms.Form):
    """One expected behaviour change: what the model does before and after."""

    behaviour = forms.CharField(
        max_length=500, widget=forms.TextInput(attrs={"placeholder": "e.g. e-mail in a summary"})
    )
    before = forms.CharField(
        max_length=2000,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "quoted verbatim"}),
    )
    after = forms.CharField(
        max_length=2000,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "redacted"}),
    )


ExpectedChangeFormSet = forms.formset_factory(
    ExpectedChangeForm, extra=1, can_delete=True, max_num=50, validate_max=True
)


def expected_changes_from(formset) -> list[dict]:
    """The kept rows, in order: existing rows (even unchanged) and filled-in new ones."""
    rows = []
    initial_count = formset.initial_form_count()
    for index, form in enumerate(formset.forms):
        if index >= initial_count and not form.has_changed():
            continue  # an untouched blank row
        if formset.can_delete and formset._should_delete_form(form):
            continue
        data = form.cleaned_data
        rows.append({k: data.get(k, "") for k in ("behaviour", "before", "after")})
    return rows


class ReviewForm(forms.Form):
    """A signed review decision; the password re-authenticates the signer."""

    decision = forms.ChoiceField(
        choices=[
            ("approve", "Approve deployment"),
            ("request_changes", "Request changes"),
            ("reject", "Reject"),
        ],
        widget=forms.RadioSelect,
    )
    comment = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        required=False,
        max_length=10_000,
        help_text="Required when you request changes or reject.",
    )
    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text="Re-enter your password to sign.",
    )
    expected_sha256 = forms.CharField(widget=forms.HiddenInput, max_length=64)
    acknowledge_flagged_reasoning = forms.BooleanField(
        required=False,
        label="I acknowledge the flagged evaluation-aware reasoning",
        help_text="Approvals only. Needed when the evaluation flagged the model's reasoning "
        "above the suite's limit (the deploy gate says so).",
    )


class WithdrawForm(forms.Form):
    reason = forms.CharField(max_length=500, required=False)


#: The environments the UI offers when nothing else is known about a system. Deployments
#: store the environment as free text (the API accepts any name up to 50 characters), so the
#: names already used for the system's deployments are offered too.
KNOWN_ENVIRONMENTS = ("staging", "production")


def environment_choices(system=None) -> list[tuple[str, str]]:
    """The system's environments in promotion order (configured by an admin)."""
    from .env_models import Environment

    if system is None:
        return [(name, name.capitalize()) for name in KNOWN_ENVIRONMENTS]
    names = (
        Environment.objects.filter(system=system).order_by("order").values_list("name", flat=True)
    )
    return [(name, name.capitalize() if name in KNOWN_ENVIRONMENTS else name) for name in names]


class DeployForm(forms.Form):
    """The environment a change goes live in: a labelled choice, never a free-text box."""

    environment = forms.ChoiceField(
        label="Environment", initial="production", help_text="Where the change goes live."
    )
    blackout_override = forms.BooleanField(
        required=False, help_text="Deploy inside a blackout window (one approval more)."
    )

    def __init__(self, *args, system=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["environment"].choices = environment_choices(system)


class ChangeFilterForm(forms.Form):
    """The change list's filters (all optional, all from the query string)."""

    SORTS = [
        ("-updated", "Recently updated"),
        ("-created", "Newest first"),
        ("created", "Oldest first"),
    ]

    q = forms.CharField(required=False, label="Search", max_length=200)
    state = forms.ChoiceField(required=False, choices=[("", "Any state")] + [
        (s, states.LABELS[s]) for s in states.STATES
    ])  # fmt: skip
    system = forms.ModelChoiceField(
        required=False, queryset=AISystem.objects.all(), empty_label="Any system"
    )
    author = forms.CharField(
        required=False,
        max_length=150,
        widget=forms.TextInput(attrs={"placeholder": "username"}),
    )
    risk = forms.ChoiceField(
        required=False, choices=[("", "Any risk"), *ChangeRequest.RISK_CHOICES]
    )
    sort = forms.ChoiceField(required=False, choices=SORTS)

    ORDERING = {"-updated": ("-updated_at", "-id"), "-created": ("-created_at", "-id"),
                "created": ("created_at", "id")}  # fmt: skip

    def apply(self, qs):
        if not self.is_valid():
            return qs.order_by("-updated_at", "-id")
        data = self.cleaned_data
        if data.get("q"):
            term = data["q"].strip()
            query = Q(title__icontains=term) | Q(rationale__icontains=term)
            # "CR-12" or "12" also finds change 12 (parse_id: ASCII digits in the id range).
            number = parse_id(term[3:] if term.upper().startswith("CR-") else term)
            if number is not None:
                query |= Q(pk=number)
            qs = qs.filter(query)
        if data.get("state"):
            qs = qs.filter(state=data["state"])
        if data.get("system"):
            qs = qs.filter(system=data["system"])
        if data.get("author"):
            qs = qs.filter(author__username=data["author"])
        if data.get("risk"):
            qs = qs.filter(risk=data["risk"])
        return qs.order_by(*self.ORDERING.get(data.get("sort") or "-updated"))


class AuditFilterForm(forms.Form):
    verb = forms.CharField(required=False, max_length=64, help_text="Prefix, e.g. change.")
    actor = forms.CharField(required=False, max_length=150, label="Actor (username)")
    object_type = forms.CharField(required=False, max_length=64, label="Object type")
    object_id = forms.CharField(required=False, max_length=64, label="Object id")
    since = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )


class ProtocolVersionForm(forms.Form):
    """A new, immutable protocol version of a system: the same fields as
    ``POST /api/v1/systems/{id}/protocols/``; ``services.protocol_version_create`` validates."""

    version = forms.CharField(
        max_length=40,
        help_text="A name no other version of this system has, e.g. v3.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    system_prompt = forms.CharField(
        strip=False,
        widget=forms.Textarea(attrs={"rows": 8}),
        help_text="What the model is given as its system prompt.",
    )
    body = forms.CharField(
        required=False,
        strip=False,
        label="Protocol",
        widget=forms.Textarea(attrs={"rows": 14}),
        help_text="The objectives, constraints and operating procedures. Markdown.",
    )

    def clean(self):
        cleaned = super().clean()
        # Browsers send CRLF; the API stores what it gets, usually LF. Normalise, so the same
        # text gets the same content hash whichever way it was entered.
        for name in ("system_prompt", "body"):
            if isinstance(cleaned.get(name), str):
                cleaned[name] = cleaned[name].replace("\r\n", "\n")
        return cleaned
