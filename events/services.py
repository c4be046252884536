"""Writes to the event store: batch ingest and the repricing of history."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
from django.db import connection, transaction
from django.utils import timezone

from budgets.spend import budget_spend_add
from events.attributes import (
    ATTRIBUTE_KEYS_MAX,
    ATTRIBUTE_VALUES_MAX,
    OTHER,
    RUN_ATTRIBUTES_MAX,
    FlatCache,
    attributes_flat,
    attributes_json,
    attributes_merge,
)
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
    Event,
    RollupSums,
    Run,
    RunSection,
)
from events.partitions import partitions_ensure_for
from events.schema import EventIn, attributes_text, json_or_null, json_text
from pricing.costing import EXACT, UNPRICED, USAGE_UNKNOWN, Cost, apply_card
from pricing.services import PriceTable, price_table_current

EVENT_COLUMNS = (
    "project_id",
    "event_id",
    "run_id",
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
    "client_cost_usd",
    "priced",
    "price_id",
    "latency_ms",
    "started_at",
    "ended_at",
    "status",
    "error_type",
    "service",
    "attributes",
    "received_at",
    "cost_status",
    "cost_details",
    "price_source",
    "usage_details",
    "price_context",
    "usage_known",
    "provider_host",
)
_STARTED = EVENT_COLUMNS.index("started_at")
# The idempotency key (SPEC §2) as stored: a unique constraint on PostgreSQL's
# partitioned table must hold the partition key, and a resend carries the
# started_at it was first sent with (the invariant, events/partitions.py).
EVENT_KEY = "(project_id, event_id, started_at)"
JSON_COLUMNS = ("attributes", "cost_details", "usage_details", "price_context")
# Rows per INSERT statement: 37 parameters a row stays under SQLite's
# 32,766-variable limit and keeps PostgreSQL's statements a sensible size.
CHUNK = 500


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0


@dataclass
class _Agg:
    runs: dict[str, list[Any]] = field(default_factory=dict)
    sections: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    rollups: dict[tuple[dt.date, str, str, str, str], list[Any]] = field(default_factory=dict)
    # (key, day, value, service, provider, model) -> the same sums as rollups
    attr_rollups: dict[tuple[str, dt.date, str, str, str, str], list[Any]] = field(default_factory=dict)
    # Calls are first added once per (attribute set, day, service, provider, model),
    # the set by identity (FlatCache hands a run's events one shared dict), and
    # spread over the set's keys into attr_rollups once per batch (_attr_spread):
    # one fold per call instead of one per key and call.
    attr_calls: dict[tuple[int, dt.date, str, str, str], list[Any]] = field(default_factory=dict)
    attr_sets: dict[int, dict[str, str]] = field(default_factory=dict)


def _vendor_sql() -> tuple[str, str, str, str]:
    """(least, greatest, json placeholder, boolean-or) for the connected database."""
    if connection.vendor == "postgresql":
        return "LEAST", "GREATEST", "%s::jsonb", "({t}.is_root OR excluded.is_root)"
    return "MIN", "MAX", "%s", "MAX({t}.is_root, excluded.is_root)"


def event_batch_ingest(*, project_id: int, events: list[EventIn]) -> IngestResult:
    """Store a batch of validated events and add them to the aggregates.

    One transaction per batch.  Events go in with ON CONFLICT DO NOTHING
    RETURNING event_id, so the database (its unique project+event_id key)
    decides which events are new even when two resends of one batch race;
    only those new events are added to runs, sections and daily rollups.
    Rows are written in key order so concurrent batches lock in one order
    and cannot deadlock.
    """
    result = IngestResult()
    if not events:
        return result
    # The same event_id twice in one batch: the first is stored, the rest are duplicates.
    unique: dict[str, EventIn] = {}
    for ev in events:
        if ev.event_id in unique:
            result.duplicates += 1
        else:
            unique[ev.event_id] = ev
    ordered = [unique[k] for k in sorted(unique)]
    table = price_table_current()
    now = timezone.now()
    adapt = _fast_adapt()
    now_db = adapt(now)
    rows: list[tuple[Any, ...]] = []
    facts: dict[str, tuple[Any, ...]] = {}
    for ev in ordered:
        priced_as = _cost(table, ev, project_id)
        cost, status = priced_as.usd, priced_as.status
        ended = ev.started_at + dt.timedelta(milliseconds=ev.latency_ms) if ev.latency_ms else ev.started_at
        rows.append(
            (
                project_id,
                ev.event_id,
                ev.run_id,
                ev.span_id,
                ev.parent_span_id,
                ev.span_type,
                ev.name,
                ev.section,
                ev.section_path,
                ev.provider,
                ev.model,
                ev.endpoint,
                ev.input_tokens,
                ev.output_tokens,
                ev.cached_input_tokens,
                ev.reasoning_tokens,
                ev.read_units,
                ev.write_units,
                cost,
                ev.cost_usd,
                status == EXACT,
                priced_as.price_id,
                ev.latency_ms,
                adapt(ev.started_at),
                adapt(ended),
                ev.status,
                ev.error_type,
                ev.service,
                attributes_text(ev.attributes),
                now_db,
                status,
                json_text(priced_as.details),
                priced_as.source,
                json_or_null(ev.usage_details),
                json_or_null(ev.price_context),
                ev.usage_known,
                ev.provider_host,
            )
        )
        facts[ev.event_id] = (ev, cost, status, ended)

    # PostgreSQL: a late or backfilled event's month gets its partition first,
    # outside the batch's transaction (DDL in it would hold its locks to the end).
    partitions_ensure_for(starts=[ev.started_at for ev in ordered])
    with transaction.atomic():
        inserted = _insert_events(rows)
        result.accepted = len(inserted)
        result.duplicates += len(ordered) - len(inserted)
        if inserted:
            agg = _Agg()
            flat = FlatCache()
            for event_id in inserted:
                ev, cost, status, ended = facts[event_id]
                _add(
                    agg,
                    ev.run_id,
                    ev.service,
                    ev.started_at,
                    ended,
                    ev.span_type,
                    ev.status,
                    ev.input_tokens,
                    ev.output_tokens,
                    cost,
                    status,
                    ev.section,
                    ev.section_path,
                    ev.provider,
                    ev.model,
                    flat.flat(ev.attributes) if len(ev.attributes) else None,
                )
            _upsert_aggregates(project_id, agg, now)
            # Budgets (budgets/spend.py): one dict look-up for a project without any.
            budget_spend_add(project_id=project_id, received_at=now, calls=(facts[i] for i in inserted))
    return result


NOT_BILLED = Cost(usd=0.0, status=EXACT, details={})


class BilledCall(Protocol):
    """What costing reads of a call: an incoming EventIn or a stored Event."""

    @property
    def provider(self) -> str | None: ...

    @property
    def model(self) -> str | None: ...

    @property
    def started_at(self) -> dt.datetime: ...

    @property
    def status(self) -> str: ...

    @property
    def input_tokens(self) -> int: ...

    @property
    def output_tokens(self) -> int: ...

    @property
    def cached_input_tokens(self) -> int: ...

    @property
    def reasoning_tokens(self) -> int: ...

    @property
    def read_units(self) -> float: ...

    @property
    def write_units(self) -> float: ...

    @property
    def usage_known(self) -> bool: ...

    @property
    def provider_host(self) -> str | None: ...

    @property
    def usage_details(self) -> dict[str, Any] | None: ...

    @property
    def price_context(self) -> dict[str, Any] | None: ...


def _cost(table: PriceTable, ev: EventIn, project_id: int) -> Cost:
    if ev.span_type == "section":
        # A section's own span carries no usage; its cost is its calls' (rolled up on read).
        return NOT_BILLED
    return call_cost(table, ev, project_id=project_id, client_cost=ev.cost_usd)


def call_cost(table: PriceTable, call: BilledCall, *, project_id: int, client_cost: float | None) -> Cost:
    """SPEC §3: the call's cost, its cost_status and its per-unit figures."""
    # The call's non-zero units (event_units, inlined: this runs per event).
    units: dict[str, float] = {}
    if call.input_tokens:
        units["input_tokens"] = call.input_tokens
    if call.output_tokens:
        units["output_tokens"] = call.output_tokens
    if call.cached_input_tokens:
        units["cached_input_tokens"] = call.cached_input_tokens
    if call.reasoning_tokens:
        units["reasoning_tokens"] = call.reasoning_tokens
    if call.read_units:
        units["read_units"] = call.read_units
    if call.write_units:
        units["write_units"] = call.write_units
    details = call.usage_details
    if details:
        units.update((unit, value) for unit, value in details.items() if value)
    context = call.price_context
    card = table.card(
        call.provider,
        call.model,
        call.started_at,
        project_id=project_id,
        tier=context.get("service_tier") if context else None,
        processing=context.get("processing") if context else None,
        host=call.provider_host,
    )
    if card is None:
        if not units and call.usage_known and (not call.model or call.status == "error"):
            return NOT_BILLED  # nothing billable was used: free, not unpriced
        cost = Cost(usd=client_cost or 0.0, status=UNPRICED, details=dict.fromkeys(units))
    else:
        unit_cards = table.unit_cards(card, units, context, call.started_at, project_id) if context else None
        cost = apply_card(card, units, unit_cards=unit_cards)
        if cost.status == UNPRICED and client_cost is not None:
            cost.usd = client_cost  # SPEC §3: the client's own figure where we cannot price every unit
    if not call.usage_known:
        cost.status = USAGE_UNKNOWN
    return cost


def _sqlite_datetime(value: dt.datetime) -> str:
    # What django's SQLite adapt_datetimefield_value returns for an aware datetime, without its checks.
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ")


def _identity(value: Any) -> Any:
    return value


def _fast_adapt() -> Any:
    if connection.vendor == "sqlite":
        return _sqlite_datetime
    if connection.vendor == "postgresql":
        return _identity
    return connection.ops.adapt_datetimefield_value


COPY_MIN_ROWS = 64


def _insert_events(rows: list[tuple[Any, ...]]) -> set[str]:
    if connection.vendor == "postgresql" and len(rows) >= COPY_MIN_ROWS:
        return _insert_events_copy(rows)
    if connection.vendor == "sqlite":
        return _insert_events_sqlite(rows)
    return _insert_events_values(rows)


def _insert_events_copy(rows: list[tuple[Any, ...]]) -> set[str]:
    """PostgreSQL: COPY the batch into a session temp table, then one
    INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING."""
    table = Event._meta.db_table
    cols = ", ".join(EVENT_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS event_stage ON COMMIT DELETE ROWS AS "
            f"SELECT {cols} FROM {table} WITH NO DATA"
        )
        cursor.execute("DELETE FROM event_stage")  # empty unless two batches share a transaction
        # The raw psycopg cursor: wrapped so its errors are Django's (DataError, OperationalError...).
        with connection.wrap_database_errors, cursor.cursor.copy(f"COPY event_stage ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(
            f"INSERT INTO {table} ({cols}) SELECT {cols} FROM event_stage ORDER BY event_id "
            f"ON CONFLICT {EVENT_KEY} DO NOTHING RETURNING event_id"
        )
        return {r[0] for r in cursor.fetchall()}


def _insert_events_sqlite(rows: list[tuple[Any, ...]]) -> set[str]:
    """SQLite: look up which event_ids already exist, then executemany the rest.

    SQLite runs one writer at a time and our transactions BEGIN IMMEDIATE
    (settings), so nothing can insert between the look-up and the insert:
    the look-up is exact.  A prepared one-row INSERT run many times is the
    fastest way into SQLite (the benchmark's raw ceiling does the same); the
    unique key still guards it with ON CONFLICT DO NOTHING.
    """
    table = Event._meta.db_table
    connection.ensure_connection()
    raw = connection.connection
    project_id = rows[0][0]
    ids = [row[1] for row in rows]
    existing: set[tuple[str, str]] = set()
    # The raw sqlite3 connection: wrapped so its errors are Django's (OperationalError...).
    with connection.wrap_database_errors:
        for start in range(0, len(ids), 900):
            part = ids[start : start + 900]
            existing.update(
                (r[0], r[1])
                for r in raw.execute(
                    # `|| ''`: the stored text, not the datetime Django's converter makes of the column.
                    f"SELECT event_id, started_at || '' FROM {table} "
                    f"WHERE project_id = ? AND event_id IN ({', '.join('?' * len(part))})",
                    [project_id, *part],
                )
            )
        # The key is (event_id, started_at) as on PostgreSQL (events/partitions.py); both are
        # the text _sqlite_datetime writes, so equal instants compare equal.
        fresh = [row for row in rows if (row[1], row[_STARTED]) not in existing] if existing else rows
        if fresh:
            raw.executemany(
                f"INSERT INTO {table} ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))}) "
                f"ON CONFLICT {EVENT_KEY} DO NOTHING",
                fresh,
            )
    return {row[1] for row in fresh}


def _insert_events_values(rows: list[tuple[Any, ...]]) -> set[str]:
    table = Event._meta.db_table
    _, _, json_ph, _ = _vendor_sql()
    placeholders = ["%s"] * len(EVENT_COLUMNS)
    for column in JSON_COLUMNS:
        placeholders[EVENT_COLUMNS.index(column)] = json_ph
    row_sql = "(" + ", ".join(placeholders) + ")"
    inserted: set[str] = set()
    with connection.cursor() as cursor:
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            sql = (
                f"INSERT INTO {table} ({', '.join(EVENT_COLUMNS)}) VALUES "
                + ", ".join([row_sql] * len(chunk))
                + f" ON CONFLICT {EVENT_KEY} DO NOTHING RETURNING event_id"
            )
            cursor.execute(sql, [value for row in chunk for value in row])
            inserted.update(r[0] for r in cursor.fetchall())
    return inserted


def _add(
    agg: _Agg,
    run_id: str,
    service: str | None,
    started_at: dt.datetime,
    ended_at: dt.datetime,
    span_type: str,
    status: str,
    input_tokens: int,
    output_tokens: int,
    cost: float,
    cost_status: str,
    section: str | None,
    section_path: str | None,
    provider: str | None,
    model: str | None,
    attributes: dict[str, str] | None,
) -> None:
    """Fold one stored event into the batch's aggregate deltas.

    `attributes`: the event's attributes as `events.attributes.attributes_flat` gives them."""
    is_call = span_type != "section"
    is_error = status == "error"
    run = agg.runs.get(run_id)
    if run is None:
        # service, started, ended, calls, events, errors, input, output, cost, unpriced, usage unknown,
        # attributes, the last attributes merged (the events of a run share one dict: merged once)
        agg.runs[run_id] = [service, started_at, ended_at, 0, 0, 0, 0, 0, 0.0, 0, 0, {}, None]
        run = agg.runs[run_id]
    if attributes and run[12] is not attributes:
        attributes_merge(run[11], attributes)
        run[12] = attributes
    if service and not run[0]:
        run[0] = service
    run[1] = min(run[1], started_at)
    run[2] = max(run[2], ended_at)
    run[4] += 1
    run[5] += is_error
    if is_call:
        run[3] += 1
        run[6] += input_tokens
        run[7] += output_tokens
        run[8] += cost
        run[9] += cost_status == UNPRICED
        run[10] += cost_status == USAGE_UNKNOWN
    if section_path:
        root = section_path.split("/", 1)[0]
        _section(agg, run_id, root, started_at, True, 0, 0.0)
    if section:
        _section(agg, run_id, section, started_at, False, int(is_call), cost if is_call else 0.0)
    if is_call:
        day = started_at.astimezone(dt.UTC).date()
        key = (day, service or "", section or "", provider or "", model or "")
        unpriced = cost_status == UNPRICED
        unknown = cost_status == USAGE_UNKNOWN
        _fold_call(agg.rollups, key, is_error, unpriced, unknown, input_tokens, output_tokens, cost)
        if attributes:
            ident = id(attributes)
            if ident not in agg.attr_sets:
                agg.attr_sets[ident] = attributes  # kept alive for the batch, so its id stays its own
            akey = (ident, day, key[1], key[3], key[4])
            _fold_call(agg.attr_calls, akey, is_error, unpriced, unknown, input_tokens, output_tokens, cost)


def _attr_spread(agg: _Agg) -> None:
    """Move attr_calls into attr_rollups: each (set, day, service, provider, model)
    sum added to one row per key of the set."""
    rollups = agg.attr_rollups
    for (ident, day, service, provider, model), r in agg.attr_calls.items():
        for name, value in agg.attr_sets[ident].items():
            _fold_sums(rollups, (name, day, value, service, provider, model), r)
    agg.attr_calls.clear()
    agg.attr_sets.clear()


def _fold_call(
    rows: dict[Any, list[Any]],
    key: Any,
    is_error: bool,
    unpriced: bool,
    unknown: bool,
    input_tokens: int,
    output_tokens: int,
    cost: float,
) -> None:
    """Add one call to a day rollup's (or attribute rollup's) sums, in _ROLLUP_SUMS order:
    calls, errors, unpriced, input, output, cost, usage unknown."""
    row = rows.get(key)
    if row is None:
        row = rows[key] = [0, 0, 0, 0, 0, 0.0, 0]
    row[0] += 1
    row[1] += is_error
    row[2] += unpriced
    row[3] += input_tokens
    row[4] += output_tokens
    row[5] += cost
    row[6] += unknown


def _section(
    agg: _Agg, run_id: str, label: str, started_at: dt.datetime, is_root: bool, calls: int, cost: float
) -> None:
    entry = agg.sections.get((run_id, label))
    if entry is None:
        agg.sections[(run_id, label)] = [is_root, started_at, calls, cost]
        return
    entry[0] = entry[0] or is_root
    entry[1] = min(entry[1], started_at)
    entry[2] += calls
    entry[3] += cost


# Column maxima (BigIntegerField, IntegerField): aggregate sums stop there
# instead of overflowing, which PostgreSQL refuses (every later batch of the
# run with it) and SQLite turns into a float (its SUM() then fails on read).
BIG_MAX = 2**63 - 1
INT_MAX = 2**31 - 1
_INT_COLUMNS = {"calls", "events", "errors", "unpriced_calls", "usage_unknown_calls", "value_count"}


def _max_of(column: str) -> int:
    return INT_MAX if column in _INT_COLUMNS else BIG_MAX


def _plus(table: str, column: str) -> str:
    """`column` plus the incoming value, saturating at the column's maximum."""
    if column == "cost_usd":
        return f"{column} = {table}.{column} + excluded.{column}"
    top = _max_of(column)
    return (
        f"{column} = CASE WHEN {table}.{column} > {top} - excluded.{column} THEN {top} "
        f"ELSE {table}.{column} + excluded.{column} END"
    )


@functools.lru_cache(maxsize=16)
def _sums_update(table: str, sums: tuple[str, ...]) -> str:
    """The DO UPDATE SET list adding each sum (the same text every batch: built once)."""
    return ", ".join(_plus(table, c) for c in sums)


def _clamped(row: list[Any], start: int, columns: tuple[str, ...], clamp: bool) -> list[Any]:
    """row[start:] with each integer sum held to its column's maximum.  A batch's
    own sums stay far below it (1000 events of at most 2**40 tokens); a rebuild
    from the events of a huge run could reach it."""
    out = row[start : start + len(columns)]
    if clamp:
        for i, column in enumerate(columns):
            if column != "cost_usd" and out[i] > _max_of(column):
                out[i] = _max_of(column)
    return out


_RUN_SUMS = (
    "calls",
    "events",
    "errors",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "unpriced_calls",
    "usage_unknown_calls",
)
_ROLLUP_SUMS = (
    "calls",
    "errors",
    "unpriced_calls",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "usage_unknown_calls",
)


def _upsert_aggregates(project_id: int, agg: _Agg, now: dt.datetime, *, clamp: bool = False) -> None:
    least, greatest, _, bool_or = _vendor_sql()
    adapt = connection.ops.adapt_datetimefield_value
    now_db = adapt(now)
    run_t = Run._meta.db_table
    sec_t = RunSection._meta.db_table
    roll_t = DailyRollup._meta.db_table
    values: list[tuple[Any, ...]]
    with connection.cursor() as cursor:
        if agg.runs:
            values = [
                (
                    project_id,
                    run_id,
                    r[0],
                    adapt(r[1]),
                    adapt(r[2]),
                    *_clamped(r, 3, _RUN_SUMS, clamp),
                    now_db,
                    attributes_json(r[11]),
                )
                for run_id, r in sorted(agg.runs.items())
            ]
            _upsert(
                cursor,
                run_t,
                (
                    "project_id",
                    "run_id",
                    "service",
                    "started_at",
                    "ended_at",
                    "calls",
                    "events",
                    "errors",
                    "input_tokens",
                    "output_tokens",
                    "cost_usd",
                    "unpriced_calls",
                    "usage_unknown_calls",
                    "updated_at",
                    "attributes",
                ),
                ("project_id", "run_id"),
                f"service = COALESCE({run_t}.service, excluded.service), "
                f"started_at = {least}({run_t}.started_at, excluded.started_at), "
                f"ended_at = {greatest}({run_t}.ended_at, excluded.ended_at), "
                + ", ".join(_plus(run_t, c) for c in _RUN_SUMS)
                + f", updated_at = excluded.updated_at, attributes = {_attributes_merge_sql(run_t)}",
                values,
                json_last=True,
            )
        if agg.sections:
            values = [
                (project_id, run_id, label, s[0], adapt(s[1]), min(s[2], INT_MAX) if clamp else s[2], s[3])
                for (run_id, label), s in sorted(agg.sections.items())
            ]
            _upsert(
                cursor,
                sec_t,
                ("project_id", "run_id", "section", "is_root", "started_at", "calls", "cost_usd"),
                ("project_id", "run_id", "section"),
                f"is_root = {bool_or.format(t=sec_t)}, "
                f"started_at = {least}({sec_t}.started_at, excluded.started_at), "
                f"{_plus(sec_t, 'calls')}, {_plus(sec_t, 'cost_usd')}",
                values,
            )
        if agg.rollups:
            adapt_date = connection.ops.adapt_datefield_value
            values = [
                (project_id, adapt_date(day), service, section, provider, model, *_clamped(r, 0, _ROLLUP_SUMS, clamp))
                for (day, service, section, provider, model), r in sorted(agg.rollups.items())
            ]
            keys = ("project_id", "day", "service", "section", "provider", "model")
            _upsert(cursor, roll_t, (*keys, *_ROLLUP_SUMS), keys, _sums_update(roll_t, _ROLLUP_SUMS), values)
        if agg.attr_calls:
            _attr_spread(agg)
        if agg.attr_rollups:
            _upsert_attribute_rollups(cursor, project_id, agg, now, clamp)


def _attributes_merge_sql(t: str) -> str:
    """Run.attributes merged in SQL as attributes_merge does in Python: the run's
    keys win; a merge past RUN_ATTRIBUTES_MAX keys keeps the run's."""
    if connection.vendor == "postgresql":
        merged = f"(excluded.attributes || {t}.attributes)"
        count = f"(SELECT count(*) FROM jsonb_object_keys{merged})"
        empty = "'{}'::jsonb"
    else:
        merged = f"json_patch(excluded.attributes, {t}.attributes)"
        count = f"(SELECT count(*) FROM json_each({merged}))"
        empty = "'{}'"
    return (
        f"CASE WHEN excluded.attributes = {empty} THEN {t}.attributes "
        f"WHEN {t}.attributes = {empty} THEN excluded.attributes "
        f"WHEN {count} > {RUN_ATTRIBUTES_MAX} THEN {t}.attributes ELSE {merged} END"
    )


# Per process: each project's rolled-up attribute keys, so a batch does not read
# AttributeKey again.  Keys are only ever added while a project lives, so a
# cached set is a subset of the stored one: a batch key it lacks is a miss that
# re-reads (another process may have added it).  `complete` is set when a read
# found the cap already reached before this process added anything: no key can
# be added after that, so a key outside the set is refused without a read (a
# set this process itself filled to the cap is not complete: another process
# may have taken the last places at the same moment).  Entries are remembered
# only once the batch's transaction commits, so keys from a rolled-back batch
# never enter it.  Bounded: the oldest entry goes first.
@dataclass(frozen=True, slots=True)
class _KnownKeys:
    keys: frozenset[str]
    complete: bool


_KEYS_CACHE: dict[int, _KnownKeys] = {}
KEYS_CACHE_MAX = 10_000


def attribute_keys_forget() -> None:
    """Empty the per-process key cache (tests; never needed in service)."""
    _KEYS_CACHE.clear()


def _keys_remember(project_id: int, known: _KnownKeys) -> None:
    _KEYS_CACHE.pop(project_id, None)
    while len(_KEYS_CACHE) >= KEYS_CACHE_MAX:
        del _KEYS_CACHE[next(iter(_KEYS_CACHE))]
    _KEYS_CACHE[project_id] = known


def _rolled_up_keys(cursor: Any, project_id: int, incoming: set[str], now: dt.datetime) -> frozenset[str]:
    """The project's rolled-up keys, adding the batch's new ones while there is room
    (ATTRIBUTE_KEYS_MAX, first seen first kept)."""
    cached = _KEYS_CACHE.get(project_id)
    if cached is not None and (cached.complete or incoming <= cached.keys):
        return cached.keys
    key_t = AttributeKey._meta.db_table
    cursor.execute(f"SELECT key FROM {key_t} WHERE project_id = %s", [project_id])
    known = {r[0] for r in cursor.fetchall()}
    complete = len(known) >= ATTRIBUTE_KEYS_MAX
    fresh = sorted(incoming - known)[: max(0, ATTRIBUTE_KEYS_MAX - len(known))]
    if fresh:
        _upsert(
            cursor,
            key_t,
            ("project_id", "key", "first_seen_at"),
            ("project_id", "key"),
            "",
            [(project_id, k, connection.ops.adapt_datetimefield_value(now)) for k in fresh],
        )
        known.update(fresh)
    result = _KnownKeys(keys=frozenset(known), complete=complete)
    transaction.on_commit(lambda: _keys_remember(project_id, result))
    return result.keys


def _fold_sums(into: dict[Any, list[Any]], key: Any, sums: list[Any]) -> None:
    """Add a row's seven sums (_ROLLUP_SUMS order) to into[key].  Unrolled: it
    runs per attribute rollup row of every ingest batch."""
    t = into.get(key)
    if t is None:
        into[key] = list(sums)
    else:
        t[0] += sums[0]
        t[1] += sums[1]
        t[2] += sums[2]
        t[3] += sums[3]
        t[4] += sums[4]
        t[5] += sums[5]
        t[6] += sums[6]


def _upsert_attribute_rollups(cursor: Any, project_id: int, agg: _Agg, now: dt.datetime, clamp: bool) -> None:
    """Add the batch's attribute sums to AttributeRollup (per service, provider
    and model), AttributeValueRollup (per value), AttributeValueWeek and
    AttributeValueMonth (per value and ISO week / calendar month: the per-value
    rows summed by week and by month) and AttributeKeyDay (per key and day: its
    sums and how many values it holds) within the bounds.

    Keys: the project's first ATTRIBUTE_KEYS_MAX keys are rolled up, later ones
    are not.  Values: a (key, day) holds at most ATTRIBUTE_VALUES_MAX distinct
    values; a value not yet there once it is full is added to OTHER ("(other)"
    itself is always let in, so a full day holds the cap plus "(other)").
    Which values fit is decided in sort order within a batch.  Exact on SQLite
    (one writer); on PostgreSQL two concurrent batches can each take the last
    free places, so a cap can be passed by a batch's worth (bounded).

    PostgreSQL: one statement writes all five tables, unless a (key, day) of
    the batch could reach its cap (its count plus the batch's values for it
    passes the cap), which the statement checks first and then writes nothing;
    only then are the values looked up and the overflow sent to OTHER, and the
    statement runs again without the check.  SQLite (in process, one writer):
    the batch's values are looked up (what it inserts is learnt from that), the
    day counts read where a value is new, and five upserts.
    """
    known = _rolled_up_keys(cursor, project_id, {k[0] for k in agg.attr_rollups}, now)
    # (key, day) -> the values the batch brings
    wanted: dict[tuple[str, dt.date], set[str]] = {}
    for key, day, value, *_ in agg.attr_rollups:
        if key in known:
            wanted.setdefault((key, day), set()).add(value)
    if not wanted:
        return
    pairs = sorted(wanted)
    if connection.vendor == "postgresql":
        check = [(k, d, len(wanted[(k, d)])) for k, d in pairs]
        if _attr_write_pg(cursor, project_id, *_attr_sums(agg, known, {}), check=check, clamp=clamp):
            return
        counts = _key_day_counts(cursor, project_id, pairs)
        look = [p for p in pairs if counts.get(p, 0) + len(wanted[p]) > ATTRIBUTE_VALUES_MAX]
        present = _present_values(cursor, project_id, [(k, d, sorted(wanted[(k, d)])) for k, d in look])
        overflow = _overflow(wanted, look, present, counts)
        _attr_write_pg(cursor, project_id, *_attr_sums(agg, known, overflow), check=[], clamp=clamp)
        return
    # OTHER is looked up too: a value past the cap lands on it, and whether that row is new is counted.
    present = _present_values(cursor, project_id, [(k, d, sorted(wanted[(k, d)] | {OTHER})) for k, d in pairs])
    look = [p for p in pairs if wanted[p] - present.get(p, set()) - {OTHER}]
    counts = _key_day_counts(cursor, project_id, look) if look else {}
    wide, narrow, per_day, weekly, monthly = _attr_sums(agg, known, _overflow(wanted, look, present, counts))
    # One writer: a value row is new exactly when the look-up did not find it.
    inserted: dict[tuple[str, dt.date], int] = {}
    for key, day, value in narrow:
        if value not in present.get((key, day), ()):
            inserted[(key, day)] = inserted.get((key, day), 0) + 1
    attr_t, value_t, day_t, week_t, month_t = _ATTR_TABLES
    for table, conflict, rows, sums in (
        (attr_t, _ATTR_KEY, _attr_rows(project_id, wide, clamp), _ROLLUP_SUMS),
        (value_t, _VALUE_KEY, _attr_rows(project_id, narrow, clamp), _ROLLUP_SUMS),
        (day_t, _KEY_DAY_KEY, _key_day_rows(project_id, per_day, clamp, inserted), _KEY_DAY_SUMS),
        (week_t, _WEEK_KEY, _attr_rows(project_id, weekly, clamp), _ROLLUP_SUMS),
        (month_t, _MONTH_KEY, _attr_rows(project_id, monthly, clamp), _ROLLUP_SUMS),
    ):
        _upsert(cursor, table, (*conflict, *sums), conflict, _sums_update(table, sums), rows)


def _key_day_rows(
    project_id: int, per_day: dict[Any, list[Any]], clamp: bool, counts: dict[Any, int]
) -> list[tuple[Any, ...]]:
    """AttributeKeyDay rows to upsert: (project, key, day, value count, writes = 1, *sums)."""
    return [(*r[:4], 1, *r[4:]) for r in _attr_rows(project_id, per_day, clamp, counts)]


def _overflow(
    wanted: dict[tuple[str, dt.date], set[str]],
    look: list[tuple[str, dt.date]],
    present: dict[tuple[str, dt.date], set[str]],
    counts: dict[tuple[str, dt.date], int],
) -> dict[tuple[str, dt.date], set[str]]:
    """(key, day) -> the batch's new values past the cap (sort order decides), sent to OTHER."""
    overflow: dict[tuple[str, dt.date], set[str]] = {}
    for pair in look:
        new = sorted(wanted[pair] - present.get(pair, set()) - {OTHER})
        room = ATTRIBUTE_VALUES_MAX - counts.get(pair, 0)
        if len(new) > room:
            overflow[pair] = set(new[max(0, room) :])
    return overflow


def _attr_sums(
    agg: _Agg, known: frozenset[str], overflow: dict[tuple[str, dt.date], set[str]]
) -> tuple[dict[Any, list[Any]], ...]:
    """The batch's sums per wide row (key, day, value, service, provider, model),
    per value (key, day, value), per (key, day), per value and week (key,
    Monday, value) and per value and month (key, 1st, value), overflowing values
    as OTHER."""
    wide: dict[Any, list[Any]]
    if overflow:
        wide = {}
        for (key, day, value, service, provider, model), r in agg.attr_rollups.items():
            if key in known:
                if value in overflow.get((key, day), ()):
                    value = OTHER
                _fold_sums(wide, (key, day, value, service, provider, model), r)
    else:
        wide = {k: r for k, r in agg.attr_rollups.items() if k[0] in known}
    narrow: dict[Any, list[Any]] = {}
    per_day: dict[Any, list[Any]] = {}
    for (key, day, value, *_), r in wide.items():
        _fold_sums(narrow, (key, day, value), r)
        _fold_sums(per_day, (key, day), r)
    weekly: dict[Any, list[Any]] = {}
    monthly: dict[Any, list[Any]] = {}
    for (key, day, value), r in narrow.items():
        _fold_sums(weekly, (key, week_of(day), value), r)
        _fold_sums(monthly, (key, day.replace(day=1), value), r)
    return wide, narrow, per_day, weekly, monthly


def week_of(day: dt.date) -> dt.date:
    """The Monday of a day's ISO week: AttributeValueWeek's `week`."""
    return day - dt.timedelta(days=day.weekday())


def week_of_sql(column: str) -> str:
    """SQL for week_of(column), for a statement run with parameters."""
    if connection.vendor == "postgresql":
        return f"({column} - (EXTRACT(ISODOW FROM {column})::int - 1))"
    # strftime %w: Sunday 0 .. Saturday 6; (w + 6) % 7 days back is the Monday.  %% for Django's %s style.
    return f"date({column}, '-' || ((CAST(strftime('%%w', {column}) AS INTEGER) + 6) %% 7) || ' days')"


def month_of_sql(column: str) -> str:
    """SQL for the first day of column's month (AttributeValueMonth's `month`)."""
    if connection.vendor == "postgresql":
        return f"(date_trunc('month', {column})::date)"
    return f"date({column}, 'start of month')"


def _attr_rows(
    project_id: int, sums: dict[Any, list[Any]], clamp: bool, counts: dict[Any, int] | None = None
) -> list[tuple[Any, ...]]:
    """Rows to upsert, in key order (so concurrent batches lock rows in one order):
    (project, *key with its day adapted, [value count,] *sums)."""
    adapt_date = connection.ops.adapt_datefield_value
    days: dict[dt.date, Any] = {}
    out = []
    for k, r in sorted(sums.items()):
        day = days.get(k[1])
        if day is None:
            day = days[k[1]] = adapt_date(k[1])
        head = (project_id, k[0], day, *k[2:])
        if counts is not None:
            head = (*head, counts.get(k, 0))
        out.append((*head, *_clamped(r, 0, _ROLLUP_SUMS, clamp)))
    return out


def _attr_write_pg(
    cursor: Any,
    project_id: int,
    wide: dict[Any, list[Any]],
    narrow: dict[Any, list[Any]],
    per_day: dict[Any, list[Any]],
    weekly: dict[Any, list[Any]],
    monthly: dict[Any, list[Any]],
    *,
    check: list[tuple[str, dt.date, int]],
    clamp: bool,
) -> bool:
    """PostgreSQL: the five attribute upserts in one statement (data-modifying
    CTEs).  `check`: (key, day, values the batch brings); when a stored count
    plus that passes the cap, nothing is written and False is returned.

    The per-value upsert says which of its rows it inserted (xmax = 0 on an
    inserted row, not on an updated one) and the key-day upsert adds their
    count, so value_count only counts rows that really were new.  Order of
    writes: value rows (read by the key-day insert), key-day rows, then the wide
    week and month rows (unreferenced CTEs run last): the same in every batch.
    """
    params: list[Any] = [[c[0] for c in check], [c[1] for c in check], [c[2] for c in check], project_id]
    params.append(ATTRIBUTE_VALUES_MAX)
    # Each table's rows as one JSON text (msgspec, in C) read back by json_array_elements:
    # psycopg quotes every element of an array parameter in Python, which cost more
    # than the statement for a batch of a few hundred rows.
    # In the statement's order: wide, value, week, month, then key-day rows.
    for rows in (
        _attr_rows(project_id, wide, clamp),
        _attr_rows(project_id, narrow, clamp),
        _attr_rows(project_id, weekly, clamp),
        _attr_rows(project_id, monthly, clamp),
        _attr_rows(project_id, per_day, clamp, {}),
    ):
        params += [project_id, _JSON_ENCODE([r[1:] for r in rows]).decode()]
    cursor.execute(_attr_pg_sql(), params)
    # Every batch has a key-day row: none written means the check stopped it.
    return bool(cursor.fetchall())


@functools.lru_cache(maxsize=1)
def _attr_pg_sql() -> str:
    """The statement _attr_write_pg runs (built once: the same text every batch)."""
    attr_t, value_t, day_t, week_t, month_t = _ATTR_TABLES

    def rows(table: str, columns: tuple[str, ...]) -> str:
        # %s: the project id; %s: a JSON array of rows, each the other columns in order.
        types = [t[:-2] for t in _pg_array_types(table, columns)]
        cells = ", ".join(f"(e->>{i - 1})::{t}" for i, t in enumerate(types) if i > 0)
        return f"SELECT %s::bigint, {cells} FROM jsonb_array_elements(%s::jsonb) AS e"

    skip = "WHERE NOT EXISTS (SELECT 1 FROM tight)"

    def upsert(name: str, table: str, key: tuple[str, ...], returning: str = "") -> str:
        # One CTE adding a table's rows to it: the same text for each sums table.
        cols = (*key, *_ROLLUP_SUMS)
        return (
            f"{name} AS (INSERT INTO {table} ({', '.join(cols)}) {rows(table, cols)} "
            f"{skip} ON CONFLICT ({', '.join(key)}) DO UPDATE SET "
            + ", ".join(_plus(table, c) for c in _ROLLUP_SUMS)
            + f"{returning}), "
        )

    day_cols = (*_KEY_DAY_KEY, "value_count", *_ROLLUP_SUMS)
    return (
        "WITH tight AS (SELECT 1 FROM unnest(%s::varchar[], %s::date[], %s::int[]) AS b(key, day, n) "
        f"LEFT JOIN {day_t} k ON k.project_id = %s AND k.key = b.key AND k.day = b.day "
        "WHERE COALESCE(k.value_count, 0) + b.n > %s LIMIT 1), "
        + upsert("w", attr_t, _ATTR_KEY)
        + upsert("n", value_t, _VALUE_KEY, " RETURNING key, day, (xmax = 0) AS fresh")
        + upsert("wk", week_t, _WEEK_KEY)
        + upsert("mo", month_t, _MONTH_KEY)
        + "c AS (SELECT key, day, COUNT(*) FILTER (WHERE fresh) AS added FROM n GROUP BY key, day) "
        f"INSERT INTO {day_t} ({', '.join((*_KEY_DAY_KEY, *_KEY_DAY_SUMS))}) "
        "SELECT d.project_id, d.key, d.day, d.value_count + COALESCE(c.added, 0)::int, 1, "
        + ", ".join(f"d.{s}" for s in _ROLLUP_SUMS)
        + f" FROM ({rows(day_t, day_cols)}) AS d({', '.join(day_cols)}) "
        f"LEFT JOIN c ON c.key = d.key AND c.day = d.day {skip} "
        f"ORDER BY d.key, d.day ON CONFLICT ({', '.join(_KEY_DAY_KEY)}) DO UPDATE SET "
        + ", ".join(_plus(day_t, c) for c in _KEY_DAY_SUMS)
        + " RETURNING 1"
    )


_JSON_ENCODE = msgspec.json.Encoder().encode
_ATTR_KEY = ("project_id", "key", "day", "value", "service", "provider", "model")
_VALUE_KEY = ("project_id", "key", "day", "value")
_KEY_DAY_KEY = ("project_id", "key", "day")
# Added on conflict: value_count by the rows really inserted, writes by 1 a batch (AttributeWindow's stamp).
_KEY_DAY_SUMS = ("value_count", "writes", *_ROLLUP_SUMS)
_WEEK_KEY = ("project_id", "key", "week", "value")
_MONTH_KEY = ("project_id", "key", "month", "value")
_ATTR_TABLES = (
    AttributeRollup._meta.db_table,
    AttributeValueRollup._meta.db_table,
    AttributeKeyDay._meta.db_table,
    AttributeValueWeek._meta.db_table,
    AttributeValueMonth._meta.db_table,
)


def _sqlite_query(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """SQLite: a read on the raw connection (`?` placeholders): Django's cursor wrapper
    costs more than these small look-ups (days come back as text)."""
    connection.ensure_connection()
    with connection.wrap_database_errors:
        return connection.connection.execute(sql, params).fetchall()


def _key_day_counts(cursor: Any, project_id: int, pairs: list[tuple[str, dt.date]]) -> dict[tuple[str, dt.date], int]:
    """(key, day) -> values the rollups hold, for the batch's pairs: one query."""
    adapt_date = connection.ops.adapt_datefield_value
    day_t = AttributeKeyDay._meta.db_table
    keys = sorted({k for k, _ in pairs})
    days = sorted({d for _, d in pairs})
    if connection.vendor == "postgresql":
        cursor.execute(
            f"SELECT key, day, value_count FROM {day_t} WHERE project_id = %s "
            "AND key = ANY(%s::varchar[]) AND day = ANY(%s::date[])",
            [project_id, keys, days],
        )
        rows = cursor.fetchall()
    else:
        # A batch spans a handful of keys and days: the cross product is read and filtered.
        rows = _sqlite_query(
            f"SELECT key, day, value_count FROM {day_t} WHERE project_id = ? "
            f"AND key IN ({', '.join('?' * len(keys))}) AND day IN ({', '.join('?' * len(days))})",
            [project_id, *keys, *(adapt_date(d) for d in days)],
        )
    wanted = set(pairs)
    out: dict[tuple[str, dt.date], int] = {}
    for key, day_raw, count in rows:
        day = day_raw if isinstance(day_raw, dt.date) else dt.date.fromisoformat(str(day_raw))
        if (key, day) in wanted:
            out[(key, day)] = count
    return out


def _present_values(
    cursor: Any, project_id: int, asked: list[tuple[str, dt.date, list[str]]]
) -> dict[tuple[str, dt.date], set[str]]:
    """Which of the asked values AttributeValueRollup already holds per (key, day)."""
    out: dict[tuple[str, dt.date], set[str]] = {}
    if not asked:
        return out
    value_t = AttributeValueRollup._meta.db_table
    adapt_date = connection.ops.adapt_datefield_value
    if connection.vendor == "postgresql":
        # Every (key, day, value) of the batch as three arrays: one statement, index seeks.
        triples = [(k, d, v) for k, d, values in asked for v in values]
        cursor.execute(
            f"SELECT n.key, n.day, n.value FROM unnest(%s::varchar[], %s::date[], %s::varchar[]) AS w(key, day, value) "
            f"JOIN {value_t} n ON n.project_id = %s AND n.key = w.key AND n.day = w.day AND n.value = w.value",
            [[t[0] for t in triples], [t[1] for t in triples], [t[2] for t in triples], project_id],
        )
        for key, day, value in cursor.fetchall():
            out.setdefault((key, day), set()).add(value)
        return out
    # SQLite: the triples as a VALUES list joined to the table's key, 300 (900 variables) a statement.
    stored = [(k, adapt_date(d), v) for k, d, values in asked for v in values]
    for start in range(0, len(stored), 300):
        part = stored[start : start + 300]
        found = _sqlite_query(
            f"WITH w(key, day, value) AS (VALUES {', '.join(['(?, ?, ?)'] * len(part))}) "
            f"SELECT n.key, n.day, n.value FROM w JOIN {value_t} n "
            "ON n.project_id = ? AND n.key = w.key AND n.day = w.day AND n.value = w.value",
            [*(v for t in part for v in t), project_id],
        )
        for key, day_raw, value in found:
            day = day_raw if isinstance(day_raw, dt.date) else dt.date.fromisoformat(str(day_raw))
            out.setdefault((key, day), set()).add(value)
    return out


@functools.lru_cache(maxsize=64)
def _pg_array_types(table: str, columns: tuple[str, ...]) -> tuple[str, ...]:
    # Cached: Field.db_type per column per statement was ~2 ms of a one-event batch.
    models = (
        Run,
        RunSection,
        DailyRollup,
        AttributeKey,
        AttributeRollup,
        AttributeValueRollup,
        AttributeKeyDay,
        AttributeValueWeek,
        AttributeValueMonth,
    )
    model = next(m for m in models if m._meta.db_table == table)
    by_column = {f.column: f for f in model._meta.concrete_fields}
    return tuple(f"{by_column[c].db_type(connection)}[]" for c in columns)


def _upsert(
    cursor: Any,
    table: str,
    columns: tuple[str, ...],
    conflict: tuple[str, ...],
    update: str,
    values: list[tuple[Any, ...]],
    *,
    json_last: bool = False,
    returning: str = "",
) -> list[tuple[Any, ...]]:
    """INSERT ... ON CONFLICT DO UPDATE SET update (DO NOTHING when update is "").
    json_last: the last column is JSON text (PostgreSQL casts it to jsonb).
    returning: PostgreSQL only, a RETURNING list whose rows are returned.

    PostgreSQL: one INSERT ... SELECT FROM unnest(one array per column), so the
    statement's text is the same whatever the row count (psycopg converts a
    query's placeholders in Python: 28,000 of them cost more than the upsert).
    SQLite: one prepared single-row statement run for every row (executemany).
    """
    action = f"DO UPDATE SET {update}" if update else "DO NOTHING"
    head = f"INSERT INTO {table} ({', '.join(columns)}) "
    tail = f" ON CONFLICT ({', '.join(conflict)}) {action}"
    if not values:
        return []
    if connection.vendor == "postgresql":
        arrays = ", ".join(f"%s::{t}" for t in _pg_array_types(table, columns))
        cursor.execute(
            f"{head}SELECT * FROM unnest({arrays}){tail}" + (f" RETURNING {returning}" if returning else ""),
            [list(col) for col in zip(*values, strict=True)],
        )
        return cursor.fetchall() if returning else []
    if returning:
        raise ValueError("RETURNING is only used on PostgreSQL")
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        with connection.wrap_database_errors:
            connection.connection.executemany(f"{head}VALUES ({', '.join('?' * len(columns))}){tail}", values)
        return []
    marks = ["%s"] * len(columns)
    if json_last:
        marks[-1] = _vendor_sql()[2]
    row_sql = "(" + ", ".join(marks) + ")"
    per_chunk = max(1, 30_000 // len(columns))
    for start in range(0, len(values), per_chunk):
        chunk = values[start : start + per_chunk]
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([row_sql] * len(chunk))} "
            f"ON CONFLICT ({', '.join(conflict)}) {action}",
            [v for row in chunk for v in row],
        )
    return []


# --- Repricing ---------------------------------------------------------------

REPRICE_FIELDS = (
    "provider",
    "model",
    "started_at",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "read_units",
    "write_units",
    "client_cost_usd",
    "span_type",
    "status",
    "usage_details",
    "price_context",
    "usage_known",
    "provider_host",
)
COST_FIELDS = ("cost_usd", "priced", "price_id", "cost_status", "cost_details", "price_source")


@dataclass(slots=True)
class RepriceReport:
    """What `reprice --since` changed."""

    events: int = 0
    runs: int = 0
    rollup_days: int = 0
    old_total_usd: float = 0.0
    new_total_usd: float = 0.0


def events_reprice(*, since: dt.datetime, project_id: int | None = None) -> RepriceReport:
    """Recompute the cost of every event started at or after `since` with the
    prices in effect at its start, then rebuild the aggregates it touches.

    Ingest never re-costs stored events (a price edit or a newer price source
    leaves them as they were costed): this is the one, deliberate, way to.
    """
    # Always re-read the registry: an in-place SQL edit does not move updated_at.
    table = price_table_current(fresh=True)
    qs = Event.objects.filter(started_at__gte=since).exclude(span_type="section")
    if project_id is not None:
        qs = qs.filter(project_id=project_id)
    report = RepriceReport()
    touched_runs: set[tuple[int, str]] = set()
    touched_days: set[tuple[int, dt.date]] = set()
    batch: list[Event] = []
    for ev in qs.only("id", "project_id", "run_id", *COST_FIELDS, *REPRICE_FIELDS).iterator(chunk_size=2000):
        cost = call_cost(table, ev, project_id=ev.project_id, client_cost=ev.client_cost_usd)
        report.old_total_usd += ev.cost_usd
        report.new_total_usd += cost.usd
        if (cost.usd, cost.status, cost.price_id, cost.details) != (
            ev.cost_usd,
            ev.cost_status,
            ev.price_id,
            ev.cost_details,
        ):
            ev.cost_usd, ev.priced, ev.price_id = cost.usd, cost.status == EXACT, cost.price_id
            ev.cost_status, ev.cost_details, ev.price_source = cost.status, cost.details, cost.source
            batch.append(ev)
            touched_runs.add((ev.project_id, ev.run_id))
            touched_days.add((ev.project_id, ev.started_at.astimezone(dt.UTC).date()))
        if len(batch) >= 2000:
            report.events += _save_costs(batch)
    report.events += _save_costs(batch)
    aggregates_rebuild(runs=touched_runs, days=touched_days)
    report.runs, report.rollup_days = len(touched_runs), len(touched_days)
    return report


def _save_costs(batch: list[Event]) -> int:
    n = len(batch)
    if batch:
        Event.objects.bulk_update(batch, list(COST_FIELDS), batch_size=500)
        batch.clear()
    return n


AGG_FIELDS = (
    "run_id",
    "service",
    "started_at",
    "ended_at",
    "span_type",
    "status",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "cost_status",
    "section",
    "section_path",
    "provider",
    "model",
    "attributes",
)


def _event_rows(qs: Any) -> Iterator[tuple[Any, ...]]:
    for row in qs.values_list(*AGG_FIELDS).iterator(chunk_size=5000):
        yield (*row[:-1], attributes_flat(row[-1] if isinstance(row[-1], dict) else None) or None)


@transaction.atomic
def aggregates_rebuild(*, runs: Iterable[tuple[int, str]] = (), days: Iterable[tuple[int, dt.date]] = ()) -> None:
    """Recompute run, section and daily aggregates from the stored events.

    Used after repricing; ingest never needs it, since it only adds the
    figures of newly inserted events.
    """
    by_project_runs: dict[int, set[str]] = {}
    for project_id, run_id in runs:
        by_project_runs.setdefault(project_id, set()).add(run_id)
    by_project_days: dict[int, set[dt.date]] = {}
    for project_id, day in days:
        by_project_days.setdefault(project_id, set()).add(day)
    now = timezone.now()
    for project_id, run_ids in by_project_runs.items():
        ids = sorted(run_ids)
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            Run.objects.filter(project_id=project_id, run_id__in=part).delete()
            RunSection.objects.filter(project_id=project_id, run_id__in=part).delete()
            agg = _Agg()
            for row in _event_rows(Event.objects.filter(project_id=project_id, run_id__in=part)):
                _add(agg, *row)
            agg.rollups.clear()
            agg.attr_calls.clear()
            agg.attr_rollups.clear()
            _upsert_aggregates(project_id, agg, now, clamp=True)
    for project_id, day_set in by_project_days.items():
        with connection.cursor() as cursor:
            # First: the days' writes counts restart below, and a window over them must
            # not match its stamp again meanwhile (attribute_spans_rebuild deletes any
            # window a refresh built from the half-rewritten days at the end).
            attribute_windows_delete(cursor, project_id=project_id, first=min(day_set), last=max(day_set))
        for day in sorted(day_set):
            DailyRollup.objects.filter(project_id=project_id, day=day).delete()
            # The attribute rollup of the day is rebuilt too; its value cap then
            # keeps the first values in sort order rather than in arrival order.
            AttributeRollup.objects.filter(project_id=project_id, day=day).delete()
            AttributeValueRollup.objects.filter(project_id=project_id, day=day).delete()
            AttributeKeyDay.objects.filter(project_id=project_id, day=day).delete()
            day_start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
            agg = _Agg()
            qs = Event.objects.filter(
                project_id=project_id, started_at__gte=day_start, started_at__lt=day_start + dt.timedelta(days=1)
            )
            for row in _event_rows(qs):
                _add(agg, *row)
            agg.runs.clear()
            agg.sections.clear()
            _upsert_aggregates(project_id, agg, now, clamp=True)
        # The upserts above added the recounted days to their weeks and months on
        # top of the old figures: each one touched is summed again from its day rows.
        # One set-based pass over the weeks and months from the first day to the last.
        with connection.cursor() as cursor:
            attribute_spans_rebuild(cursor, project_id=project_id, first=min(day_set), last=max(day_set))


def _conditions(*pairs: tuple[str, Any]) -> tuple[str, list[Any]]:
    """The pairs' SQL conditions joined by AND, leaving out those whose value is
    None ("1 = 1" when none is left: every row), and their values in order."""
    kept = [(sql, value) for sql, value in pairs if value is not None]
    return " AND ".join(["1 = 1", *(sql for sql, _ in kept)]), [value for _, value in kept]


@transaction.atomic
def attribute_narrow_rebuild(*, project_id: int | None = None, since: dt.date | None = None) -> int:
    """Rebuild AttributeValueRollup and AttributeKeyDay from AttributeRollup, set-based
    (no event is read): the wide rows summed per (key, day, value), those rows counted
    and summed per (key, day).  The migration that added them does the same.
    Returns the value rows written."""
    adapt = connection.ops.adapt_datefield_value
    cond, params = _conditions(("project_id = %s", project_id), ("day >= %s", adapt(since) if since else None))
    cols = ", ".join(_ROLLUP_SUMS)
    sums = ", ".join(f"SUM({c})" for c in _ROLLUP_SUMS)
    value_t, day_t = AttributeValueRollup._meta.db_table, AttributeKeyDay._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {value_t} WHERE {cond}", params)
        cursor.execute(f"DELETE FROM {day_t} WHERE {cond}", params)
        cursor.execute(
            f"INSERT INTO {value_t} (project_id, key, day, value, {cols}) "
            f"SELECT project_id, key, day, value, {sums} FROM {AttributeRollup._meta.db_table} WHERE {cond} "
            "GROUP BY project_id, key, day, value",
            params,
        )
        written = cursor.rowcount
        cursor.execute(
            f"INSERT INTO {day_t} (project_id, key, day, value_count, {cols}) "
            f"SELECT project_id, key, day, COUNT(*), {sums} FROM {value_t} WHERE {cond} GROUP BY project_id, key, day",
            params,
        )
        attribute_spans_rebuild(cursor, project_id=project_id, first=since)
    return int(written)


def month_after(day: dt.date) -> dt.date:
    """The first day of the month after day's."""
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def attribute_windows_delete(
    cursor: Any,
    *,
    project_id: int | None,
    first: dt.date | None = None,
    last: dt.date | None = None,
) -> int:
    """Delete the AttributeWindows (and their values) that overlap [first, last]
    (None: unbounded), of one project or all, set-based.  A rollup
    rebuild calls it: it rewrites AttributeKeyDay, writes counts included, so a
    window's stamp could match again while its sums are old.  Returns the
    windows deleted."""
    adapt = connection.ops.adapt_datefield_value
    cond, params = _conditions(
        ("project_id = %s", project_id),
        ("last_day >= %s", adapt(first) if first else None),
        ("first_day <= %s", adapt(last) if last else None),
    )
    window_t, value_t = AttributeWindow._meta.db_table, AttributeWindowValue._meta.db_table
    cursor.execute(f"DELETE FROM {value_t} WHERE window_id IN (SELECT id FROM {window_t} WHERE {cond})", params)
    cursor.execute(f"DELETE FROM {window_t} WHERE {cond}", params)
    return int(cursor.rowcount)


# The per-value tiers above the day: (table, its date column, the span's first
# day in Python and in SQL, the day after the span that starts on a given first day).
_SPAN_TIERS: tuple[tuple[type[RollupSums], str, Any, Any, Any], ...] = (
    (AttributeValueWeek, "week", week_of, week_of_sql, lambda first: first + dt.timedelta(days=7)),
    (AttributeValueMonth, "month", lambda day: day.replace(day=1), month_of_sql, month_after),
)


def attribute_spans_rebuild(
    cursor: Any, *, project_id: int | None, first: dt.date | None = None, last: dt.date | None = None
) -> None:
    """Recompute AttributeValueWeek and AttributeValueMonth from
    AttributeValueRollup, set-based, for the weeks and months that hold a day of
    [first, last] (None: unbounded), of one project or all.  Each is rebuilt
    whole from all its days, so a rebuild that began mid-week or mid-month
    (`since` on a Wednesday the 17th) still leaves it equal to its day rows."""
    adapt = connection.ops.adapt_datefield_value
    value_t = AttributeValueRollup._meta.db_table
    cols = ", ".join(_ROLLUP_SUMS)
    sums = ", ".join(f"SUM({c})" for c in _ROLLUP_SUMS)
    attribute_windows_delete(cursor, project_id=project_id, first=first, last=last)
    for model, column, span_of, span_sql, span_after in _SPAN_TIERS:
        span_where, day_where = ["1 = 1"], ["1 = 1"]
        span_params: list[Any] = []
        day_params: list[Any] = []
        if project_id is not None:
            span_where.append("project_id = %s")
            day_where.append("project_id = %s")
            span_params.append(project_id)
            day_params.append(project_id)
        if first is not None:
            span_where.append(f"{column} >= %s")
            day_where.append("day >= %s")
            span_params.append(adapt(span_of(first)))
            day_params.append(adapt(span_of(first)))
        if last is not None:
            span_where.append(f"{column} <= %s")
            day_where.append("day < %s")
            span_params.append(adapt(span_of(last)))
            day_params.append(adapt(span_after(span_of(last))))
        table, span = model._meta.db_table, span_sql("day")
        cursor.execute(f"DELETE FROM {table} WHERE {' AND '.join(span_where)}", span_params)
        cursor.execute(
            f"INSERT INTO {table} (project_id, key, {column}, value, {cols}) "
            f"SELECT project_id, key, {span}, value, {sums} FROM {value_t} WHERE {' AND '.join(day_where)} "
            f"GROUP BY project_id, key, {span}, value",
            day_params,
        )
