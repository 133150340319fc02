import pytest

from changes import hooks
from tests.changes.ports import PassingEvaluationPort, RecordingAttestationPort


@pytest.fixture
def passing_evaluations(monkeypatch):
    """Replace the evaluation engine with one whose verdicts always pass."""
    port = PassingEvaluationPort()
    monkeypatch.setattr(hooks, "_evaluation", port)
    return port


@pytest.fixture
def recorded_attestations(monkeypatch):
    port = RecordingAttestationPort()
    monkeypatch.setattr(hooks, "_attestation", port)
    return port
