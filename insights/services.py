"""Writes of the insights app: compute and store one project's insights."""

from __future__ import annotations

import datetime as dt
import logging
import time

from django.db import transaction
from django.utils import timezone

from insights.detectors import Finding, Window, detect_all
from insights.models import Insight, InsightComputation

logger = logging.getLogger(__name__)


def insights_compute(*, project_id: int, at: dt.datetime) -> list[Insight]:
    """Run the four detectors over the 24 h before `at` and store the result
    as the project's computation for that window.

    Idempotent and safe to run twice at once: the computation row is unique
    by (project, window_end); it is inserted with ON CONFLICT DO NOTHING and
    then locked (SELECT … FOR UPDATE on PostgreSQL; SQLite's write
    transactions are already serialised by BEGIN IMMEDIATE), and its insights
    are replaced inside that lock, so two concurrent runs for the same moment
    end with one set of insights, each finding once (a unique key backs it).
    Computations of the project older than this one are pruned: the latest
    replaces the previous.
    """
    if timezone.is_naive(at):
        at = at.replace(tzinfo=dt.UTC)
    window = Window.ending(project_id, at)
    started = time.perf_counter()
    # The detectors only read; they run before the write transaction so the
    # lock is held for the few inserts only.
    findings = _unique(detect_all(window))
    duration_ms = (time.perf_counter() - started) * 1000.0
    now = timezone.now()
    with transaction.atomic():
        InsightComputation.objects.bulk_create(
            [
                InsightComputation(
                    project_id=project_id,
                    window_start=window.start,
                    window_end=window.end,
                    baseline_start=window.baseline_start,
                    generated_at=now,
                    duration_ms=duration_ms,
                )
            ],
            ignore_conflicts=True,
        )
        computation = InsightComputation.objects.select_for_update().get(project_id=project_id, window_end=window.end)
        computation.generated_at = now
        computation.duration_ms = duration_ms
        computation.save(update_fields=["generated_at", "duration_ms"])
        computation.insights.all().delete()
        insights = Insight.objects.bulk_create(
            [
                Insight(
                    project_id=project_id,
                    computation=computation,
                    kind=f.kind,
                    severity=f.severity,
                    section=f.section,
                    model=f.model,
                    endpoint=f.endpoint,
                    observed=f.observed,
                    baseline=f.baseline,
                    ratio=f.ratio,
                    est_savings_usd=f.est_savings_usd,
                    message=f.message,
                    details=f.details,
                    window_start=window.start,
                    window_end=window.end,
                    generated_at=now,
                )
                for f in findings
            ]
        )
        InsightComputation.objects.filter(project_id=project_id, window_end__lt=window.end).delete()
    logger.info(
        "insights: project %s, window %s → %s, %d insights in %.0f ms",
        project_id,
        window.start.isoformat(),
        window.end.isoformat(),
        len(insights),
        duration_ms,
    )
    return insights


def _unique(findings: list[Finding]) -> list[Finding]:
    """One finding per key (a detector never yields two, but the key is the contract)."""
    seen: dict[tuple[str, str, str, str], Finding] = {}
    for f in findings:
        seen.setdefault(f.key, f)
    return list(seen.values())
