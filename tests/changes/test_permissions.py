"""Independence and role rules, case by case."""

import pytest

from changes import permissions, services
from tests.factories import SystemFactory, UserFactory, make_change

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("criticality", "who", "expected_ok"),
    [
        ("low", "reviewer", True),
        ("low", "team_a_reviewer", True),
        ("medium", "team_a_reviewer", True),
        ("high", "team_a_reviewer", False),
        ("critical", "team_a_reviewer", False),
        ("high", "reviewer", True),
        ("critical", "outsider_reviewer", True),
        ("low", "engineer", False),  # the author
        ("low", "engineer2", False),  # no reviewer role
        ("low", "auditor", False),
        ("low", "admin_user", False),  # admins get no bypass
    ],
)
def test_independence_matrix(request, engineer, criticality, who, expected_ok):
    # given a change by `engineer` (team A) on a system of some criticality
    system = SystemFactory(owner_team=engineer.teams.first(), criticality=criticality)
    change = make_change(author=engineer, system=system)
    user = request.getfixturevalue(who)
    # when independence is checked / then it matches the rules, with reasons when refused
    check = permissions.check_independence(user, change)
    assert check.ok is expected_ok
    assert bool(check.reasons) is (not expected_ok)


def test_editor_is_not_independent(engineer, team_a):
    # given a reviewer-engineer on the team who edited the change
    editor = UserFactory(username="editor", roles=["engineer", "reviewer"], team=team_a)
    change = make_change(author=engineer)
    services.change_request_update(
        actor=editor, change_request=change, data={"title": "Sharper title"}
    )
    # when checked / then refused because they edited it
    check = permissions.check_independence(editor, change)
    assert not check.ok and not check.not_editor
    assert "edited" in " ".join(check.reasons)


def test_required_approvals_follow_criticality_and_override(engineer):
    assert SystemFactory(criticality="low").approvals_required == 1
    assert SystemFactory(criticality="medium").approvals_required == 1
    assert SystemFactory(criticality="high").approvals_required == 2
    assert SystemFactory(criticality="critical").approvals_required == 2
    assert SystemFactory(criticality="low", required_approvals=3).approvals_required == 3


@pytest.mark.parametrize(
    ("who", "may_deploy"),
    [
        ("engineer", True),
        ("pipeline", True),
        ("reviewer", False),
        ("auditor", False),
        ("outsider", False),
    ],
)
def test_deploy_roles(request, who, may_deploy):
    assert permissions.can_deploy(request.getfixturevalue(who)) is may_deploy


def test_nul_characters_are_refused_as_bad_input(engineer):
    # given a change; when an edit carries a NUL character (PostgreSQL text cannot hold it)
    from core.errors import ValidationFailed

    change = make_change(author=engineer)
    before = (change.title, change.revision)
    with pytest.raises(ValidationFailed) as info:
        services.change_request_update(
            actor=engineer, change_request=change, data={"title": "bad\x00title"}
        )
    # then it is a 400-class error naming the field, and nothing changed
    assert "title" in info.value.detail
    change.refresh_from_db()
    assert (change.title, change.revision) == before


@pytest.mark.parametrize(
    ("who", "setup", "expected_ok", "fact"),
    [
        ("reviewer", None, True, None),
        ("reviewer", "deactivate", False, "is_active"),
        ("reviewer", "wrote_proposed", False, "not_protocol_author"),
        ("reviewer", "wrote_base", False, "not_protocol_author"),
        ("reviewer", "drop_role", False, "holds_reviewer_role"),
        # admins get no bypass: with the reviewer role they are still bound by every rule
        ("admin_reviewer", "wrote_proposed", False, "not_protocol_author"),
        ("admin_reviewer", "deactivate", False, "is_active"),
        ("admin_reviewer", None, True, None),
    ],
)
def test_independence_matrix_new_rules(request, engineer, who, setup, expected_ok, fact):
    # given a change by `engineer`, and a signer in some situation
    if who == "admin_reviewer":
        user = UserFactory(username="admrev", roles=["admin", "reviewer"], is_superuser=True)
    else:
        user = request.getfixturevalue(who)
    change = make_change(author=engineer)
    if setup == "deactivate":
        user.is_active = False
        user.save()
    elif setup in ("wrote_proposed", "wrote_base"):
        protocol = change.proposed_protocol if setup == "wrote_proposed" else change.base_protocol
        type(protocol).objects.filter(pk=protocol.pk).update(created_by=user)
        change.refresh_from_db()
    elif setup == "drop_role":
        user.groups.clear()
        user = type(user).objects.get(pk=user.pk)
    # when checked / then the rule holds and the failing fact is recorded as such
    check = permissions.check_independence(user, change)
    assert check.ok is expected_ok
    if fact:
        assert check.as_dict()[fact] is False


@pytest.mark.parametrize(
    ("who", "may_confirm"),
    [
        ("engineer", False),  # the author
        ("engineer2", False),  # a teammate without the reviewer role
        ("team_a_reviewer", False),  # high criticality: not on the author's team
        ("admin_user", False),  # no bypass
        ("auditor", False),
        ("pipeline", False),
        ("reviewer", True),
    ],
)
def test_emergency_confirmation_matrix(request, engineer, who, may_confirm):
    from core.errors import NotAllowed

    system = SystemFactory(owner_team=engineer.teams.first(), criticality="high")
    change = make_change(author=engineer, system=system, change_type="emergency")
    actor = request.getfixturevalue(who)
    if may_confirm:
        services.change_request_confirm_emergency(actor=actor, change_request=change)
        change.refresh_from_db()
        assert change.emergency_confirmed
    else:
        with pytest.raises(NotAllowed):
            services.change_request_confirm_emergency(actor=actor, change_request=change)
