"""Reads: billed beside observed for one project, per day × model.

Observed figures come from `events.DailyRollup` (provider "openai"), read by
an index range on (project, day); billed ones from the imported bill of the
OpenAI projects linked to the project (none linked: the whole organization).
Cached input tokens are shown as billed only: the rollups do not keep them,
and coverage counts cached tokens inside input tokens on both sides.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Count, Max, Q, Sum

from events.models import DailyRollup
from reconciliation.compare import Figures, model_fold
from reconciliation.models import BilledCost, BilledUsage, ImportedDay, OpenAIProjectLink, PineconeUsage

MAX_RANGE_DAYS = 366


def openai_project_ids_for(*, project_id: int) -> list[str]:
    return sorted(OpenAIProjectLink.objects.filter(project_id=project_id).values_list("openai_project_id", flat=True))


@dataclass(slots=True)
class Report:
    start: dt.date
    end: dt.date
    rows: list[Figures]  # day × model, by day then model
    links: list[str]
    imported_days: int = 0
    last_import: dt.datetime | None = None
    by_model: list[Figures] = field(default_factory=list)
    by_day: list[Figures] = field(default_factory=list)
    totals: Figures = field(default_factory=lambda: Figures(model="all models"))

    @property
    def has_bill(self) -> bool:
        return self.imported_days > 0

    @property
    def explanations(self) -> list[str]:
        return [note for row in self.by_model for note in row.explanations()]


def reconciliation_report(*, project_id: int, start: dt.date, end: dt.date) -> Report:
    """Billed beside observed for every day in [start, end] (UTC days) and model."""
    links = openai_project_ids_for(project_id=project_id)
    scope = Q(day__gte=start, day__lte=end)
    if links:
        scope &= Q(openai_project_id__in=links)
    rows: dict[tuple[dt.date, str], Figures] = {}

    def row(day: dt.date, model: str) -> Figures:
        key = (day, model)
        if key not in rows:
            rows[key] = Figures(model=model, day=day)
        return rows[key]

    for c in BilledCost.objects.filter(scope).values("day", "model", "kind", "tier").annotate(usd=Sum("amount_usd")):
        figures = row(c["day"], c["model"])
        usd = Decimal(c["usd"] or 0)
        if c["kind"] in ("input", "cached_input"):
            figures.billed_input_usd += usd
        elif c["kind"] == "output":
            figures.billed_output_usd += usd
        else:
            figures.billed_other_usd += usd
        if c["tier"]:
            figures.tiers.add(c["tier"])
    for u in (
        BilledUsage.objects.filter(scope)
        .values("day", "model")
        .annotate(
            inp=Sum("input_tokens"),
            cached=Sum("input_cached_tokens"),
            out=Sum("output_tokens"),
            req=Sum("num_model_requests"),
        )
    ):
        figures = row(u["day"], u["model"])
        figures.billed_input_tokens += int(u["inp"] or 0)
        figures.billed_cached_input_tokens += int(u["cached"] or 0)
        figures.billed_output_tokens += int(u["out"] or 0)
        figures.billed_requests += int(u["req"] or 0)
    observed = (
        DailyRollup.objects.filter(project_id=project_id, day__gte=start, day__lte=end, provider="openai")
        .values("day", "model")
        .annotate(
            calls=Sum("calls"),
            errors=Sum("errors"),
            inp=Sum("input_tokens"),
            out=Sum("output_tokens"),
            usd=Sum("cost_usd"),
        )
    )
    for o in observed:
        figures = row(o["day"], model_fold(o["model"]))
        figures.observed_usd += float(o["usd"] or 0)
        figures.observed_input_tokens += int(o["inp"] or 0)
        figures.observed_output_tokens += int(o["out"] or 0)
        # Failed calls (429s, timeouts) are not model requests on the bill.
        figures.observed_requests += max(0, int(o["calls"] or 0) - int(o["errors"] or 0))
    ordered = [rows[k] for k in sorted(rows)]
    imported = ImportedDay.objects.filter(day__gte=start, day__lte=end).aggregate(n=Count("id"), last=Max("fetched_at"))
    report = Report(
        start=start,
        end=end,
        rows=ordered,
        links=links,
        imported_days=imported["n"] or 0,
        last_import=imported["last"],
    )
    models: dict[str, Figures] = {}
    days: dict[dt.date, Figures] = {}
    for figures in ordered:
        models.setdefault(figures.model, Figures(model=figures.model)).add(figures)
        assert figures.day is not None
        days.setdefault(figures.day, Figures(model="all models", day=figures.day)).add(figures)
        report.totals.add(figures)
    report.by_model = sorted(models.values(), key=lambda f: (-float(f.billed_usd) - f.observed_usd, f.model))
    report.by_day = [days[d] for d in sorted(days)]
    return report


def reconciliation_day_warning(*, project_id: int, day: dt.date) -> Report | None:
    """The report of one day when it has a bill and a gap worth a warning, else None."""
    if not ImportedDay.objects.filter(day=day).exists():
        return None
    report = reconciliation_report(project_id=project_id, start=day, end=day)
    if not report.rows or not any(f.off for f in report.by_model):
        return None
    return report


@dataclass(frozen=True, slots=True)
class PineconeDay:
    day: dt.date
    billed_usd: Decimal
    observed_usd: float
    rows: int

    @property
    def ratio(self) -> float | None:
        return self.observed_usd / float(self.billed_usd) if self.billed_usd else None


def pinecone_days(*, project_id: int, start: dt.date, end: dt.date) -> list[PineconeDay]:
    """Per day: the imported Pinecone bill (every Pinecone project in the export)
    beside this project's observed Pinecone cost."""
    billed = {
        r["day"]: (Decimal(r["usd"] or 0), r["n"])
        for r in PineconeUsage.objects.filter(day__gte=start, day__lte=end)
        .values("day")
        .annotate(usd=Sum("cost_usd"), n=Count("id"))
    }
    if not billed:
        return []
    observed = {
        r["day"]: float(r["usd"] or 0)
        for r in DailyRollup.objects.filter(project_id=project_id, day__gte=start, day__lte=end, provider="pinecone")
        .values("day")
        .annotate(usd=Sum("cost_usd"))
    }
    return [
        PineconeDay(day=d, billed_usd=billed[d][0], observed_usd=observed.get(d, 0.0), rows=int(billed[d][1]))
        for d in sorted(billed)
    ]
