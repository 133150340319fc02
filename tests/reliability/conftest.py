"""Reliability tests: real worker processes, crashes and broker outages.

The worker fixtures are shared with ``tests/evaluations/test_worker.py``.
"""

from tests.evaluations.workers import start_worker, worker_queue  # noqa: F401 - fixtures
