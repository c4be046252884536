"""The Breakdown page: cost by attribute, service, model, section or provider."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from attribution.export import breakdown_csv
from attribution.params import DAYS_DEFAULT, PRESETS, cost_query_parse
from attribution.selectors import (
    DIMENSIONS,
    SERIES_MAX,
    Breakdown,
    CostQuery,
    CostQueryError,
    attribute_key_list,
    cost_breakdown,
    cost_query_check,
    dimension_value_list,
)
from dashboard.charts import OTHER, stacked_daily
from dashboard.views import _base_context, _page, _query, project_choose, today_utc

LIMITS = (5, 10, 20, 50)
# What the page keeps in its URL (everything else is dropped from its links).
STATE = ("group_by", "days", "from", "to", "section", "model", "service", "provider", "attribute", "limit")


def _state(request: HttpRequest) -> dict[str, str]:
    return {k: request.GET[k] for k in STATE if request.GET.get(k)}


def _chart_series(b: Breakdown) -> dict[str, dict[dt.date, float]]:
    """The top SERIES_MAX keys per day, and the rest of each day's total as "other"."""
    shown = [r.key for r in b.rows[:SERIES_MAX]]
    series: dict[str, dict[dt.date, float]] = {key: {} for key in shown}
    rest: dict[dt.date, float] = {}
    for day in b.daily:
        for key, cost in day.by_key.items():
            if key in series:
                series[key][day.day] = cost
        left = day.cost_usd - sum(day.by_key.values())
        if left > 1e-9:
            rest[day.day] = left
    if rest:
        series[OTHER] = rest
    return series


def _rows(b: Breakdown, state: dict[str, str]) -> list[dict[str, Any]]:
    """Table rows with a drill-down link each: an attribute value → its models,
    a service/model/provider → its attribute-free split by section or model."""
    q = b.query
    out = []
    for row in b.rows:
        drill: dict[str, str] | None = None
        if q.group_by == "attribute" and q.key:
            drill = {"attribute": f"{q.key}:{row.key}", "group_by": "model"}
        elif q.group_by in ("service", "model", "provider") and row.key:
            nxt = "section" if q.attribute is None else "model"
            if q.group_by != nxt:
                drill = {q.group_by: row.key, "group_by": nxt}
        out.append(
            {
                "row": row,
                "label": row.key or "(none)",
                "percent": row.share * 100.0,
                "drill": _query(state, **drill) if drill else None,
            }
        )
    return out


def _options(keys: list[str]) -> list[dict[str, str]]:
    out = [{"value": d, "label": d.capitalize()} for d in DIMENSIONS]
    out += [{"value": f"attribute:{k}", "label": f"attribute: {k}"} for k in keys]
    return out


@login_required
@require_GET
def breakdown(request: HttpRequest) -> HttpResponse:
    choice = project_choose(request)
    context = _base_context(request, choice, "breakdown")
    project = choice.current
    if project is None:
        return _page(request, "attribution/breakdown.html", context)
    state = _state(request)
    keys = attribute_key_list(project_id=project.id)
    today = today_utc()
    context.update(
        state=state,
        group_options=_options(keys),
        attribute_keys=keys,
        limits=LIMITS,
        today=today,
    )
    error = None
    query: CostQuery | None = None
    try:
        query = cost_query_parse(params=request.GET, today=today)
        cost_query_check(project_id=project.id, query=query)
    except CostQueryError as exc:
        error = exc.message
    if error is not None or query is None:
        context["error"] = error
        response = _page(request, "attribution/breakdown.html", context, partials=("breakdown", "breakdown-table"))
        response.status_code = 400
        return response
    result = cost_breakdown(project_id=project.id, query=query)
    if request.GET.get("format") == "csv":
        response = HttpResponse(breakdown_csv(result), content_type="text/csv; charset=utf-8")
        name = f"breakdown-{query.group_label.replace(':', '-')}-{query.start}-{query.end}.csv"
        response["Content-Disposition"] = 'attachment; filename="{}"'.format(
            "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        )
        return response
    custom = bool(state.get("from"))
    current_days = None if custom else int(state.get("days") or DAYS_DEFAULT)
    chart = stacked_daily(_chart_series(result), start=query.start, end=query.end, top=SERIES_MAX + 1)
    context.update(
        query=query,
        result=result,
        rows=_rows(result, state),
        other_percent=result.other.share * 100.0,
        none_percent=result.none.share * 100.0 if result.none else 0.0,
        group_value=query.group_label,
        group_title=query.key if query.group_by == "attribute" else query.group_by.capitalize(),
        suggestions={
            d: dimension_value_list(project_id=project.id, dimension=d, start=query.start, end=query.end)
            for d in ("model", "service", "section")
        },
        presets=[
            {
                "days": d,
                "url": _query({k: v for k, v in state.items() if k not in ("from", "to")}, days=d),
                "current": current_days == d,
            }
            for d in PRESETS
        ],
        custom=custom,
        csv_url=_query(state, format="csv"),
        limit_links=[{"n": n, "url": _query(state, limit=n), "current": n == query.limit} for n in LIMITS],
        chart=chart,
        chart_svg=chart.svg(element_id="breakdown-chart", label=f"Cost per day by {query.group_label}"),
        attribute_filter=state.get("attribute", ""),
    )
    return _page(request, "attribution/breakdown.html", context, partials=("breakdown", "breakdown-table"))
