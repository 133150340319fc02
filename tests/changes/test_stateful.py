"""Random sequences of create, edit, submit, verdict, review and deploy by random personas.

Invariant: every deployed change has the required number of valid, independent approvals on
the content hash it was deployed with — whatever order people act in.
"""

import contextlib

import pytest
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from changes import audit, permissions, selectors, services, states
from changes.models import ChangeRequest, Deployment
from core.errors import DomainError, InvalidTransition
from tests.factories import PASSWORD, SystemFactory, TeamFactory, UserFactory, make_change

REFUSED = (DomainError, InvalidTransition)
# Mostly the newest change, so sequences get far enough to deploy; sometimes any change.
PICK = st.one_of(st.just(-1), st.just(-1), st.integers(0, 50))


class WorkflowMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        # Each example runs in a transaction that is rolled back at teardown.
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        team_a, team_b = TeamFactory(name="A"), TeamFactory(name="B")
        self.people = {
            "eng1": UserFactory(username="eng1", roles=["engineer"], team=team_a),
            "eng2": UserFactory(username="eng2", roles=["engineer"], team=team_a),
            "rev_a": UserFactory(username="rev_a", roles=["reviewer"], team=team_a),
            "rev_b1": UserFactory(username="rev_b1", roles=["reviewer"], team=team_b),
            "rev_b2": UserFactory(username="rev_b2", roles=["reviewer"], team=team_b),
            "eng_rev": UserFactory(username="eng_rev", roles=["engineer", "reviewer"], team=team_a),
            "admin": UserFactory(username="adm", roles=["admin"], is_superuser=True),
            "pipe": UserFactory(username="pipe", roles=["pipeline"]),
        }
        self.systems = [
            SystemFactory(owner_team=team_a, criticality=c) for c in ("low", "high", "critical")
        ]
        self.changes: list[int] = []

    def teardown(self):
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    def _change(self, index):
        return ChangeRequest.objects.get(pk=self.changes[index % len(self.changes)])

    @initialize(
        author=st.sampled_from(["eng1", "eng2", "eng_rev"]),
        system=st.integers(0, 2),
        emergency=st.booleans(),
    )
    def first_change(self, author, system, emergency):
        self.create(author, system, emergency)

    # A few changes per example, so sequences go deep enough to reach deploys.
    @precondition(lambda self: len(self.changes) < 3)
    @rule(
        author=st.sampled_from(["eng1", "eng2", "eng_rev"]),
        system=st.integers(0, 2),
        emergency=st.booleans(),
    )
    def create(self, author, system, emergency):
        change = make_change(
            author=self.people[author],
            system=self.systems[system],
            change_type="emergency" if emergency else "normal",
        )
        self.changes.append(change.pk)

    @rule(i=PICK, who=st.sampled_from(["eng1", "eng2", "eng_rev", "rev_b1"]))
    def edit(self, i, who):
        if self.changes:
            try:
                change = self._change(i)
                services.change_request_update(
                    actor=self.people[who],
                    change_request=change,
                    data={"rationale": change.rationale + " more"},
                )
            except REFUSED:
                pass

    @rule(i=PICK, who=st.sampled_from(["eng1", "eng2", "eng_rev"]))
    def submit(self, i, who):
        if self.changes:
            with contextlib.suppress(REFUSED):
                services.change_request_submit(
                    actor=self.people[who], change_request=self._change(i)
                )

    @rule(i=PICK, passed=st.sampled_from([True, True, True, False]))
    def verdict(self, i, passed):
        if self.changes:
            change = self._change(i)
            services.change_request_record_verdict(
                change_id=change.pk, content_sha256=change.content_sha256, passed=passed, reasons=[]
            )

    @rule(
        i=PICK,
        who=st.sampled_from(["rev_a", "rev_b1", "rev_b2", "eng_rev", "eng1", "admin"]),
        decision=st.sampled_from(["approve", "approve", "approve", "request_changes"]),
        good_password=st.sampled_from([True, True, True, False]),
    )
    def review(self, i, who, decision, good_password):
        if self.changes:
            with contextlib.suppress(REFUSED):
                services.review_submit(
                    actor=self.people[who],
                    change_request=self._change(i),
                    decision=decision,
                    comment="see notes",
                    password=PASSWORD if good_password else "nope",
                )

    @rule(i=PICK, who=st.sampled_from(["eng1", "pipe", "rev_b1", "admin"]))
    def deploy(self, i, who):
        if self.changes:
            with contextlib.suppress(REFUSED):
                services.change_request_deploy(
                    actor=self.people[who], change_request=self._change(i)
                )

    @rule(i=PICK, reviewer=st.sampled_from(["rev_a", "rev_b1", "rev_b2", "eng_rev", "eng2"]))
    def advance(self, i, reviewer):
        """The next happy-path step, so random sequences also reach approval and deploy."""
        if not self.changes:
            return
        change = self._change(i)
        try:
            if change.state in (states.DRAFT, states.CHANGES_REQUESTED, states.EVALUATION_FAILED):
                services.change_request_submit(actor=change.author, change_request=change)
            elif change.state == states.EVALUATING:
                self.verdict(i, True)
            elif change.state == states.AWAITING_REVIEW:
                self.review(i, reviewer, "approve", True)
            elif change.state == states.APPROVED:
                self.deploy(i, "pipe")
        except REFUSED:
            pass

    @invariant()
    def deployed_changes_have_independent_approvals(self):
        for change in ChangeRequest.objects.filter(state=states.DEPLOYED):
            deployment = Deployment.objects.get(change=change)
            assert deployment.content_sha256 == change.content_sha256
            approvals = selectors.valid_approvals(change)
            assert len(approvals) >= permissions.required_approvals(change)
            for review in approvals:
                assert review.content_sha256 == change.content_sha256
                assert review.reviewer_id != change.author_id
                assert permissions.check_independence(review.reviewer, change).ok
            if not change.is_emergency:
                assert len(approvals) >= change.system.approvals_required

    @invariant()
    def audit_chain_is_intact(self):
        assert audit.verify_chain()[1] is None


@pytest.mark.heavy
@pytest.mark.django_db
def test_workflow_state_machine(passing_evaluations, recorded_attestations):
    run_state_machine_as_test(
        WorkflowMachine,
        settings=settings(
            max_examples=60,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
