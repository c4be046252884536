"""Celery tasks of the event store: thin wrappers over events.retention and events.partitions.

`events.retention` (beat, every EVENT_RETENTION_INTERVAL_SECONDS) makes sure
this month's partition and the next PARTITIONS_AHEAD exist (PostgreSQL), then
removes the events past their retention and, with RUN_RETENTION_DAYS set, the
runs (and their sections) past theirs; its log line says both.  Idempotent: a
redelivered or doubled run finds the partitions made and the rows gone.
"""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from events.partitions import events_partitioned, partitions_ahead
from events.retention import events_expire
from pricing.services import parse_moment


@shared_task(name="events.retention", acks_late=True, ignore_result=True)
def events_retention(at_iso: str | None = None) -> int:
    """Returns the events removed (for a dropped partition, PostgreSQL's estimate); runs are in the log line."""
    now = parse_moment(at_iso, default=timezone.now())
    if events_partitioned():
        partitions_ahead(now=now)
    report = events_expire(now=now)
    return report.rows_deleted + report.partition_rows_dropped
