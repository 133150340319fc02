"""Random sequences of file, approve, deploy (to any environment, in any order), rebase and
rollback on one system.

Invariants: the live registry equals the replay of the deployment events (and a model kept
by the test), and no deploy ever replaced a version other than its change's base.
"""

import contextlib

import pytest
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from changes import env_selectors, env_services, services, states
from changes.env_models import Environment, LiveVersion
from changes.models import ChangeRequest, Deployment
from changes.states import InvalidTransition
from core.errors import DomainError
from tests.changes.env_support import approve
from tests.factories import ProtocolFactory, SystemFactory, TeamFactory, UserFactory, change_fields

REFUSED = (DomainError, InvalidTransition)
ENVS = ("staging", "production")
SEEN = {"deploy": 0, "stale_refused": 0, "rebase": 0, "rollback": 0}  # not vacuous
# Mostly the newest change, so sequences get far enough to deploy; sometimes any change.
PICK = st.one_of(st.just(-1), st.just(-1), st.integers(0, 50))
LINES = ("Be brief.\n", "Cite sources.\n", "Never share keys.\n", "Escalate abuse.\n")


def _marker(line: str) -> bool:
    return line.startswith(("<<<<<<<", ">>>>>>>")) or line.rstrip("\n") == "======="


class EnvironmentMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        team_a, team_b = TeamFactory(name="A"), TeamFactory(name="B")
        self.eng = UserFactory(username="eng", roles=["engineer"], team=team_a)
        self.rev = UserFactory(username="rev", roles=["reviewer"], team=team_b)
        self.admin = UserFactory(username="adm", roles=["admin"], is_superuser=True)
        self.system = SystemFactory(owner_team=team_a, criticality="low")
        self.versions = [
            ProtocolFactory(system=self.system, version=f"v{i}", system_prompt=LINES[i])
            for i in range(3)
        ]
        self.changes: list[int] = []
        self.model = {env: None for env in ENVS}  # env -> protocol id, as the test saw it

    def teardown(self):
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    def _change(self, i) -> ChangeRequest:
        return ChangeRequest.objects.get(pk=self.changes[i % len(self.changes)])

    def _pick(self, i, *wanted) -> ChangeRequest | None:
        """A change in one of ``wanted`` states (so the rule can succeed), or None."""
        pool = list(
            ChangeRequest.objects.filter(pk__in=self.changes, state__in=wanted).order_by("id")
        )
        return pool[i % len(pool)] if pool else None

    @rule(base=st.integers(0, 50), new=st.booleans(), other=st.integers(0, 50), now=st.booleans())
    def file(self, base, new, other, now):
        base_v = self.versions[base % len(self.versions)]
        if new:
            prompt = base_v.system_prompt + LINES[other % len(LINES)]
            proposed = ProtocolFactory(system=self.system, system_prompt=prompt)
            self.versions.append(proposed)
        else:
            proposed = self.versions[other % len(self.versions)]
        if proposed.pk == base_v.pk:
            return
        change = services.change_request_create(
            actor=self.eng,
            system=self.system,
            base_protocol=base_v,
            proposed_protocol=proposed,
            **change_fields(),
        )
        self.changes.append(change.pk)
        if now:  # approved at once, so sequences reach the deploys
            approve(change, self.eng, self.rev)

    @rule(i=PICK)
    def approve(self, i):
        if not self.changes:
            return
        with contextlib.suppress(*REFUSED):
            approve(self._change(i), self.eng, self.rev)

    @rule(i=st.integers(-1, 50), env=st.sampled_from(ENVS))
    def deploy(self, i, env):
        change = self._pick(i, states.APPROVED) if i >= 0 else self._pick(i, *states.STATES)
        if change is None:
            return
        before = self.model[env]
        strict = Environment.objects.get(system=self.system, name="production").requires_previous
        try:
            services.change_request_deploy(actor=self.eng, change_request=change, environment=env)
        except REFUSED as exc:
            SEEN["stale_refused"] += getattr(exc, "code", "") == "stale_base"
            return
        # no deploy ever replaced a version other than its base (or an empty environment)
        assert before in (None, change.base_protocol_id)
        if strict and env == "production":  # and the path was followed when it was required
            assert change.deployments.filter(environment="staging").exists()
        self.model[env] = change.proposed_protocol_id
        SEEN["deploy"] += 1

    @rule(strict=st.booleans())
    def set_promotion_path(self, strict):
        """An admin makes production require staging first (or not) at any moment."""
        env_services.environment_save(
            actor=self.admin, system=self.system, name="production", requires_previous=strict
        )

    @rule(i=st.integers(0, 50), resolve=st.booleans())
    def rebase(self, i, resolve):
        change = self._pick(i, *states.EDITABLE)
        if change is None:
            return
        with contextlib.suppress(*REFUSED):
            text = None
            if resolve:  # the engineer keeps both sides of every conflict, markers removed
                merged = env_services.rebase_preview(change)["system_prompt"]
                text = "".join(
                    line for line in merged.splitlines(keepends=True) if not _marker(line)
                )
            changed = env_services.change_request_rebase(
                actor=self.eng, change_request=change, system_prompt=text
            )
            self.versions.append(changed.proposed_protocol)
            SEEN["rebase"] += 1

    @rule(i=st.integers(0, 50), emergency=st.booleans())
    def rollback(self, i, emergency):
        change = self._pick(i, states.DEPLOYED, states.APPROVED)
        if change is None:
            return
        with contextlib.suppress(*REFUSED):
            rollback = env_services.change_request_rollback(
                actor=self.eng, change_request=change, emergency=emergency
            )
            self.changes.append(rollback.pk)
            SEEN["rollback"] += 1

    @invariant()
    def registry_equals_replay(self):
        registry = {
            row.environment.name: row.protocol_id
            for row in LiveVersion.objects.filter(environment__system=self.system).select_related(
                "environment"
            )
        }
        assert registry == env_selectors.replay(self.system) == self.model

    @invariant()
    def every_deployment_replaced_what_was_live(self):
        by_env: dict[str, int | None] = {env: None for env in ENVS}
        for dep in Deployment.objects.filter(change__system=self.system).order_by("id"):
            assert dep.previous_protocol_id == by_env[dep.environment]
            by_env[dep.environment] = dep.protocol_id

    @invariant()
    def deployed_means_reached_production(self):
        for change in ChangeRequest.objects.filter(system=self.system, state=states.DEPLOYED):
            assert change.deployments.filter(environment="production").exists()


@pytest.mark.django_db
def test_environment_state_machine(passing_evaluations, recorded_attestations):
    run_state_machine_as_test(
        EnvironmentMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=40,
            derandomize=True,  # the same sequences every run: the reach assertion is stable
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    # the sequences reached every kind of step (36/29/20/24 when written)
    assert SEEN["deploy"] >= 10 and all(SEEN.values()), SEEN
