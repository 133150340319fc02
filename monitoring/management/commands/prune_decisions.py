"""``manage.py prune_decisions [--older-than DAYS]``: apply the decision retention."""

from django.core.management.base import BaseCommand

from monitoring import services


class Command(BaseCommand):
    help = "Delete graded, unsampled live decisions older than the retention (rollups stay)."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, default=None, help="days")

    def handle(self, *args, older_than=None, **options):
        removed = services.decisions_prune(older_than_days=older_than)
        self.stdout.write(f"removed {removed} decision(s)")
