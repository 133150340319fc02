from django.apps import AppConfig


class AttestationsConfig(AppConfig):
    """Signed PDF attestations of changes, and their verification."""

    name = "attestations"

    def ready(self):
        from changes import hooks

        from .port import Attestations

        hooks.register_attestation(Attestations())
