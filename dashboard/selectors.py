"""Dashboard reads.  Every list and total here comes from the aggregates kept
current at ingest (Run, RunSection, DailyRollup), never from a scan of Event;
only a single run's detail reads events (through events.selectors.run_tree).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from django.apps import apps
from django.db import connection
from django.db.models import Max, Sum, TextField
from django.db.models.functions import Cast

from events.models import DailyRollup, Event, Run, RunSection

Dimension = Literal["section", "model"]
NO_SECTION = "(no section)"
NO_MODEL = "(no model)"


@dataclass
class Spend:
    label: str
    days: int
    current: float
    previous: float


def spend_summary_get(*, project_id: int, today: dt.date) -> list[Spend]:
    """Spend today, over the last 7 and 30 days (today included), each with
    the same length of time just before it."""
    start = today - dt.timedelta(days=59)
    rows = (
        DailyRollup.objects.filter(project_id=project_id, day__gte=start, day__lte=today)
        .values("day")
        .annotate(cost=Sum("cost_usd"))
        .order_by()
    )
    by_day = {row["day"]: row["cost"] or 0.0 for row in rows}
    out = []
    for label, days in (("Today", 1), ("Last 7 days", 7), ("Last 30 days", 30)):
        current = sum(by_day.get(today - dt.timedelta(days=i), 0.0) for i in range(days))
        previous = sum(by_day.get(today - dt.timedelta(days=i), 0.0) for i in range(days, 2 * days))
        out.append(Spend(label=label, days=days, current=current, previous=previous))
    return out


def _label(dimension: Dimension, row: dict[str, Any]) -> str:
    if dimension == "section":
        return row["section"] or NO_SECTION
    return row["model"] or (f"{row['provider']} (no model)" if row.get("provider") else NO_MODEL)


def spend_daily_by(
    *, project_id: int, dimension: Dimension, start: dt.date, end: dt.date
) -> dict[str, dict[dt.date, float]]:
    """Cost per day from `start` to `end` (inclusive), split by section or by model."""
    fields = ["day", "section"] if dimension == "section" else ["day", "provider", "model"]
    rows = (
        DailyRollup.objects.filter(project_id=project_id, day__gte=start, day__lte=end)
        .values(*fields)
        .annotate(cost=Sum("cost_usd"))
        .order_by()
    )
    series: dict[str, dict[dt.date, float]] = defaultdict(lambda: defaultdict(float))
    for row in rows:
        series[_label(dimension, row)][row["day"]] += row["cost"] or 0.0
    return {label: dict(days) for label, days in series.items()}


def spend_top_list(
    *, project_id: int, dimension: Dimension, start: dt.date, end: dt.date, limit: int = 8
) -> list[dict[str, Any]]:
    """Sections (or models) by cost between `start` and `end`, most expensive first."""
    fields = ["section"] if dimension == "section" else ["provider", "model"]
    rows = list(
        DailyRollup.objects.filter(project_id=project_id, day__gte=start, day__lte=end)
        .values(*fields)
        .annotate(
            cost=Sum("cost_usd"),
            calls=Sum("calls"),
            errors=Sum("errors"),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
        )
        .order_by()
    )
    total = sum(r["cost"] or 0.0 for r in rows) or 0.0
    rows.sort(key=lambda r: (-(r["cost"] or 0.0), _label(dimension, r)))
    out = []
    for row in rows[:limit]:
        cost = row["cost"] or 0.0
        out.append(
            {
                "label": _label(dimension, row),
                "section": row.get("section"),
                "provider": row.get("provider"),
                "model": row.get("model"),
                "cost": cost,
                "calls": row["calls"] or 0,
                "errors": row["errors"] or 0,
                "input_tokens": row["input_tokens"] or 0,
                "output_tokens": row["output_tokens"] or 0,
                "share": (cost / total * 100) if total else 0.0,
            }
        )
    return out


def model_unpriced_list(*, project_id: int, since: dt.date) -> list[dict[str, Any]]:
    """Models that calls used but the registry has no price for."""
    rows = (
        DailyRollup.objects.filter(project_id=project_id, day__gte=since, unpriced_calls__gt=0)
        .exclude(model="")
        .values("provider", "model")
        .annotate(calls=Sum("unpriced_calls"), last_day=Max("day"))
        .order_by("-calls", "provider", "model")
    )
    return [dict(row) for row in rows]


@dataclass(slots=True)
class CannotPrice:
    """SPEC §3 "nothing hides": the calls of a window whose cost is not the bill."""

    models: list[dict[str, Any]]  # provider, model, calls, last_day: no price for the model
    units: list[dict[str, Any]]  # unit, calls: a unit with no price on a priced model
    usage_unknown: list[dict[str, Any]]  # provider, model, calls, last_day: usage never arrived
    sampled: bool = False  # units counted over the newest UNIT_SAMPLE calls only

    @property
    def sample_size(self) -> int:
        return UNIT_SAMPLE

    @property
    def empty(self) -> bool:
        return not (self.models or self.units or self.usage_unknown)


UNIT_SAMPLE = 5000
_JSON_DECODE = msgspec.json.decode


def spend_unpriced_summary(*, project_id: int, since: dt.date) -> CannotPrice:
    """Unpriced models, unpriced units and usage-unknown calls since `since`.

    Models and usage-unknown counts come from the daily rollups; the units
    from the newest UNIT_SAMPLE unpriced calls, read through the partial
    index event_project_not_exact (exact calls, nearly all of them, are never
    read).  The rollups' unpriced calls per day say how far back those calls
    go, so the index range starts at that day: asked for the whole window,
    PostgreSQL fetched and sorted every unpriced call of 30 days (47,000 rows,
    25,000 heap pages, 120 ms at 1M events) to keep the newest 5,000.
    """
    unknown = (
        DailyRollup.objects.filter(project_id=project_id, day__gte=since, usage_unknown_calls__gt=0)
        .values("provider", "model")
        .annotate(calls=Sum("usage_unknown_calls"), last_day=Max("day"))
        .order_by("-calls", "provider", "model")
    )
    unpriced = list(
        DailyRollup.objects.filter(project_id=project_id, day__gte=since, unpriced_calls__gt=0)
        .exclude(model="")
        .values("day", "provider", "model")
        .annotate(calls=Sum("unpriced_calls"))
        .order_by()
    )
    models: dict[tuple[str, str], dict[str, Any]] = {}
    per_day: dict[dt.date, int] = defaultdict(int)
    for row in unpriced:
        entry = models.setdefault(
            (row["provider"], row["model"]),
            {"provider": row["provider"], "model": row["model"], "calls": 0, "last_day": row["day"]},
        )
        entry["calls"] += row["calls"]
        entry["last_day"] = max(entry["last_day"], row["day"])
        per_day[row["day"]] += row["calls"]
    # The newest days that hold UNIT_SAMPLE unpriced calls with a model (the
    # calls the sample reads are at least those, so the range holds the sample).
    first_day, counted = since, 0
    for day in sorted(per_day, reverse=True):
        counted += per_day[day]
        if counted >= UNIT_SAMPLE:
            first_day = max(day, since)
            break
    start = dt.datetime.combine(first_day, dt.time(), tzinfo=dt.UTC)
    # cost_details as text, decoded by msgspec: through the JSON field's own
    # converter (json.loads per row) the 5,000 rows were ~50 ms of the overview's
    # CPU, which a store with more unpriced calls than the sample always paid.
    rows = list(
        Event.objects.filter(project_id=project_id, started_at__gte=start)
        .exclude(cost_status="exact")  # the partial index's own predicate, so the planner can use it
        .filter(cost_status="unpriced")
        .exclude(model=None)
        .order_by("-started_at")
        .annotate(details_text=Cast("cost_details", TextField()))
        .values_list("details_text", flat=True)[:UNIT_SAMPLE]
    )
    units: dict[str, int] = {}
    for text in rows:
        details = _JSON_DECODE(text) if text else None
        if not isinstance(details, dict):
            continue
        missing = [u for u, v in details.items() if v is None]
        # A call with no price at all is listed with its model above.
        if missing and len(missing) < len(details):
            for unit in missing:
                units[unit] = units.get(unit, 0) + 1
    return CannotPrice(
        models=sorted(models.values(), key=lambda m: (-m["calls"], m["provider"], m["model"])),
        units=[{"unit": u, "calls": n} for u, n in sorted(units.items(), key=lambda kv: (-kv[1], kv[0]))],
        usage_unknown=[dict(row) for row in unknown],
        sampled=len(rows) >= UNIT_SAMPLE,
    )


def run_filter_options(*, project_id: int, since: dt.date) -> dict[str, list[str]]:
    """Choices for the run list's filters: sections seen in the rollups since
    `since`, and the project's services."""
    sections = sorted(
        set(
            DailyRollup.objects.filter(project_id=project_id, day__gte=since)
            .exclude(section="")
            .values_list("section", flat=True)
            .distinct()
        )
    )
    return {"sections": sections, "services": run_service_list(project_id=project_id)}


def run_service_list(*, project_id: int, limit: int = 200) -> list[str]:
    """The project's distinct services, in order.

    A loose index scan: each step seeks the (project, service, …) index for
    the next service after the last one, so the cost grows with the number of
    services, not of runs (a plain DISTINCT reads every run's index entry).
    """
    table = connection.ops.quote_name(Run._meta.db_table)
    sql = f"""
        WITH RECURSIVE svc(name, n) AS (
            SELECT (SELECT MIN(service) FROM {table} WHERE project_id = %s AND service IS NOT NULL), 1
            UNION ALL
            SELECT (SELECT MIN(service) FROM {table} WHERE project_id = %s AND service > svc.name), n + 1
            FROM svc WHERE svc.name IS NOT NULL AND n < %s
        )
        SELECT name FROM svc WHERE name IS NOT NULL
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [project_id, project_id, limit])
        return [row[0] for row in cursor.fetchall()]


def project_has_runs(*, project_id: int) -> bool:
    return Run.objects.filter(project_id=project_id).exists()


def run_find_for_projects(*, project_ids: list[int], run_id: str, prefer: int | None = None) -> Run | None:
    """The run with this id in one of the given projects (the preferred one first)."""
    runs = list(Run.objects.filter(project_id__in=project_ids, run_id=run_id).select_related("project")[:10])
    if not runs:
        return None
    runs.sort(key=lambda r: (r.project_id != prefer, r.project.name))
    return runs[0]


def run_section_costs(*, project_id: int, run_id: str) -> list[RunSection]:
    return list(RunSection.objects.filter(project_id=project_id, run_id=run_id).order_by("-cost_usd", "section"))


def insight_list_for_project(*, project_id: int, limit: int | None = None) -> tuple[bool, list[Any], Any]:
    """(available, insights, latest computation) from the insights app, when it is installed."""
    if not apps.is_installed("insights"):
        return False, [], None
    try:
        from insights import selectors as insight_selectors
    except ImportError:
        return False, [], None
    items = list(insight_selectors.insight_list_latest(project_id=project_id, limit=limit))
    computation = None
    latest = getattr(insight_selectors, "insight_computation_latest", None)
    if latest is not None:
        computation = latest(project_id=project_id)
    return True, items, computation
