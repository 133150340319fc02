from django.apps import AppConfig


class EvaluationsConfig(AppConfig):
    """Suites, runs, samples, graders, statistics and the evaluation gate."""

    name = "evaluations"

    def ready(self):
        pass
