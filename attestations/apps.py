from django.apps import AppConfig


class AttestationsConfig(AppConfig):
    """Signed PDF attestations of changes, and their verification."""

    name = "attestations"

    def ready(self):
        pass
