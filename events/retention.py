"""Retention: raw events older than their project's retention are removed.

`settings.EVENT_RETENTION_DAYS` (default 90; 0 keeps events forever) and
`Project.event_retention_days` (None: the site's; 0: forever) say how long a
project's raw events are kept.  Only the events go: runs, run sections,
daily and attribute rollups, insights and budgets are aggregates kept at
ingest and keep their history, so the overview's 30- and 90-day views and a
run's totals and sections outlive the calls they were summed from (the run
page says "call details expired").

PostgreSQL (partitioned by month, events/partitions.py): a month's partition
is dropped once the whole month is older than the retention of every
project with rows in it.  Partitions are shared by projects, so a project
with a shorter retention than its neighbours has its rows in a kept
partition removed by batched DELETEs (only those whose whole month is past
its own retention: like everyone's, its events go a month at a time).  The
DEFAULT partition (odd timestamps) is expired row by row, by batched
DELETEs.  So on PostgreSQL an event lives between its retention and its
retention plus one month.

SQLite (no partitions): batched DELETEs through the (project, started_at)
index, each batch its own short write transaction whose size adapts so the
write lock is held about TARGET_LOCK_MS (≤ ~100 ms), with a pause between
batches for ingest to take the lock.  Freed pages are reused by later
inserts, so the file stops growing once the store is older than its
retention.

Ingest refuses an event older than its project's retention (a 207 naming it,
events/schema.py): it would be removed at the next run of the job.

Runs (optional, `settings.RUN_RETENTION_DAYS`, default 0 = forever): after
the events, the same job deletes the runs that *ended* before the run cutoff,
with their RunSection rows (nothing has a foreign key to Run: sections,
insights and budgets name runs by run_id or not at all).  A run never goes
while its events may be kept: per project the cutoff is the earliest of the
run cutoff, the project's event cutoff (a project keeping its events forever
keeps its runs) and the oldest event the project still has (PostgreSQL keeps
a month's partition up to a month past the retention: its runs wait for it).
Batches go through the (project, started_at, …, ended_at, id) index
`run_project_sort`, each its own short transaction sized like the events'.
Rollups, insights and budgets stay: the overview and breakdown read rollups.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from events import partitions
from events.schema import NotBefore
from projects.models import Project

logger = logging.getLogger(__name__)

# SQLite: aim each DELETE batch at this long under the write lock; never more rows than MAX_BATCH.
TARGET_LOCK_MS = 50.0
MIN_BATCH, FIRST_BATCH, MAX_BATCH = 100, 1000, 20_000
PAUSE_S = 0.02  # between batches: a waiting ingest transaction gets the lock
# PostgreSQL: rows per DELETE batch (row locks only, other writers are not blocked).
PG_BATCH = 5000


def retention_days(project_days: int | None) -> int:
    """A project's effective retention in days (0: forever)."""
    return settings.EVENT_RETENTION_DAYS if project_days is None else project_days


def retention_cutoff(*, days: int, now: dt.datetime) -> dt.datetime | None:
    """Events that started before this are expired; None keeps them forever."""
    return now - dt.timedelta(days=days) if days else None


def run_retention_cutoff(
    *, event_cutoff: dt.datetime | None, oldest_event: dt.datetime | None, now: dt.datetime
) -> dt.datetime | None:
    """Runs of a project that ended before this are deleted; None keeps them all.

    The earliest of the run cutoff (RUN_RETENTION_DAYS), the project's event
    cutoff and its oldest stored event: a run's events all started by its
    end, so a run that ended before the project's oldest event has none left.
    """
    run_cutoff = retention_cutoff(days=settings.RUN_RETENTION_DAYS, now=now)
    if run_cutoff is None or event_cutoff is None:
        return None  # runs kept forever, or events kept forever (and so their runs)
    return min(run_cutoff, event_cutoff, *([oldest_event] if oldest_event is not None else []))


# Per process: (project retention days or None, read at) by project id.  A
# changed retention is seen within RETENTION_CACHE_S; ingest pays a dict
# look-up per batch instead of a query.
RETENTION_CACHE_S = 60.0
_project_days: dict[int, tuple[int | None, float]] = {}


def retention_not_before(*, project_id: int, now: dt.datetime | None = None) -> NotBefore | None:
    """The oldest started_at ingest accepts for the project, or None (kept forever)."""
    clock = time.monotonic()
    cached = _project_days.get(project_id)
    if cached is None or clock - cached[1] > RETENTION_CACHE_S:
        own = Project.objects.filter(id=project_id).values_list("event_retention_days", flat=True).first()
        cached = _project_days[project_id] = (own, clock)
    days = retention_days(cached[0])
    if not days:
        return None
    moment = now or dt.datetime.now(dt.UTC)
    return NotBefore(moment - dt.timedelta(days=days), days)


def retention_cache_clear() -> None:
    _project_days.clear()


def longest_retention_days() -> int | None:
    """The longest retention of any project (None: someone keeps forever)."""
    days = [retention_days(d) for d in Project.objects.values_list("event_retention_days", flat=True)]
    days.append(settings.EVENT_RETENTION_DAYS)
    return None if 0 in days else max(days)


@dataclass(slots=True)
class ExpiryReport:
    """What one run of the retention job removed, and how long it held locks."""

    partitions_dropped: list[str] = field(default_factory=list)
    partition_rows_dropped: int = 0  # PostgreSQL's estimate (reltuples) of the dropped partitions' rows
    partition_bytes_dropped: int = 0
    rows_deleted: int = 0
    runs_deleted: int = 0  # with their RunSection rows (RUN_RETENTION_DAYS)
    run_sections_deleted: int = 0
    batches: int = 0
    lock_ms: list[float] = field(default_factory=list)  # each DELETE batch's transaction, start to commit
    drop_ms: list[float] = field(default_factory=list)
    partitions_created: list[str] = field(default_factory=list)

    @property
    def max_lock_ms(self) -> float:
        return max(self.lock_ms, default=0.0)


def events_expire(*, now: dt.datetime | None = None) -> ExpiryReport:
    """Remove every event older than its project's retention (see the module's doc)."""
    now = now or dt.datetime.now(dt.UTC)
    cutoffs = {
        pid: retention_cutoff(days=retention_days(days), now=now)
        for pid, days in Project.objects.values_list("id", "event_retention_days")
    }
    report = ExpiryReport()
    if partitions.events_partitioned():
        _expire_partitioned(cutoffs, now, report)
    else:
        for pid, cutoff in sorted(cutoffs.items()):
            if cutoff is not None:
                _delete_batched(report, table=partitions.PARENT, project_id=pid, before=cutoff)
    if settings.RUN_RETENTION_DAYS:
        for pid, event_cutoff in sorted(cutoffs.items()):
            run_cutoff = run_retention_cutoff(
                event_cutoff=event_cutoff, oldest_event=_oldest_event(pid) if event_cutoff else None, now=now
            )
            if run_cutoff is not None:
                _delete_runs(report, project_id=pid, ended_before=run_cutoff)
    logger.info(
        "events: retention dropped %d partitions (~%d rows), deleted %d rows and %d runs (%d sections) "
        "in %d batches (longest lock %.0f ms)",
        len(report.partitions_dropped),
        report.partition_rows_dropped,
        report.rows_deleted,
        report.runs_deleted,
        report.run_sections_deleted,
        report.batches,
        report.max_lock_ms,
    )
    return report


def _oldest_event(project_id: int) -> dt.datetime | None:
    """The started_at of the project's oldest stored event: one probe of the (project, started_at) index."""
    from events.models import Event

    return (
        Event.objects.filter(project_id=project_id).order_by("started_at").values_list("started_at", flat=True).first()
    )


def _has_rows(table: str, project_id: int) -> bool:
    with connection.cursor() as cursor:
        # One probe of the (project, started_at, section) index.
        cursor.execute(f"SELECT 1 FROM {table} WHERE project_id = %s LIMIT 1", [project_id])
        return cursor.fetchone() is not None


def _expire_partitioned(cutoffs: dict[int, dt.datetime | None], now: dt.datetime, report: ExpiryReport) -> None:
    for part in partitions.partition_list():
        if part.end > now:
            continue  # the current month and those ahead
        # Projects whose retention still covers part of this month keep it;
        # a probe per such project says whether it has rows here at all.
        keepers = [pid for pid, cutoff in cutoffs.items() if cutoff is None or cutoff < part.end]
        if not any(_has_rows(part.name, pid) for pid in keepers):
            rows, size = partitions.partition_rows_estimate(part.name), partitions.partition_bytes(part.name)
            started = time.perf_counter()
            partitions.partition_drop(partition=part)
            report.drop_ms.append((time.perf_counter() - started) * 1000.0)
            report.partitions_dropped.append(part.name)
            report.partition_rows_dropped += rows
            report.partition_bytes_dropped += size
            continue
        # Kept for someone: the projects whose whole month is past their retention lose their rows in it.
        for pid, cutoff in sorted(cutoffs.items()):
            if cutoff is not None and cutoff >= part.end:
                _delete_batched(report, table=part.name, project_id=pid, before=part.end)
    for pid, cutoff in sorted(cutoffs.items()):
        if cutoff is not None:
            _delete_batched(report, table=partitions.DEFAULT, project_id=pid, before=cutoff)


def _delete_batched(report: ExpiryReport, *, table: str, project_id: int, before: dt.datetime) -> None:
    """Delete the project's rows of `table` started before `before`, a batch per transaction."""
    when = connection.ops.adapt_datetimefield_value(before)
    if connection.vendor == "sqlite":
        # rowids through the (project, started_at, section) index: each batch reads only what it deletes.
        sql = (
            f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} "
            "WHERE project_id = %s AND started_at < %s LIMIT %s)"
        )
    else:
        sql = (
            f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} "
            "WHERE project_id = %s AND started_at < %s LIMIT %s))"
        )

    def batch(size: int) -> int:
        with connection.cursor() as cursor:
            cursor.execute(sql, [project_id, when, size])
            return int(cursor.rowcount)

    report.rows_deleted += _in_batches(report, batch)


def runs_delete_sql() -> str:
    """One batch of runs: params (project_id, cutoff, cutoff, limit, cutoff); returns the deleted run_ids.

    A range of run_project_sort (project, started_at, cost_usd, calls, ended_at, id): a run ends
    after it starts, and ended_at is read from the index.  The outer ended_at test re-checks a run
    that ingest extended meanwhile (PostgreSQL re-evaluates it on the updated row).
    """
    from events.models import Run

    runs = Run._meta.db_table
    return (
        f"DELETE FROM {runs} WHERE id IN (SELECT id FROM {runs} WHERE project_id = %s AND started_at < %s "
        f"AND ended_at < %s ORDER BY started_at LIMIT %s) AND ended_at < %s RETURNING run_id"
    )


def _delete_runs(report: ExpiryReport, *, project_id: int, ended_before: dt.datetime) -> None:
    """Delete the project's runs that ended before `ended_before`, and their sections, a batch per transaction."""
    from events.models import RunSection

    runs_sql, sections = runs_delete_sql(), RunSection._meta.db_table
    when = connection.ops.adapt_datetimefield_value(ended_before)
    # The run ids as one parameter (no limit on the number of bound variables); the unique
    # (project, run_id, section) index finds each run's sections.
    if connection.vendor == "sqlite":
        sections_sql = f"DELETE FROM {sections} WHERE project_id = %s AND run_id IN (SELECT value FROM json_each(%s))"
    else:
        sections_sql = f"DELETE FROM {sections} WHERE project_id = %s AND run_id = ANY(%s)"

    def batch(size: int) -> int:
        with connection.cursor() as cursor:
            cursor.execute(runs_sql, [project_id, when, when, size, when])
            run_ids = [row[0] for row in cursor.fetchall()]
            if run_ids:
                ids = json.dumps(run_ids) if connection.vendor == "sqlite" else run_ids
                cursor.execute(sections_sql, [project_id, ids])
                report.run_sections_deleted += int(cursor.rowcount)
        return len(run_ids)

    report.runs_deleted += _in_batches(report, batch)


def _in_batches(report: ExpiryReport, batch: Callable[[int], int]) -> int:
    """Call `batch(size)` (deletes at most `size` rows, returns how many) until it deletes fewer.

    Each call is its own transaction.  On SQLite the size is steered so the write lock is held
    about TARGET_LOCK_MS, with a pause between batches for ingest to take the lock.
    """
    sqlite = connection.vendor == "sqlite"
    size = FIRST_BATCH if sqlite else PG_BATCH
    total = 0
    while True:
        started = time.perf_counter()
        with transaction.atomic():
            deleted = batch(size)
        elapsed = (time.perf_counter() - started) * 1000.0
        if deleted <= 0:
            break
        total += deleted
        report.batches += 1
        report.lock_ms.append(elapsed)
        if deleted < size:
            break
        if sqlite:
            # Steer the next batch to TARGET_LOCK_MS from this one's rows per ms.
            size = int(min(MAX_BATCH, max(MIN_BATCH, size * TARGET_LOCK_MS / max(elapsed, 1.0))))
            time.sleep(PAUSE_S)
    return total


# --- Runs whose events are gone (a read: what the run page and GET /runs/{id} show) ------------


def run_tree_expired(run: Any, *, failed: bool = False) -> dict[str, Any]:
    """The tree of a run whose events expired, from what ingest aggregated.

    RunSection keeps each section label of the run with the calls and cost
    directly inside it, and which labels are roots; the nesting below a root
    is not kept, so the other sections hang under the run's root when it has
    one (the usual case: an agent section around its tools) and beside the
    roots otherwise.  Token counts and latencies per section were not
    aggregated: they are None (the page shows "—").  The run's own totals
    (the Run row) are whole.  Same keys as run_tree_detail, plus
    `"calls_expired": True`.
    """
    from events.models import RunSection

    rows = list(
        RunSection.objects.filter(project_id=run.project_id, run_id=run.run_id)
        .order_by("started_at", "section")
        .values_list("section", "is_root", "calls", "cost_usd", "started_at")[:TREE_EXPIRED_MAX_SECTIONS]
    )
    nodes: list[dict[str, Any]] = [
        {
            "span_id": None,
            "name": label,
            "span_type": "section",
            "section_path": label if is_root else None,
            "cost_usd": cost,
            "self_cost_usd": cost,
            "calls": calls,
            "input_tokens": None,
            "output_tokens": None,
            "latency_ms": None,
            "status": "ok",
            "started_at": started.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
            "children": [],
            **({"failed": 0} if failed else {}),
        }
        for label, is_root, calls, cost, started in rows
    ]
    roots = [node for node, row in zip(nodes, rows, strict=True) if row[1]]
    others = [node for node, row in zip(nodes, rows, strict=True) if not row[1]]
    if len(roots) == 1:
        roots[0]["children"] = others
        roots[0]["calls"] += sum(node["calls"] for node in others)
        roots[0]["cost_usd"] += sum(node["cost_usd"] for node in others)
        tree = roots
    else:
        tree = roots + others
    return {
        "tree": tree,
        "truncated": len(rows) >= TREE_EXPIRED_MAX_SECTIONS,
        "tree_calls": 0,
        "omitted_calls": 0,
        "omitted_sections": 0,
        "calls_expired": True,
    }


TREE_EXPIRED_MAX_SECTIONS = 10_000
