"""The dashboard: one view and one template per page.

A full page for a normal request; for an htmx request the view renders only
the `{% partialdef %}` fragment the request targets, so every `hx-get` on a
page also works as a plain link.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from dashboard import selectors
from dashboard.charts import stacked_daily
from dashboard.formatting import (
    INSIGHT_UNITS,
    change,
    code_spans,
    cost_breakdown,
    duration,
    insight_figure,
    ratio_text,
    tokens,
    usd,
)
from dashboard.services import user_timezone_set
from events.api import FIRST_YEAR, LAST_YEAR, amount_parse, cursor_valid, moment_parse
from events.models import Run
from events.selectors import (
    RUN_SORTS,
    SORT_MAX_OFFSET,
    TREE_MAX_DEPTH,
    BadCursor,
    RunFilters,
    iso,
    run_call_get,
    run_cost_distribution,
    run_first_models,
    run_page,
    run_root_sections,
    run_search_parse,
    run_tree_detail,
)
from pricing.selectors import price_list_current
from pricing.services import GENAI_PRICES_VERSION
from projects.access import may_edit_global_prices
from projects.models import Project
from projects.selectors import project_list_for_user

SESSION_PROJECT = "dashboard_project_id"
RUNS_PER_PAGE = 50
CHART_DAYS = 30
CHART_MIN_DAYS = 14
# What Django's reverse() leaves unquoted in a path segment (RFC 3986 sub-delims and "/~:@").
RUN_ID_SAFE = "/~:@!$&'()*+,;="


@dataclass
class ProjectChoice:
    current: Project | None
    projects: list[Project]


def project_choose(request: HttpRequest) -> ProjectChoice:
    """The project a page shows: `?project=NAME` (remembered in the session),
    else the one chosen before, else the first the user may see."""
    projects = list(project_list_for_user(user=request.user).order_by("name"))
    name = request.GET.get("project")
    if name:
        match = next((p for p in projects if p.name == name), None)
        if match is None:
            raise Http404("No such project.")
        request.session[SESSION_PROJECT] = match.id
        return ProjectChoice(current=match, projects=projects)
    stored = request.session.get(SESSION_PROJECT)
    current = next((p for p in projects if p.id == stored), None) or (projects[0] if projects else None)
    return ProjectChoice(current=current, projects=projects)


def today_utc() -> dt.date:
    return timezone.now().astimezone(dt.UTC).date()


def _page(
    request: HttpRequest,
    template: str,
    context: dict[str, Any],
    *,
    partials: tuple[str, ...] = (),
    default_partial: str | None = None,
) -> HttpResponse:
    """Render the page, or for htmx only the fragment it targets."""
    htmx = getattr(request, "htmx", None)
    if htmx and not htmx.boosted and not htmx.history_restore_request:
        partial = htmx.target if htmx.target in partials else default_partial
        if partial:
            template = f"{template}#{partial}"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request", "HX-Target"])
    return response


def _base_context(request: HttpRequest, choice: ProjectChoice, nav: str) -> dict[str, Any]:
    collector_url = request.build_absolute_uri("/").rstrip("/")
    return {
        "nav": nav,
        "project": choice.current,
        "projects": choice.projects,
        "collector_url": collector_url,
        "poll_seconds": settings.DASHBOARD_POLL_SECONDS,
    }


def _query(params: dict[str, Any], **changes: Any) -> str:
    merged = {**params, **changes}
    clean = {k: v for k, v in merged.items() if v not in (None, "")}
    return "?" + urlencode(clean) if clean else "?"


# The overview's periods: (URL value, label, days up to today).
RANGES = {"today": ("Today", 1), "7d": ("7 days", 7), "30d": ("30 days", 30), "90d": ("90 days", 90)}
RANGE_FROM_DAYS = {"1": "today", "7": "7d", "30": "30d"}  # the older ?days= links
RANGE_MAX_DAYS = 366


@dataclass(slots=True)
class Period:
    key: str  # a RANGES key or "custom"
    label: str
    start: dt.date
    end: dt.date
    errors: list[str]

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def overview_period(params: Any, *, today: dt.date) -> Period:
    """The overview's period from `range` (today, 7d, 30d, 90d), or `from` and
    `to` (UTC days, inclusive, at most RANGE_MAX_DAYS), or the older `days`."""
    errors: list[str] = []
    raw_from, raw_to = (params.get("from") or "").strip(), (params.get("to") or "").strip()
    if raw_from or raw_to:
        start, end = _date(raw_from), _date(raw_to) if raw_to else today
        if start is None or end is None:
            errors.append("From and To are dates like 2026-11-26.")
        elif end < start:
            errors.append("To is before From.")
        elif (end - start).days + 1 > RANGE_MAX_DAYS:
            errors.append(f"A period is at most {RANGE_MAX_DAYS} days.")
        else:
            return Period("custom", f"{start:%Y-%m-%d} → {end:%Y-%m-%d}", start, end, errors)
    key = params.get("range") or RANGE_FROM_DAYS.get(params.get("days") or "", "7d")
    if key not in RANGES:
        key = "7d"
    label, days = RANGES[key]
    return Period(key, label, today - dt.timedelta(days=days - 1), today, errors)


def user_timezone(user: Any) -> str:
    """The user's time zone (projects.UserSettings), UTC when none is set."""
    settings_row = getattr(user, "llmobserve_settings", None) if user.is_authenticated else None
    return settings_row.timezone if settings_row is not None else "UTC"


def in_user_timezone(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Render the view's times in the user's time zone (request.user_tz names
    it), for this request only (the active zone is per thread)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        name = user_timezone(request.user)
        try:
            zone: dt.tzinfo = zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            name, zone = "UTC", dt.UTC
        request.user_tz = name  # type: ignore[attr-defined]
        with timezone.override(zone):
            return view(request, *args, **kwargs)

    return wrapper


@login_required
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    choice = project_choose(request)
    context = _base_context(request, choice, "overview")
    project = choice.current
    if project is None:
        return _page(request, "dashboard/overview.html", context)
    by: selectors.Dimension = "model" if request.GET.get("by") == "model" else "section"
    today = today_utc()
    period = overview_period(request.GET, today=today)
    end = period.end
    # The chart shows the period, two weeks at least (ending with it).
    start = min(period.start, end - dt.timedelta(days=CHART_MIN_DAYS - 1))
    spend = selectors.spend_summary_get(project_id=project.id, today=today)
    series = selectors.spend_daily_by(project_id=project.id, dimension=by, start=start, end=end)
    # A young project's chart starts at its first day of cost (two weeks at least), not weeks of empty days.
    first = min((day for days in series.values() for day, cost in days.items() if cost > 0), default=start)
    chart_start = max(start, min(first, end - dt.timedelta(days=CHART_MIN_DAYS - 1)))
    available, insights, _computation = selectors.insight_list_for_project(project_id=project.id, limit=5)
    chart = stacked_daily(series, start=chart_start, end=end)
    cannot_price = selectors.spend_unpriced_summary(
        project_id=project.id, since=today - dt.timedelta(days=CHART_DAYS - 1)
    )
    chart_days = (end - chart_start).days + 1
    chart_title = f"last {chart_days} days" if end == today else f"{chart_start:%Y-%m-%d} → {end:%Y-%m-%d}"
    # Every toggle in the URL: the period, the split.
    state = (
        {"range": period.key} if period.key != "custom" else {"from": period.start.isoformat(), "to": end.isoformat()}
    )
    context.update(
        has_runs=selectors.project_has_runs(project_id=project.id),
        spend=[{"item": s, "change": change(s.current, s.previous)} for s in spend],
        chart=chart,
        chart_svg=chart.svg(label=f"Daily cost, {chart_title}, stacked by {by}; {usd(chart.total)} in all"),
        chart_by=by,
        chart_days=chart_days,
        chart_title=chart_title,
        period=period,
        window=period.days,
        window_label=period.label,
        window_since=period.start.isoformat(),
        window_until=end.isoformat(),
        top_sections=selectors.spend_top_list(project_id=project.id, dimension="section", start=period.start, end=end),
        top_models=selectors.spend_top_list(project_id=project.id, dimension="model", start=period.start, end=end),
        insights_available=available,
        insights=insights,
        unpriced=cannot_price.models,
        cannot_price=cannot_price,
        chart_tabs=[{"by": b, "url": _query(state, by=b), "current": b == by} for b in ("section", "model")],
        window_tabs=[
            {
                "label": label,
                "url": _query({"by": by if by != "section" else None}, range=key),
                "current": key == period.key,
            }
            for key, (label, _days) in RANGES.items()
        ],
        period_errors=period.errors,
        user_tz=user_timezone(request.user),
        timezone_url=reverse("dashboard:timezone"),
        overview_url=reverse("dashboard:overview") + _query({**state, "by": by if by != "section" else None}),
    )
    return _page(request, "dashboard/overview.html", context, partials=("chart", "breakdown"))


@login_required
@require_POST
def timezone_set(request: HttpRequest) -> HttpResponse:
    """The user's time zone (a small form on the overview)."""
    name = (request.POST.get("timezone") or "").strip()
    try:
        user_timezone_set(user=request.user, timezone=name)
    except ValueError as exc:
        return HttpResponse(f"{exc}.", status=400, content_type="text/plain; charset=utf-8")
    back = request.POST.get("next") or ""
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        back = reverse("dashboard:overview")
    return redirect(back)


def _date(value: str | None) -> dt.date | None:
    """A date the filters can use: the calendar both databases store, with
    room for the "to" date's next midnight (so at most 9998-12-31)."""
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        return None
    return day if FIRST_YEAR <= day.year <= LAST_YEAR else None


def _bound(value: str, *, end: bool) -> tuple[dt.datetime | None, bool]:
    """A From/To value as an instant: a date (From: its midnight; To: the
    next one, so the day is included) or, as an insight's drill-down sends,
    an ISO date-time (taken as it is).  Returns (instant, ok)."""
    if not value:
        return None, True
    if "T" in value or " " in value:
        moment = moment_parse(value)
        return moment, moment is not None
    day = _date(value)
    if day is None:
        return None, False
    if end:
        day += dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC), True


RUN_FILTER_KEYS = ("q", "service", "section", "model", "status", "since", "until", "min_cost")
SORT_LABELS = {"start": "Started", "cost": "Cost", "duration": "Duration", "calls": "Calls"}
# Sorting by a figure needs a period to sort (an index range); without From/To it is this many days up to today.
SORT_DEFAULT_DAYS = 7


@dataclass(slots=True)
class RunQuery:
    filters: RunFilters
    raw: dict[str, str]
    errors: list[str]
    sort: str
    descending: bool
    default_period: bool  # the period was not given: SORT_DEFAULT_DAYS up to today


def _run_query(params: Any) -> RunQuery:
    errors: list[str] = []
    raw = {k: (params.get(k) or "").strip() for k in RUN_FILTER_KEYS}
    status = raw["status"] if raw["status"] in ("ok", "error") else None
    if raw["status"] and status is None:
        errors.append("Status is ok or error.")
    since, since_ok = _bound(raw["since"], end=False)
    until, until_ok = _bound(raw["until"], end=True)
    for name, ok in (("From", since_ok), ("To", until_ok)):
        if not ok:
            errors.append(f"{name} is a date like 2026-11-26, from 0001-01-01 to 9998-12-31.")
    min_cost = None
    if raw["min_cost"]:
        min_cost = amount_parse(raw["min_cost"])
        if min_cost is None:
            errors.append("Min cost is a number of dollars, like 0.05.")
    sort = params.get("sort") or "start"
    if sort not in RUN_SORTS:
        errors.append(f"Sort is one of {', '.join(RUN_SORTS)}.")
        sort = "start"
    descending = params.get("dir") != "asc"
    default_period = False
    if sort != "start" and since is None and until is None:
        default_period = True
        since = dt.datetime.combine(today_utc() - dt.timedelta(days=SORT_DEFAULT_DAYS - 1), dt.time(), tzinfo=dt.UTC)
    filters = RunFilters(
        section=raw["section"] or None,
        service=raw["service"] or None,
        status=status,
        since=since,
        until=until,
        min_cost=min_cost,
        model=raw["model"] or None,
        search=run_search_parse(raw["q"]),
    )
    return RunQuery(filters, raw, errors, sort, descending, default_period)


# Attribute keys shown first on a run's row; the others follow by name.
BADGE_KEYS = ("user_id", "customer", "plan", "feature", "tenant", "team")
BADGES_PER_ROW = 4
BADGE_VALUE_MAX = 24
SDK_RUN_ID = re.compile(r"[0-9a-f]{32}")


def run_id_short(run_id: str) -> str:
    """The part of a run id that tells runs apart.  SDK ids are a 20-hex-digit
    per-process prefix and a 12-digit counter (llmobserve.context.new_run_id):
    the prefix's first four digits, then the counter without its zeros
    (`92be…2a`).  Other ids: whole up to 24 characters, else head and tail."""
    if SDK_RUN_ID.fullmatch(run_id):
        return f"{run_id[:4]}…{run_id[20:].lstrip('0') or '0'}"
    if len(run_id) <= 24:
        return run_id
    return f"{run_id[:8]}…{run_id[-12:]}"


def run_badges(attributes: Any) -> list[dict[str, str]]:
    if not isinstance(attributes, dict):
        return []
    keys = sorted(attributes, key=lambda k: (BADGE_KEYS.index(k) if k in BADGE_KEYS else len(BADGE_KEYS), k))
    out = []
    for key in keys[:BADGES_PER_ROW]:
        value = attributes[key]
        if isinstance(value, (dict, list)):
            continue
        text = str(value)
        out.append(
            {
                "key": key,
                "value": text if len(text) <= BADGE_VALUE_MAX else text[: BADGE_VALUE_MAX - 1] + "…",
                "full": text,
                "q": f"{key}:{text}",
            }
        )
    return out


def _run_row(run: Run, roots: list[str], first_model: str | None, detail_prefix: str) -> dict[str, Any]:
    """One row of the run list with its texts formatted here: fifty rows through
    the template's `{% url %}` and `date` cost more than the page's queries."""
    return {
        "run": run,
        "roots": roots,
        "short_id": run_id_short(run.run_id),
        "badges": run_badges(getattr(run, "attributes", None)),
        "model": first_model or "",
        "href": f"{detail_prefix}{quote(run.run_id, safe=RUN_ID_SAFE)}/",
        "started": timezone.localtime(run.started_at).strftime("%Y-%m-%d %H:%M:%S"),
        "calls": tokens(run.calls),
        "tokens": f"{tokens(run.input_tokens)} / {tokens(run.output_tokens)}",
        "duration": duration(run.duration_ms),
        "cost": usd(run.cost_usd),
    }


def _offset(value: str | None) -> int:
    try:
        return max(0, min(int(value or 0), SORT_MAX_OFFSET))
    except ValueError:
        return 0


@login_required
@require_GET
@in_user_timezone
def run_list_page(request: HttpRequest) -> HttpResponse:
    choice = project_choose(request)
    context = _base_context(request, choice, "runs")
    project = choice.current
    if project is None:
        return _page(request, "dashboard/runs.html", context)
    context["user_tz"] = getattr(request, "user_tz", "UTC")
    query = _run_query(request.GET)
    filters, raw, errors = query.filters, query.raw, query.errors
    state = {**raw}
    if query.sort != "start":
        state["sort"] = query.sort
    if not query.descending:
        state["dir"] = "asc"
    cursor = request.GET.get("cursor") or None
    offset = _offset(request.GET.get("offset"))
    args: dict[str, Any] = {"sort": query.sort, "descending": query.descending}
    try:
        if cursor is not None and not cursor_valid(cursor):
            raise BadCursor(cursor)
        page = run_page(
            project_id=project.id, filters=filters, limit=RUNS_PER_PAGE, cursor=cursor, offset=offset, **args
        )
    except BadCursor:
        errors.append("That page link has expired; showing the newest runs.")
        cursor = None
        page = run_page(project_id=project.id, filters=filters, limit=RUNS_PER_PAGE, **args)
    runs = page.runs
    run_ids = [r.run_id for r in runs]
    roots = run_root_sections(project_id=project.id, run_ids=run_ids)
    models = run_first_models(project_id=project.id, run_ids=run_ids)
    detail_prefix = reverse("dashboard:run-detail", args=["-"])[:-2]
    filtered = any(raw.values())
    base_url = reverse("dashboard:runs")
    first_page = cursor is None and offset == 0
    if page.next_cursor:
        older_url = base_url + _query(state, cursor=page.next_cursor)
    elif page.next_offset is not None:
        older_url = base_url + _query(state, offset=page.next_offset)
    else:
        older_url = None
    today = today_utc()
    presets = [
        ("today", today, today),
        ("yesterday", today - dt.timedelta(days=1), today - dt.timedelta(days=1)),
        ("7 days", today - dt.timedelta(days=6), today),
        ("30 days", today - dt.timedelta(days=29), today),
    ]
    sort_links = []
    for key, label in SORT_LABELS.items():
        current = key == query.sort
        # A second click on the current sort turns it around.
        desc = not query.descending if current else True
        sort_links.append(
            {
                "key": key,
                "label": label,
                "current": current,
                "descending": query.descending,
                "url": base_url + _query(raw, sort=None if key == "start" else key, dir=None if desc else "asc"),
            }
        )
    distribution = run_cost_distribution(project_id=project.id, filters=_distribution_filters(filters))
    context.update(
        rows=[_run_row(r, roots.get(r.run_id, []), models.get(r.run_id), detail_prefix) for r in runs],
        filters=raw,
        filtered=filtered,
        errors=errors,
        cursor=cursor,
        sort=query.sort,
        descending=query.descending,
        sort_links=sort_links,
        default_period=query.default_period,
        sort_default_days=SORT_DEFAULT_DAYS,
        scanned_to=page.scanned_to,
        search=filters.search,
        live=first_page and query.sort == "start" and query.descending,
        has_runs=bool(runs) or selectors.project_has_runs(project_id=project.id),
        options=selectors.run_filter_options(project_id=project.id, since=today - dt.timedelta(days=90)),
        table_url=base_url + _query(state),
        older_url=older_url,
        newest_url=base_url + _query(state) if not first_page else None,
        presets=[
            {"label": label, "url": base_url + _query(raw, sort="cost", since=a.isoformat(), until=b.isoformat())}
            for label, a, b in presets
        ],
        runs_url=base_url,
        distribution=distribution,
        distribution_period=_period_text(filters, default=query.default_period or not filters.since),
    )
    return _page(request, "dashboard/runs.html", context, partials=("run-table",), default_partial="run-table")


DISTRIBUTION_DEFAULT_DAYS = 7


def _distribution_filters(filters: RunFilters) -> RunFilters:
    """The filters the distribution reads: the list's, with a period (the
    last DISTRIBUTION_DEFAULT_DAYS days when none is given) so the database
    reads an index range, never all runs."""
    if filters.since is not None:
        return filters
    since = dt.datetime.combine(
        today_utc() - dt.timedelta(days=DISTRIBUTION_DEFAULT_DAYS - 1), dt.time(), tzinfo=dt.UTC
    )
    return replace(filters, since=since)


def _period_text(filters: RunFilters, *, default: bool) -> str:
    if default and filters.since is None:
        return f"the last {DISTRIBUTION_DEFAULT_DAYS} days (UTC)"
    since = filters.since
    until = filters.until
    fmt = "%Y-%m-%d %H:%M"
    left = since.strftime(fmt) if since else "the start"
    right = until.strftime(fmt) if until else "now"
    return f"{left} → {right} UTC"


# The run page draws at most this many calls and sections of a run (GET
# /runs/{run_id} gives up to events.selectors.TREE_MAX_CALLS): each costs a
# template row, and ten thousand of them take seconds to render.  The calls
# past it are summed in the tree's last row.
RUN_PAGE_MAX_CALLS = 2_000
RUN_PAGE_MAX_SECTIONS = 2_000


def _tree_rows(tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tree as the rows the page draws in one loop, without recursing:
    a section "open"s, its children follow, then it "close"s; a call is a
    "call" row, the calls past the tree's cap an "omitted" row."""
    rows: list[dict[str, Any]] = []
    stack: list[tuple[str, dict[str, Any]]] = [("node", node) for node in reversed(tree)]
    while stack:
        what, node = stack.pop()
        if what == "close":
            rows.append({"kind": "close", "node": node})
        elif node["span_type"] == "section":
            rows.append({"kind": "open", "node": node})
            stack.append(("close", node))
            stack.extend(("node", child) for child in reversed(node["children"]))
        else:
            rows.append({"kind": "omitted" if node["span_type"] == "omitted" else "call", "node": node})
    return rows


# The timeline draws at most this many rows (sections and calls, in the
# tree's order); the tree below it lists up to RUN_PAGE_MAX_CALLS calls.
TIMELINE_MAX_ROWS = 300


def _moment(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _call_url(run_href: str, span_id: str) -> str:
    return f"{run_href}?{urlencode({'call': span_id})}"


def _run_call_panel(project_id: int, run: Run, span_id: str) -> dict[str, Any] | None:
    """What the call panel shows of one call: model, provider and host,
    service tier, tokens by kind, cost by unit and its source, latency, time
    to first token (streams), error."""
    row = run_call_get(run=run, span_id=span_id)
    if row is None:
        return None
    usage = dict(row["usage_details"] or {})
    # Calls stored before usage_details (or without them) still have the columns.
    for column in ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens"):
        if row[column] and column not in usage:
            usage[column] = row[column]
    attributes = row["attributes"] or {}
    ttft = attributes.get("ttft_ms") if isinstance(attributes, dict) else None
    return {
        "row": row,
        "tokens": [{"unit": unit, "count": count} for unit, count in usage.items()],
        "cost_details": [
            {"unit": unit, "usd": usd(value) if value is not None else "no price"}
            for unit, value in (row["cost_details"] or {}).items()
        ],
        "breakdown": cost_breakdown(row),
        "service_tier": (row["price_context"] or {}).get("service_tier"),
        "latency": duration(row["latency_ms"]),
        "ttft": duration(float(ttft)) if isinstance(ttft, (int, float)) else None,
        "started": row["started_at"].astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
        "cost": usd(row["cost_usd"]),
    }


def run_timeline(run: Run, tree_rows: list[dict[str, Any]], *, run_href: str) -> dict[str, Any]:
    """A waterfall of the run's sections and calls as SVG geometry: one row
    each, in the tree's order, a bar from its start for its latency, on one
    time axis from the run's start.  Calls link to their detail panel."""
    rows = [r for r in tree_rows if r["kind"] in ("open", "call")]
    shown = rows[:TIMELINE_MAX_ROWS]
    origin = run.started_at
    spans = []
    depth = 0
    for r in tree_rows:
        if r["kind"] == "close":
            depth -= 1
            continue
        if r["kind"] not in ("open", "call"):
            continue
        node = r["node"]
        start = _moment(node.get("started_at")) or origin
        offset = max((start - origin).total_seconds() * 1000.0, 0.0)
        spans.append((r["kind"], node, offset, max(node.get("latency_ms") or 0.0, 0.0), depth))
        if r["kind"] == "open":
            depth += 1
        if len(spans) >= len(shown):
            break
    total = max([offset + length for _, _, offset, length, _ in spans] + [run.duration_ms, 1.0])
    width, label_width, row_height = 760, 220, 18
    plot = width - label_width - 8
    bars = []
    for index, (kind, node, offset, length, level) in enumerate(spans):
        x = label_width + plot * offset / total
        bar_width = max(plot * length / total, 1.5)
        name = node.get("name") or ""
        if kind == "call" and node.get("model"):
            name = f"{name} · {node['model']}"
        label = ("  " * min(level, 8)) + (name if len(name) <= 34 else name[:33] + "…")
        bars.append(
            {
                "kind": "call" if kind == "call" else "section",
                "error": node.get("status") == "error",
                "x": round(x, 1),
                "y": index * row_height + 4,
                "width": round(bar_width, 1),
                "label": label,
                "text_y": index * row_height + 15,
                "title": f"{node.get('name') or ''}: starts at +{duration(offset)}, takes {duration(length)}",
                "href": _call_url(run_href, node["span_id"]) if kind == "call" and node.get("span_id") else None,
            }
        )
    height = len(bars) * row_height + 26
    ticks = []
    for i in range(5):
        ms = total * i / 4
        ticks.append({"x": round(label_width + plot * i / 4, 1), "label": f"+{duration(ms)}"})
    return {
        "bars": bars,
        "width": width,
        "height": height,
        "axis_y": height - 6,
        "grid_bottom": height - 20,
        "ticks": ticks,
        "label_width": label_width,
        "shown": len(bars),
        "total_rows": len(rows),
        "total_ms": total,
    }


@login_required
@require_GET
@in_user_timezone
def run_detail(request: HttpRequest, run_id: str) -> HttpResponse:
    choice = project_choose(request)
    if not choice.projects:
        raise Http404("No such run.")
    prefer = choice.current.id if choice.current else None
    run = selectors.run_find_for_projects(project_ids=[p.id for p in choice.projects], run_id=run_id, prefer=prefer)
    if run is None:
        raise Http404("No such run.")
    if choice.current is None or run.project_id != choice.current.id:
        choice = ProjectChoice(current=run.project, projects=choice.projects)
    context = _base_context(request, choice, "runs")
    context["user_tz"] = getattr(request, "user_tz", "UTC")
    run_href = reverse("dashboard:run-detail", args=["-"])[:-2] + quote(run.run_id, safe=RUN_ID_SAFE) + "/"
    span_id = request.GET.get("call") or ""
    call_panel = _run_call_panel(run.project_id, run, span_id) if span_id else None
    call_missing = bool(span_id) and call_panel is None
    detail = run_tree_detail(run, failed=True, max_calls=RUN_PAGE_MAX_CALLS, max_sections=RUN_PAGE_MAX_SECTIONS)
    tree = detail["tree"]
    tree_rows = _tree_rows(tree)
    calls = [row["node"] for row in tree_rows if row["kind"] == "call"]
    by_model: dict[tuple[str, str], dict[str, Any]] = {}
    for call in calls:
        key = (call.get("provider") or "", call.get("model") or "")
        entry = by_model.setdefault(
            key,
            {"provider": key[0], "model": key[1], "calls": 0, "input_tokens": 0, "output_tokens": 0, "cost": 0.0},
        )
        entry["calls"] += 1
        entry["input_tokens"] += call["input_tokens"]
        entry["output_tokens"] += call["output_tokens"]
        entry["cost"] += call["cost_usd"]
    context.update(
        run=run,
        tree=tree,
        tree_rows=tree_rows,
        tree_truncated=detail["truncated"],
        calls_expired=detail.get("calls_expired", False),
        tree_calls=detail["tree_calls"],
        omitted_calls=detail["omitted_calls"],
        tree_max_depth=TREE_MAX_DEPTH,
        by_model=sorted(by_model.values(), key=lambda e: -e["cost"]),
        failed_calls=[c for c in calls if c["status"] == "error"],
        # Past the tree's cap the Run row counts the calls the tree leaves out.
        unpriced_calls=(
            run.unpriced_calls
            if detail["omitted_calls"]
            else sum(1 for c in calls if c.get("cost_status") == "unpriced")
        ),
        usage_unknown_calls=(
            run.usage_unknown_calls
            if detail["omitted_calls"]
            else sum(1 for c in calls if c.get("cost_status") == "usage_unknown")
        ),
        runs_url=reverse("dashboard:runs"),
        run_attributes=sorted((getattr(run, "attributes", None) or {}).items()),
        timeline=run_timeline(run, tree_rows, run_href=run_href),
        call_panel=call_panel,
        call_missing=call_missing,
        run_href=run_href,
    )
    return _page(request, "dashboard/run_detail.html", context, partials=("call-panel",))


def insight_runs_url(insight: Any) -> str:
    """The run list behind an insight: the runs started in its window, with
    its section (and its model, for a model insight)."""
    params = {"since": iso(insight.window_start), "until": iso(insight.window_end)}
    if insight.section:
        params["section"] = insight.section
    if insight.model:
        params["model"] = insight.model
    return reverse("dashboard:runs") + _query(params)


def _insight_card(insight: Any) -> dict[str, Any]:
    return {
        "insight": insight,
        "message": code_spans(insight.message),
        "unit": INSIGHT_UNITS.get(insight.kind, ""),
        "observed": insight_figure(insight.kind, insight.observed),
        "baseline": insight_figure(insight.kind, insight.baseline),
        "ratio": ratio_text(insight.ratio),
        "runs_url": insight_runs_url(insight),
        "window": f"{insight.window_start:%Y-%m-%d %H:%M} → {insight.window_end:%Y-%m-%d %H:%M} UTC",
    }


def _history_row(track: Any, now: dt.datetime) -> dict[str, Any]:
    if track.dismissed_at is not None:
        state = "dismissed"
    elif track.snoozed_until is not None and track.snoozed_until > now:
        state = "snoozed"
    else:
        state = "open"
    return {
        "track": track,
        "state": state,
        "message": code_spans(track.message),
        "observed": insight_figure(track.kind, track.observed),
        "baseline": insight_figure(track.kind, track.baseline),
        "runs_url": insight_runs_url(track) if track.window_start else None,
    }


@login_required
@require_GET
def insights(request: HttpRequest) -> HttpResponse:
    choice = project_choose(request)
    context = _base_context(request, choice, "insights")
    if choice.current is not None:
        available, items, computation = selectors.insight_list_for_project(project_id=choice.current.id)
        quiet: list[Any] = []
        history: list[Any] = []
        if available:
            from insights import selectors as insight_selectors

            now = timezone.now()
            quiet = [
                _insight_card(i)
                for i in insight_selectors.insight_list_latest(project_id=choice.current.id, quiet=True)
                if i.quiet
            ]
            history = [_history_row(t, now) for t in insight_selectors.insight_history(project_id=choice.current.id)]
        context.update(
            insights_available=available,
            insights=items,
            cards=[_insight_card(i) for i in items],
            quiet_cards=quiet,
            history=history,
            computation=computation,
            snooze_days=(1, 7, 30),
            material_percent=20,
            total_savings=sum(getattr(i, "est_savings_usd", None) or 0.0 for i in items),
        )
    return _page(request, "dashboard/insights.html", context)


def _insights_back(request: HttpRequest, project: Project) -> HttpResponse:
    return redirect(reverse("dashboard:insights") + _query({"project": project.name}))


@login_required
@require_POST
def insight_action(request: HttpRequest, insight_id: int, action: str) -> HttpResponse:
    """Dismiss or snooze an insight of a project the user belongs to (members and owners alike)."""
    from insights import selectors as insight_selectors
    from insights import services as insight_services

    project_ids = list(project_list_for_user(user=request.user).values_list("id", flat=True))
    insight = insight_selectors.insight_get_for_projects(insight_id=insight_id, project_ids=project_ids)
    if insight is None:
        raise Http404("No such insight.")
    if action == "dismiss":
        insight_services.insight_dismiss(insight=insight, user=request.user)
    elif action == "snooze":
        try:
            days = int(request.POST.get("days", ""))
            insight_services.insight_snooze(insight=insight, days=days)
        except ValueError:
            return HttpResponse("Snooze for 1, 7 or 30 days.", status=400, content_type="text/plain")
    else:
        raise Http404("No such action.")
    return _insights_back(request, insight.project)


@login_required
@require_POST
def insight_restore(request: HttpRequest, track_id: int) -> HttpResponse:
    """Undo a dismissal or a snooze."""
    from insights import selectors as insight_selectors
    from insights import services as insight_services

    project_ids = list(project_list_for_user(user=request.user).values_list("id", flat=True))
    track = insight_selectors.insight_track_get_for_projects(track_id=track_id, project_ids=project_ids)
    if track is None:
        raise Http404("No such insight.")
    insight_services.insight_track_restore(track=track)
    return _insights_back(request, track.project)


@login_required
@require_GET
def pricing(request: HttpRequest) -> HttpResponse:
    choice = project_choose(request)
    context = _base_context(request, choice, "pricing")
    providers = {"*"} if request.GET.get("provider") == "all" else None
    prices = price_list_current(project_id=choice.current.id if choice.current else None, providers=providers)
    context.update(
        prices=prices,
        source_version=f"genai-prices {GENAI_PRICES_VERSION}",
        can_edit=may_edit_global_prices(request.user),
        unpriced=(
            selectors.model_unpriced_list(project_id=choice.current.id, since=today_utc() - dt.timedelta(days=30))
            if choice.current
            else []
        ),
    )
    return _page(request, "dashboard/pricing.html", context)
