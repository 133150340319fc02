"""``manage.py verify_audit``: walk the audit hash chain and check it against the newest signed
checkpoint in ``AUDIT_CHECKPOINT_DIR``; exit 1 naming the first bad event and the checkpoint
it contradicts."""

from django.core.management.base import BaseCommand, CommandError

from changes import checkpoints


class Command(BaseCommand):
    help = (
        "Verify the audit log's hash chain and that it still holds everything the newest "
        "signed checkpoint committed to. Prints 'OK: N events, head #id hash' and the "
        "checkpoint, and exits 0; or names the first missing or changed event (and the "
        "checkpoint it contradicts) and exits 1."
    )

    def handle(self, *args, **options):
        report = checkpoints.verify_anchored()
        if report.chain_problem is not None:
            problem = report.chain_problem
            # CommandError prints to stderr and exits with status 1.
            also = f" Against the checkpoint: {report.problem}." if report.problem else ""
            raise CommandError(
                f"BROKEN: event #{problem.event_id}: {problem.reason} "
                f"({report.events} event(s) before it verified).{also}",
                returncode=1,
            )
        if not report.ok:
            raise CommandError(f"BROKEN: {report.reason}.", returncode=1)
        where = f"head #{report.head_id} {report.head_hash}" if report.head_id else "empty chain"
        self.stdout.write(f"OK: {report.events} events, {where}")
        cp = report.checkpoint
        if cp is None:
            self.stdout.write(
                "Not anchored: no checkpoint has been published yet "
                "(manage.py publish_checkpoint; beat publishes one every few minutes)."
            )
        else:
            self.stdout.write(
                f"Anchored: agrees with {cp.describe()}; {report.events - cp.size} event(s) since."
            )
        for warning in report.warnings:
            self.stderr.write(f"WARNING: {warning}")
