"""Reads of the insights app: the latest computation of a project."""

from __future__ import annotations

from typing import Any

from django.db.models import Case, F, IntegerField, QuerySet, Value, When

from events.selectors import float_round
from insights.models import Insight, InsightComputation, InsightTrack

SEVERITY_ORDER = Case(
    When(severity=Insight.HIGH, then=Value(0)),
    When(severity=Insight.MEDIUM, then=Value(1)),
    default=Value(2),
    output_field=IntegerField(),
)


def insight_computation_latest(*, project_id: int) -> InsightComputation | None:
    """The project's most recent computation (greatest window end), or None before the first run."""
    return InsightComputation.objects.filter(project_id=project_id).order_by("-window_end").first()


def insight_list_latest(*, project_id: int, limit: int | None = None, quiet: bool = False) -> list[Insight]:
    """The insights of the latest computation, most severe first, then largest
    saving; without the dismissed and snoozed ones unless `quiet`."""
    computation = insight_computation_latest(project_id=project_id)
    if computation is None:
        return []
    qs: QuerySet[Insight] = Insight.objects.filter(computation=computation)
    if not quiet:
        qs = qs.filter(quiet=False)
    qs = qs.annotate(severity_rank=SEVERITY_ORDER).order_by(
        "severity_rank", F("est_savings_usd").desc(nulls_last=True), "-ratio", "id"
    )
    if limit is not None:
        qs = qs[:limit]
    return list(qs)


HISTORY_LIMIT = 100


def insight_history(*, project_id: int, limit: int = HISTORY_LIMIT) -> list[InsightTrack]:
    """The project's findings as followed across computations, last seen first
    (its (project, -last_seen_at) index), at most `limit`."""
    return list(InsightTrack.objects.filter(project_id=project_id).order_by("-last_seen_at", "-id")[:limit])


def insight_get_for_projects(*, insight_id: int, project_ids: list[int]) -> Insight | None:
    return Insight.objects.filter(id=insight_id, project_id__in=project_ids).first()


def insight_track_get_for_projects(*, track_id: int, project_ids: list[int]) -> InsightTrack | None:
    return InsightTrack.objects.filter(id=track_id, project_id__in=project_ids).first()


def insight_as_dict(insight: Insight) -> dict[str, Any]:
    """The SPEC §4 shape of one insight (plus `details`, an addition)."""
    return {
        "id": insight.id,
        "kind": insight.kind,
        "severity": insight.severity,
        "section": insight.section or None,  # None: calls outside any section
        "model": insight.model or None,
        "endpoint": insight.endpoint or None,
        "observed": float_round(insight.observed),
        "baseline": float_round(insight.baseline),
        "ratio": float_round(insight.ratio),
        "est_savings_usd": float_round(insight.est_savings_usd),
        "message": insight.message,
        "details": insight.details,
    }
