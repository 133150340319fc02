"""``manage.py verify_audit``: walk the audit hash chain; exit 1 naming the first bad event."""

from django.core.management.base import BaseCommand, CommandError

from changes import audit


class Command(BaseCommand):
    help = (
        "Verify the audit log's hash chain. Prints 'OK: N events, head #id hash' and exits 0, "
        "or names the first broken event and exits 1."
    )

    def handle(self, *args, **options):
        count, problem = audit.verify_chain()
        if problem is not None:
            # CommandError prints to stderr and exits with status 1.
            raise CommandError(
                f"BROKEN: event #{problem.event_id}: {problem.reason} "
                f"({count} event(s) before it verified).",
                returncode=1,
            )
        head = audit.head()
        where = f"head #{head.pk} {head.hash}" if head else "empty chain"
        self.stdout.write(f"OK: {count} events, {where}")
