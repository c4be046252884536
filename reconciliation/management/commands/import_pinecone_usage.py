from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from reconciliation.services import ReconcileError, pinecone_usage_import


class Command(BaseCommand):
    help = (
        "Import a Pinecone usage export (CSV from the console's Settings › Usage › Download); "
        "the days it covers replace what was imported for them before."
    )

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("file", help="the CSV file")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        path = Path(options["file"])
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from None
        try:
            result = pinecone_usage_import(text=text)
        except ReconcileError as exc:
            raise CommandError(f"{path}: {exc}") from None
        span = f"{result.days[0]} to {result.days[-1]}" if result.days else "no days"
        self.stdout.write(f"Imported {result.rows} Pinecone usage rows ({span}), ${result.cost_usd:,.2f} in all")
