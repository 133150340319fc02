"""The evaluation engine as the workflow sees it: ``changes.hooks.EvaluationPort``.

Registered from ``EvaluationsConfig.ready``. Every method is a thin delegation to
the ``*_services`` modules (writes, inside the workflow's own transaction) or
``evaluations.selectors`` (reads), so the workflow never imports this app.
"""

from __future__ import annotations

from changes.hooks import EvaluationPort

from . import selectors


class DjangoEvaluationPort(EvaluationPort):
    def link_suites(self, change, suite_ids: list[int]) -> None:
        """Replace the change's linked suites; unknown ids -> ValidationFailed naming them."""
        from . import suite_services

        suite_services.change_suites_set(change=change, suite_ids=suite_ids)

    def validate_target(self, target: dict) -> dict:
        """The normalised target config for storing (every write path of a system's target);
        an invalid one -> ValidationFailed("target: ..."): no ``*_env`` field, no secret value,
        only registered secret names (see :mod:`evaluations.registry`)."""
        from . import registry

        return registry.target_validate(target)

    def refuse_secret_text(self, fields: dict) -> None:
        """The suites' and targets' detector (registered secret values, server keys and
        credential shapes) applied to free text such as a system's name and description."""
        from . import registry

        registry.refuse_secret_text(fields)

    def suite_refs(self, change) -> list[dict]:
        """[{"id", "name", "version", "sha256"}] of the linked suites, sorted."""
        return [
            {"id": s.pk, "name": s.name, "version": s.version, "sha256": s.content_sha256}
            for s in selectors.linked_suites(change)
        ]

    def start(self, change, *, actor) -> list:
        """One queued run per linked suite, in the caller's transaction; enqueued on commit."""
        from . import run_services

        return run_services.runs_start(change=change, actor=actor)

    def cancel(self, change, *, actor) -> None:
        """Live runs -> cancelled (``evaluation.run_cancelled`` each)."""
        from . import run_services

        run_services.runs_cancel(change=change, actor=actor, reason="The change was withdrawn.")

    def gate_reasons(self, change) -> list[str]:
        return selectors.gate_reasons(change)

    def evaluation_digest(self, change) -> str:
        return selectors.evaluation_digest(change)

    def suite_choices(self) -> list[tuple[int, str]]:
        """Every suite, by name then id, labelled "name vVERSION"."""
        from .models import Suite

        return [
            (pk, f"{name} v{version}" if version else str(name))
            for pk, name, version in Suite.objects.order_by("name", "pk").values_list(
                "pk", "name", "version"
            )
        ]

    def gate_notes(self, change) -> list[str]:
        return selectors.gate_notes(change)

    def panel(self, change, user) -> tuple[str, dict] | None:
        """The change page's evaluation section. Context keys (agreed with the UI):
        ``change``; ``runs`` (every run of the change, newest first, with its suite);
        ``current_runs`` (the newest run per linked suite for the current content hash);
        ``planned_power`` ([{"suite", **stats.plan_power(suite.document)}] per linked suite);
        ``progress`` ({run id: selectors.run_progress(run)} for the runs listed)."""
        runs = selectors.runs_for_change(change)  # iterated below, so its cache is filled
        return (
            "evaluations/_change_panel.html",
            {
                "change": change,
                "runs": runs,
                "current_runs": selectors.current_runs(change),
                "planned_power": selectors.planned_power(change),
                "progress": {run.pk: selectors.run_progress(run) for run in runs},
            },
        )
