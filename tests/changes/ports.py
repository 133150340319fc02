"""A stand-in evaluation port for workflow tests: evaluations always pass.

The workflow tests are about the change graph, not the engine, so they swap the registered
port for this one (the engine has its own tests).
"""

from changes.hooks import AttestationPort, EvaluationPort


class PassingEvaluationPort(EvaluationPort):
    def __init__(self):
        self.started = []
        self.cancelled = []

    def link_suites(self, change, suite_ids):
        pass

    def suite_refs(self, change):
        return []

    def start(self, change, *, actor):
        self.started.append(change.pk)
        return []

    def cancel(self, change, *, actor):
        self.cancelled.append(change.pk)

    def gate_reasons(self, change):
        return []

    def evaluation_digest(self, change):
        return "stub-digest"


class RecordingAttestationPort(AttestationPort):
    def __init__(self):
        self.issued = []

    def issue(self, change, *, reason):
        self.issued.append((change.pk, reason))
