#!/usr/bin/env python
"""Does a store older than its retention stay flat in size? (issue 17)

    .venv/bin/python bench/retention_flat.py --db sqlite
    .venv/bin/python bench/retention_flat.py --db postgres
    .venv/bin/python bench/retention_flat.py --db postgres --days 180 --per-day 8000 --retention 30
    .venv/bin/python bench/retention_flat.py --db sqlite --run-retention 45

Simulates steady traffic day after day on a simulated clock: each day's
events go through the real write code (`events.services.event_batch_ingest`,
1000-event batches; runs of 8 events from bench/scale.py), then the retention
task runs as beat would at the end of that day (`events.tasks.events_retention`
with the simulated moment: partitions made ahead, then expiry).  Every week
it prints the events kept, the event store's bytes on disk (table + indexes,
all partitions) and the database's whole size; the aggregates (runs, run
sections, rollups) are listed apart: they keep their history by design and
grow by about one run row per run, unless `--run-retention N` sets
RUN_RETENTION_DAYS (the same job then deletes runs and their sections that
ended more than N days ago; rollups stay).

On PostgreSQL with autovacuum off (as on the bench machine) the whole
database is VACUUMed every simulated week, as autovacuum would.

Expected: the event store grows for `--retention` days (plus up to a month on
PostgreSQL, where a month's partition goes once all of it is past the
retention), then stays flat: on PostgreSQL partitions are dropped (their
space returns to the OS at once); on SQLite the batched DELETEs free pages
that the next days' inserts reuse, so the file stops growing.

Databases: PostgreSQL `bench_retention_flat` on 127.0.0.1 and SQLite
var/bench/retention-flat.sqlite3 (retention-flat-runs.sqlite3 with
--run-retention), both made afresh on each run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
PG_DB = "bench_retention_flat"
SQLITE = ROOT / "var" / "bench" / "retention-flat.sqlite3"
SQLITE_RUNS = ROOT / "var" / "bench" / "retention-flat-runs.sqlite3"  # with --run-retention
SECRET = "bench-retention-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
AGGREGATES = ("events_run", "events_runsection", "events_dailyrollup", "events_attributerollup")


@dataclass(slots=True)
class Sample:
    day: int
    events: int
    runs: int  # runs kept
    store_bytes: int  # events table + indexes (every partition)
    db_bytes: int  # the whole database (file or pg_database_size)
    aggregate_bytes: int
    expired: int  # events removed by the retention job that day
    job_ms: float


def sqlite_path() -> Path:
    return SQLITE_RUNS if int(os.environ.get("RUN_RETENTION_DAYS") or 0) else SQLITE


def fresh_database(db: str) -> str:
    if db == "postgres":
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{PG_DB}"')
        return f"postgres://postgres@127.0.0.1:5432/{PG_DB}"
    path = sqlite_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}"


def sizes(vendor: str) -> tuple[int, int, int, int, int]:
    """(events kept, runs kept, event store bytes, database bytes, aggregate bytes)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM events_event")
        events = int(cursor.fetchone()[0])
        cursor.execute("SELECT COUNT(*) FROM events_run")
        runs = int(cursor.fetchone()[0])
        if vendor == "postgresql":
            cursor.execute(
                "SELECT COALESCE(SUM(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('events_event') "
                "WHERE isleaf"
            )
            store = int(cursor.fetchone()[0])
            cursor.execute("SELECT pg_database_size(current_database())")
            whole = int(cursor.fetchone()[0])
            cursor.execute(
                "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c WHERE c.relname = ANY(%s)",
                [list(AGGREGATES)],
            )
            aggregates = int(cursor.fetchone()[0])
        else:
            cursor.execute(
                "SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name = 'events_event' OR name IN "
                "(SELECT name FROM sqlite_master WHERE tbl_name = 'events_event' AND type = 'index')"
            )
            store = int(cursor.fetchone()[0])
            tables = ", ".join(f"'{t}'" for t in AGGREGATES)
            cursor.execute(
                f"SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name IN ({tables}) OR name IN "
                f"(SELECT name FROM sqlite_master WHERE tbl_name IN ({tables}) AND type = 'index')"
            )
            aggregates = int(cursor.fetchone()[0])
            path = sqlite_path()
            whole = sum(Path(f"{path}{s}").stat().st_size for s in ("", "-wal") if Path(f"{path}{s}").exists())
    return events, runs, store, whole, aggregates


def simulate(args: argparse.Namespace) -> list[Sample]:
    import django

    django.setup()
    from django.db import connection
    from scale import RUN_EVENTS, run_events

    from events.services import event_batch_ingest
    from events.tasks import events_retention
    from projects.models import Project

    project = Project.objects.create(name="retention-flat")
    runs_per_day = args.per_day // RUN_EVENTS
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first = today - dt.timedelta(days=args.days - 1)
    samples: list[Sample] = []
    n = 0
    vacuum_weekly = False
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW autovacuum")
            vacuum_weekly = cursor.fetchone()[0] == "off"
        if vacuum_weekly:
            print("  autovacuum is off on this server: a VACUUM every simulated week", file=sys.stderr)
    for day in range(args.days):
        start = first + dt.timedelta(days=day)
        rng = random.Random(day)
        batch: list[Any] = []
        for i in range(runs_per_day):
            # Spread over the day, in time order, as traffic arrives.
            at = start + dt.timedelta(seconds=86_000 * i / runs_per_day)
            batch.extend(run_events(n, at, rng))
            n += 1
            if len(batch) >= 1000:
                event_batch_ingest(project_id=project.id, events=batch)
                batch = []
        if batch:
            event_batch_ingest(project_id=project.id, events=batch)
        t0 = time.perf_counter()
        expired = events_retention(at_iso=(start + dt.timedelta(hours=23, minutes=59)).isoformat())
        job_ms = (time.perf_counter() - t0) * 1000
        if day % 7 == 6 or day == args.days - 1:
            if vacuum_weekly:
                # As autovacuum would (its default threshold, 20 % dead rows, is about a week of
                # run deletes here): without it no deleted run or updated rollup row is reused.
                with connection.cursor() as cursor:
                    cursor.execute("VACUUM")
            events, runs, store, whole, aggregates = sizes(connection.vendor)
            samples.append(Sample(day + 1, events, runs, store, whole, aggregates, expired, job_ms))
            mib = 1024 * 1024
            print(
                f"  day {day + 1:4d}: {events:>10,} events {runs:>8,} runs  store {store / mib:8.1f} MiB  "
                f"db {whole / mib:8.1f} MiB  aggregates {aggregates / mib:7.1f} MiB",
                file=sys.stderr,
                flush=True,
            )
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["postgres", "sqlite"], required=True)
    parser.add_argument("--days", type=int, default=150, help="simulated days of traffic (default 150)")
    parser.add_argument("--per-day", type=int, default=4000, help="events a day (default 4000)")
    parser.add_argument("--retention", type=int, default=30, help="EVENT_RETENTION_DAYS (default 30)")
    parser.add_argument(
        "--run-retention", type=int, default=0, help="RUN_RETENTION_DAYS (default 0: runs kept forever)"
    )
    parser.add_argument("--in-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.in_child:
        os.environ["RUN_RETENTION_DAYS"] = str(args.run_retention)  # sqlite_path() reads it
        env = dict(os.environ)
        env.update(
            DATABASE_URL=fresh_database(args.db),
            SECRET_KEY=SECRET,
            LOG_LEVEL="WARNING",
            DJANGO_SETTINGS_MODULE="llmobserve_site.settings",
            EVENT_RETENTION_DAYS=str(args.retention),
            RUN_RETENTION_DAYS=str(args.run_retention),
        )
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env=env, cwd=ROOT, check=True)
        cmd = [sys.executable, __file__, *sys.argv[1:], "--in-child"]
        return subprocess.run(cmd, env=env, cwd=ROOT).returncode
    samples = simulate(args)
    mib = 1024 * 1024
    print(
        f"\n{args.db}: {args.per_day:,} events a day for {args.days} days, retention {args.retention} days, "
        f"run retention {args.run_retention or 'off'}\n"
        "| day | events kept | runs kept | event store MiB | whole database MiB | aggregates MiB | expired that day "
        "| job ms |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    for s in samples:
        print(
            f"| {s.day} | {s.events:,} | {s.runs:,} | {s.store_bytes / mib:.1f} | {s.db_bytes / mib:.1f} | "
            f"{s.aggregate_bytes / mib:.1f} | {s.expired:,} | {s.job_ms:.0f} |"
        )
    past = [s for s in samples if s.day > args.retention + 31]
    if len(past) >= 2:
        lo, hi = min(s.store_bytes for s in past), max(s.store_bytes for s in past)
        print(f"\nevent store past retention + a month: {lo / mib:.1f}–{hi / mib:.1f} MiB (max/min {hi / lo:.2f}×)")
        # The whole database: flat only with --run-retention (runs are what grows with traffic).
        settled = [s for s in past if s.day > max(args.retention, args.run_retention) + 31]
        if len(settled) >= 2:
            first, last = settled[0], settled[-1]
            weeks = (last.day - first.day) / 7
            weekly = (last.db_bytes - first.db_bytes) / mib / weeks
            print(
                f"whole database from day {first.day} to {last.day}: {first.db_bytes / mib:.1f} -> "
                f"{last.db_bytes / mib:.1f} MiB ({weekly:+.2f} MiB a week)"
            )
            # PostgreSQL's event store comes and goes a month at a time: the rest, apart.
            rest = ((last.db_bytes - last.store_bytes) - (first.db_bytes - first.store_bytes)) / mib / weeks
            print(f"whole database less the event store: {rest:+.2f} MiB a week")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
