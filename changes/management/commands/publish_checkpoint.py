"""``manage.py publish_checkpoint``: sign and store a checkpoint of the audit chain now.

Run by the container entrypoint after migrations (so every release is anchored) and usable
by hand; beat does the same every ``AUDIT_CHECKPOINT_MINUTES``.
"""

from django.core.management.base import BaseCommand, CommandError

from changes import checkpoints


class Command(BaseCommand):
    help = "Publish a signed checkpoint of the audit chain to AUDIT_CHECKPOINT_DIR."

    def add_arguments(self, parser):
        parser.add_argument("--reason", default="manual", help="recorded with the DB copy")

    def handle(self, *args, **options):
        try:
            checkpoint = checkpoints.publish_checkpoint(reason=options["reason"])
        except checkpoints.CheckpointError as exc:
            raise CommandError(str(exc), returncode=1) from None
        self.stdout.write(
            f"Published {checkpoint.name}: {checkpoint.size} events, root {checkpoint.root_hex}"
        )
