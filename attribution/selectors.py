"""Cost breakdowns read from the rollups kept at ingest, never from events.

Two sources, both per UTC day:

- `DailyRollup` (service, section, provider, model): group-bys by those four
  and their filters;
- `AttributeRollup` (attribute key and value, service, provider, model):
  a group-by on an attribute key, or a filter `attribute=key:value`.

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
from dataclasses import dataclass, field
from typing import Any

from django.db import connection

from events.attributes import ATTRIBUTE_KEY_MAX, NONE
from events.models import AttributeKey, AttributeRollup, DailyRollup

DIMENSIONS = ("service", "model", "section", "provider")
LIMIT_DEFAULT = 10
LIMIT_MAX = 1000
RANGE_DAYS_MAX = 366
SERIES_MAX = 7  # keys drawn one by one in the daily chart; the rest is "other"
OTHER_KEYS = "(all other keys)"  # the fold of keys past the top N (not the stored cap bucket "(other)")
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


def cost_breakdown(*, project_id: int, query: CostQuery) -> Breakdown:
    """The top `query.limit` keys by cost with other, none, totals and a daily series.

    Call cost_query_check first (the view does): this assumes an answerable query.
    """
    attribute_table = query.group_by == "attribute" or query.attribute is not None
    table = (AttributeRollup if attribute_table else DailyRollup)._meta.db_table
    group_col = "value" if query.group_by == "attribute" else query.group_by
    clauses, params = _where(query, project_id=project_id, attribute_table=attribute_table)
    where = " AND ".join(clauses)
    window = ", ".join(f"SUM(SUM({c})) OVER ()" for c in SUMS)
    with connection.cursor() as cursor:
        # One pass: the top N groups, and over every group (a window over the
        # grouped rows, computed before LIMIT) their count and sums.
        cursor.execute(
            f"SELECT {group_col}, {SUM_SQL}, COUNT(*) OVER (), {window} FROM {table} WHERE {where} "
            f"GROUP BY {group_col} ORDER BY SUM(cost_usd) DESC, SUM(calls) DESC, {group_col} LIMIT %s",
            [*params, query.limit],
        )
        top = cursor.fetchall()
        groups = int(top[0][8]) if top else 0
        grouped = _sums(top[0][9:]) if top else Sums()
        rows = [CostRow(key=r[0], sums=_sums(r[1:8])) for r in top]
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
        daily = _daily(cursor, query, project_id=project_id, rows=rows, attribute_table=attribute_table)
    shown = Sums()
    for row in rows:
        for name in SUMS:
            setattr(shown, name, getattr(shown, name) + getattr(row.sums, name))
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


def _daily(
    cursor: Any, query: CostQuery, *, project_id: int, rows: list[CostRow], attribute_table: bool
) -> list[DayCost]:
    """Per day of the range: the totals' calls and cost, and the cost of the
    first SERIES_MAX rows' keys."""
    # The day totals come from the same source as `totals`: the day rollup for
    # a group-by without an attribute filter, else the attribute rollup.
    total_from_attribute = query.attribute is not None
    clauses, params = _where(query, project_id=project_id, attribute_table=total_from_attribute)
    table = (AttributeRollup if total_from_attribute else DailyRollup)._meta.db_table
    cursor.execute(
        f"SELECT day, SUM(calls), SUM(cost_usd) FROM {table} WHERE {' AND '.join(clauses)} GROUP BY day", params
    )
    days: dict[dt.date, DayCost] = {}
    for day_raw, calls, cost in cursor.fetchall():
        day = _as_date(day_raw)
        days[day] = DayCost(day=day, calls=int(calls or 0), cost_usd=float(cost or 0.0))
    series_keys = [r.key for r in rows[:SERIES_MAX]]
    if series_keys:
        group_col = "value" if query.group_by == "attribute" else query.group_by
        clauses, params = _where(query, project_id=project_id, attribute_table=attribute_table)
        table = (AttributeRollup if attribute_table else DailyRollup)._meta.db_table
        extra = ""
        if attribute_table and query.group_by == "attribute":
            # Every day named: (project, key, day, value) seeks in the attribute
            # rollup's key instead of a walk of the whole range (50 ms -> 1 ms
            # for a month of 50,000 users).
            adapt = connection.ops.adapt_datefield_value
            names = [adapt(d.day) for d in days.values()]
            extra = f" AND day IN ({', '.join(['%s'] * len(names))})" if names else ""
            params = [*params, *names]
        cursor.execute(
            f"SELECT day, {group_col}, SUM(cost_usd) FROM {table} WHERE {' AND '.join(clauses)}{extra} "
            f"AND {group_col} IN ({', '.join(['%s'] * len(series_keys))}) GROUP BY day, {group_col}",
            [*params, *series_keys],
        )
        for day_raw, key, cost in cursor.fetchall():
            day = _as_date(day_raw)
            entry = days.get(day)
            if entry is None:
                entry = days[day] = DayCost(day=day, calls=0, cost_usd=0.0)
            entry.by_key[key] = float(cost or 0.0)
    out = []
    day = query.start
    while day <= query.end:
        out.append(days.get(day) or DayCost(day=day, calls=0, cost_usd=0.0))
        day += dt.timedelta(days=1)
    return out


def _as_date(value: Any) -> dt.date:
    # SQLite hands dates back as text from raw SQL.
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
