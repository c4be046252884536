#!/usr/bin/env python
"""Benchmark of the insight job (issue 4): its wall time over N stored events.

    .venv/bin/python bench/insights.py [--db sqlite|postgres|both] [--events 1000000,5000000]
                                       [--base 200000] [--repeats 3] [--fresh]

History: 30 days before a fixed moment AT, 200 sections, 10 registry models,
runs of one section span and 1-3 calls to one endpoint (3 endpoints), with
anomalies in the last 24 h so that every detector fires (5 sections spike,
5 bloat, 5 loop; short-output calls on expensive models are
model_inefficiency findings).

Loading.  Events go in through the real ingest service
(`event_batch_ingest`, batches of 1000), so the aggregates the job reads
(RunSection, DailyRollup) are built exactly as in production.  That path
runs at a few thousand events/s here, so:
- `--base 0` (honest mode): every event is ingested; the database grows to
  each --events total in turn (only the missing events are added, over the
  same 30 days) and is reused by later runs.
- `--base N`: N events are ingested, and each --events total is reached by
  copies of them: the base's events, runs and run sections again under new
  event and run ids (same times, tokens, costs), and the daily rollups
  scaled to match, i.e. exactly the rows and aggregates ingesting the copies
  would produce.  A later, smaller total drops copies again.

At each total the job (`insights_compute` for the project: the four
detectors plus storing the insights) runs --repeats times; the table shows
the first run, the median wall time, this process's CPU time, and each
part's median.  PostgreSQL gets VACUUM (ANALYZE) first, as autovacuum would
after a bulk load.

Databases: SQLite var/bench/insights-ordered.sqlite3 (honest) or
var/bench/insights-base<N>-ordered.sqlite3 (WAL, the settings' PRAGMAs);
PostgreSQL 127.0.0.1:5432 llmobserve_bench_insights_honest or
llmobserve_bench_insights_ordered (created when missing).  Each database is driven by a child process of this
script (Django is configured once per process from DATABASE_URL).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DIR = ROOT / "var" / "bench"
SQLITE_PATH = BENCH_DIR / "insights-ordered.sqlite3"
PG_DB = "llmobserve_bench_insights"
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PROJECT = "bench"
AT = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
DAYS = 30
SECTIONS = 200
MODELS = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-5",
    "gpt-5-mini",
    "o3",
    "o4-mini",
    "text-embedding-3-small",
]
ENDPOINTS = ["chat.completions.create", "responses.create", "embeddings.create"]


def sqlite_path(base: int) -> Path:
    return SQLITE_PATH if not base else BENCH_DIR / f"insights-base{base}-ordered.sqlite3"


def pg_name(base: int) -> str:
    return f"{PG_DB}_ordered" if base else f"{PG_DB}_honest"


def database_url(db: str, base: int) -> str:
    if db == "sqlite":
        return f"sqlite:///{sqlite_path(base)}"
    return f"postgres://postgres@127.0.0.1:5432/{pg_name(base)}"


# --- child: one database ----------------------------------------------------------


def _setup(db: str, fresh: bool, base: int) -> None:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    PG_DB = pg_name(base)  # noqa: N806
    if db == "sqlite" and fresh:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{sqlite_path(base)}{suffix}").unlink(missing_ok=True)
    if db == "postgres":
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [PG_DB]).fetchone()
            if exists and fresh:
                conn.execute(f"DROP DATABASE {PG_DB} WITH (FORCE)")
                exists = None
            if not exists:
                conn.execute(f"CREATE DATABASE {PG_DB}")
    os.environ["DATABASE_URL"] = database_url(db, base)
    os.environ["DJANGO_SETTINGS_MODULE"] = "llmobserve_site.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _generate(project_id: int, count: int, seed: int) -> float:
    """Add about `count` events (whole runs, ±2%) through the ingest service; returns events/s."""
    from events.schema import EventIn
    from events.services import event_batch_ingest

    rng = random.Random(seed)
    span = DAYS * 86400
    window_start = AT - dt.timedelta(days=1)
    batch: list[EventIn] = []
    added = 0
    run_no = 0
    started = time.perf_counter()
    # Runs in time order, as a live app sends them (events arrive shortly
    # after they happen), so the rows of a day sit together on disk.
    # About `count` events: a run has 3 on average (its section span and 1-3 calls).
    starts = sorted(rng.random() * span for _ in range(max(1, count // 3)))
    for offset in starts:
        run_no += 1
        when = AT - dt.timedelta(seconds=span - offset)
        section_no = rng.randrange(SECTIONS)
        section = f"section-{section_no:03d}"
        model = MODELS[section_no % len(MODELS)] if rng.random() < 0.8 else rng.choice(MODELS)
        endpoint = "embeddings.create" if model.startswith("text-embedding") else ENDPOINTS[section_no % 2]
        calls = rng.randint(1, 3)
        extra: list[str] = []  # calls to other endpoints in the same run
        input_tokens = 500 + (section_no * 37) % 4000
        recent = when >= window_start
        if recent and section_no < 5:  # section_spike: 2 more calls on each other endpoint
            extra = [e for e in ENDPOINTS[:2] if e != endpoint] * 2 + ["embeddings.create"] * 2
        if recent and 5 <= section_no < 10:  # token_bloat: 2.5× the prompt
            input_tokens = int(input_tokens * 2.5)
        if recent and 10 <= section_no < 15 and rng.random() < 0.5:  # retry_loop
            calls = 8
        run_id = f"s{seed}-r{run_no}"
        span_id = f"{run_id}-s"
        batch.append(
            EventIn(
                event_id=span_id,
                run_id=run_id,
                span_id=span_id,
                started_at=when,
                span_type="section",
                name=section,
                section=section,
                section_path=section,
                latency_ms=1000.0,
            )
        )
        for i, call_endpoint in enumerate([endpoint] * calls + extra):
            batch.append(
                EventIn(
                    event_id=f"{run_id}-{i}",
                    run_id=run_id,
                    span_id=f"{run_id}-{i}",
                    parent_span_id=span_id,
                    started_at=when + dt.timedelta(milliseconds=100 * (i + 1)),
                    span_type="llm",
                    name=call_endpoint,
                    section=section,
                    section_path=section,
                    provider="openai",
                    model=model,
                    endpoint=call_endpoint,
                    input_tokens=input_tokens + rng.randrange(200),
                    cached_input_tokens=0 if i == 0 else input_tokens // 2,
                    output_tokens=0 if call_endpoint == "embeddings.create" else rng.randrange(20, 60 + section_no * 3),
                    latency_ms=400.0,
                    status="error" if rng.random() < 0.002 else "ok",
                )
            )
        added += 1 + calls + len(extra)
        if len(batch) >= 1000:
            event_batch_ingest(project_id=project_id, events=batch[:1000])
            batch = batch[1000:]
    while batch:
        event_batch_ingest(project_id=project_id, events=batch[:1000])
        batch = batch[1000:]
    return added / (time.perf_counter() - started)


def _time_job(project_id: int, repeats: int) -> dict[str, object]:
    """The whole job `repeats` times (wall and this process's CPU time), then each part."""
    from insights import detectors
    from insights.services import insights_compute

    totals, cpus = [], []
    kinds: dict[str, int] = {}
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        insights = insights_compute(project_id=project_id, at=AT)
        totals.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    for i in insights:
        kinds[i.kind] = kinds.get(i.kind, 0) + 1
    window = detectors.Window.ending(project_id, AT)
    table = detectors.price_table_current()
    groups = detectors.window_call_groups(window)
    parts: dict[str, float] = {}
    for name, fn in (
        ("window_scan", lambda: detectors.window_call_groups(window)),
        ("section_spike", lambda: detectors.section_spike(window)),
        ("model_inefficiency", lambda: detectors.model_inefficiency(window, table, groups)),
        ("token_bloat", lambda: detectors.token_bloat(window, table, groups)),
        ("retry_loop", lambda: detectors.retry_loop(window, groups)),
    ):
        samples = []
        for _ in range(max(1, repeats)):
            with detectors.job_session():  # the job's settings (PostgreSQL: work_mem)
                t0 = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - t0)
        parts[name] = statistics.median(samples)
    return {
        "first": totals[0],
        "median": statistics.median(totals),
        "cpu_median": statistics.median(cpus),
        "groups": len(groups),
        "parts": parts,
        "kinds": kinds,
    }


COPY_MARK = "~"  # event_id/run_id suffix of replicated rows: "<base id>~<copy number>"


def _replicate(project_id: int, have: int, want: int) -> float:
    """Make `want` copies of the base history from `have`: each copy is the
    base's events, runs and run sections again under new event and run ids
    (same times, tokens and costs), and the daily rollups scaled to match:
    exactly the rows and aggregates ingesting the copies would produce."""
    from django.db import connection, transaction

    from events.models import DailyRollup, Event, Run, RunSection

    started = time.perf_counter()
    renamed = {Event: ("event_id", "run_id"), Run: ("run_id",), RunSection: ("run_id",)}
    with transaction.atomic(), connection.cursor() as cursor:
        for k in range(have, want):
            for model, columns in renamed.items():
                cols = [f.column for f in model._meta.concrete_fields if f.column != "id"]
                select = [f"{c} || %s" if c in columns else c for c in cols]
                key = columns[0]
                cursor.execute(
                    f"INSERT INTO {model._meta.db_table} ({', '.join(cols)}) "
                    f"SELECT {', '.join(select)} FROM {model._meta.db_table} "
                    f"WHERE project_id = %s AND {key} NOT LIKE %s ORDER BY id",
                    [f"{COPY_MARK}{k}"] * len(columns) + [project_id, f"%{COPY_MARK}%"],
                )
        t = DailyRollup._meta.db_table
        sums = ("calls", "errors", "unpriced_calls", "input_tokens", "output_tokens")
        cursor.execute(
            f"UPDATE {t} SET "
            + ", ".join(f"{c} = {c} / %s * %s" for c in sums)
            + ", cost_usd = cost_usd / %s * %s WHERE project_id = %s",
            [have, want] * (len(sums) + 1) + [project_id],
        )
    return time.perf_counter() - started


def _shrink(project_id: int, have: int, want: int) -> float:
    """Drop the copies numbered `want` and above (the reverse of _replicate)."""
    from django.db import connection, transaction

    from events.models import DailyRollup, Event, Run, RunSection

    started = time.perf_counter()
    if connection.vendor == "postgresql":
        copy_no = "CAST(split_part({c}, '~', 2) AS integer)"
    else:
        copy_no = "CAST(substr({c}, instr({c}, '~') + 1) AS integer)"
    renamed = {Event: "event_id", Run: "run_id", RunSection: "run_id"}
    with transaction.atomic(), connection.cursor() as cursor:
        for model, column in renamed.items():
            cursor.execute(
                f"DELETE FROM {model._meta.db_table} WHERE project_id = %s AND {column} LIKE %s "
                f"AND {copy_no.format(c=column)} >= %s",
                [project_id, f"%{COPY_MARK}%", want],
            )
        t = DailyRollup._meta.db_table
        sums = ("calls", "errors", "unpriced_calls", "input_tokens", "output_tokens")
        cursor.execute(
            f"UPDATE {t} SET "
            + ", ".join(f"{c} = {c} / %s * %s" for c in sums)
            + ", cost_usd = cost_usd / %s * %s WHERE project_id = %s",
            [have, want] * (len(sums) + 1) + [project_id],
        )
    return time.perf_counter() - started


def child(db: str, targets: list[int], repeats: int, fresh: bool, base: int) -> None:
    _setup(db, fresh, base)
    from django.db import connection

    from events.models import Event
    from projects.models import Project

    project, _ = Project.objects.get_or_create(name=PROJECT)
    events = Event.objects.filter(project=project)
    for step, target in enumerate(targets):
        rate = None
        replicate_s = None
        if base:
            have_base = events.exclude(event_id__contains=COPY_MARK).count()
            if have_base < base:
                rate = _generate(project.id, base - have_base, seed=1000 + have_base % 997)
                have_base = events.exclude(event_id__contains=COPY_MARK).count()
            copies = events.count() // have_base
            want = max(1, round(target / have_base))
            if want > copies:
                replicate_s = _replicate(project.id, copies, want)
            elif want < copies:
                replicate_s = _shrink(project.id, copies, want)
        else:
            have = events.count()
            if have < target:
                rate = _generate(project.id, target - have, seed=1000 + step * 7 + have % 997)
        if connection.vendor == "postgresql":
            # What autovacuum does after a bulk load: statistics, and the
            # visibility map that index-only scans need.
            with connection.cursor() as cursor:
                cursor.execute("VACUUM (ANALYZE)")
        result = {
            "db": db,
            "target": target,
            "events": events.count(),
            "ingest_rate": rate,
            "replicate_s": replicate_s,
            **_time_job(project.id, repeats),
        }
        print("RESULT " + json.dumps(result), flush=True)


# --- parent: the table --------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--events",
        default="1000000,5000000",
        help="comma-separated totals, measured in this order (with --base a replicated database also shrinks)",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fresh", action="store_true", help="drop the benchmark databases first")
    parser.add_argument(
        "--base",
        type=int,
        default=0,
        help="ingest this many events through the service, reach the --events totals by replicating them "
        "(0: ingest every event)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    targets = [int(x.replace("_", "")) for x in args.events.split(",")]
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if args.child:
        child(dbs[0], targets, args.repeats, args.fresh, args.base)
        return 0
    rows = []
    for db in dbs:
        cmd = [sys.executable, __file__, "--child", "--db", db, "--events", args.events, "--repeats", str(args.repeats)]
        cmd += ["--base", str(args.base)]
        if args.fresh:
            cmd.append("--fresh")
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("RESULT "):
                row = json.loads(line[7:])
                rows.append(row)
                print(f"  {db}: {row['events']:,} events, job median {row['median']:.2f} s", file=sys.stderr)
        if proc.wait() != 0:
            print(f"{db}: child failed with status {proc.returncode}", file=sys.stderr)
    print()
    head = (
        f"{'database':<9} {'events':>10} {'loaded by':>12} {'job 1st':>7} {'job med':>7} {'cpu med':>7} "
        f"{'scan':>5} {'spike':>5} {'ineff':>5} {'bloat':>5} {'retry':>5}  insights"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        p = r["parts"]
        loaded = f"{r['ingest_rate']:,.0f} ev/s" if r["ingest_rate"] else "(reused)"
        if r.get("replicate_s"):
            loaded = f"copies {r['replicate_s']:.0f}s"
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(r["kinds"].items()))
        print(
            f"{r['db']:<9} {r['events']:>10,} {loaded:>12} {r['first']:>7.2f} {r['median']:>7.2f} "
            f"{r['cpu_median']:>7.2f} {p['window_scan']:>5.2f} {p['section_spike']:>5.2f} "
            f"{p['model_inefficiency']:>5.2f} {p['token_bloat']:>5.2f} {p['retry_loop']:>5.2f}  {kinds}"
        )
    print(
        "\njob = insights_compute for the project (the four detectors + storing the insights), seconds; "
        "cpu = this process's CPU time (SQLite works in-process; PostgreSQL's server time is not in it); "
        "scan = the shared grouped scan of the window; spike/ineff/bloat/retry = each detector alone "
        "(ineff, bloat and retry given the scan's rows)."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
