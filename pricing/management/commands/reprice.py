from django.core.management.base import BaseCommand, CommandError

from events.services import events_reprice
from pricing.services import PricingError, parse_moment
from projects.models import Project


class Command(BaseCommand):
    help = "Recompute the cost of events started at or after --since with the prices in effect at their start."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--since", required=True, help="ISO date or date-time (UTC when no offset)")
        parser.add_argument("--project", help="only this project")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        try:
            since = parse_moment(options["since"])
        except PricingError as exc:
            raise CommandError(f"--since: {exc}") from None
        project_id = None
        if options.get("project"):
            project = Project.objects.filter(name=options["project"]).first()
            if project is None:
                raise CommandError(f"no project named {options['project']!r}")
            project_id = project.id
        report = events_reprice(since=since, project_id=project_id)
        self.stdout.write(
            f"Repriced {report.events} events since {since.isoformat()}: "
            f"{report.runs} runs and {report.rollup_days} daily rollups rebuilt; "
            f"total ${report.old_total_usd:.6f} -> ${report.new_total_usd:.6f} "
            f"({report.new_total_usd - report.old_total_usd:+.6f})"
        )
