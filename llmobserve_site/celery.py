"""The Celery app: the periodic insight job (SPEC §1, §7).

The broker comes from settings (`CELERY_BROKER_URL`): Redis in production, or
with nothing configured kombu's `filesystem://` transport under var/, so a
fresh machine runs the periodic job with no server installed.  `make run`
starts one worker with an embedded beat (`-B`); in production beat runs as
its own process (docker-compose).
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmobserve_site.settings")

app = Celery("llmobserve_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _schedule_insights(sender: Celery, **kwargs: object) -> None:
    from django.conf import settings

    sender.add_periodic_task(
        float(settings.INSIGHTS_INTERVAL_SECONDS),
        sender.signature("insights.compute_insights_all"),
        name="compute insights for every project",
    )
    # Partitions ahead and expiry of raw events past their retention (events/tasks.py).
    sender.add_periodic_task(
        float(settings.EVENT_RETENTION_INTERVAL_SECONDS),
        sender.signature("events.retention"),
        name="event retention",
    )
    # The breakdown presets' attribute windows, built and kept fresh (attribution/tasks.py);
    # and once just after each UTC midnight, when every preset's range moves a day.
    from celery.schedules import crontab

    sender.add_periodic_task(
        float(settings.ATTRIBUTE_WINDOWS_INTERVAL_SECONDS),
        sender.signature("attribution.windows_refresh"),
        name="refresh attribute windows",
    )
    sender.add_periodic_task(
        crontab(hour=0, minute=1),
        sender.signature("attribution.windows_refresh"),
        name="attribute windows for the new day",
    )
    # Budgets: thresholds, forecasts, insight alerts, digests, lost deliveries (budgets/tasks.py).
    sender.add_periodic_task(
        float(settings.BUDGETS_EVALUATE_SECONDS),
        sender.signature("budgets.evaluate"),
        name="evaluate budgets and alerts",
    )
    # OTLP spans that waited too long for their parent span (otlp/tasks.py).
    sender.add_periodic_task(
        30.0, sender.signature("otlp.pending_flush"), name="store OTLP spans whose parent never came"
    )
    # The OpenAI bill, daily (reconciliation/tasks.py; a no-op without OPENAI_ADMIN_KEY).
    sender.add_periodic_task(
        crontab(hour=6, minute=17),
        sender.signature("reconciliation.import_openai_bill"),
        name="import the OpenAI bill",
    )
