"""``manage.py verify_attestation FILE.pdf``: print every check; exit 0 when valid, else 1."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from attestations import services

OK, BAD = "PASS", "FAIL"


class Command(BaseCommand):
    help = (
        "Verify an attestation PDF: the embedded DSSE envelope's signature against the "
        "configured public keys, the statement against the records, and the cited audit chain "
        "head. Prints each check; exits 0 when valid, 1 otherwise."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="The attestation PDF.")
        parser.add_argument(
            "--json", action="store_true", help="Print the result as one JSON object."
        )

    def handle(self, *args, **options):
        path = Path(options["file"])
        try:
            if path.stat().st_size > services.MAX_UPLOAD_BYTES:
                raise CommandError(f"{path} is larger than 20 MB; not an attestation we wrote.")
            data = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror or exc}") from None
        result = services.verify_upload(
            actor=None, pdf_bytes=data, filename=path.name, source="command"
        )
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2))
        else:
            for item in result["checks"]:
                mark = OK if item["ok"] else BAD
                style = self.style.SUCCESS if item["ok"] else self.style.ERROR
                detail = f": {item['detail']}" if item["detail"] else ""
                self.stdout.write(style(f"[{mark}] {item['name']}") + detail)
            change = f" (CR-{result['change']})" if result["change"] else ""
            if result["valid"]:
                self.stdout.write(self.style.SUCCESS(f"VALID{change}: every check passed."))
            else:
                failed = ", ".join(c["name"] for c in result["checks"] if not c["ok"])
                self.stdout.write(self.style.ERROR(f"INVALID{change}: failed {failed}."))
        if not result["valid"]:
            raise SystemExit(1)
