#!/usr/bin/env python
"""Scale benchmark (issue 17): does anything a user waits for grow with history?

    .venv/bin/python bench/scale.py --db postgres --steps 1,5,20      # millions of events
    .venv/bin/python bench/scale.py --db sqlite --steps 1,5
    .venv/bin/python bench/scale.py --db postgres --report            # the table from saved results
    # bytes/event of another tree (e.g. `git archive <commit> | tar -x -C /tmp/old-tree`):
    .venv/bin/python bench/scale.py --db postgres --steps 0.1 --name before --src /tmp/old-tree

The store: one project, runs of 8 events (an agent section, two tool
sections, five calls with run attributes), loaded NEWEST FIRST at a constant
rate of events per day ending at the moment the database was created
(`now0`): every step adds older history behind the same recent traffic, so
"today" and "the last 24 hours" hold the same events at 1 M as at 20 M and
only the history behind them grows.  PostgreSQL: 20 M over 120 days (166,667
events a day); SQLite: 5 M over 120 days.  Loading older events after newer
ones is a backfill: on PostgreSQL each older month's partition is created on
demand by ingest, as for late data.

The loader is the real write code: `events.services.event_batch_ingest`
(costing, COPY/executemany with ON CONFLICT, runs, sections, daily and
attribute rollups) in 1000-event batches, in-process; it skips HTTP and JSON
decoding (bench/ingest.py measures those) and the retention check of the view
(a backfill older than the retention is what the job then expires).

At each step, in a fresh process: first the attribute windows job, as beat
keeps it (built for today, then run twice more finding every window fresh),
then with Django's test Client (the whole request
through middleware, view, queries, templates): every dashboard page, GET
/runs/latest and GET /runs/{id} (a different run of the last day each
request), the insight job for the project (insights_compute at now0), all as
medians; bytes per event on disk (table + indexes: pg_total_relation_size
over the partitions; SQLite's dbstat); the ingest rate of the step's load.
After the last step the retention job runs with retention 90 days (dropping
the oldest month on PostgreSQL; batched DELETEs on SQLite) and is timed.

Databases: PostgreSQL `bench_scale_<name>` on 127.0.0.1 (dropped and made
again only with --fresh), SQLite var/bench-scale/<name>.sqlite3.  Results
are appended to var/bench-scale/<name>.jsonl, so a load can be stopped and
resumed (the event count says where it was).
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "var" / "bench-scale"
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
SECRET = "bench-scale-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
DAYS = 120
RETENTION = 90
BATCH = 1000
RUN_EVENTS = 8
AGENTS = ["agent:researcher", "agent:writer", "agent:support", "agent:planner"]
TOOLS = ["tool:web_search", "tool:retrieval", "tool:summarize", "tool:classify", "step:analyze_results", "step:draft"]
MODELS = [
    ("openai", "gpt-4o-2024-08-06", 0.25),
    ("openai", "gpt-4o-mini", 0.45),
    ("openai", "o3-mini", 0.12),
    ("openai", "text-embedding-3-small", 0.15),
    ("openai", "gpt-4.1-nano", 0.025),
    ("acme-ai", "house-model-2", 0.005),  # no price: unpriced
]
SERVICES = ["support-bot", "research-api", "batch-jobs"]
PLANS = ["free", "pro", "team", "enterprise"]


# --- Orchestration (no Django here) ----------------------------------------------------


def db_name(args: argparse.Namespace) -> str:
    return f"bench_scale_{args.name or args.db}"


def env_for(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env["SECRET_KEY"] = SECRET
    env["LOG_LEVEL"] = "WARNING"
    env["DJANGO_SETTINGS_MODULE"] = "llmobserve_site.settings"
    env["EVENT_RETENTION_DAYS"] = "0"  # the load is a backfill; the retention step sets 90
    env["PYTHONPATH"] = str(args.src)
    env["LLMOBSERVE_VAR_DIR"] = str(OUT / "var")
    if args.db == "postgres":
        env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{db_name(args)}"
    else:
        env["DATABASE_URL"] = f"sqlite:///{OUT / (db_name(args) + '.sqlite3')}"
    return env


def child(args: argparse.Namespace, *extra: str) -> None:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--db", args.db, "--src", str(args.src), *extra]
    if args.name:
        cmd += ["--name", args.name]
    subprocess.run(cmd, env=env_for(args), cwd=str(args.src), check=True)


def prepare(args: argparse.Namespace) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "var").mkdir(exist_ok=True)
    state = OUT / f"{db_name(args)}.state.json"
    if args.db == "postgres":
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db_name(args)]).fetchone()
            if exists and args.fresh:
                conn.execute(f'DROP DATABASE "{db_name(args)}" WITH (FORCE)')
                exists = None
            if not exists:
                conn.execute(f'CREATE DATABASE "{db_name(args)}"')
                state.unlink(missing_ok=True)
    else:
        path = OUT / f"{db_name(args)}.sqlite3"
        if args.fresh:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            state.unlink(missing_ok=True)
    if not state.exists():
        now0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
        state.write_text(json.dumps({"now0": now0.isoformat(), "total": args.total}))
    migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
    subprocess.run(migrate, env=env_for(args), cwd=str(args.src), check=True)


def results_path(args: argparse.Namespace) -> Path:
    return OUT / f"{db_name(args)}.jsonl"


def orchestrate(args: argparse.Namespace) -> None:
    prepare(args)
    for step in args.steps:
        target = int(step * 1_000_000)
        child(args, "--load-to", str(target))
        child(args, "--bytes" if args.load_only else "--measure", str(target))
    if args.retention:
        child(args, "--expire", "--retention-days", str(args.retention_days))
    report(args)


# --- In the child: Django ----------------------------------------------------------------


def django_setup() -> None:
    sys.path.insert(0, os.getcwd())
    import django

    django.setup()


def state_of(args: argparse.Namespace) -> tuple[dt.datetime, int]:
    state = json.loads((OUT / f"{db_name(args)}.state.json").read_text())
    return dt.datetime.fromisoformat(state["now0"]), int(state["total"])


def bench_project() -> Any:
    from django.contrib.auth.models import User

    from projects.models import Membership, Project

    project, _ = Project.objects.get_or_create(name="bench-scale")
    user, created = User.objects.get_or_create(username="bench-scale-viewer")
    if created:
        user.set_password("bench-scale-viewer-pw")
        user.save()
    Membership.objects.get_or_create(project=project, user=user, defaults={"role": Membership.OWNER})
    return project, user


def run_events(n: int, started: dt.datetime, rng: random.Random) -> list[Any]:
    """Run number n: 8 events (an agent, two tools, five calls) carrying run attributes."""
    import msgspec

    from events.schema import EventIn

    run_id = f"s-{n:09d}"
    service = SERVICES[n % len(SERVICES)]
    agent = AGENTS[rng.randrange(len(AGENTS))]
    tools = rng.sample(TOOLS, 2)
    attrs = msgspec.Raw(f'{{"user_id": "u-{rng.randrange(20000)}", "plan": "{PLANS[n % 4]}"}}'.encode())
    root = f"{run_id}-a"
    out = [
        EventIn(
            event_id=root,
            run_id=run_id,
            span_id=root,
            span_type="section",
            name=agent,
            section=agent,
            section_path=agent,
            latency_ms=2500.0,
            started_at=started,
            service=service,
            attributes=attrs,
        )
    ]
    weights = [m[2] for m in MODELS]
    for t, tool in enumerate(tools):
        span = f"{run_id}-t{t}"
        path = f"{agent}/{tool}"
        at = started + dt.timedelta(milliseconds=100 + 1000 * t)
        out.append(
            EventIn(
                event_id=span,
                run_id=run_id,
                span_id=span,
                parent_span_id=root,
                span_type="section",
                name=tool,
                section=tool,
                section_path=path,
                latency_ms=900.0,
                started_at=at,
                service=service,
                attributes=attrs,
            )
        )
        for c in range(2 if t == 0 else 3):
            provider, model = rng.choices(MODELS, weights)[0][:2]
            failed = rng.random() < 0.02
            tokens_in = rng.randint(200, 4000)
            out.append(
                EventIn(
                    event_id=f"{span}-c{c}",
                    run_id=run_id,
                    span_id=f"{span}-c{c}",
                    parent_span_id=span,
                    span_type="llm",
                    name="embeddings.create" if model.startswith("text-embedding") else "chat.completions.create",
                    section=tool,
                    section_path=path,
                    provider=provider,
                    model=model,
                    endpoint="embeddings.create" if model.startswith("text-embedding") else "chat.completions.create",
                    input_tokens=0 if failed else tokens_in,
                    cached_input_tokens=0 if failed else rng.choice([0, 0, tokens_in // 2]),
                    output_tokens=0 if failed or model.startswith("text-embedding") else rng.randint(20, 600),
                    latency_ms=float(rng.randint(80, 2500)),
                    started_at=at + dt.timedelta(milliseconds=10 + c),
                    status="error" if failed else "ok",
                    error_type="RateLimitError" if failed else None,
                    service=service,
                    attributes=attrs,
                )
            )
    return out


def event_count() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM events_event")
        return int(cursor.fetchone()[0])


def load_to(args: argparse.Namespace, target: int) -> None:
    """Ingest batches, newest first, until `target` events are stored."""
    django_setup()
    from events.services import event_batch_ingest

    project, _ = bench_project()
    now0, total = state_of(args)
    per_run = dt.timedelta(days=DAYS) / (total / RUN_EVENTS)  # constant rate: `total` events over DAYS days
    have = event_count()
    started, loaded, last_note = time.perf_counter(), 0, time.perf_counter()
    cpu0 = time.process_time()
    while have + loaded < target:
        first_run = (have + loaded) // RUN_EVENTS
        rng = random.Random(first_run)
        batch: list[Any] = []
        for n in range(first_run, first_run + BATCH // RUN_EVENTS):
            batch.extend(run_events(n, now0 - per_run * (n + 1) + dt.timedelta(seconds=rng.random()), rng))
        result = event_batch_ingest(project_id=project.id, events=batch)
        loaded += result.accepted
        if result.accepted == 0:
            raise SystemExit(f"a batch stored nothing at {have + loaded} events: is the count off?")
        if time.perf_counter() - last_note > 30:
            last_note = time.perf_counter()
            rate = loaded / (last_note - started)
            print(f"  {args.db}: {have + loaded:,} events ({rate:,.0f}/s)", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started
    if loaded:
        # cpu_seconds: this process's (costing, rows, aggregates, the driver; SQLite's own work too).
        cpu = time.process_time() - cpu0
        record(args, {"kind": "load", "to": have + loaded, "events": loaded, "seconds": elapsed, "cpu_seconds": cpu})


def record(args: argparse.Namespace, row: dict[str, Any]) -> None:
    row["at"] = dt.datetime.now(dt.UTC).isoformat()
    row["load_average"] = os.getloadavg()[0]
    with results_path(args).open("a") as f:
        f.write(json.dumps(row) + "\n")


def bytes_on_disk() -> dict[str, int]:
    """Bytes of the event table and its indexes (all partitions on PostgreSQL)."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT COALESCE(SUM(pg_relation_size(relid)), 0), COALESCE(SUM(pg_indexes_size(relid)), 0) "
                "FROM pg_partition_tree('events_event') WHERE isleaf"
            )
            table, indexes = cursor.fetchone()
            cursor.execute(
                "SELECT COALESCE(SUM(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('events_event') "
                "WHERE isleaf"
            )
            total = cursor.fetchone()[0]
            per_index: dict[str, int] = {}
            cursor.execute(
                "SELECT i.relname, pg_relation_size(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
                "WHERE x.indrelid IN (SELECT relid FROM pg_partition_tree('events_event') WHERE isleaf)"
            )
            for name, size in cursor.fetchall():
                key = name.split("_", 3)[-1] if name.startswith("events_event_p") else name
                per_index[key] = per_index.get(key, 0) + int(size)
            return {"table": int(table), "indexes": int(indexes), "total": int(total), **_top(per_index)}
        cursor.execute(
            "SELECT name, SUM(pgsize) FROM dbstat WHERE name = 'events_event' OR name IN "
            "(SELECT name FROM sqlite_master WHERE tbl_name = 'events_event' AND type = 'index') GROUP BY name"
        )
        sizes = {name: int(size) for name, size in cursor.fetchall()}
        table = sizes.pop("events_event", 0)
        return {"table": table, "indexes": sum(sizes.values()), "total": table + sum(sizes.values()), **_top(sizes)}


def _top(sizes: dict[str, int]) -> dict[str, int]:
    return {f"index:{k}": v for k, v in sorted(sizes.items())}


# This process's CPU ms per measurement (medians), beside the wall-clock ones: on a
# machine shared with other work, wall time includes waiting for a core.  SQLite
# runs in-process, so its CPU time is the whole request's; PostgreSQL's server
# work is not in it.
CPU: dict[str, float] = {}


def timed(client: Any, path: str, repeat: int, headers: dict[str, str] | None = None, label: str = "") -> float:
    headers = headers or {}
    for _ in range(2):
        response = client.get(path, **headers)
        assert response.status_code == 200, (path, response.status_code, response.content[:300])
    samples, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        response = client.get(path, **headers)
        samples.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    CPU[label or path] = statistics.median(cpu)
    return statistics.median(samples)


def measure(args: argparse.Namespace, target: int) -> None:
    django_setup()
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from attribution.services import attribute_windows_refresh
    from events.models import Run
    from insights.services import insights_compute
    from projects.models import ApiKey

    project, user = bench_project()
    now0, _ = state_of(args)
    # The attribute windows job, as beat runs it (every 10 minutes): the first run
    # builds the presets' windows for today, the next ones find them fresh.
    windows_ms = []
    for _ in range(3):
        t0 = time.perf_counter()
        report = attribute_windows_refresh(project_id=project.id, today=timezone.now().date())
        windows_ms.append((time.perf_counter() - t0) * 1000)
        print(f"  attribute windows: {report} in {windows_ms[-1]:.0f} ms", file=sys.stderr)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # As autovacuum would after a load (this machine's server runs with it
            # off): statistics, and the visibility map that index-only scans need.
            cursor.execute("VACUUM (ANALYZE)")
    else:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    count = event_count()
    disk = bytes_on_disk()
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    raw_key = "bench-scale-key-" + "x" * 24
    from projects.models import hash_key

    ApiKey.objects.get_or_create(project=project, key_hash=hash_key(raw_key), defaults={"name": "bench"})
    api: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}
    day_runs = list(
        Run.objects.filter(project=project, started_at__gte=now0 - dt.timedelta(days=1))
        .order_by("?")
        .values_list("run_id", flat=True)[:40]
    )
    oldest = Run.objects.filter(project=project).order_by("started_at").values_list("run_id", flat=True).first()
    htmx = {"HTTP_HX_REQUEST": "true"}
    pages = [
        ("overview", "/", {}),
        ("overview, today", "/?days=1", {}),
        ("overview, 30 days", "/?days=30", {}),
        ("overview, 90 days", "/?days=90", {}),
        ("overview chart by model (htmx)", "/?by=model", {**htmx, "HTTP_HX_TARGET": "chart"}),
        ("runs", "/dashboard/runs/", {}),
        ("runs, section filter", "/dashboard/runs/?section=tool:web_search", {}),
        ("runs, service filter", "/dashboard/runs/?service=batch-jobs", {}),
        ("runs, status=error", "/dashboard/runs/?status=error", {}),
        ("run detail (last day)", f"/dashboard/runs/{day_runs[0]}/", {}),
        ("run detail (oldest run)", f"/dashboard/runs/{oldest}/", {}),
        ("insights", "/dashboard/insights/", {}),
        ("pricing", "/dashboard/pricing/", {}),
        ("runs, most expensive (sort=cost)", "/dashboard/runs/?sort=cost", {}),
        ("breakdown (default)", "/dashboard/breakdown/", {}),
        ("breakdown user_id, 7 days", "/dashboard/breakdown/?group_by=attribute:user_id&days=7", {}),
        ("breakdown user_id, 30 days", "/dashboard/breakdown/?group_by=attribute:user_id&days=30", {}),
        ("breakdown user_id, 90 days", "/dashboard/breakdown/?group_by=attribute:user_id&days=90", {}),
        ("breakdown plan, 90 days", "/dashboard/breakdown/?group_by=attribute:plan&days=90", {}),
        ("budgets", "/dashboard/budgets/", {}),
        ("reconciliation", "/dashboard/reconciliation/", {}),
        ("settings", "/dashboard/settings/", {}),
    ]
    row: dict[str, Any] = {"kind": "measure", "events": count, "bytes": disk, "bytes_per_event": disk["total"] / count}
    repeat = args.repeat
    times: dict[str, float] = {}
    for label, path, headers in pages:
        try:
            times[label] = timed(client, path, repeat, headers, label)
        except AssertionError as exc:
            print(f"  {label}: {exc}", file=sys.stderr)
    times["GET /runs/latest"] = timed(client, "/runs/latest", repeat, api, "GET /runs/latest")
    costs = "/costs?group_by=attribute:user_id&limit=20"
    times["GET /costs user_id (7 days)"] = timed(client, costs, repeat, api, "GET /costs user_id (7 days)")
    samples, cpu = [], []
    for run_id in day_runs[: max(repeat, 5)]:
        t0, c0 = time.perf_counter(), time.process_time()
        response = client.get(f"/runs/{run_id}", **api)
        samples.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
        assert response.status_code == 200
    times["GET /runs/{id}"] = statistics.median(samples)
    CPU["GET /runs/{id}"] = statistics.median(cpu)
    job, cpu = [], []
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        insights_compute(project_id=project.id, at=now0)
        job.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    times["insight job"] = statistics.median(job)
    CPU["insight job"] = statistics.median(cpu)
    times["attribute windows job (build)"] = windows_ms[0]
    times["attribute windows job (all fresh)"] = statistics.median(windows_ms[1:])
    row["times_ms"] = times
    row["cpu_ms"] = dict(CPU)
    if connection.vendor == "postgresql":
        row["plans"] = explain(project.id, now0, day_runs[0])
    record(args, row)
    print(json.dumps(row, indent=1), file=sys.stderr)


def explain(project_id: int, now0: dt.datetime, run_id: str) -> dict[str, str]:
    """EXPLAIN of the event reads a user waits for: each must be an index range, not a scan."""
    from django.db import connection

    queries: dict[str, tuple[str, list[Any]]] = {
        "run tree": (
            "SELECT * FROM events_event WHERE project_id = %s AND run_id = %s ORDER BY id LIMIT 10001",
            [project_id, run_id],
        ),
        "insight window": (
            "SELECT section, model, SUM(cost_usd) FROM events_event WHERE project_id = %s "
            "AND started_at >= %s AND started_at < %s GROUP BY 1, 2",
            [project_id, now0 - dt.timedelta(days=1), now0],
        ),
        "unpriced sample": (
            "SELECT cost_details FROM events_event WHERE project_id = %s AND started_at >= %s "
            "AND NOT cost_status = 'exact' AND cost_status = 'unpriced' ORDER BY started_at DESC LIMIT 200",
            [project_id, now0 - dt.timedelta(days=30)],
        ),
    }  # fmt: skip
    out = {}
    with connection.cursor() as cursor:
        for label, (sql, params) in queries.items():
            cursor.execute("EXPLAIN (COSTS OFF) " + sql, params)
            out[label] = "\n".join(r[0] for r in cursor.fetchall())
    return out


def expire(args: argparse.Namespace) -> None:
    """The retention job at 90 days, timed; bytes before and after."""
    days = args.retention_days
    os.environ["EVENT_RETENTION_DAYS"] = str(days)
    django_setup()
    from django.conf import settings

    from events.retention import events_expire

    settings.EVENT_RETENTION_DAYS = days
    now0, _ = state_of(args)
    before_count, before = event_count(), bytes_on_disk()
    t0 = time.perf_counter()
    report = events_expire(now=now0)
    seconds = time.perf_counter() - t0
    after_count, after = event_count(), bytes_on_disk()
    row = {
        "kind": "expire",
        "retention_days": days,
        "seconds": seconds,
        "events_before": before_count,
        "events_after": after_count,
        "bytes_before": before["total"],
        "bytes_after": after["total"],
        "partitions_dropped": report.partitions_dropped,
        "drop_ms": report.drop_ms,
        "rows_deleted": report.rows_deleted,
        "batches": report.batches,
        "lock_ms_median": statistics.median(report.lock_ms) if report.lock_ms else 0.0,
        "lock_ms_max": report.max_lock_ms,
    }
    record(args, row)
    print(json.dumps(row, indent=1), file=sys.stderr)


# --- The table ------------------------------------------------------------------------------


def report(args: argparse.Namespace) -> None:
    path = results_path(args)
    if not path.exists():
        print("no results yet")
        return
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    loads = [r for r in rows if r["kind"] == "load"]
    measures = [r for r in rows if r["kind"] == "measure"]
    print(f"\n{db_name(args)} ({args.db}); {len(measures)} measurements\n")
    if args.baseline:
        # Another store's measurements as the first column(s), e.g. 1 M spread over the 120 days.
        other = OUT / f"bench_scale_{args.baseline}.jsonl"
        base = [json.loads(line) for line in other.read_text().splitlines() if line.strip()]
        measures = [{**m, "name": args.baseline} for m in base if m["kind"] == "measure"] + measures
    if args.best:
        measures = best_of(measures)
    if measures:
        labels = list(dict.fromkeys(label for m in measures for label in m["times_ms"]))
        head = " | ".join(f"{m.get('name', '')} {m['events'] / 1e6:.2f} M".strip() for m in measures)
        cell = "the lowest of the runs' medians" if args.best else "median"
        print(f"Each cell: {cell}, wall ms / CPU ms of this process (- where not recorded).\n")
        print(f"| page or job | {head} | last/first (CPU, else wall) |")
        print("|---" * (len(measures) + 2) + "|")
        for label in labels:
            walls = [m["times_ms"].get(label) for m in measures]
            cpus = [m.get("cpu_ms", {}).get(label) for m in measures]
            cells = " | ".join(
                (f"{w:,.0f}" if w is not None else "-") + " / " + (f"{c:,.0f}" if c is not None else "-")
                for w, c in zip(walls, cpus, strict=True)
            )
            known = [c for c in cpus if c is not None]
            pair = (known[0], known[-1]) if len(known) >= 2 else (walls[0], walls[-1])
            ratio = pair[1] / pair[0] if pair[0] and pair[1] else float("nan")
            print(f"| {label} | {cells} | {ratio:.2f}x |")
        bpe = " | ".join(f"{m['bytes_per_event']:.0f}" for m in measures)
        print(f"| bytes/event (table+indexes) | {bpe} | |")
        for key in sorted(k for k in measures[-1]["bytes"] if k.startswith("index:")):
            cells = " | ".join(f"{m['bytes'].get(key, 0) / m['events']:.0f}" for m in measures)
            print(f"| … {key} | {cells} | |")
        loads_at = " | ".join("-" if m.get("name") else _rate_to(loads, m["events"]) for m in measures)
        print(f"| ingest events/s (the step's load) | {loads_at} | |")
        loadavg = " | ".join(f"{m['load_average']:.1f}" for m in measures)
        print(f"| load average | {loadavg} | |")
    for r in rows:
        if r["kind"] == "expire":
            print(
                f"\nretention {r.get('retention_days', RETENTION)} d: {r['seconds']:.2f} s; "
                f"dropped {r['partitions_dropped']} "
                f"(DROP ms {', '.join(f'{x:.0f}' for x in r['drop_ms'])}); deleted {r['rows_deleted']:,} rows in "
                f"{r['batches']} batches (lock median {r['lock_ms_median']:.0f} ms, max {r['lock_ms_max']:.0f} ms); "
                f"events {r['events_before']:,} -> {r['events_after']:,}; "
                f"bytes {r['bytes_before'] / 2**20:,.0f} MiB -> {r['bytes_after'] / 2**20:,.0f} MiB"
            )


def best_of(measures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One column per store and event count: for each label the lowest of the
    runs' medians (wall and CPU apart), the least disturbed by other work on a
    shared machine; `runs` says how many were folded."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for m in measures:
        key = (m.get("name", ""), m["events"])
        seen = out.get(key)
        if seen is None:
            out[key] = {**m, "times_ms": dict(m["times_ms"]), "cpu_ms": dict(m.get("cpu_ms", {})), "runs": 1}
            continue
        seen["runs"] += 1
        seen["load_average"] = max(seen["load_average"], m["load_average"])
        for field in ("times_ms", "cpu_ms"):
            for label, value in m.get(field, {}).items():
                if label.startswith("attribute windows job (build)"):
                    continue  # only a store's first run builds; later ones find the windows fresh
                old = seen[field].get(label)
                seen[field][label] = value if old is None else min(old, value)
    return list(out.values())


def _rate_to(loads: list[dict[str, Any]], events: int) -> str:
    """The rate of the loads that ended at or before `events`, since the previous measurement's loads."""
    window = [r for r in loads if r["to"] <= events]
    if not window:
        return "-"
    last = window[-1]
    return f"{last['events'] / last['seconds']:,.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["postgres", "sqlite"], required=True)
    parser.add_argument("--steps", default="", help="millions of events to measure at, e.g. 1,5,20")
    parser.add_argument("--total", type=int, default=0, help="events over the 120 days (default 20 M pg, 5 M sqlite)")
    parser.add_argument("--name", default="", help="database name suffix (default: the --db)")
    parser.add_argument("--src", type=Path, default=ROOT, help="the tree to run (default this checkout)")
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--fresh", action="store_true", help="drop bench_scale_<name> and load again")
    parser.add_argument("--load-only", action="store_true", help="load, then measure bytes/event only")
    parser.add_argument("--retention", action="store_true", help="after the last step, run the retention job")
    parser.add_argument("--report", action="store_true", help="print the table from saved results")
    parser.add_argument("--best", action="store_true", help="report: the lowest median per label of each step's runs")
    parser.add_argument("--baseline", default="", help="report: another store's results first (its --name)")
    parser.add_argument("--load-to", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--expire", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bytes", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--retention-days", type=int, default=RETENTION, help="the retention job's setting (default 90)"
    )
    args = parser.parse_args()
    args.src = args.src.resolve()
    args.total = args.total or (20_000_000 if args.db == "postgres" else 5_000_000)
    args.steps = [float(s) for s in args.steps.split(",") if s]
    if args.load_to is not None or args.measure is not None or args.expire or args.bytes is not None:
        # A step run by hand: the environment the orchestrator gives its children.
        os.environ.update(env_for(args))
        os.chdir(args.src)
    if args.load_to is not None:
        load_to(args, args.load_to)
    elif args.measure is not None:
        measure(args, args.measure)
    elif args.expire:
        expire(args)
    elif args.bytes is not None:
        django_setup()
        count, disk = event_count(), bytes_on_disk()
        record(args, {"kind": "bytes", "events": count, "bytes": disk, "bytes_per_event": disk["total"] / count})
        print(f"{args.db} {args.name}: {count:,} events, {disk['total'] / count:.0f} bytes/event {disk}")
    elif args.report:
        report(args)
    else:
        orchestrate(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
