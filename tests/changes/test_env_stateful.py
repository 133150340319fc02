"""Random sequences of file, approve, deploy (to any environment, in any order), rebase,
rollback and staged rollouts (declare stages, ask "may stage N start?", report "stage N
started", in or out of order) on one system.

Invariants: the live registry equals the replay of the deployment events (and a model kept
by the test), no deploy ever replaced a version other than its change's base, the gate's
answer to "may stage N start?" is what starting it then does, and the started stages of a
change in an environment are always 1..k of its declared stages, after its deploy there.
"""

import contextlib

import pytest
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from changes import env_selectors, env_services, services, states
from changes.env_models import Environment, LiveVersion, RolloutStage
from changes.models import ChangeRequest, Deployment
from core.errors import DomainError, InvalidTransition
from tests.changes.env_support import approve
from tests.factories import ProtocolFactory, SystemFactory, TeamFactory, UserFactory, change_fields

REFUSED = (DomainError, InvalidTransition)
ENVS = ("staging", "production")
SEEN = {
    "deploy": 0,
    "stale_refused": 0,
    "rebase": 0,
    "rollback": 0,
    "stage_1": 0,  # a deploy through the rollout API
    "stage_later": 0,  # a promotion (stage 2 or more)
    "stage_out_of_order": 0,  # refused: the previous stage has not started
}  # not vacuous
STAGES = st.sampled_from([None, None, [5, 100], [5, 25, 100], [50, 100]])
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

    @rule(
        base=st.integers(0, 50),
        new=st.booleans(),
        other=st.integers(0, 50),
        now=st.booleans(),
        stages=STAGES,
    )
    def file(self, base, new, other, now, stages):
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
        if stages:  # declared before review: part of what reviewers sign
            env_services.change_request_set_stages(
                actor=self.eng, change_request=change, stages=stages
            )
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

    @rule(i=st.integers(0, 50), bad=st.sampled_from([[25, 5, 100], [5, 50], [0, 100], []]))
    def declare_stages(self, i, bad):
        """Stages that do not increase to 100 are refused and write nothing; an empty list
        clears them (only while the change is editable in place)."""
        change = self._pick(i, *states.EDITABLE_IN_PLACE)
        if change is None:
            return
        before = (list(change.stages or []), change.content_sha256)
        try:
            env_services.change_request_set_stages(
                actor=self.eng, change_request=change, stages=bad
            )
        except REFUSED:
            change.refresh_from_db()
            assert (list(change.stages or []), change.content_sha256) == before
            assert bad  # only the malformed lists are refused
            return
        assert bad == []

    @rule(i=PICK, env=st.sampled_from(ENVS), number=st.integers(1, 3))
    def start_stage(self, i, env, number):
        """The deployment tool asks "may stage N start?" and then reports it started: the
        answer and the outcome agree, and a stage never starts before the one before it."""
        if not self.changes:
            return
        change = self._pick(i, *states.STATES) if i < 0 else self._change(i)
        if change is None:
            return
        before = self.model[env]
        reasons = env_services.stage_gate(change, env, number)
        try:
            with transaction.atomic():
                env_services.stage_start(
                    actor=self.eng, change_request=change, environment=env, number=number
                )
        except REFUSED as exc:
            assert reasons, f"the gate said stage {number} may start, then it was refused: {exc}"
            if any("stages go in order" in r for r in reasons):
                SEEN["stage_out_of_order"] += 1
            return
        assert not reasons, reasons
        started = set(
            RolloutStage.objects.filter(change=change, environment=env).values_list(
                "number", flat=True
            )
        )
        assert number in started and all(n in started for n in range(1, number))
        if number == 1:  # stage 1 is the deploy, through the full gate
            assert before in (None, change.base_protocol_id)
            self.model[env] = change.proposed_protocol_id
            SEEN["stage_1"] += 1
            SEEN["deploy"] += 1
        else:
            assert self.model[env] == change.proposed_protocol_id  # still live there
            SEEN["stage_later"] += 1

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
    def started_stages_are_a_prefix_after_the_deploy(self):
        rows = RolloutStage.objects.filter(change__system=self.system).select_related("change")
        by_key: dict[tuple[int, str], list] = {}
        for row in rows:
            by_key.setdefault((row.change_id, row.environment), []).append(row)
        for (change_id, env), started in by_key.items():
            change = started[0].change
            numbers = sorted(r.number for r in started)
            assert numbers == list(range(1, len(numbers) + 1)), numbers
            assert all(r.percent == change.stages[r.number - 1] for r in started)
            assert Deployment.objects.filter(change_id=change_id, environment=env).exists()

    @invariant()
    def deployed_means_reached_production(self):
        for change in ChangeRequest.objects.filter(system=self.system, state=states.DEPLOYED):
            assert change.deployments.filter(environment="production").exists()


@pytest.mark.heavy
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
