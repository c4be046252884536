"""Reads from the event store: run lists and run trees."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import (
    BooleanField,
    Exists,
    F,
    FloatField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import KeyTextTransform
from django.db.models.lookups import Exact

from events.models import DailyRollup, Event, Run, RunSection
from events.retention import run_tree_expired


class BadCursor(ValueError):
    pass


def iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


# A float carries 15-17 significant digits, of which sums of prices keep
# about 12 honestly: 0.00006 + 0.00693 is 0.0069900000000000006, and an API
# that prints the noise invites readers to trust it.  Costs and other derived
# floats in JSON go through here.
FLOAT_DIGITS = 12


def float_round(value: float | None) -> float | None:
    """`value` to FLOAT_DIGITS significant digits (0.0069900000000000006 -> 0.00699)."""
    if value is None:
        return None
    if not math.isfinite(value) or value == 0:
        return value
    return float(f"{value:.{FLOAT_DIGITS}g}")


def cost_details_round(details: dict[str, Any]) -> dict[str, Any]:
    return {unit: float_round(v) if isinstance(v, float) else v for unit, v in details.items()}


def cursor_encode(run: Run) -> str:
    return base64.urlsafe_b64encode(f"{run.started_at.isoformat()}|{run.id}".encode()).decode().rstrip("=")


def cursor_decode(cursor: str) -> tuple[dt.datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, ident = raw.partition("|")
        moment = dt.datetime.fromisoformat(when)
        if moment.tzinfo is None:
            raise ValueError
        return moment, int(ident)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise BadCursor("cursor is not one this API returned") from None


# Up to this many runs with a section, the run list fetches them by id (see run_list).
SPARSE_SECTION_RUNS = 1000


@dataclass(slots=True, frozen=True)
class RunSearch:
    """What the run list's search box asked for (run_search_parse).

    kind: "id" (run id prefix), "model" (a call to this model), "section" (a
    section whose label contains the text, any case), "attribute" (the run's
    attribute `key` equals the text) or "any" (a bare word: any of those,
    the attribute under any key)."""

    kind: str
    value: str
    key: str = ""


SEARCH_KINDS = ("id", "model", "section")


def run_search_parse(text: str) -> RunSearch | None:
    """`id:9f3a`, `model:gpt-4o`, `section:classify`, `user_id:u-7` (any other
    key is an attribute), or a bare word; None for blank text."""
    text = text.strip()
    if not text:
        return None
    key, sep, value = text.partition(":")
    key, value = key.strip(), value.strip()
    if sep and key and value and " " not in key:
        if key in SEARCH_KINDS:
            return RunSearch(kind=key, value=value)
        return RunSearch(kind="attribute", key=key, value=value)
    return RunSearch(kind="any", value=text)


@dataclass
class RunFilters:
    section: str | None = None
    service: str | None = None
    status: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    min_cost: float | None = None
    model: str | None = None  # runs with at least one call to this model
    search: RunSearch | None = None


# The run list's sorts: (what the URL says, the column or expression).
RUN_SORTS = ("start", "cost", "duration", "calls")
# A search that no index serves (a model, a section substring, an attribute)
# tests at most this many runs per page, newest first from the cursor: a
# page then costs the same whatever is stored, and when the runs tested hold
# fewer matches than a page, the page says how far back it looked and links
# on from there (RunPage.scanned_to).
SEARCH_SCAN_RUNS = 5000
# Sorts by cost, duration or calls page by offset up to here (twenty pages of
# fifty): those orders have no keyset a link could carry cheaply across
# ties, and the period they sort is bounded by the (project, started_at) index.
SORT_MAX_OFFSET = 1000


@dataclass(slots=True)
class RunPage:
    runs: list[Run]
    next_cursor: str | None = None  # time order: the key to continue after
    next_offset: int | None = None  # metric order: the offset of the next page
    scanned_to: dt.datetime | None = None  # the search tested runs back to here without filling the page


def _prefix_after(value: str) -> str:
    """The smallest string above every string that starts with `value`
    (its last character incremented) in code-point order."""
    return value[:-1] + chr(min(ord(value[-1]) + 1, 0x10FFFF))


def _id_prefix(value: str) -> Q:
    if connection.vendor == "sqlite":
        # SQLite compares text byte-wise (BINARY), so a range is the prefix,
        # and its (project, run_id) index serves it (its LIKE ignores case
        # and no index serves it).
        return Q(run_id__gte=value, run_id__lt=_prefix_after(value))
    return Q(run_id__startswith=value)


def _model_exists(project_id: int, model: str) -> Exists:
    # Probed per run through the (project, run_id) index: a run's own events.
    # (Bounding the probe by the run's start and end would let PostgreSQL open
    # only the run's months, but its estimate of the matches then drops, and
    # it tests every run of the search's window instead of walking them
    # newest first and stopping at a full page: 5 -> 70 ms for a common model.)
    return Exists(Event.objects.filter(project_id=project_id, run_id=OuterRef("run_id"), model=model))


def _section_contains(project_id: int, text: str) -> Exists:
    sections = RunSection.objects.filter(project_id=project_id, run_id=OuterRef("run_id"), section__icontains=text)
    if connection.vendor == "postgresql":
        # Always true (a section starts within its run), and not an equality:
        # inside an OR, PostgreSQL otherwise hashes the subquery, reading every
        # section of the project (375,000 rows, 230 ms at 125,000 runs) instead
        # of probing the runs tested.
        sections = sections.filter(started_at__gte=OuterRef("started_at"))
    return Exists(sections)


def _model_seen(project_id: int, model: str, since: dt.datetime) -> bool:
    """Whether any call since `since` used `model`, from the daily rollups (a
    range of days): when none did, no run there can match, and the runs
    need not be probed one by one."""
    day = since.astimezone(dt.UTC).date()
    return DailyRollup.objects.filter(project_id=project_id, day__gte=day, model=model).exists()


def _section_seen(project_id: int, text: str, since: dt.datetime) -> bool:
    """Whether any run's section since `since` has `text` in its label (the
    (project, started_at, section, …) index's range, not the runs one by one)."""
    return RunSection.objects.filter(project_id=project_id, started_at__gte=since, section__icontains=text).exists()


def _attribute_any(value: str) -> RawSQL:
    table = connection.ops.quote_name(Run._meta.db_table)
    if connection.vendor == "postgresql":
        sql = f"EXISTS (SELECT 1 FROM jsonb_each_text({table}.attributes) AS a WHERE a.value = %s)"
    else:
        sql = f"EXISTS (SELECT 1 FROM json_each({table}.attributes) AS a WHERE CAST(a.value AS TEXT) = %s)"
    return RawSQL(sql, [value], output_field=BooleanField())  # noqa: S611 - the value is a parameter


def _attribute_equals(key: str, value: str) -> Q:
    # Attribute values are stored as strings (events/attributes.py), so ->> compares as text.
    return Q(Exact(KeyTextTransform(key, "attributes"), value))


NOTHING = Q(pk__in=[])  # matches no run (Django answers it without a query)


def _search_predicates(
    project_id: int, f: RunFilters, *, since: dt.datetime | None = None
) -> tuple[list[Q], list[Any]]:
    """(filters an index serves, predicates tested run by run).

    `since`: the runs to be tested all start at or after it.  A model no call
    used since then, or a section text no section label since then holds,
    is then answered from the rollups (or the section index) rather than by
    probing each run's events or sections.
    """
    indexed: list[Q] = []
    tested: list[Any] = []

    def model_test(model: str) -> Any:
        if since is not None and not _model_seen(project_id, model, since):
            return NOTHING
        return Q(_model_exists(project_id, model))

    def section_test(text: str) -> Any:
        if since is not None and not _section_seen(project_id, text, since):
            return NOTHING
        return Q(_section_contains(project_id, text))

    if f.model:
        tested.append(model_test(f.model))
    search = f.search
    if search is None:
        return indexed, tested
    if search.kind == "id":
        indexed.append(_id_prefix(search.value))
    elif search.kind == "model":
        tested.append(model_test(search.value))
    elif search.kind == "section":
        tested.append(section_test(search.value))
    elif search.kind == "attribute":
        tested.append(_attribute_equals(search.key, search.value))
    else:
        either = [_id_prefix(search.value), Q(_attribute_any(search.value))]
        for test in (model_test(search.value), section_test(search.value)):
            if test is not NOTHING:
                either.append(test)
        combined = either[0]
        for test in either[1:]:
            combined |= test
        tested.append(combined)
    return indexed, tested


def _run_base(project_id: int, f: RunFilters) -> QuerySet[Run]:
    qs = Run.objects.filter(project_id=project_id)
    if f.service:
        qs = qs.filter(service=f.service)
    if f.status == "error":
        qs = qs.filter(errors__gt=0)
    elif f.status == "ok":
        qs = qs.filter(errors=0)
    if f.since:
        qs = qs.filter(started_at__gte=f.since)
    if f.until:
        qs = qs.filter(started_at__lt=f.until)
    if f.min_cost is not None:
        qs = qs.filter(cost_usd__gte=f.min_cost)
    return qs


def run_list(
    *, project_id: int, filters: RunFilters | None = None, limit: int = 50, cursor: str | None = None
) -> tuple[list[Run], str | None]:
    """Runs newest first, keyset-paginated on (started_at, id) (see run_page)."""
    page = run_page(project_id=project_id, filters=filters, limit=limit, cursor=cursor)
    return page.runs, page.next_cursor


def run_page(
    *,
    project_id: int,
    filters: RunFilters | None = None,
    limit: int = 50,
    cursor: str | None = None,
    sort: str = "start",
    descending: bool = True,
    offset: int = 0,
) -> RunPage:
    """One page of runs.

    By start (the default, newest first, or oldest first): keyset-paginated
    on (started_at, id), served by the (project, -started_at, -id) index: a
    page reads `limit`+1 rows however many runs are stored.  A search no index
    serves tests at most SEARCH_SCAN_RUNS runs per page (see there).

    By cost, duration or calls: the runs of the filters' period (the caller
    bounds it) sorted by the database, paged by `offset` (at most
    SORT_MAX_OFFSET).
    """
    f = filters or RunFilters()
    qs = _run_base(project_id, f)
    indexed, tested = _search_predicates(project_id, f)
    qs = qs.filter(*indexed)
    if sort != "start":
        if tested and f.since is not None:
            _, tested = _search_predicates(project_id, f, since=f.since)
        return _run_page_sorted(qs.filter(*tested), sort=sort, descending=descending, limit=limit, offset=offset)
    if cursor:
        when, ident = cursor_decode(cursor)
        # The leading `started_at <= when` bounds the index range scan even
        # when the planner cannot use the OR (e.g. stale statistics).
        if descending:
            qs = qs.filter(Q(started_at__lte=when), Q(started_at__lt=when) | Q(id__lt=ident))
        else:
            qs = qs.filter(Q(started_at__gte=when), Q(started_at__gt=when) | Q(id__gt=ident))
    sparse: list[str] | None = None
    if f.section:
        # A section few runs have: walking the newest runs and probing each for
        # it would read every run (0.5 s at 125k runs), so fetch those few runs
        # by id and order them here.  A common section is found within the first
        # runs of the walk.  (Unordered fetches keep SQLite on the id index.)
        newest = list(
            RunSection.objects.filter(project_id=project_id, section=f.section)
            .order_by("-started_at")
            .values_list("run_id", "started_at")[: SPARSE_SECTION_RUNS + 1]
        )
        sparse = [run_id for run_id, _ in newest]
        if len(newest) > SPARSE_SECTION_RUNS:
            sparse = None
            # No run with the section started after the section last ran: skip
            # the walk over newer runs (a section busy long ago, idle since).
            qs = qs.filter(started_at__lte=newest[0][1]).filter(
                Exists(RunSection.objects.filter(project_id=project_id, run_id=OuterRef("run_id"), section=f.section))
            )
    order = ("-started_at", "-id") if descending else ("started_at", "id")
    scanned_to = None
    if sparse is not None:
        found = list(qs.filter(run_id__in=sparse).filter(*tested)) if sparse else []
        found.sort(key=lambda r: (r.started_at, r.id), reverse=descending)
        runs = found[: limit + 1]
    elif tested:
        # Test the next SEARCH_SCAN_RUNS runs only: the last of them (one
        # index-only step) bounds the keyset range, which the page then walks
        # in order, testing runs until it holds a page.  (Fetching the window
        # as `id IN (subquery)` led PostgreSQL to hash-join it against a
        # sequential scan of every run: 100 ms at 125,000 runs, and growing.)
        last = list(qs.order_by(*order).values_list("started_at", "id")[SEARCH_SCAN_RUNS - 1 : SEARCH_SCAN_RUNS])
        window = qs
        # The earliest start among the runs to test (newest first: the
        # window's last run, or From), so the search's rollup checks read a range.
        floor = f.since
        if last and descending:
            floor = max(last[0][0], f.since) if f.since else last[0][0]
        if floor is not None:
            _, tested = _search_predicates(project_id, f, since=floor)
        if last:
            edge, edge_id = last[0]
            if descending:
                window = qs.filter(Q(started_at__gte=edge), Q(started_at__gt=edge) | Q(id__gte=edge_id))
            else:
                window = qs.filter(Q(started_at__lte=edge), Q(started_at__lt=edge) | Q(id__lte=edge_id))
        runs = list(window.filter(*tested).order_by(*order)[: limit + 1])
        if len(runs) <= limit and last:
            scanned_to = last[0][0]
            resume = Run(started_at=last[0][0], id=last[0][1])
            return RunPage(runs=runs, next_cursor=cursor_encode(resume), scanned_to=scanned_to)
    else:
        runs = list(qs.order_by(*order)[: limit + 1])
    more = len(runs) > limit
    runs = runs[:limit]
    return RunPage(runs=runs, next_cursor=cursor_encode(runs[-1]) if more and runs else None)


def _duration() -> RawSQL:
    """A run's ended_at - started_at, for ordering: seconds on PostgreSQL; on
    SQLite milliseconds by julianday() (in C), not Django's Python
    timestamp-difference function, which cost ~10 µs a row."""
    table = connection.ops.quote_name(Run._meta.db_table)
    if connection.vendor == "sqlite":
        # julianday() keeps milliseconds: rounded to them, equal durations tie exactly.
        sql = f"ROUND((julianday({table}.ended_at) - julianday({table}.started_at)) * 86400000.0)"
        return RawSQL(sql, [], output_field=FloatField())
    return RawSQL(f"EXTRACT(EPOCH FROM ({table}.ended_at - {table}.started_at))", [], output_field=FloatField())


def _run_page_sorted(qs: QuerySet[Run], *, sort: str, descending: bool, limit: int, offset: int) -> RunPage:
    """The page's ids first, then their rows: the sort reads only what the
    run_project_sort index holds (project, started_at, cost, calls, ended_at,
    id), an index-only range over the period, and the wide rows (attributes)
    are fetched for the page alone (at 1M events a 30-day sort by cost read
    62,000 whole runs on both databases: 40-56 ms; PostgreSQL scanned the table)."""
    offset = max(0, min(offset, SORT_MAX_OFFSET))
    if sort == "duration":
        qs = qs.annotate(duration=_duration())
    column = {"cost": "cost_usd", "duration": "duration", "calls": "calls"}[sort]
    order = (F(column).desc(), F("id").desc()) if descending else (F(column).asc(), F("id").asc())
    ids = list(qs.order_by(*order).values_list("id", flat=True)[offset : offset + limit + 1])
    rows = Run.objects.filter(id__in=ids) if ids else Run.objects.none()
    if sort == "duration":
        rows = rows.annotate(duration=_duration())
    runs = list(rows.order_by(*order))
    more = len(runs) > limit and offset + limit <= SORT_MAX_OFFSET
    return RunPage(runs=runs[:limit], next_offset=offset + limit if more else None)


@dataclass(slots=True, frozen=True)
class CostDistribution:
    runs: int
    p50: float | None
    p95: float | None
    max: float | None
    # When the period holds more runs than the distribution reads: it covers
    # the period's newest `newest_runs` runs, those starting at or after `newest_since`.
    newest_since: dt.datetime | None = None
    newest_runs: int | None = None


# The distribution reads at most this many runs of its period, the newest:
# the costs are sorted per request, so a week of busy traffic would cost in
# proportion (62,000 runs: 40 ms on PostgreSQL, 60 ms on SQLite; 20 M events
# over 120 days hold 150,000 runs a week).
DISTRIBUTION_MAX_RUNS = 20_000
# A model filter is tested run by run (a probe of each run's events): at most
# this many runs then (a week at 1M events was 15,000 probes, 0.4 s).
DISTRIBUTION_MODEL_RUNS = 2000


def _rank(percent: int, n: int) -> int:
    """The nearest rank of `percent` among n sorted values, 1-based: ceil(percent/100 × n) in integers."""
    return (percent * n + 99) // 100


def run_cost_distribution(*, project_id: int, filters: RunFilters) -> CostDistribution:
    """Cost per run over the filtered runs: count, p50, p95 (nearest rank:
    the value at rank ceil(p/100 × n) of the sorted costs) and the maximum.

    The caller bounds the period (filters.since): the costs are read from
    the run_project_sort index range (project, started_at, cost, …) without
    the runs' rows, and sorted once: by the database into one array on
    PostgreSQL, here on SQLite (fetching the floats and sorting them in
    Python costs half of SQLite's sort for ranks, a third of its window
    functions: 30 vs 70-170 ms for 62,000 runs).  At most the period's newest
    DISTRIBUTION_MAX_RUNS runs are read (DISTRIBUTION_MODEL_RUNS with a model
    filter), and the result says so.  The section filter is applied; a
    search is not (it would test every run of the period).
    """
    qs = _run_base(project_id, filters)
    if filters.model and filters.since is not None and not _model_seen(project_id, filters.model, filters.since):
        return CostDistribution(runs=0, p50=None, p95=None, max=None)
    # The period's newest `cap` runs (the edge: one index-only step), then the
    # section and model tests on those.
    cap = DISTRIBUTION_MODEL_RUNS if filters.model else DISTRIBUTION_MAX_RUNS
    newest_since, newest_runs = None, None
    edge = list(qs.order_by("-started_at", "-id").values_list("started_at", "id")[cap - 1 : cap + 1])
    if len(edge) > 1:
        # More than `cap` runs: keep the newest `cap`, down to the last one kept.
        (newest_since, kept_id), newest_runs = edge[0], cap
        qs = qs.filter(Q(started_at__gte=newest_since), Q(started_at__gt=newest_since) | Q(id__gte=kept_id))
    if filters.section:
        qs = qs.filter(
            Exists(RunSection.objects.filter(project_id=project_id, run_id=OuterRef("run_id"), section=filters.section))
        )
    if filters.model:
        qs = qs.filter(_model_exists(project_id, filters.model))
    inner, params = qs.order_by().values("cost_usd").query.sql_with_params()
    if connection.vendor == "postgresql":
        sql = f"""
            SELECT n, costs[(50 * n + 99) / 100], costs[(95 * n + 99) / 100], costs[n]
            FROM (SELECT COUNT(*) AS n, ARRAY_AGG(r.cost_usd ORDER BY r.cost_usd) AS costs FROM ({inner}) AS r) AS s
        """
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            n, p50, p95, top = cursor.fetchone()
    else:
        with connection.cursor() as cursor:
            cursor.execute(inner, params)
            costs = sorted(row[0] for row in cursor.fetchall())
        n = len(costs)
        if n:
            p50, p95, top = costs[_rank(50, n) - 1], costs[_rank(95, n) - 1], costs[-1]
    if not n:
        return CostDistribution(
            runs=0, p50=None, p95=None, max=None, newest_since=newest_since, newest_runs=newest_runs
        )
    return CostDistribution(
        runs=int(n),
        p50=float(p50),
        p95=float(p95),
        max=float(top),
        newest_since=newest_since,
        newest_runs=newest_runs,
    )


def run_first_models(*, project_id: int, run_ids: list[str]) -> dict[str, str]:
    """The model of each run's first stored call that names one (one index probe per run)."""
    if not run_ids:
        return {}
    first = (
        Event.objects.filter(project_id=project_id, run_id=OuterRef("run_id"))
        .exclude(model=None)
        .exclude(model="")
        # By id, the order ingest stored them: SQLite's (project, run_id) index
        # keeps that order and stops at the first; ORDER BY started_at leads its
        # planner onto the project-wide time index.
        .order_by("id")
        .values("model")[:1]
    )
    rows = Run.objects.filter(project_id=project_id, run_id__in=run_ids).annotate(first_model=Subquery(first))
    return {run_id: model for run_id, model in rows.values_list("run_id", "first_model") if model}


def run_root_sections(*, project_id: int, run_ids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {r: [] for r in run_ids}
    # Sorted here, not by SQL: with ORDER BY started_at SQLite's planner takes
    # the (project, started_at, …) index and reads every section of the
    # project (0.4 s at 125k runs) instead of looking these runs up.
    rows = RunSection.objects.filter(project_id=project_id, run_id__in=run_ids, is_root=True).values_list(
        "run_id", "section", "started_at"
    )
    for run_id, label, _ in sorted(rows, key=lambda row: (row[2], row[1])):
        out[run_id].append(label)
    return out


def run_summary(run: Run, root_sections: list[str]) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "service": run.service,
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
        "duration_ms": round(run.duration_ms, 3),
        "calls": run.calls,
        "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "cost_usd": float_round(run.cost_usd),
        "status": run.status,
        "root_sections": root_sections,
        "unpriced_calls": run.unpriced_calls,
        "usage_unknown_calls": run.usage_unknown_calls,
    }


def run_get(*, project_id: int, run_id: str) -> Run | None:
    return Run.objects.filter(project_id=project_id, run_id=run_id).first()


TREE_FIELDS = (
    "span_id",
    "parent_span_id",
    "span_type",
    "name",
    "section",
    "section_path",
    "provider",
    "model",
    "endpoint",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "reasoning_tokens",
    "read_units",
    "write_units",
    "cost_usd",
    "priced",
    "cost_status",
    "cost_details",
    "price_context",
    "usage_details",
    "price_source",
    "latency_ms",
    "started_at",
    "status",
    "error_type",
)


# Bounds of one run's tree (GET /runs/{run_id} and the dashboard's run page),
# so that its cost is linear in the run's size and bounded whatever a client sent:
#  - TREE_MAX_CALLS: the tree holds at most this many calls, the first ones
#    stored; the run's other calls are summed into one top-level node of
#    span_type "omitted" and the response says `"truncated": true`.  At most
#    this many calls plus one are read from the database; the run's totals
#    come from its Run row, whole.
#  - TREE_MAX_SECTIONS: likewise for the section spans read (calls whose
#    section was not read hang under a stand-in, as for a section still open).
#  - TREE_MAX_DEPTH: sections nest at most this deep (the SDK and ingest keep
#    section paths to 64 levels; parent_span_id chains can still go deeper).
#    A section below that depth is shown beside its ancestor at that depth,
#    marked `"folded": true`, with its own rolled-up figures.
TREE_MAX_CALLS = 10_000
TREE_MAX_SECTIONS = 10_000
TREE_MAX_DEPTH = 64


def run_events_query(run: Run) -> QuerySet[Event]:
    """The run's events.  On PostgreSQL bounded by the run's start and end
    too (its events start within them: ingest keeps the run's started_at the
    least and ended_at the greatest of its events'), so the planner opens
    only the months the run spans, not every month kept (which grow with
    history when nothing expires).  SQLite keeps to its (project, run_id) index."""
    events = Event.objects.filter(project_id=run.project_id, run_id=run.run_id)
    if connection.vendor == "postgresql":
        events = events.filter(started_at__gte=run.started_at, started_at__lte=run.ended_at)
    return events


def run_tree(*, project_id: int, run_id: str) -> list[dict[str, Any]]:
    """The run's section tree (SPEC §4); run_tree_detail says whether it was capped."""
    run = run_get(project_id=project_id, run_id=run_id)
    return run_tree_detail(run)["tree"] if run is not None else []


def run_tree_detail(
    run: Run, *, failed: bool = False, max_calls: int | None = None, max_sections: int | None = None
) -> dict[str, Any]:
    """The run's section tree with costs rolled up from the calls (SPEC §4).

    Sections are nodes keyed by span_id; calls are leaves under their parent
    section.  A call whose section span has not arrived yet (the block is
    still open) gets a stand-in node built from its section label, so the
    tree is right while a run is in flight.

    Returns `{"tree", "truncated", "tree_calls", "omitted_calls",
    "omitted_sections"}`.  Linear in the events read, which the TREE_MAX_*
    bounds above cap; no step recurses, so any depth is served.  With
    `failed`, each node also carries `failed`: the failed calls at or below it
    (the dashboard marks sections with it).  `max_calls` and `max_sections`
    lower the caps (never above TREE_MAX_CALLS and TREE_MAX_SECTIONS).
    """
    max_calls = min(max_calls, TREE_MAX_CALLS) if max_calls is not None else TREE_MAX_CALLS
    max_sections = min(max_sections, TREE_MAX_SECTIONS) if max_sections is not None else TREE_MAX_SECTIONS
    events = run_events_query(run)
    # The first calls and sections stored (by id), sorted by time here.  An
    # ORDER BY started_at leads SQLite's planner onto the (project,
    # started_at) index, which walks the whole project (1 s at 1M events)
    # instead of the run's rows.  The LIMITs bound what is loaded; SQLite's
    # (project, run_id) index keeps the rowid order, so its walk stops there,
    # while PostgreSQL orders the run's ids first (or walks the primary key):
    # ~0.5 s per million events of one run, memory bounded either way.
    # Without the ORDER BY, PostgreSQL's synchronised sequential scans would
    # pick a different 10,000 calls from one request to the next.
    calls = list(events.exclude(span_type="section").order_by("id").values("id", *TREE_FIELDS)[: max_calls + 1])
    sections = list(events.filter(span_type="section").order_by("id").values("id", *TREE_FIELDS)[: max_sections + 1])
    if not calls and not sections and run.events:
        # Its events are past the retention (events/retention.py): the tree of what was aggregated.
        return run_tree_expired(run, failed=failed)
    calls_cut, sections_cut = len(calls) > max_calls, len(sections) > max_sections
    del calls[max_calls:], sections[max_sections:]
    rows = calls + sections
    rows.sort(key=lambda row: (row["started_at"], row["id"]))

    roots = _link(rows)
    order = _preorder(roots)
    _roll_up(order)
    _sort(roots, order)
    tree = _public(roots, failed=failed)

    omitted_calls = max(run.calls - len(calls), 0) if calls_cut else 0
    if calls_cut:
        tree.append(_omitted_node(run, calls, errors_read=sum(row["status"] == "error" for row in rows)))
    return {
        "tree": tree,
        "truncated": calls_cut or sections_cut,
        "tree_calls": len(calls),
        "omitted_calls": omitted_calls,
        "omitted_sections": max(run.events - run.calls - len(sections), 0) if sections_cut else 0,
        "calls_expired": False,
    }


def _link(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nodes for the rows, each linked under its parent; returns the roots."""
    nodes: dict[str, dict[str, Any]] = {}  # sections and stand-ins, by span_id
    leaves: list[dict[str, Any]] = []
    for row in rows:
        node = _node(row)
        if row["span_type"] == "section":
            if row["span_id"] in nodes and nodes[row["span_id"]].get("_stand_in"):
                node["children"] = nodes[row["span_id"]]["children"]
            nodes[row["span_id"]] = node
        else:
            leaves.append(node)
    for leaf in leaves:
        parent_id = leaf["_parent"]
        if parent_id and parent_id not in nodes:
            path = leaf["section_path"]
            nodes[parent_id] = {
                **_node(
                    {
                        "span_id": parent_id,
                        "parent_span_id": None,
                        "span_type": "section",
                        "name": leaf["_section"] or parent_id,
                        "section_path": path,
                        "started_at": leaf["_start"],
                        "status": "ok",
                    }
                ),
                "_stand_in": True,
                "_parent_path": path.rsplit("/", 1)[0] if path and "/" in path else None,
            }
    # A stand-in's parent is the first section with its parent's path: one
    # index by path, instead of a search through every node per stand-in.
    by_path: dict[str, str] = {}
    for key, node in nodes.items():
        if node["section_path"]:
            by_path.setdefault(node["section_path"], key)
    parent_of: dict[str, str | None] = {}
    for key, node in nodes.items():
        parent = node["_parent"] if node["_parent"] in nodes else None
        if parent is None and node.get("_stand_in") and node["_parent_path"]:
            parent = by_path.get(node["_parent_path"])
        parent_of[key] = parent
    _break_cycles(parent_of)
    # Link sections to their parents, and calls to their sections.
    roots: list[dict[str, Any]] = []
    for key, node in nodes.items():
        parent = parent_of[key]
        (nodes[parent]["children"] if parent is not None else roots).append(node)
    for leaf in leaves:
        section = nodes.get(leaf["_parent"]) if leaf["_parent"] else None
        (section["children"] if section is not None else roots).append(leaf)
    return roots


def _break_cycles(parent_of: dict[str, str | None]) -> None:
    """Sections that are each other's ancestors (or their own parent): the
    first of each loop met becomes a root, so every section is shown once."""
    done: set[str] = set()
    for start in parent_of:
        path: list[str] = []
        on_path: set[str] = set()
        key: str | None = start
        while key is not None and key not in done and key not in on_path:
            path.append(key)
            on_path.add(key)
            key = parent_of[key]
        if key is not None and key in on_path:
            parent_of[key] = None
        done.update(path)


def _preorder(roots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every node, each before its children (an explicit stack: no recursion)."""
    order: list[dict[str, Any]] = []
    stack = list(reversed(roots))
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(reversed(node["children"]))
    return order


def _roll_up(order: list[dict[str, Any]]) -> None:
    # Children come after their parent in preorder: backwards, each section's
    # children are complete by the time it adds them up.
    for node in reversed(order):
        if node["span_type"] != "section":
            continue
        self_cost = 0.0
        for child in node["children"]:
            node["cost_usd"] += child["cost_usd"]
            node["calls"] += child["calls"]
            node["input_tokens"] += child["input_tokens"]
            node["output_tokens"] += child["output_tokens"]
            node["_failed"] += child["_failed"]
            if child["span_type"] != "section":
                self_cost += child["cost_usd"]
            if node.get("_stand_in"):
                node["latency_ms"] = max(node["latency_ms"], child["latency_ms"])
                if child["status"] == "error":
                    node["status"] = "error"
        node["self_cost_usd"] = self_cost


def _node(row: dict[str, Any]) -> dict[str, Any]:
    is_call = row["span_type"] != "section"
    node = {
        "span_id": row["span_id"],
        "name": row.get("name") or "",
        "span_type": row["span_type"],
        "section_path": row.get("section_path"),
        "cost_usd": row.get("cost_usd", 0.0) if is_call else 0.0,
        "self_cost_usd": row.get("cost_usd", 0.0) if is_call else 0.0,
        "calls": 1 if is_call else 0,
        "input_tokens": row.get("input_tokens", 0) if is_call else 0,
        "output_tokens": row.get("output_tokens", 0) if is_call else 0,
        "latency_ms": row.get("latency_ms", 0.0),
        "status": row.get("status", "ok"),
        "started_at": iso(row.get("started_at")),
        "children": [],
        "_parent": row.get("parent_span_id"),
        "_section": row.get("section"),
        "_start": row.get("started_at"),
        "_failed": int(is_call and row.get("status") == "error"),
    }
    if is_call:
        node.update(
            provider=row.get("provider"),
            model=row.get("model"),
            endpoint=row.get("endpoint"),
            cached_input_tokens=row.get("cached_input_tokens", 0),
            reasoning_tokens=row.get("reasoning_tokens", 0),
            read_units=row.get("read_units", 0.0),
            write_units=row.get("write_units", 0.0),
            priced=row.get("priced", True),
            error_type=row.get("error_type"),
            # cost v2 (SPEC §4)
            cost_status=row.get("cost_status", "exact"),
            cost_details=row.get("cost_details") or {},
            service_tier=(row.get("price_context") or {}).get("service_tier"),
            usage_details=row.get("usage_details") or {},
            price_source=row.get("price_source") or None,
        )
    return node


def _omitted_node(run: Run, calls: list[dict[str, Any]], *, errors_read: int) -> dict[str, Any]:
    """The run's calls past TREE_MAX_CALLS, summed from the Run row's totals."""
    count = max(run.calls - len(calls), 0)
    cost = max(run.cost_usd - sum(row["cost_usd"] for row in calls), 0.0)
    return {
        "span_id": None,
        "name": f"{count:,} more call{'s' if count != 1 else ''} not shown",
        "span_type": "omitted",
        "section_path": None,
        "cost_usd": float_round(cost),
        "self_cost_usd": float_round(cost),
        "calls": count,
        "input_tokens": max(run.input_tokens - sum(row["input_tokens"] for row in calls), 0),
        "output_tokens": max(run.output_tokens - sum(row["output_tokens"] for row in calls), 0),
        "latency_ms": 0.0,
        "status": "error" if run.errors > errors_read else "ok",
        "started_at": None,
        "children": [],
    }


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _start_key(node: dict[str, Any]) -> dt.datetime:
    # Sort on the datetime itself: ISO strings with and without microseconds
    # do not sort in time order.
    start: dt.datetime | None = node["_start"]
    return start or _EPOCH


def _sort(roots: list[dict[str, Any]], order: list[dict[str, Any]]) -> None:
    roots.sort(key=_start_key)
    for node in order:
        if node["children"]:
            node["children"].sort(key=_start_key)


_PRIVATE = ("_parent", "_section", "_start", "_failed", "_stand_in", "_parent_path")


def _public(roots: list[dict[str, Any]], *, failed: bool = False) -> list[dict[str, Any]]:
    """The nodes made public in place (private keys dropped), sections nested
    at most TREE_MAX_DEPTH deep (deeper ones beside their ancestor at that
    depth, marked folded), with an explicit stack."""
    out_roots: list[dict[str, Any]] = []
    # (node, the list it goes in, the list its parent is in, its depth)
    stack: list[tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], int]] = [
        (node, out_roots, out_roots, 1) for node in reversed(roots)
    ]
    while stack:
        node, into, beside, depth = stack.pop()
        children = node["children"]
        node["children"] = []
        if failed:
            node["failed"] = node["_failed"]
        for key in _PRIVATE:
            node.pop(key, None)
        node["cost_usd"] = float_round(node["cost_usd"])
        node["self_cost_usd"] = float_round(node["self_cost_usd"])
        if "cost_details" in node:
            node["cost_details"] = cost_details_round(node["cost_details"])
        if depth > TREE_MAX_DEPTH and node["span_type"] == "section":
            node["folded"] = True
            into, depth = beside, TREE_MAX_DEPTH
        into.append(node)
        stack.extend((child, node["children"], into, depth + 1) for child in reversed(children))
    return out_roots


CALL_FIELDS = (
    *TREE_FIELDS,
    "provider_host",
    "attributes",
    "usage_known",
    "client_cost_usd",
    "service",
    "ended_at",
)


def run_call_get(*, run: Run, span_id: str) -> dict[str, Any] | None:
    """One call of a run, every field the run page's call panel shows (read
    through the (project, run_id) index, within the run's months), or None."""
    row = (
        run_events_query(run)
        .filter(span_id=span_id)
        .exclude(span_type="section")
        .order_by("id")
        .values(*CALL_FIELDS)
        .first()
    )
    return row
