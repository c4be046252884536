"""Rebuild runs and the daily and attribute rollups from stored events.

For history stored before the attribute rollup existed (or before DailyRollup
kept service): `python manage.py attribution_rebuild --since 2026-11-01`.
Ingest never needs it.  One transaction per UTC day and per 500 runs; the
per-value and per-key-day rollups are rebuilt with each day.

`--narrow-only` rebuilds only AttributeValueRollup and AttributeKeyDay from
AttributeRollup, set-based, without reading events (what events migration
0007 did when it added them).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from events.models import Event, Run
from events.services import aggregates_rebuild, attribute_narrow_rebuild


class Command(BaseCommand):
    help = (
        "Rebuild Run (attributes included), DailyRollup and the attribute rollups from events since a UTC day "
        "(--narrow-only: the per-value and per-key-day rollups from AttributeRollup)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--since", required=True, help="first UTC day, YYYY-MM-DD")
        parser.add_argument("--project-id", type=int, default=None)
        parser.add_argument(
            "--narrow-only",
            action="store_true",
            help="only AttributeValueRollup and AttributeKeyDay, summed from AttributeRollup (no event is read)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            day = dt.date.fromisoformat(options["since"])
        except ValueError:
            raise CommandError("--since: a date YYYY-MM-DD") from None
        if options["narrow_only"]:
            written = attribute_narrow_rebuild(project_id=options["project_id"], since=day)
            self.stdout.write(f"rebuilt {written} attribute value rows")
            return
        since = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        runs = Run.objects.filter(started_at__gte=since)
        events = Event.objects.filter(started_at__gte=since)
        if options["project_id"] is not None:
            runs = runs.filter(project_id=options["project_id"])
            events = events.filter(project_id=options["project_id"])
        run_keys = list(runs.values_list("project_id", "run_id"))
        for start in range(0, len(run_keys), 500):
            aggregates_rebuild(runs=run_keys[start : start + 500])
        projects = sorted(set(events.values_list("project_id", flat=True).distinct()))
        today = dt.datetime.now(dt.UTC).date()
        days = 0
        for project_id in projects:
            current = day
            while current <= today:
                aggregates_rebuild(days=[(project_id, current)])
                current += dt.timedelta(days=1)
                days += 1
        self.stdout.write(f"rebuilt {len(run_keys)} runs and {days} project-days")
