"""The Reconciliation page, its CSV export and the OpenAI project links form."""

from __future__ import annotations

import csv
import datetime as dt
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from dashboard.formatting import usd
from dashboard.views import _base_context, _page, project_choose, today_utc
from projects.access import may_manage_project
from reconciliation.charts import billed_observed_svg
from reconciliation.compare import Figures
from reconciliation.openai_admin import admin_config_from_env
from reconciliation.selectors import MAX_RANGE_DAYS, pinecone_days, reconciliation_report
from reconciliation.services import ReconcileError, openai_project_ids_parse, openai_project_links_set

DEFAULT_DAYS = 14


class RangeError(ValueError):
    pass


def date_range_parse(raw_from: str | None, raw_to: str | None, *, today: dt.date) -> tuple[dt.date, dt.date]:
    """`from` and `to` (inclusive UTC days, YYYY-MM-DD): by default the last 14 days up to today."""
    try:
        end = dt.date.fromisoformat(raw_to) if raw_to else today
    except ValueError:
        raise RangeError(f"to={raw_to!r} is not a date like 2026-11-26") from None
    try:
        start = dt.date.fromisoformat(raw_from) if raw_from else end - dt.timedelta(days=DEFAULT_DAYS - 1)
    except ValueError:
        raise RangeError(f"from={raw_from!r} is not a date like 2026-11-26") from None
    except OverflowError:  # to=0001-01-05 without a from: 13 days before is before year 1
        raise RangeError(f"to={raw_to!r} leaves no room for the default 14 days; give a from") from None
    if start > end:
        raise RangeError(f"from ({start}) is after to ({end})")
    if (end - start).days >= MAX_RANGE_DAYS:
        raise RangeError(f"at most {MAX_RANGE_DAYS} days at once")
    return start, end


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def figures_row(f: Figures) -> dict[str, Any]:
    """One table row, formatted here (the template only places it)."""
    coverage, agreement = f.coverage, f.price_agreement
    return {
        "day": f.day,
        "model": f.model or "(no model)",
        "billed_usd": usd(f.billed_usd),
        "observed_usd": usd(f.observed_usd),
        "billed_tokens": f"{f.billed_input_tokens:,} / {f.billed_output_tokens:,}",
        "observed_tokens": f"{f.observed_input_tokens:,} / {f.observed_output_tokens:,}",
        "billed_cached": f"{f.billed_cached_input_tokens:,}",
        "billed_requests": f"{f.billed_requests:,}",
        "observed_requests": f"{f.observed_requests:,}",
        "coverage": _pct(coverage),
        "price_agreement": _pct(agreement),
        "off": f.off,
        "tiers": ", ".join(sorted(t for t in f.tiers if t)),
    }


def _range_or_default(request: HttpRequest) -> tuple[dt.date, dt.date, str | None]:
    today = today_utc()
    try:
        start, end = date_range_parse(request.GET.get("from"), request.GET.get("to"), today=today)
        return start, end, None
    except RangeError as exc:
        start, end = date_range_parse(None, None, today=today)
        return start, end, f"{exc}; showing the last {DEFAULT_DAYS} days."


@login_required
@require_GET
def reconciliation_page(request: HttpRequest) -> HttpResponse:
    choice = project_choose(request)
    context = _base_context(request, choice, "reconciliation")
    project = choice.current
    if project is None:
        return _page(request, "reconciliation/page.html", context)
    start, end, error = _range_or_default(request)
    report = reconciliation_report(project_id=project.id, start=start, end=end)
    query = f"?from={start.isoformat()}&to={end.isoformat()}"
    context.update(
        start=start,
        end=end,
        error=error,
        report=report,
        models=[figures_row(f) for f in report.by_model],
        days=[figures_row(f) for f in report.rows],
        totals=figures_row(report.totals),
        chart_svg=billed_observed_svg(
            report.by_day,
            start=start,
            end=end,
            label=f"Billed beside observed OpenAI cost per day, {start} to {end}: billed "
            f"{usd(report.totals.billed_usd)}, observed {usd(report.totals.observed_usd)}",
        ),
        key_set=admin_config_from_env() is not None,
        can_manage=may_manage_project(user=request.user, project_id=project.id),
        links_text=", ".join(report.links),
        csv_url=reverse("reconciliation:export") + query,
        pinecone=pinecone_days(project_id=project.id, start=start, end=end),
    )
    response = _page(request, "reconciliation/page.html", context, partials=("reconciliation-body",))
    if error:
        response.status_code = 400
    return response


CSV_COLUMNS = (
    "date",
    "model",
    "billed_usd",
    "observed_usd",
    "billed_input_tokens",
    "billed_cached_input_tokens",
    "observed_input_tokens",
    "billed_output_tokens",
    "observed_output_tokens",
    "billed_requests",
    "observed_requests",
    "coverage",
    "price_agreement",
    "explanation",
)


def figures_as_dict(f: Figures) -> dict[str, Any]:
    """The API's and the CSV's row: numbers as numbers, ratios rounded to 4 places."""
    coverage, agreement = f.coverage, f.price_agreement
    return {
        "date": f.day.isoformat() if f.day else None,
        "model": f.model,
        "billed_usd": round(float(f.billed_usd), 6),
        "observed_usd": round(f.observed_usd, 6),
        "billed_input_tokens": f.billed_input_tokens,
        "billed_cached_input_tokens": f.billed_cached_input_tokens,
        "observed_input_tokens": f.observed_input_tokens,
        "billed_output_tokens": f.billed_output_tokens,
        "observed_output_tokens": f.observed_output_tokens,
        "billed_requests": f.billed_requests,
        "observed_requests": f.observed_requests,
        "coverage": None if coverage is None else round(coverage, 4),
        "price_agreement": None if agreement is None else round(agreement, 4),
        "explanation": " ".join(f.explanations()),
    }


@login_required
@require_GET
def reconciliation_export(request: HttpRequest) -> HttpResponse:
    choice = project_choose(request)
    if choice.current is None:
        raise PermissionDenied("No project.")
    try:
        start, end = date_range_parse(request.GET.get("from"), request.GET.get("to"), today=today_utc())
    except RangeError as exc:
        return HttpResponse(f"{exc}\n", status=400, content_type="text/plain; charset=utf-8")
    report = reconciliation_report(project_id=choice.current.id, start=start, end=end)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="reconciliation-{choice.current.id}-{start.isoformat()}-{end.isoformat()}.csv"'
    )
    writer = csv.writer(response)
    writer.writerow(CSV_COLUMNS)
    for f in report.rows:
        row = figures_as_dict(f)
        writer.writerow(["" if row[c] is None else row[c] for c in CSV_COLUMNS])
    return response


@login_required
@require_POST
def reconciliation_links(request: HttpRequest) -> HttpResponse:
    """Owners link OpenAI project ids to the project (none: the whole organization)."""
    choice = project_choose(request)
    project = choice.current
    if project is None or not may_manage_project(user=request.user, project_id=project.id):
        raise PermissionDenied("Only the project's owners change its OpenAI projects.")
    try:
        ids = openai_project_ids_parse(request.POST.get("openai_project_ids", ""))
    except ReconcileError as exc:
        start, end = date_range_parse(None, None, today=today_utc())
        context = _base_context(request, choice, "reconciliation")
        report = reconciliation_report(project_id=project.id, start=start, end=end)
        context.update(
            start=start,
            end=end,
            report=report,
            models=[figures_row(f) for f in report.by_model],
            days=[figures_row(f) for f in report.rows],
            totals=figures_row(report.totals),
            chart_svg=billed_observed_svg(report.by_day, start=start, end=end, label="Billed beside observed"),
            key_set=admin_config_from_env() is not None,
            can_manage=True,
            links_text=request.POST.get("openai_project_ids", "")[:2000],
            links_error=str(exc),
            csv_url=reverse("reconciliation:export"),
            pinecone=[],
        )
        response = _page(request, "reconciliation/page.html", context)
        response.status_code = 400
        return response
    openai_project_links_set(project=project, openai_project_ids=ids)
    return HttpResponseRedirect(reverse("reconciliation:page") + f"?project={project.name}")
