"""PostgreSQL: the event table, range-partitioned by `started_at`, a partition a month.

Why partitions: expiry becomes a DROP of a whole month's table (milliseconds,
no dead rows, no vacuum debt, the disk given back at once) instead of a
DELETE of a third of the table; and a query bounded in time (the insight
windows, the overview's unpriced sample) only opens the months it needs.

Why monthly: a team at 100 calls a second writes ~260 M events a month, a
partition of ~100 GB, which PostgreSQL still indexes and vacuums well; a
90-day store has 4-5 partitions, so a query without a time bound (one run's
events by run_id) probes 5 indexes, not 13 (weekly) or 90 (daily).  The
price: rows are kept until their whole month is past the retention, at most
one month longer than asked (documented in the README).

The layout:
  events_event            the partitioned parent (what Django's ORM reads and writes)
  events_event_pYYYYMM    [first of the month, first of the next month) in UTC
  events_event_pdefault   anything else: a started_at far from now (a clock
                          off by years, a backfill past the on-demand window).
                          Never lost, expired by batched DELETEs, and moved
                          into its month's partition when that is created.

Keys.  A unique constraint on a partitioned table must contain the partition
key, so the idempotency key is (project_id, event_id, started_at) and the
primary key (id, started_at).  The invariant this relies on: a resent event
carries the started_at it was first sent with (the SDK resends the same
encoded batch; SPEC §2 makes event_id the key of one event, whose start does
not change).  An event_id sent again with another started_at is stored
twice, on both databases alike (SQLite keeps the same key).  `id` is still
filled by one sequence, so Django's ORM (which treats `id` as the primary
key) reads, updates (reprice's bulk_update) and deletes rows by id as before.

Partitions are created ahead by the periodic job (this month and the next
PARTITIONS_AHEAD), and on demand by ingest for an event in a month without
one (a late or backfilled event) within the on-demand window; creating one
takes a lock on the DEFAULT partition first, which serialises two workers
creating the same month (the second finds it made and does nothing).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, connection, transaction

logger = logging.getLogger(__name__)

PARENT = "events_event"
DEFAULT = "events_event_pdefault"
PREFIX = "events_event_p"
PARTITIONS_AHEAD = 2  # months created ahead of the current one by the job
# Ingest creates a missing month's partition on demand for events at most this
# far in the past (or the longest retention, if longer) and ahead; further
# out (a wrong clock) they go to the DEFAULT partition, so that no client can
# make thousands of partitions by sending odd timestamps.
ON_DEMAND_PAST = dt.timedelta(days=400)
ON_DEMAND_AHEAD = dt.timedelta(days=62)
# DDL waits at most this for its lock, so that it never queues the
# dashboard's and ingest's statements behind it for long; the job retries.
LOCK_TIMEOUT = "3s"
_NAME = re.compile(rf"^{PREFIX}(\d{{4}})(\d{{2}})$")


@dataclass(frozen=True, slots=True)
class Partition:
    """One monthly partition: rows with start <= started_at < end."""

    name: str
    start: dt.datetime
    end: dt.datetime


def month_start(moment: dt.datetime) -> dt.datetime:
    moment = moment.astimezone(dt.UTC)
    return dt.datetime(moment.year, moment.month, 1, tzinfo=dt.UTC)


def month_next(start: dt.datetime) -> dt.datetime:
    return dt.datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=dt.UTC)


def partition_for(moment: dt.datetime) -> Partition:
    start = month_start(moment)
    return Partition(f"{PREFIX}{start.year:04d}{start.month:02d}", start, month_next(start))


def _month_key(moment: dt.datetime) -> int:
    return moment.year * 12 + moment.month - 1


# --- What exists ------------------------------------------------------------------


def events_partitioned() -> bool:
    """Whether the event table is a partitioned one (PostgreSQL after migration 0005)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [PARENT])
        row = cursor.fetchone()
    return bool(row) and row[0] == "p"


def partition_list() -> list[Partition]:
    """The monthly partitions attached to the event table, oldest first (DEFAULT not included)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(%s)",
            [PARENT],
        )
        names = [r[0] for r in cursor.fetchall()]
    out = []
    for name in names:
        match = _NAME.match(name)
        if match:
            start = dt.datetime(int(match.group(1)), int(match.group(2)), 1, tzinfo=dt.UTC)
            out.append(Partition(name, start, month_next(start)))
    return sorted(out, key=lambda p: p.start)


# Months whose partition is known to exist, committed (filled from the
# catalog; a process never trusts a partition made in a transaction that
# could still roll back).  A stale entry (a partition dropped by the job in
# another process) costs nothing worse than the DEFAULT partition: such an
# event is older than the retention anyway.
_known: set[int] = set()


def partitions_forget() -> None:
    """Forget what this process knows of the partitions (tests that drop or roll back some)."""
    _known.clear()


def partitions_ensure_for(*, starts: Iterable[dt.datetime], longest_retention_days: int | None = None) -> int:
    """Ingest's hook: make sure every month of `starts` within the on-demand
    window has its partition before the batch is inserted.  Returns how many
    were created.  Costs a set look-up per event when they all exist; the
    catalog is read only when a month is not known.  Runs before the batch's
    transaction (DDL in it would hold its locks until the batch commits)."""
    if connection.vendor != "postgresql":
        return 0
    wanted: dict[int, dt.datetime] = {}
    for moment in starts:
        key = moment.year * 12 + moment.month - 1
        if key not in _known and key not in wanted:
            wanted[key] = moment
    if not wanted:
        return 0
    existing = {_month_key(p.start) for p in partition_list()}
    if not existing and not events_partitioned():
        return 0  # not (yet) partitioned: SQLite-like behaviour, before migration 0005
    _remember(existing)
    now = dt.datetime.now(dt.UTC)
    past = ON_DEMAND_PAST
    if longest_retention_days:
        past = max(past, dt.timedelta(days=longest_retention_days + 31))
    created = 0
    for key, moment in sorted(wanted.items()):
        if key in existing or not now - past <= moment <= now + ON_DEMAND_AHEAD:
            continue  # exists, or far off: the DEFAULT partition takes it
        if partition_create(partition=partition_for(moment)):
            created += 1
    return created


def _remember(keys: set[int]) -> None:
    if connection.in_atomic_block:
        # Known once the transaction that may have made them commits.
        transaction.on_commit(lambda: _known.update(keys))
    else:
        _known.update(keys)


# --- Creating and dropping ---------------------------------------------------------


def partition_create(*, partition: Partition) -> bool:
    """Create one month's partition unless it exists; False when it did.

    Rows of that month in the DEFAULT partition (an event that arrived before
    its month had a partition) move into it, in the same transaction: the
    ATTACH would otherwise fail, and no row is lost or stored twice.  Two
    workers creating the same month queue on the DEFAULT partition's lock;
    the second then finds the partition and returns False.  A concurrent
    creation that still collides (a name taken in a way we did not foresee)
    is caught and reported as "not created" after re-reading the catalog.
    """
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            # Inside a caller's transaction that inserted rows (Django's foreign keys are
            # DEFERRABLE), PostgreSQL refuses DDL on a table with pending checks: run them now.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"LOCK TABLE {DEFAULT} IN ACCESS EXCLUSIVE MODE")
            cursor.execute("SELECT 1 FROM pg_class WHERE oid = to_regclass(%s)", [partition.name])
            if cursor.fetchone():
                created = False
            else:
                cursor.execute(f"CREATE TABLE {partition.name} (LIKE {PARENT} INCLUDING DEFAULTS)")
                cursor.execute(
                    f"WITH moved AS (DELETE FROM {DEFAULT} WHERE started_at >= %s AND started_at < %s RETURNING *) "
                    f"INSERT INTO {partition.name} SELECT * FROM moved",
                    [partition.start, partition.end],
                )
                moved = cursor.rowcount
                cursor.execute(
                    f"ALTER TABLE {PARENT} ATTACH PARTITION {partition.name} FOR VALUES FROM (%s) TO (%s)",
                    [partition.start, partition.end],
                )
                created = True
                logger.info("events: partition %s created (%d rows moved from the default)", partition.name, moved)
    except DatabaseError as exc:
        # 42P07 duplicate_table, 23505 on pg_type's name: another worker won a race.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass(%s) AND inhparent = to_regclass(%s)",
                [partition.name, PARENT],
            )
            if cursor.fetchone():
                return False
        raise exc
    _remember({_month_key(partition.start)})
    return created


def partition_drop(*, partition: Partition) -> None:
    """Drop one month's partition (its rows, its indexes, its disk)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # as in partition_create
        cursor.execute(f"DROP TABLE IF EXISTS {partition.name}")
    _known.discard(_month_key(partition.start))


def partitions_ahead(*, now: dt.datetime, ahead: int = PARTITIONS_AHEAD) -> list[str]:
    """The job's step: this month's partition and the next `ahead`, plus one
    for each month of the on-demand window with rows waiting in DEFAULT."""
    made = []
    start = month_start(now)
    for _ in range(ahead + 1):
        part = partition_for(start)
        if partition_create(partition=part):
            made.append(part.name)
        start = month_next(start)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT date_trunc('month', started_at AT TIME ZONE 'UTC') FROM {DEFAULT} "
            "WHERE started_at >= %s AND started_at < %s",
            [now - ON_DEMAND_PAST, now + ON_DEMAND_AHEAD],
        )
        waiting = [r[0].replace(tzinfo=dt.UTC) for r in cursor.fetchall()]
    for month in waiting:
        part = partition_for(month)
        if partition_create(partition=part):
            made.append(part.name)
    return made


def partition_bytes(name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size(to_regclass(%s))", [name])
        row = cursor.fetchone()
    return int(row[0] or 0) if row else 0


def partition_rows_estimate(name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)", [name])
        row = cursor.fetchone()
    return max(int(row[0]), 0) if row else 0


# --- The conversion (migration 0005) -------------------------------------------------


def _definitions(cursor: Any, table: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(constraints as (name, type, definition), other index definitions) of `table`."""
    cursor.execute(
        "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = to_regclass(%s) AND contype IN ('p', 'u', 'f', 'c') ORDER BY contype, conname",
        [table],
    )
    constraints = [(r[0], r[1], r[2]) for r in cursor.fetchall()]
    cursor.execute(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "WHERE i.indrelid = to_regclass(%s) "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) ORDER BY 1",
        [table],
    )
    return constraints, [r[0] for r in cursor.fetchall()]


def _index_on(definition: str, table: str) -> str:
    """An index definition read from one table, made for `table` (its name kept)."""
    return re.sub(r" ON (ONLY )?\S+ USING ", f" ON {table} USING ", definition, count=1)


def _recreate(cursor: Any, table: str, constraints: list[tuple[str, str, str]], indexes: list[str], pk: str) -> None:
    for name, kind, definition in constraints:
        if kind == "p":
            definition = pk
        cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    for definition in indexes:
        cursor.execute(_index_on(definition, table))


def _reset_identity(cursor: Any, table: str) -> None:
    cursor.execute(
        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) "
        f"FROM {table}"
    )


def event_table_partition(*, now: dt.datetime | None = None) -> None:
    """Turn the plain event table into the partitioned one, rows and all.

    Renames the table aside, creates the partitioned parent with the same
    columns (and an identity continuing after the highest id), a partition
    for every month that holds rows within the on-demand window plus this
    month and the next PARTITIONS_AHEAD (other rows go to DEFAULT), copies
    every row, drops the old table and recreates its constraints and indexes
    on the parent (the primary key becomes (id, started_at)).  One
    transaction (the migration's): it either happens whole or not at all.
    Time and disk are those of copying the table once; see the README.
    """
    now = now or dt.datetime.now(dt.UTC)
    old = f"{PARENT}_unpartitioned"
    with connection.cursor() as cursor:
        constraints, indexes = _definitions(cursor, PARENT)
        cursor.execute(f"ALTER TABLE {PARENT} RENAME TO {old}")
        cursor.execute(
            f"CREATE TABLE {PARENT} (LIKE {old} INCLUDING DEFAULTS INCLUDING IDENTITY) PARTITION BY RANGE (started_at)"
        )
        cursor.execute(f"CREATE TABLE {DEFAULT} PARTITION OF {PARENT} DEFAULT")
        cursor.execute(f"SELECT DISTINCT date_trunc('month', started_at AT TIME ZONE 'UTC') FROM {old}")
        months = {r[0].replace(tzinfo=dt.UTC) for r in cursor.fetchall()}
        months = {m for m in months if now - ON_DEMAND_PAST <= m <= now + ON_DEMAND_AHEAD}
        start = month_start(now)
        for _ in range(PARTITIONS_AHEAD + 1):
            months.add(start)
            start = month_next(start)
        for month in sorted(months):
            part = partition_for(month)
            cursor.execute(
                f"CREATE TABLE {part.name} PARTITION OF {PARENT} FOR VALUES FROM (%s) TO (%s)",
                [part.start, part.end],
            )
        cursor.execute(f"INSERT INTO {PARENT} SELECT * FROM {old}")
        cursor.execute(f"DROP TABLE {old}")
        _recreate(cursor, PARENT, constraints, indexes, pk="PRIMARY KEY (id, started_at)")
        _reset_identity(cursor, PARENT)
        cursor.execute(f"ANALYZE {PARENT}")
    partitions_forget()


def event_table_unpartition() -> None:
    """The reverse of event_table_partition: one plain table again, rows and all."""
    old = f"{PARENT}_partitioned"
    with connection.cursor() as cursor:
        constraints, indexes = _definitions(cursor, PARENT)
        cursor.execute(f"ALTER TABLE {PARENT} RENAME TO {old}")
        cursor.execute(f"CREATE TABLE {PARENT} (LIKE {old} INCLUDING DEFAULTS INCLUDING IDENTITY)")
        cursor.execute(f"INSERT INTO {PARENT} SELECT * FROM {old}")
        cursor.execute(f"DROP TABLE {old}")  # and its partitions
        _recreate(cursor, PARENT, constraints, indexes, pk="PRIMARY KEY (id)")
        _reset_identity(cursor, PARENT)
    partitions_forget()
