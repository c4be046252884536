import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from projects.models import Project
from reconciliation.openai_admin import AdminApiError
from reconciliation.selectors import reconciliation_report
from reconciliation.services import ReconcileError, openai_bill_import


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


class Command(BaseCommand):
    help = (
        "Import the OpenAI bill (Costs and Usage APIs, with OPENAI_ADMIN_KEY) for the days not final yet, "
        "then print billed beside observed per day and model."
    )

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--project", help="print this project's comparison (default: every project)")
        parser.add_argument("--since", help="fetch every day from this date (YYYY-MM-DD, UTC) again, final or not")
        parser.add_argument("--no-import", action="store_true", help="only print what is stored")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        since = None
        if options.get("since"):
            try:
                since = dt.date.fromisoformat(options["since"])
            except ValueError:
                raise CommandError(f"--since {options['since']!r} is not a date like 2026-11-26") from None
        projects = Project.objects.order_by("name")
        if options.get("project"):
            projects = projects.filter(name=options["project"])
            if not projects.exists():
                raise CommandError(f"no project named {options['project']!r}")
        today = timezone.now().astimezone(dt.UTC).date()
        start = since or today - dt.timedelta(days=13)
        if not options.get("no_import"):
            try:
                result = openai_bill_import(since=since, today=today)
            except (AdminApiError, ReconcileError) as exc:
                raise CommandError(str(exc)) from None
            if result.days:
                self.stdout.write(
                    f"Imported {len(result.days)} days ({result.days[0]} to {result.days[-1]}): "
                    f"{result.cost_rows} cost rows (${result.billed_usd:,.2f}), {result.usage_rows} usage rows, "
                    f"{result.requests} requests"
                )
                start = min(start, result.days[0])
            else:
                self.stdout.write("Every day in the window is final already; nothing fetched (--since to refetch).")
        for project in projects:
            report = reconciliation_report(project_id=project.id, start=start, end=today)
            scope = ", ".join(report.links) if report.links else "the whole organization"
            self.stdout.write(f"\n{project.name} ({start} to {today}; OpenAI bill of {scope})")
            self.stdout.write(
                f"  {'model':<28} {'billed':>11} {'observed':>11} {'billed tok':>13} {'observed tok':>13} "
                f"{'coverage':>9} {'price agr.':>10}"
            )
            for f in report.by_model:
                self.stdout.write(
                    f"  {f.model[:28]:<28} {float(f.billed_usd):>11.4f} {f.observed_usd:>11.4f} "
                    f"{f.billed_tokens:>13,} {f.observed_tokens:>13,} {_pct(f.coverage):>9} "
                    f"{_pct(f.price_agreement):>10}"
                )
            t = report.totals
            self.stdout.write(
                f"  {'all models':<28} {float(t.billed_usd):>11.4f} {t.observed_usd:>11.4f} "
                f"{t.billed_tokens:>13,} {t.observed_tokens:>13,} {_pct(t.coverage):>9} {_pct(t.price_agreement):>10}"
            )
            for note in report.explanations:
                self.stdout.write(f"  - {note}")
