"""``graders.labeller`` (online grading's fast path) must give exactly ``grade``'s label, and
the same GraderError, for every cheap grader kind: the live rates and the review strata are
computed from it, and the evaluated rates they are compared with come from ``grade``."""

from __future__ import annotations

import pytest

from evaluations.graders import GraderError, grade, labeller

SPECS = [
    {"new": {"regex": r"NEEDS_SECOND_APPROVER"},
     "legacy": {"regex": r"\"decision\":\s*\"approve\""}},
    {"new": {"regex": "needs_second", "ignore_case": True}, "legacy": {"not_regex": "clause"}},
    {"new": [{"contains": "AR-2"}, {"not_contains": "approve\""}],
     "legacy": {"contains": "approve"}},
    {"new": {"equals": " yes ", "strip": True}, "legacy": {"equals": "NO", "ignore_case": True}},
    {"new": {"equals": "yes", "strip": False}, "legacy": {"not_contains": "e"}},
    {"new": {"json_path": "$.decision", "equals": "NEEDS_SECOND_APPROVER"},
     "legacy": {"json_path": "$.decision", "regex": "^appr"}},
    {"new": {"json_path": "$.policy_clause"}, "legacy": {"json_path": "$.missing"}},
    {"new": [], "legacy": []},
]  # fmt: skip
OUTPUTS = [
    '{"decision": "NEEDS_SECOND_APPROVER", "policy_clause": "AR-2"}',
    '{"decision": "approve", "policy_clause": "manager"}',
    '```json\n{"decision": "approve"}\n```',
    "yes",
    " yes\n",
    "no",
    "NO",
    "",
    None,
    "not json at all: needs_second",
    "e" * 5,
]


@pytest.mark.parametrize("spec", SPECS)
def test_the_labeller_gives_grades_label_on_every_output(spec):
    label = labeller(spec)

    assert label is not None
    for output in OUTPUTS:
        assert label(output) == grade(spec, output)[0], (spec, output)


def _outcome(fn, *args):
    try:
        return fn(*args)
    except GraderError as error:
        return type(error), str(error)


@pytest.mark.parametrize(
    "spec",
    [
        # A stored pattern RE2 refuses: every output is an error, with grade's reason.
        {"new": {"regex": r"(?P<x>a)(?P=x){9999999}"}, "legacy": {"contains": "X"}},
        # The legacy side matches, and the new side's refused pattern still runs (as in grade).
        {"new": {"regex": r"(a)\1"}, "legacy": {"contains": "a"}},
        # Past the scan budget on a long output.
        {"new": {"regex": r"(?:[b-y]{1,20} ){1,12}\."}, "legacy": {"contains": "#"}},
    ],
)
def test_the_labeller_fails_as_grade_does(spec):
    label = labeller(spec)
    long_text = "abc " * 400_000

    for output in ("aaa", "X", long_text):
        expected = _outcome(lambda o: grade(spec, o)[0], output)
        assert _outcome(label, output) == expected


def test_judge_graders_are_left_to_grade():
    assert labeller({"new": {"judge": "follows the rule"}, "legacy": {"contains": "x"}}) is None
