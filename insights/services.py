"""Writes of the insights app: compute and store one project's insights."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from django.db import transaction
from django.utils import timezone

from insights.detectors import Finding, Window, detect_all
from insights.models import Insight, InsightComputation, InsightTrack

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
        tracks = _tracks_upsert(project_id=project_id, findings=findings, window=window)
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
                    track=tracks[f.key],
                    quiet=tracks[f.key].quiet_at(window.end),
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


TRACK_FIELDS = (
    "last_seen_at",
    "severity",
    "observed",
    "baseline",
    "ratio",
    "est_savings_usd",
    "message",
    "window_start",
    "window_end",
)


def _tracks_upsert(
    *, project_id: int, findings: list[Finding], window: Window
) -> dict[tuple[str, str, str, str], InsightTrack]:
    """Each finding's track, inserted or brought up to date (one upsert on
    the track's unique key), locked; a dismissal lifted when the figures have
    moved materially since (InsightTrack.changed_materially)."""
    if not findings:
        return {}
    InsightTrack.objects.bulk_create(
        [
            InsightTrack(
                project_id=project_id,
                kind=f.kind,
                section=f.section,
                model=f.model,
                endpoint=f.endpoint,
                first_seen_at=window.end,
                last_seen_at=window.end,
                severity=f.severity,
                observed=f.observed,
                baseline=f.baseline,
                ratio=f.ratio,
                est_savings_usd=f.est_savings_usd,
                message=f.message,
                window_start=window.start,
                window_end=window.end,
            )
            for f in findings
        ],
        update_conflicts=True,
        unique_fields=["project", "kind", "section", "model", "endpoint"],
        update_fields=list(TRACK_FIELDS),
    )
    keys = {f.key for f in findings}
    tracks = {
        (t.kind, t.section, t.model, t.endpoint): t
        for t in InsightTrack.objects.select_for_update().filter(project_id=project_id, last_seen_at=window.end)
    }
    tracks = {key: t for key, t in tracks.items() if key in keys}
    for f in findings:
        track = tracks[f.key]
        if track.dismissed_at is not None and track.changed_materially(observed=f.observed, ratio=f.ratio):
            track.dismissed_at = None
            track.dismissed_by = None
            track.save(update_fields=["dismissed_at", "dismissed_by"])
    return tracks


def insight_track_for(*, insight: Insight) -> InsightTrack:
    """The insight's track (made for an insight stored before tracks were kept)."""
    if insight.track_id is not None:
        return InsightTrack.objects.get(id=insight.track_id)
    track, _ = InsightTrack.objects.get_or_create(
        project_id=insight.project_id,
        kind=insight.kind,
        section=insight.section,
        model=insight.model,
        endpoint=insight.endpoint,
        defaults={
            "first_seen_at": insight.window_end,
            "last_seen_at": insight.window_end,
            "severity": insight.severity,
            "observed": insight.observed,
            "baseline": insight.baseline,
            "ratio": insight.ratio,
            "est_savings_usd": insight.est_savings_usd,
            "message": insight.message,
            "window_start": insight.window_start,
            "window_end": insight.window_end,
        },
    )
    Insight.objects.filter(id=insight.id).update(track=track)
    return track


def _key_insights(track: InsightTrack) -> Any:
    return Insight.objects.filter(
        project_id=track.project_id, kind=track.kind, section=track.section, model=track.model, endpoint=track.endpoint
    )


@transaction.atomic
def insight_dismiss(*, insight: Insight, user: Any) -> InsightTrack:
    """Quiet until the figures move materially: the job compares the next
    computations' figures with the ones dismissed here."""
    track = insight_track_for(insight=insight)
    track.dismissed_at = timezone.now()
    track.dismissed_by = user
    track.dismissed_observed = insight.observed
    track.dismissed_ratio = insight.ratio
    track.save(update_fields=["dismissed_at", "dismissed_by", "dismissed_observed", "dismissed_ratio"])
    _key_insights(track).update(quiet=True)
    return track


SNOOZE_DAYS = (1, 7, 30)


@transaction.atomic
def insight_snooze(*, insight: Insight, days: int) -> InsightTrack:
    """Quiet for `days` days, whatever its figures."""
    if days not in SNOOZE_DAYS:
        raise ValueError(f"snooze for one of {SNOOZE_DAYS} days")
    track = insight_track_for(insight=insight)
    track.snoozed_until = timezone.now() + dt.timedelta(days=days)
    track.save(update_fields=["snoozed_until"])
    _key_insights(track).update(quiet=True)
    return track


@transaction.atomic
def insight_track_restore(*, track: InsightTrack) -> InsightTrack:
    """Undo a dismissal or a snooze: it speaks again from now."""
    track.dismissed_at = None
    track.dismissed_by = None
    track.snoozed_until = None
    track.save(update_fields=["dismissed_at", "dismissed_by", "snoozed_until"])
    _key_insights(track).update(quiet=False)
    return track


def _unique(findings: list[Finding]) -> list[Finding]:
    """One finding per key (a detector never yields two, but the key is the contract)."""
    seen: dict[tuple[str, str, str, str], Finding] = {}
    for f in findings:
        seen.setdefault(f.key, f)
    return list(seen.values())
