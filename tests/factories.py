"""factory-boy factories. Workflow objects are built through services where it matters."""

from __future__ import annotations

import factory
from django.contrib.auth.models import Group, User

from changes import content
from changes.models import AISystem, ChangeRequest, ProtocolVersion, Team

PASSWORD = "correct horse battery staple"


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"Team {n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        if create and extracted:
            for name in extracted:
                self.groups.add(Group.objects.get_or_create(name=name)[0])
        if create:
            self.save()

    @factory.post_generation
    def team(self, create, extracted, **kwargs):
        if create and extracted:
            extracted.members.add(self)


class SystemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AISystem

    name = factory.Sequence(lambda n: f"system-{n}")
    owner_team = factory.SubFactory(TeamFactory)
    criticality = "medium"
    target = factory.LazyFunction(lambda: {"kind": "reference", "agent": "compliant"})


class ProtocolFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProtocolVersion

    system = factory.SubFactory(SystemFactory)
    version = factory.Sequence(lambda n: f"v{n}")
    body = "# Protocol\n\nBe helpful."
    system_prompt = factory.Sequence(lambda n: f"You are assistant #{n}. Follow the protocol.")
    content_sha256 = factory.LazyAttribute(
        lambda o: content.protocol_sha256(
            version=o.version, body=o.body, system_prompt=o.system_prompt
        )
    )


def change_fields(**overrides) -> dict:
    fields = {
        "title": "Redact e-mail addresses in ticket summaries",
        "rationale": "Summaries leak **PII** into the analytics store.",
        "expected_changes": [
            {"behaviour": "e-mail in summary", "before": "quoted", "after": "redacted"}
        ],
        "test_plan": "Run the pii-redaction suite under monitored and unmonitored cues.",
        "risk": "medium",
        "change_type": "normal",
        "rollout_plan": "Canary 5% then 100%.",
        "backout_plan": "Redeploy v1.",
    }
    fields.update(overrides)
    return fields


def make_change(*, author, system=None, suites=None, **overrides) -> ChangeRequest:
    """A draft change filed through the service, as a user would."""
    from changes import services

    system = system or SystemFactory(owner_team=author.teams.first() or TeamFactory())
    base = ProtocolFactory(system=system)
    proposed = ProtocolFactory(system=system)
    return services.change_request_create(
        actor=author,
        system=system,
        base_protocol=base,
        proposed_protocol=proposed,
        suites=suites or [],
        **change_fields(**overrides),
    )
