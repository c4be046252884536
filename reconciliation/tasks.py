"""Celery task: the daily import of the OpenAI bill (beat schedule in llmobserve_site/celery.py).

Thin: the service decides which days are not final yet and replaces them
whole, so a redelivered or overlapping run stores the same figures.
"""

from __future__ import annotations

import datetime as dt
import logging

from celery import shared_task

from reconciliation.openai_admin import AdminApiError, admin_config_from_env
from reconciliation.services import openai_bill_import

log = logging.getLogger(__name__)


@shared_task(name="reconciliation.import_openai_bill", acks_late=True, ignore_result=True)
def import_openai_bill(since_iso: str | None = None) -> int:
    """Import the days not final yet (or every day from `since_iso`); the number of days fetched."""
    if admin_config_from_env() is None:
        log.info("reconciliation: OPENAI_ADMIN_KEY is not set; the OpenAI bill is not imported")
        return 0
    since = dt.date.fromisoformat(since_iso) if since_iso else None
    try:
        return len(openai_bill_import(since=since).days)
    except AdminApiError as exc:  # its message never holds the key
        log.warning("reconciliation: %s", exc)
        return 0
