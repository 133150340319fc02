"""``manage.py verify_attestation FILE.pdf``: print every check; exit 0 when valid, else 1."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from attestations import services

OK, BAD = "PASS", "FAIL"


class Command(BaseCommand):
    help = (
        "Verify an attestation PDF: the PAdES signature over the whole file, the embedded "
        "DSSE envelope's signature, the pages against the statement, the file against the "
        "one issued, the statement against the records, and the cited audit chain head. "
        "Prints each check and the standing (current or superseded); exits 0 when valid, "
        "1 otherwise."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="The attestation PDF.")
        parser.add_argument(
            "--json", action="store_true", help="Print the result as one JSON object."
        )

    def handle(self, *args, **options):
        path = Path(options["file"])
        try:
            size = path.stat().st_size
            if size > services.MAX_UPLOAD_BYTES:
                result = services.refuse_upload(
                    actor=None, size=size, filename=path.name, source="command"
                )
            else:
                result = services.verify_upload(
                    actor=None, pdf_bytes=path.read_bytes(), filename=path.name, source="command"
                )
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror or exc}") from None
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2))
        else:
            for item in result["checks"]:
                mark = OK if item["ok"] else BAD
                style = self.style.SUCCESS if item["ok"] else self.style.ERROR
                detail = f": {item['detail']}" if item["detail"] else ""
                self.stdout.write(style(f"[{mark}] {item['label']}") + detail)
            change = f" (CR-{result['change']})" if result["change"] else ""
            if result["valid"]:
                self.stdout.write(self.style.SUCCESS(f"VALID{change}: every check passed."))
                detail = result["standing_detail"] or {}
                if result["standing"] == "superseded":
                    by = detail.get("superseded_by") or {}
                    by_text = f" by v{by['version']}" if by else ""
                    when = (
                        f" since {detail['superseded_at']}" if detail.get("superseded_at") else ""
                    )
                    self.stdout.write(
                        self.style.WARNING(f"SUPERSEDED{by_text}{when}: {detail.get('why')}.")
                    )
                else:
                    self.stdout.write(self.style.SUCCESS("CURRENT: its facts still hold."))
            else:
                self.stdout.write(self.style.ERROR(f"NOT VALID{change}. What failed:"))
                for line in result["failed"]:
                    self.stdout.write(self.style.ERROR(f"  - {line}"))
        if not result["valid"]:
            raise SystemExit(1)
