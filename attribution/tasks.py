"""Celery tasks of attribution: thin wrappers over attribution.services.

`attribution.windows_refresh` (beat, every ATTRIBUTE_WINDOWS_INTERVAL_SECONDS)
fans out one task per project with attribute keys, all for the same UTC day;
a redelivered or doubled task finds the windows fresh (idempotent).
"""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.utils import timezone

from attribution.services import attribute_windows_refresh
from events.models import AttributeKey


@shared_task(name="attribution.windows_refresh", acks_late=True, ignore_result=True)
def windows_refresh_all(today_iso: str | None = None) -> int:
    today = dt.date.fromisoformat(today_iso) if today_iso else timezone.now().date()
    project_ids = sorted(set(AttributeKey.objects.values_list("project_id", flat=True)))
    for project_id in project_ids:
        windows_refresh_for_project.delay(project_id, today.isoformat())
    return len(project_ids)


@shared_task(name="attribution.windows_refresh_for_project", acks_late=True, ignore_result=True)
def windows_refresh_for_project(project_id: int, today_iso: str) -> int:
    """Returns the windows built (a deleted project has no keys: nothing to build)."""
    return attribute_windows_refresh(project_id=project_id, today=dt.date.fromisoformat(today_iso)).built
