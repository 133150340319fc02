"""The batch executor: runs a batch's samples against the target on a long-lived asyncio event
loop, one per thread, with the process's cache of built targets (HTTP clients, pinned hosts).

This module calls targets and judges and touches no row; the writes are
``batch_services``, whose ``batch_execute`` calls :data:`EXECUTOR` under a lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time

from django.conf import settings

from . import graders as grader_mod
from . import registry, runner
from .models import EvaluationRun
from .targets import TargetConfigError
from .targets import build_target as _make_target
from .targets.base import Target, TargetError
from .targets.secrets import NO_SECRETS

#: A worker process rebuilds its cached targets (clients, pinned addresses) this often.
TARGET_CACHE_SECONDS = 300.0


def _setting(name: str, default):
    return getattr(settings, name, default)


def build_target(config: dict, secrets=NO_SECRETS):
    return _make_target(
        config,
        allowed_hosts=list(_setting("EVAL_ALLOWED_HOSTS", [])),
        max_response_bytes=int(_setting("EVAL_MAX_RESPONSE_BYTES", 1_000_000)),
        secrets=secrets,
    )


class UnavailableJudge(Target):
    """Stands in for a suite's judge that cannot be used: each judge call fails with the
    reason, so judge-graded samples become errors that say what to fix."""

    kind = "judge-unavailable"

    def __init__(self, reason: str):
        self.reason = reason

    async def complete(self, messages, *, seed):
        raise TargetError(f"judge unavailable: {self.reason}")


class BatchExecutor:
    """Runs batches in one long-lived event loop (one per thread: see PerThreadExecutor).

    Why not ``runner.run_batch_sync`` (a new loop, client and connections per batch): a worker
    runs batch after batch against the same target, and rebuilding the HTTP client for each
    one throws away its keep-alive connections. Targets are cached per config (and allow-list)
    for the life of the process; a prefork child builds its own on first use, after the fork.
    """

    def __init__(self):
        self._loop: asyncio.AbstractEventLoop | None = None
        self._targets: dict[str, object] = {}
        self._pid: int | None = None
        self._built = time.monotonic()

    def _key(self, config: dict) -> str:
        allowed = sorted(_setting("EVAL_ALLOWED_HOSTS", []))
        return json.dumps([config, allowed, _setting("EVAL_MAX_RESPONSE_BYTES", 0)],
                          sort_keys=True, default=str)  # fmt: skip

    def _target(self, config: dict, secrets=NO_SECRETS):
        key = self._key([config, secrets.identity()])
        if len(self._targets) >= 32 or time.monotonic() - self._built > TARGET_CACHE_SECONDS:
            # Many distinct targets, or old ones: start afresh (a host name is resolved and
            # pinned once per target, so a long-lived pin would outlive DNS changes).
            self.close()
            self._ensure_loop()
        target = self._targets.get(key)
        if target is None:
            if not self._targets:
                self._built = time.monotonic()
            target = self._targets[key] = build_target(config, secrets)
        return target

    def calibrate(self, run: EvaluationRun) -> dict | None:
        """The judge's agreement with the suite's labelled examples, or None when the suite
        has none. A judge that cannot be used gives every example as an error."""
        document = run.suite.document
        judge_doc = document.get("judge") if isinstance(document.get("judge"), dict) else {}
        examples = judge_doc.get("calibration") or []
        if not examples:
            return None
        self._ensure_loop()
        judge = self._judge(document, run.suite.name)
        loop = self._ensure_loop()
        return loop.run_until_complete(
            grader_mod.calibrate_judge(
                judge or UnavailableJudge("the suite names no judge"),
                examples,
                votes=judge_doc.get("votes", 1),
                seed=run.seed,
            )
        )

    def _judge(self, document: dict, suite_name: str):
        try:
            found = registry.judge_for_suite(document, suite_name=suite_name)
        except registry.JudgeUnavailable as exc:
            return UnavailableJudge(str(exc))
        if found is None:
            return None
        try:
            return self._target(*found)
        except TargetConfigError as exc:
            return UnavailableJudge(f"the judge model cannot be used here: {exc}")

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._pid != os.getpid():  # forked: the parent's loop and clients are not ours
            self._loop, self._targets, self._pid = None, {}, os.getpid()
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop

    def run(self, run: EvaluationRun, keys: list) -> list:
        self._ensure_loop()  # first: a fork resets the cache before targets are looked up
        document = run.suite.document
        # Secrets are granted again on every batch: a revoked grant stops the next batch.
        config, secrets = registry.target_for_system(run.target, system_name=run.change.system.name)
        target = self._target(config, secrets)
        judge = self._judge(document, run.suite.name)
        loop = self._ensure_loop()  # after: looking up may have started afresh
        coro = runner.run_batch(
            target, document, keys, run.system_prompt, run_seed=run.seed, judge=judge
        )
        return loop.run_until_complete(coro)

    def close(self) -> None:
        targets, self._targets = list(self._targets.values()), {}
        if self._loop is not None and not self._loop.is_closed():
            for target in targets:
                with contextlib.suppress(Exception):
                    self._loop.run_until_complete(target.aclose())
            self._loop.close()
        self._loop = None


class PerThreadExecutor:
    """One :class:`BatchExecutor` (its own event loop and clients) per thread.

    Why: an event loop runs on one thread at a time. Under ``--pool threads`` (or any pool
    that runs tasks on several threads of one process) a shared loop made every concurrent
    batch fail with "This event loop is already running". Each pool thread is long-lived, so
    each keeps its loop and keep-alive connections batch after batch, as a prefork child does.
    """

    def __init__(self):
        self._local = threading.local()

    def _executor(self) -> BatchExecutor:
        executor = getattr(self._local, "executor", None)
        if executor is None:
            executor = self._local.executor = BatchExecutor()
        return executor

    def run(self, run: EvaluationRun, keys: list) -> list:
        return self._executor().run(run, keys)

    def calibrate(self, run: EvaluationRun):
        return self._executor().calibrate(run)

    def close(self) -> None:
        """Closes the calling thread's loop and clients (other threads keep theirs)."""
        executor = getattr(self._local, "executor", None)
        if executor is not None:
            executor.close()


EXECUTOR = PerThreadExecutor()
