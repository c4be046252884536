"""Cost breakdowns read from the rollups kept at ingest, never from events.

Sources, all per UTC day (see `_source`):

- `DailyRollup` (service, section, provider, model): group-bys by those four
  and their filters;
- `AttributeValueRollup` (attribute key and value): a group-by on an attribute
  key, or a filter `attribute=key:value`, with no service, provider or model
  filter or group-by; `AttributeKeyDay` (key) gives such a group-by's "all
  values" totals in one row a day;
- `AttributeRollup` (attribute key and value, service, provider, model): the
  same with a service, provider or model filter or group-by.

A group-by on a key with no such filter reads the coarsest rows that hold
its range (`_tiered_source`): a fresh AttributeWindow starting on the range's
first day (the presets' past days, built by attribution.services), then
whole months, whole weeks and days (`value_rows_sql`).

The two attribute rollups hold the same sums (ingest writes both in one
transaction), so a filtered and an unfiltered query agree.  A group-by over
50,000 values still groups every value of the range: the top N needs each
value's sum, and "other" needs their count.

Section is not in the attribute rollup's key (a run's calls spread over many
sections, which would multiply its rows per value several-fold), so a section
filter or group-by cannot be combined with an attribute: `CostQueryError`.

A breakdown is the top N keys by cost, "other" (every further key folded),
for an attribute group-by "none" (calls without the key: the day rollup's
total minus the attribute rollup's), the totals, and a daily series.  rows +
other + none = totals, exactly for counts (cost up to float rounding).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction

from events.attributes import ATTRIBUTE_KEY_MAX, NONE
from events.models import (
    AttributeKey,
    AttributeKeyDay,
    AttributeRollup,
    AttributeValueMonth,
    AttributeValueRollup,
    AttributeValueWeek,
    AttributeWindow,
    AttributeWindowValue,
    DailyRollup,
)
from events.services import month_after

DIMENSIONS = ("service", "model", "section", "provider")
LIMIT_DEFAULT = 10
LIMIT_MAX = 1000
RANGE_DAYS_MAX = 366
SERIES_MAX = 7  # keys drawn one by one in the daily chart; the rest is "other"
OTHER_KEYS = "(all other keys)"  # the fold of keys past the top N (not the stored cap bucket "(other)")
# PostgreSQL: memory for one breakdown's grouping (SET LOCAL, its transaction only).
GROUPING_WORK_MEM = "64MB"
SUMS = ("calls", "errors", "unpriced_calls", "usage_unknown_calls", "input_tokens", "output_tokens", "cost_usd")


class CostQueryError(ValueError):
    """A breakdown the rollups cannot answer, or a bad parameter; the message says which."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass(frozen=True, slots=True)
class CostQuery:
    """What to break down.  `group_by`: a DIMENSIONS name or "attribute";
    `key`: the attribute key of an attribute group-by."""

    group_by: str
    start: dt.date
    end: dt.date
    key: str | None = None
    section: str | None = None
    model: str | None = None
    service: str | None = None
    provider: str | None = None
    attribute: tuple[str, str] | None = None
    limit: int = LIMIT_DEFAULT

    @property
    def group_label(self) -> str:
        return f"attribute:{self.key}" if self.group_by == "attribute" else self.group_by


@dataclass(slots=True)
class Sums:
    calls: int = 0
    errors: int = 0
    unpriced_calls: int = 0
    usage_unknown_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def minus(self, other: Sums) -> Sums:
        return Sums(
            calls=self.calls - other.calls,
            errors=self.errors - other.errors,
            unpriced_calls=self.unpriced_calls - other.unpriced_calls,
            usage_unknown_calls=self.usage_unknown_calls - other.usage_unknown_calls,
            input_tokens=self.input_tokens - other.input_tokens,
            output_tokens=self.output_tokens - other.output_tokens,
            # Float sums in another order: a difference below a nano-dollar is rounding, not spend.
            cost_usd=max(0.0, self.cost_usd - other.cost_usd) if self.cost_usd - other.cost_usd > 1e-9 else 0.0,
        )


@dataclass(slots=True)
class CostRow:
    key: str
    sums: Sums
    share: float = 0.0  # of the totals' cost, 0..1


@dataclass(slots=True)
class DayCost:
    day: dt.date
    calls: int
    cost_usd: float
    by_key: dict[str, float] = field(default_factory=dict)  # cost of the first SERIES_MAX rows' keys


@dataclass(slots=True)
class Breakdown:
    query: CostQuery
    rows: list[CostRow]
    other: CostRow  # every key past the top N, folded
    other_keys: int  # how many keys `other` holds
    none: CostRow | None  # attribute group-bys: calls without the key
    totals: CostRow
    daily: list[DayCost]


def attribute_key_list(*, project_id: int) -> list[str]:
    """The attribute keys a project's breakdowns can group by (the rolled-up ones)."""
    return list(AttributeKey.objects.filter(project_id=project_id).order_by("key").values_list("key", flat=True))


def dimension_value_list(*, project_id: int, dimension: str, start: dt.date, end: dt.date) -> list[str]:
    """Distinct non-empty values of a DailyRollup column in a range (filter pickers)."""
    if dimension not in DIMENSIONS:
        raise ValueError(dimension)
    return sorted(
        v
        for v in DailyRollup.objects.filter(project_id=project_id, day__gte=start, day__lte=end)
        .values_list(dimension, flat=True)
        .distinct()[:500]
        if v
    )


def cost_query_check(*, project_id: int, query: CostQuery) -> None:
    """Raise CostQueryError when the rollups cannot answer `query`."""
    if query.end < query.start:
        raise CostQueryError("from", "from must be on or before to")
    if (query.end - query.start).days + 1 > RANGE_DAYS_MAX:
        raise CostQueryError("to", f"a range of at most {RANGE_DAYS_MAX} days")
    if not 1 <= query.limit <= LIMIT_MAX:
        raise CostQueryError("limit", f"an integer from 1 to {LIMIT_MAX}")
    keys = []
    if query.group_by == "attribute":
        keys.append(("group_by", query.key or ""))
    elif query.group_by not in DIMENSIONS:
        raise CostQueryError("group_by", "one of attribute:<key>, service, model, section, provider")
    if query.attribute is not None:
        keys.append(("attribute", query.attribute[0]))
    if keys:
        if query.section is not None or query.group_by == "section":
            raise CostQueryError(
                "section",
                "section cannot be combined with an attribute (the attribute rollup is kept per "
                "service, provider and model, not per section)",
            )
        known = set(attribute_key_list(project_id=project_id))
        for param, key in keys:
            if not key or len(key) > ATTRIBUTE_KEY_MAX:
                raise CostQueryError(param, f"an attribute key of 1 to {ATTRIBUTE_KEY_MAX} characters")
            if key not in known:
                listed = ", ".join(sorted(known)) or "none yet"
                raise CostQueryError(param, f"attribute key {key!r} is not rolled up for this project ({listed})")
        if query.group_by == "attribute" and query.attribute is not None and query.attribute[0] != query.key:
            raise CostQueryError(
                "attribute",
                "an attribute filter on another key than the group-by's cannot be answered from the "
                "rollups (they keep each key on its own)",
            )


def _where(query: CostQuery, *, project_id: int, attribute_table: bool) -> tuple[list[str], list[Any]]:
    adapt = connection.ops.adapt_datefield_value
    clauses = ["project_id = %s", "day >= %s", "day <= %s"]
    params: list[Any] = [project_id, adapt(query.start), adapt(query.end)]
    for column in ("service", "model", "provider"):
        value = getattr(query, column)
        if value is not None:
            clauses.append(f"{column} = %s")
            params.append(value)
    if attribute_table:
        key = query.key if query.group_by == "attribute" else query.attribute[0]  # type: ignore[index]
        clauses.append("key = %s")
        params.append(key)
        if query.attribute is not None:
            clauses.append("value = %s")
            params.append(query.attribute[1])
    elif query.section is not None:
        clauses.append("section = %s")
        params.append(query.section)
    return clauses, params


def _sums(row: tuple[Any, ...] | None) -> Sums:
    if row is None:
        return Sums()
    calls, errors, unpriced, unknown, tokens_in, tokens_out = (int(v or 0) for v in row[:6])
    return Sums(
        calls=calls,
        errors=errors,
        unpriced_calls=unpriced,
        usage_unknown_calls=unknown,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cost_usd=float(row[6] or 0.0),
    )


SUM_SQL = ", ".join(f"SUM({c})" for c in SUMS)


def _source(query: CostQuery, *, by_day: bool = False) -> str:
    """The table a query's groups (or with `by_day`, its day totals) come from.

    Without any attribute: the day rollup.  With one and no service, provider
    or model filter or group-by: the per-value rollup (no service, provider or
    model columns: 2-3x fewer rows than the wide one).  Otherwise the wide
    attribute rollup."""
    if query.group_by != "attribute" and query.attribute is None:
        return DailyRollup._meta.db_table
    unsplit = query.service is None and query.model is None and query.provider is None
    if unsplit and (by_day or query.group_by == "attribute"):
        return AttributeValueRollup._meta.db_table
    return AttributeRollup._meta.db_table


def _top_sql(source: str, group_col: str) -> str:
    """The top N groups by cost (then calls, then name) and how many groups there
    are: only the two sums the order needs are summed per group (a month of
    50,000 users is 50,000 groups); the rows' other sums are read for the top N.
    `source`: "table WHERE ..." or a derived table of (group_col, cost_usd, calls)."""
    if connection.vendor == "sqlite":
        # The groups kept once and counted by a scalar subquery: a window over 50,000
        # groups made SQLite copy them again (~25% of the query at 1M events).
        return (
            f"WITH g AS MATERIALIZED (SELECT {group_col} AS k, SUM(cost_usd) AS c, SUM(calls) AS n "
            f"FROM {source} GROUP BY {group_col}) "
            "SELECT k, c, n, (SELECT COUNT(*) FROM g) FROM g ORDER BY c DESC, n DESC, k LIMIT %s"
        )
    return (
        f"SELECT {group_col}, SUM(cost_usd), SUM(calls), COUNT(*) OVER () FROM {source} "
        f"GROUP BY {group_col} ORDER BY SUM(cost_usd) DESC, SUM(calls) DESC, {group_col} LIMIT %s"
    )


def whole_weeks(start: dt.date, end: dt.date) -> tuple[dt.date, dt.date] | None:
    """The Mondays of the first and last ISO weeks wholly inside [start, end], or None."""
    first = start + dt.timedelta(days=(7 - start.weekday()) % 7)
    last = end - dt.timedelta(days=(end.weekday() + 1) % 7) - dt.timedelta(days=6)
    return (first, last) if first <= last else None


def whole_months(start: dt.date, end: dt.date) -> tuple[dt.date, dt.date] | None:
    """The first days of the first and last calendar months wholly inside [start, end], or None."""
    first = start if start.day == 1 else month_after(start)
    after_end = end + dt.timedelta(days=1)
    last = (after_end.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    return (first, last) if first <= last else None


def range_spans(start: dt.date, end: dt.date) -> list[tuple[str, dt.date, dt.date]]:
    """[start, end] cut into ("month" | "week" | "day", first, last) pieces: its
    whole months, then the whole weeks of what is left at either side, then
    the days left over (at most six at each end of a stretch of weeks)."""
    out: list[tuple[str, dt.date, dt.date]] = []
    one = dt.timedelta(days=1)
    months = whole_months(start, end)
    gaps = [(start, end)]
    if months is not None:
        out.append(("month", *months))
        gaps = [(start, months[0] - one), (month_after(months[1]), end)]
    for first, last in gaps:
        if first > last:
            continue
        weeks = whole_weeks(first, last)
        if weeks is None:
            out.append(("day", first, last))
            continue
        out.append(("week", *weeks))
        for a, b in ((first, weeks[0] - one), (weeks[1] + dt.timedelta(days=7), last)):
            if a <= b:
                out.append(("day", a, b))
    return out


_SPAN_SOURCES = {
    "month": (AttributeValueMonth._meta.db_table, "month"),
    "week": (AttributeValueWeek._meta.db_table, "week"),
    "day": (AttributeValueRollup._meta.db_table, "day"),
}


def value_rows_sql(
    *, project_id: int, key: str, first: dt.date, last: dt.date, value: str | None = None
) -> tuple[list[str], list[Any]]:
    """SELECTs of (value, cost_usd, calls) whose rows together hold every day of
    [first, last] once: its whole months from AttributeValueMonth, whole weeks of
    the rest from AttributeValueWeek, the days left over from AttributeValueRollup
    (range_spans), for a UNION ALL.  `value`: only that value's rows."""
    adapt = connection.ops.adapt_datefield_value
    parts: list[str] = []
    params: list[Any] = []
    for kind, a, b in range_spans(first, last):
        table, column = _SPAN_SOURCES[kind]
        parts.append(
            f"SELECT value, cost_usd, calls FROM {table} WHERE project_id = %s AND key = %s "
            f"AND {column} >= %s AND {column} <= %s" + (" AND value = %s" if value is not None else "")
        )
        params += [project_id, key, adapt(a), adapt(b), *([value] if value is not None else [])]
    return parts, params


def attribute_window_fresh(*, project_id: int, key: str, first: dt.date, last: dt.date) -> tuple[int, dt.date] | None:
    """The id and last day of the longest AttributeWindow of `key` starting on
    `first` and ending by `last` that is still fresh (its stamp equals the
    writes of its days now), or None."""
    adapt = connection.ops.adapt_datefield_value
    window_t, day_t = AttributeWindow._meta.db_table, AttributeKeyDay._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT w.id, w.last_day FROM {window_t} w WHERE w.project_id = %s AND w.key = %s "
            "AND w.first_day = %s AND w.last_day <= %s AND w.writes = (SELECT COALESCE(SUM(k.writes), 0) "
            f"FROM {day_t} k WHERE k.project_id = w.project_id AND k.key = w.key AND k.day >= w.first_day "
            "AND k.day <= w.last_day) ORDER BY w.last_day DESC LIMIT 1",
            [project_id, key, adapt(first), adapt(last)],
        )
        row = cursor.fetchone()
    return (int(row[0]), _as_date(row[1])) if row else None


def _tiered_source(query: CostQuery, *, project_id: int) -> tuple[str, list[Any]] | None:
    """The per-value rows of a breakdown's range as a derived table of (value,
    cost_usd, calls), read from the coarsest rows that hold it: a fresh
    AttributeWindow from the range's first day (a group-by with no value
    filter), then value_rows_sql for the days after it.  None when that is
    only day rows (the plain range scan of AttributeValueRollup)."""
    key = query.key if query.group_by == "attribute" else query.attribute[0]  # type: ignore[index]
    assert key is not None
    value = query.attribute[1] if query.attribute is not None else None
    parts: list[str] = []
    params: list[Any] = []
    first = query.start
    if query.group_by == "attribute" and value is None:
        window = attribute_window_fresh(project_id=project_id, key=key, first=query.start, last=query.end)
        if window is not None:
            window_values = AttributeWindowValue._meta.db_table
            parts.append(f"SELECT value, cost_usd, calls FROM {window_values} WHERE window_id = %s")
            params.append(window[0])
            first = window[1] + dt.timedelta(days=1)
    if first <= query.end:
        if not parts and all(kind == "day" for kind, _, _ in range_spans(first, query.end)):
            return None
        more, more_params = value_rows_sql(project_id=project_id, key=key, first=first, last=query.end, value=value)
        parts += more
        params += more_params
    return f"({' UNION ALL '.join(parts)}) AS r", params


def _days(query: CostQuery) -> list[Any]:
    adapt = connection.ops.adapt_datefield_value
    return [adapt(query.start + dt.timedelta(days=i)) for i in range((query.end - query.start).days + 1)]


def cost_breakdown(*, project_id: int, query: CostQuery) -> Breakdown:
    """The top `query.limit` keys by cost with other, none, totals and a daily series.

    Call cost_query_check first (the view does): this assumes an answerable query.
    """
    attribute_table = query.group_by == "attribute" or query.attribute is not None
    table = _source(query)
    narrow = table == AttributeValueRollup._meta.db_table
    group_col = "value" if query.group_by == "attribute" else query.group_by
    clauses, params = _where(query, project_id=project_id, attribute_table=attribute_table)
    where = " AND ".join(clauses)
    tiered = _tiered_source(query, project_id=project_id) if narrow else None
    with _grouping_cursor() as cursor:
        if tiered is not None:
            cursor.execute(_top_sql(tiered[0], group_col), [*tiered[1], query.limit])
        else:
            cursor.execute(_top_sql(f"{table} WHERE {where}", group_col), [*params, query.limit])
        top = cursor.fetchall()
        groups = int(top[0][3]) if top else 0
        keys = [r[0] for r in top]
        # (day, key) -> the sums: every sum of the top N keys per day, for their
        # rows and the daily chart in one read.
        # The wide rollup's key is (project, key, day, value, ...): its rows of N
        # values are found by seeking each day; the per-value rollup's is
        # (project, key, value, day): N ranges.
        seek_days = attribute_table and not narrow
        per_day = _per_day_sums(cursor, table, group_col, clauses, params, query, keys, seek_days=seek_days)
        sums: dict[str, Sums] = {}
        for (_, key), s in per_day.items():
            sums[key] = _plus(sums.get(key), s)
        rows = [CostRow(key=k, sums=sums.get(k) or Sums()) for k in keys]
        if narrow and query.group_by == "attribute" and query.attribute is None:
            # Every call with the key: one row a day in AttributeKeyDay.
            cursor.execute(
                f"SELECT {SUM_SQL} FROM {AttributeKeyDay._meta.db_table} "
                "WHERE project_id = %s AND key = %s AND day >= %s AND day <= %s",
                [project_id, query.key, *_bounds(query)],
            )
            grouped = _sums(cursor.fetchone())
        elif groups <= len(rows):
            grouped = Sums()
            for row in rows:
                grouped = _plus(grouped, row.sums)
        else:
            cursor.execute(f"SELECT {SUM_SQL} FROM {table} WHERE {where}", params)
            grouped = _sums(cursor.fetchone())
        none = None
        if query.group_by == "attribute":
            # Every call of the range and filters (the day rollup), less those with the key.
            day_clauses, day_params = _where(query, project_id=project_id, attribute_table=False)
            cursor.execute(
                f"SELECT {SUM_SQL} FROM {DailyRollup._meta.db_table} WHERE {' AND '.join(day_clauses)}", day_params
            )
            everything = _sums(cursor.fetchone())
            if query.attribute is not None:
                # Grouping by the key filtered to one value: the rest of the calls are outside the filter.
                everything = grouped
            none = CostRow(key=NONE, sums=everything.minus(grouped))
            totals = everything
        else:
            totals = grouped
        daily = _daily(cursor, query, project_id=project_id, per_day=per_day, series=keys[:SERIES_MAX])
    shown = Sums()
    for row in rows:
        shown = _plus(shown, row.sums)
    other = CostRow(key=OTHER_KEYS, sums=grouped.minus(shown))
    for row in (*rows, other, *([none] if none else [])):
        row.share = row.sums.cost_usd / totals.cost_usd if totals.cost_usd > 0 else 0.0
    return Breakdown(
        query=query,
        rows=rows,
        other=other,
        other_keys=max(0, groups - len(rows)),
        none=none,
        totals=CostRow(key="(total)", sums=totals, share=1.0 if totals.cost_usd > 0 else 0.0),
        daily=daily,
    )


@contextmanager
def _grouping_cursor() -> Iterator[Any]:
    """A cursor for the breakdown's reads.  PostgreSQL: in a transaction with
    work_mem raised for it alone (SET LOCAL), so grouping 50,000 values hashes in
    memory instead of spilling to disk in batches (the default 4 MB does); and
    without parallel workers: over the week and day rows' UNION ALL the planner
    guesses 200 groups and split 50,000 into partial aggregates, sorts and a
    merge, twice the time of one backend's hash (and workers compete with
    ingest for the same cores)."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL work_mem = '{GROUPING_WORK_MEM}'")
        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        yield cursor


def _bounds(query: CostQuery) -> tuple[Any, Any]:
    adapt = connection.ops.adapt_datefield_value
    return adapt(query.start), adapt(query.end)


def _plus(a: Sums | None, b: Sums) -> Sums:
    if a is None:
        return Sums(**{n: getattr(b, n) for n in SUMS})
    return Sums(**{n: getattr(a, n) + getattr(b, n) for n in SUMS})


def _per_day_sums(
    cursor: Any,
    table: str,
    group_col: str,
    clauses: list[str],
    params: list[Any],
    query: CostQuery,
    keys: list[str],
    *,
    seek_days: bool,
) -> dict[tuple[dt.date, str], Sums]:
    """(day, key) -> every sum, for the given keys."""
    if not keys:
        return {}
    extra = ""
    extra_params: list[Any] = []
    if seek_days:
        # Every day named: (project, key, day, value) seeks in the attribute
        # rollups' key instead of a walk of the whole range.
        days = _days(query)
        extra = f" AND day IN ({', '.join(['%s'] * len(days))})"
        extra_params = days
    out: dict[tuple[dt.date, str], Sums] = {}
    for start in range(0, len(keys), 500):
        part = keys[start : start + 500]
        cursor.execute(
            f"SELECT day, {group_col}, {SUM_SQL} FROM {table} WHERE {' AND '.join(clauses)}{extra} "
            f"AND {group_col} IN ({', '.join(['%s'] * len(part))}) GROUP BY day, {group_col}",
            [*params, *extra_params, *part],
        )
        for row in cursor.fetchall():
            out[(_as_date(row[0]), row[1])] = _sums(row[2:])
    return out


def _daily(
    cursor: Any, query: CostQuery, *, project_id: int, per_day: dict[tuple[dt.date, str], Sums], series: list[str]
) -> list[DayCost]:
    """Per day of the range: the totals' calls and cost, and the cost of the
    first SERIES_MAX rows' keys."""
    # The day totals come from the same source as `totals`: the day rollup for
    # a group-by without an attribute filter, else the attribute rollups.
    total_from_attribute = query.attribute is not None
    clauses, params = _where(query, project_id=project_id, attribute_table=total_from_attribute)
    table = _source(query, by_day=True) if total_from_attribute else DailyRollup._meta.db_table
    cursor.execute(
        f"SELECT day, SUM(calls), SUM(cost_usd) FROM {table} WHERE {' AND '.join(clauses)} GROUP BY day", params
    )
    days: dict[dt.date, DayCost] = {}
    for day_raw, calls, cost in cursor.fetchall():
        day = _as_date(day_raw)
        days[day] = DayCost(day=day, calls=int(calls or 0), cost_usd=float(cost or 0.0))
    shown = set(series)
    for (day, key), s in per_day.items():
        if key in shown:
            entry = days.get(day)
            if entry is None:
                entry = days[day] = DayCost(day=day, calls=0, cost_usd=0.0)
            entry.by_key[key] = s.cost_usd
    out = []
    day = query.start
    while day <= query.end:
        out.append(days.get(day) or DayCost(day=day, calls=0, cost_usd=0.0))
        day += dt.timedelta(days=1)
    return out


def _as_date(value: Any) -> dt.date:
    # SQLite hands dates back as text from raw SQL.
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
