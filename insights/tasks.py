"""Celery tasks: thin wrappers that take ids and ISO times and call the service.

`compute_insights_all` (run by beat every INSIGHTS_INTERVAL_SECONDS) picks one
moment and fans out one task per project, so every project's window ends at
the same instant and a redelivered task recomputes the same window (the
service is idempotent per project and window end).  acks_late: a worker that
dies mid-task leaves the message to be redelivered, which is safe for the
same reason.
"""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from insights.services import insights_compute
from pricing.services import parse_moment
from projects.models import Project


@shared_task(name="insights.compute_insights_all", acks_late=True, ignore_result=True)
def compute_insights_all(at_iso: str | None = None) -> int:
    at = parse_moment(at_iso, default=timezone.now().replace(microsecond=0))
    project_ids = list(Project.objects.order_by("id").values_list("id", flat=True))
    for project_id in project_ids:
        compute_insights_for_project.delay(project_id, at.isoformat())
    return len(project_ids)


@shared_task(name="insights.compute_insights_for_project", acks_late=True, ignore_result=True)
def compute_insights_for_project(project_id: int, at_iso: str) -> int:
    if not Project.objects.filter(id=project_id).exists():
        return 0  # deleted since the fan-out
    return len(insights_compute(project_id=project_id, at=parse_moment(at_iso)))
