from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from insights.services import insights_compute
from pricing.services import PricingError, parse_moment
from projects.models import Project


class Command(BaseCommand):
    help = "Run the insight job now, synchronously: the 24 h before --at (default now) against the 7 days before."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--project", help="only this project (default: every project)")
        parser.add_argument("--at", help="window end, ISO date or date-time (UTC when no offset); default now")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        try:
            at = parse_moment(options.get("at"), default=timezone.now().replace(microsecond=0))
        except PricingError as exc:
            raise CommandError(f"--at: {exc}") from None
        projects = Project.objects.order_by("name")
        if options.get("project"):
            projects = projects.filter(name=options["project"])
            if not projects.exists():
                raise CommandError(f"no project named {options['project']!r}")
        total = 0
        for project in projects:
            insights = insights_compute(project_id=project.id, at=at)
            total += len(insights)
            kinds: dict[str, int] = {}
            for insight in insights:
                kinds[insight.kind] = kinds.get(insight.kind, 0) + 1
            summary = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "none"
            self.stdout.write(f"{project.name}: {len(insights)} insights ({summary})")
            for insight in insights:
                self.stdout.write(f"  [{insight.severity}] {insight.message}")
        self.stdout.write(f"Computed {total} insights for the 24 h before {at.isoformat()}")
