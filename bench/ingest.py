#!/usr/bin/env python
"""Ingest and read benchmark for the collector (issue 2, "Benchmark").

    .venv/bin/python bench/ingest.py [--db sqlite|postgres|both] [--repeats N]
                                     [--read-events 1000000] [--skip-reads|--skip-ingest]
                                     [--src TREE] [--compare OTHER_TREE] [--stages N]
    DATABASE_URL=... .venv/bin/python bench/ingest.py --attributes-ratio N [--src TREE]

What it measures, all on this machine, all on loopback:

1. Events per second through the real HTTP stack: a gunicorn process serving
   llmobserve_site.wsgi (2 workers, gthread with 4 threads each, so HTTP/1.1
   keep-alive works), fed by `http.client` keep-alive connections from client
   threads in this process.  Batches of 1 (4 client threads), 100 and 1000
   events (1 client thread: a serial stream, so the figure is the per-event
   cost of HTTP + validation + costing + insert + aggregates) and 1000 events
   with 2 client threads (one per worker).  Request bodies are encoded before
   the clock starts.
2. Beside it, the raw ceiling measured in the same repetition: the same kind
   of rows bulk-inserted straight into the same table (`events_event`, same
   indexes) with no HTTP and no validation: `executemany` of a plain
   single-row INSERT, one transaction per 1000 rows (sqlite3 module with the
   settings' PRAGMAs; psycopg 3 `executemany`, which pipelines).  Also the raw
   insert with one transaction per batch-size rows (what a batch of 1 or 100
   costs the database alone), and for PostgreSQL a `COPY` figure.
3. Read latency with --read-events (default 1,000,000) events stored:
   client-side medians of `GET /runs/latest` and `GET /runs/{run_id}` (runs of
   10-30 events, a different run each request) through the same gunicorn
   set-up.  The big databases are kept between runs (loading is skipped when
   they already hold enough events); they are loaded through the HTTP path in
   1000-event batches (so aggregates are built honestly) by 3 client threads.

Databases (throughput ones are recreated on every run; read ones are kept):
  SQLite     var/bench-sqlite/tput/llmobserve.sqlite3, var/bench-sqlite/reads/…
  PostgreSQL 127.0.0.1:5432 databases llmobserve_bench and llmobserve_bench_reads

4. Where a 1000-event batch goes (--stages N, default 10): in a child process
   with Django set up on the throughput database, decode_batch and
   event_batch_ingest timed by stage (price table, Python row/aggregate work,
   the INSERT, the aggregate upserts, COMMIT), ms per batch.

5. --attributes-ratio N (alone, on a database you migrated): in-process
   event_batch_ingest of the same events with their attributes and without,
   interleaved, at batches of 1000, 100 and 1: what the attribute rollups cost.

--src serves a given tree (e.g. `git archive HEAD | tar -x -C /tmp/snap`, to
measure a commit while the working tree is being edited); --compare serves a
second tree on the same databases and measures it beside the first, case by
case, interleaved: an A/B of a proposed change against the same raw ceiling.

Repetitions are interleaved (rep 1: every DB and batch size, then rep 2, …)
and the table shows medians, with the min-max over repetitions.  Clients set
TCP_NODELAY (as urllib3 does).
This script imports no Django: it drives manage.py and gunicorn as child
processes and talks to the databases with sqlite3 / psycopg directly.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import itertools
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
# The tree that is served and migrated (--src): by default this checkout; point
# it at a snapshot (`git archive HEAD | tar -x -C DIR`) to measure a commit
# while the working tree is being edited.  var/ and the venv stay under ROOT.
SRC = ROOT
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
GUNICORN = str(VENV_BIN / "gunicorn")
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
PG_TPUT_DB, PG_READS_DB = "llmobserve_bench", "llmobserve_bench_reads"
SQLITE_DIR = ROOT / "var" / "bench-sqlite"
LOG_DIR = ROOT / "var" / "bench-logs"
PROJECT = "bench"
GUNICORN_ARGS = ["-w", "2", "-k", "gthread", "--threads", "4", "--keep-alive", "30", "--timeout", "300"]

# The event table's columns, in the order events.services.EVENT_COLUMNS writes them.
EVENT_COLUMNS = (
    "project_id", "event_id", "run_id", "span_id", "parent_span_id", "span_type", "name", "section",
    "section_path", "provider", "model", "endpoint", "input_tokens", "output_tokens", "cached_input_tokens",
    "reasoning_tokens", "read_units", "write_units", "cost_usd", "client_cost_usd", "priced", "price_id",
    "latency_ms", "started_at", "ended_at", "status", "error_type", "service", "attributes", "received_at",
)  # fmt: skip
# Cost v2's columns (events migration 0003), written when the served tree has
# them, with the values a priced call gets, so the raw ceiling writes rows as
# wide as ours.
V2_COLUMNS = (
    "cost_status",
    "cost_details",
    "price_source",
    "usage_details",
    "price_context",
    "usage_known",
    "provider_host",
)
V2_VALUES = (
    "exact",
    '{"input_tokens": 0.001, "output_tokens": 0.00023}',
    "genai-prices: openai/gpt-4o (genai-prices 0.2.3)",
    "{}",
    "{}",
    True,
    None,
)
JSON_COLUMNS = ("attributes", "cost_details", "usage_details", "price_context")

# (batch size, client threads, events per measurement)
HTTP_CASES = [(1, 4, 600), (100, 1, 5000), (1000, 1, 10000), (1000, 2, 10000)]
RAW_CEILING_ROWS = 20000
RAW_SAME_TX_ROWS = {1: 1000, 100: 5000}

_encode = msgspec.json.encode
_decode = msgspec.json.decode


# --- events ------------------------------------------------------------------

AGENTS = ("researcher", "planner", "writer", "critic", "router", "support")
TOOLS = ("web_search", "retrieve", "summarize", "classify", "sql", "code_exec", "rerank", "draft")
CHAT_MODELS = (
    ("gpt-4o-2024-08-06", 0.35),
    ("gpt-4o-mini", 0.35),
    ("gpt-4.1-mini", 0.1),
    ("o3-mini", 0.1),
    ("gpt-5-nano", 0.1),
)
SERVICES = ("support-bot", "search-api", "batch-summarizer")
_EPOCH0 = dt.datetime(2026, 10, 27, tzinfo=dt.UTC)


def ts(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def make_run(rng: random.Random, run_id: str, n: int, start: dt.datetime) -> list[dict[str, Any]]:
    """One run of exactly n (>= 5) events: an agent section, 1-4 tool sections
    inside it, and calls (chat, embeddings, vector queries) inside the tools."""
    service = rng.choice(SERVICES)
    agent = f"agent:{rng.choice(AGENTS)}"
    n_tools = max(1, min(4, (n - 1) // 6))
    n_calls = n - 1 - n_tools
    per_tool = [n_calls // n_tools + (1 if i < n_calls % n_tools else 0) for i in range(n_tools)]
    user = f"u-{rng.randint(1, 5000)}"
    events: list[dict[str, Any]] = []

    def add(**fields: Any) -> None:
        fields["event_id"] = f"{run_id}-{len(events):02d}"
        fields["run_id"] = run_id
        fields["service"] = service
        events.append(fields)

    t = start
    for ti, calls in enumerate(per_tool):
        tool = f"tool:{TOOLS[(ti + rng.randint(0, 7)) % len(TOOLS)]}"
        tool_span, tool_start = f"s-tool-{ti}", t
        path = f"{agent}/{tool}"
        for ci in range(calls):
            kind = rng.random()
            latency = round(rng.uniform(80.0, 2500.0), 1)
            error = rng.random() < 0.02
            common = {
                "span_id": f"c-{ti}-{ci}",
                "parent_span_id": tool_span,
                "section": tool,
                "section_path": path,
                "latency_ms": latency,
                "started_at": ts(t),
                "status": "error" if error else "ok",
                "error_type": "RateLimitError" if error else None,
                "attributes": {"user_id": user, "tags": ["prod", "v2"], "request_id": f"req-{rng.getrandbits(48):x}"},
            }
            if kind < 0.8:
                model = rng.choices([m for m, _ in CHAT_MODELS], [w for _, w in CHAT_MODELS])[0]
                inp = rng.randint(200, 6000)
                out = rng.randint(10, 900)
                add(
                    span_type="llm",
                    name="chat.completions.create",
                    provider="openai",
                    model=model,
                    endpoint="chat.completions.create",
                    input_tokens=inp,
                    cached_input_tokens=(inp // 1024) * 1024 if rng.random() < 0.4 else 0,
                    output_tokens=out,
                    reasoning_tokens=out // 2 if model.startswith("o") else 0,
                    **common,
                )
            elif kind < 0.9:
                add(
                    span_type="llm",
                    name="embeddings.create",
                    provider="openai",
                    model="text-embedding-3-small",
                    endpoint="embeddings.create",
                    input_tokens=rng.randint(20, 2000),
                    **common,
                )
            else:
                add(
                    span_type="vector_db",
                    name="query",
                    provider="pinecone",
                    model=None,
                    endpoint="query",
                    read_units=float(rng.randint(1, 12)),
                    **common,
                )
            t += dt.timedelta(milliseconds=latency + 5)
        add(
            span_id=tool_span,
            parent_span_id="s-agent",
            span_type="section",
            name=tool,
            section=tool,
            section_path=path,
            latency_ms=round((t - tool_start).total_seconds() * 1000, 1),
            started_at=ts(tool_start),
            status="ok",
        )
    add(
        span_id="s-agent",
        parent_span_id=None,
        span_type="section",
        name=agent,
        section=agent,
        section_path=agent,
        latency_ms=round((t - start).total_seconds() * 1000, 1),
        started_at=ts(start),
        status="ok",
    )
    return events


def event_stream(tag: str, seed: int) -> Any:
    """An endless stream of events from runs of 10-30 events, started now-ish."""
    rng = random.Random(seed)
    base = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    for r in itertools.count():
        yield from make_run(rng, f"{tag}-r{r}", rng.randint(10, 30), base + dt.timedelta(seconds=r * 0.2))


def take(stream: Any, n: int) -> list[dict[str, Any]]:
    return list(itertools.islice(stream, n))


def load_batch(b: int) -> list[dict[str, Any]]:
    """Batch b of the read database: exactly 1000 events, 50 whole runs of 10-30
    events, run starts spread over 30 days (50,000 runs for 1M events)."""
    rng = random.Random(b)
    events: list[dict[str, Any]] = []
    for pair in range(25):
        d = rng.randint(0, 10)
        for j, n in enumerate((20 - d, 20 + d)):
            k = b * 50 + pair * 2 + j
            start = _EPOCH0 + dt.timedelta(seconds=k * 51.84 + rng.uniform(0, 40))
            events.extend(make_run(rng, f"L{b}-{pair * 2 + j}", n, start))
    return events


def body_of(events: list[dict[str, Any]]) -> bytes:
    return _encode({"events": events})


# --- raw rows ------------------------------------------------------------------


def _parse(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s)


def raw_rows(events: list[dict[str, Any]], project_id: int, vendor: str) -> list[tuple[Any, ...]]:
    """The rows the service would write for these events (costs are a dummy
    figure: pricing is part of "ours", not of the database's own work)."""
    now = dt.datetime.now(dt.UTC)
    if vendor == "sqlite":

        def adapt(v: dt.datetime) -> Any:  # Django's SQLite adaptation: naive UTC text
            return v.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ")

    else:

        def adapt(v: dt.datetime) -> Any:
            return v

    now_db = adapt(now)
    out = []
    for ev in events:
        started = _parse(ev["started_at"])
        latency = ev.get("latency_ms", 0.0)
        is_call = ev["span_type"] != "section"
        out.append(
            (
                project_id,
                ev["event_id"],
                ev["run_id"],
                ev["span_id"],
                ev.get("parent_span_id"),
                ev["span_type"],
                ev.get("name", ""),
                ev.get("section"),
                ev.get("section_path"),
                ev.get("provider"),
                ev.get("model"),
                ev.get("endpoint"),
                ev.get("input_tokens", 0),
                ev.get("output_tokens", 0),
                ev.get("cached_input_tokens", 0),
                ev.get("reasoning_tokens", 0),
                ev.get("read_units", 0.0),
                ev.get("write_units", 0.0),
                0.00123 if is_call else 0.0,
                None,
                True,
                None,
                latency,
                adapt(started),
                adapt(started + dt.timedelta(milliseconds=latency)),
                ev.get("status", "ok"),
                ev.get("error_type"),
                ev.get("service"),
                _encode(ev["attributes"]).decode() if ev.get("attributes") else "{}",
                now_db,
            )
        )
    return out


# --- databases ------------------------------------------------------------------


@dataclass
class Target:
    vendor: str  # sqlite | postgres
    purpose: str  # tput | reads
    port: int = 0
    key: str = ""
    project_id: int = 0
    server: subprocess.Popen[bytes] | None = None
    src: Path | None = None  # the tree this target's gunicorn serves (default SRC)
    variant: str = "ours"  # "ours" (--src) or "compare" (--compare)
    db_suffix: str = ""  # "_b": the compare tree's own databases (--compare-own-db)

    @property
    def name(self) -> str:
        return "SQLite" if self.vendor == "sqlite" else "PostgreSQL"

    @property
    def var_dir(self) -> Path:
        if self.vendor == "sqlite":
            return SQLITE_DIR / (self.purpose + self.db_suffix)
        return ROOT / "var" / "bench-pg"

    @property
    def sqlite_path(self) -> Path:
        return self.var_dir / "llmobserve.sqlite3"

    @property
    def pg_db(self) -> str:
        return (PG_TPUT_DB if self.purpose == "tput" else PG_READS_DB) + self.db_suffix

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
        env.update(
            DJANGO_SETTINGS_MODULE="llmobserve_site.settings",
            LLMOBSERVE_VAR_DIR=str(self.var_dir),
            SECRET_KEY="bench-only-not-a-secret",
            DEBUG="0",
            LOG_LEVEL="WARNING",
            PYTHONDONTWRITEBYTECODE="1",
        )
        if self.vendor == "postgres":
            env["DATABASE_URL"] = f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{self.pg_db}"
        return env

    def connect(self) -> Any:
        if self.vendor == "sqlite":
            conn = sqlite3.connect(self.sqlite_path, isolation_level=None, timeout=60)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            return conn
        import psycopg

        return psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=self.pg_db)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = self.connect()
        try:
            if self.vendor == "sqlite":
                return conn.execute(sql.replace("%s", "?"), params).fetchall()
            with conn.cursor() as cur:
                cur.execute(sql, params)
                rows = cur.fetchall() if cur.description else []
            conn.commit()
            return rows
        finally:
            conn.close()


def pg_admin(sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else []


def db_reset(t: Target) -> None:
    if t.vendor == "sqlite":
        if t.var_dir.exists():
            shutil.rmtree(t.var_dir)
        t.var_dir.mkdir(parents=True)
    else:
        pg_admin(f"DROP DATABASE IF EXISTS {t.pg_db} WITH (FORCE)")
        pg_admin(f"CREATE DATABASE {t.pg_db}")


def db_ensure(t: Target) -> None:
    if t.vendor == "sqlite":
        t.var_dir.mkdir(parents=True, exist_ok=True)
    elif not pg_admin(f"SELECT 1 FROM pg_database WHERE datname = '{t.pg_db}'"):
        pg_admin(f"CREATE DATABASE {t.pg_db}")


def manage(t: Target, *args: str) -> str:
    proc = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=t.src or SRC, env=t.env(), capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed on {t.name}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def prepare(t: Target, *, fresh: bool) -> None:
    (db_reset if fresh else db_ensure)(t)
    manage(t, "migrate", "--noinput", "-v", "0")
    t.key = manage(t, "create_api_key", "--project", PROJECT, "--name", "bench").strip().splitlines()[-1].strip()
    t.project_id = t.query("SELECT id FROM projects_project WHERE name = %s", (PROJECT,))[0][0]


def event_count(t: Target) -> int:
    return int(t.query("SELECT COUNT(*) FROM events_event WHERE project_id = %s", (t.project_id,))[0][0])


# --- gunicorn ----------------------------------------------------------------------

_servers: list[subprocess.Popen[bytes]] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_start(t: Target) -> None:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    t.port = free_port()
    log = open(LOG_DIR / f"gunicorn-{t.vendor}-{t.purpose}-{t.variant}.log", "ab")  # noqa: SIM115
    t.server = subprocess.Popen(
        [GUNICORN, "llmobserve_site.wsgi", "-b", f"127.0.0.1:{t.port}", *GUNICORN_ARGS, "--log-level", "warning"],
        cwd=t.src or SRC,
        env=t.env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    _servers.append(t.server)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if t.server.poll() is not None:
            raise RuntimeError(f"gunicorn for {t.name} exited; see {log.name}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                conn.close()
                return
            conn.close()
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn for {t.name} did not answer /health within 60 s")


def server_stop(t: Target) -> None:
    proc = t.server
    if proc is None:
        return
    t.server = None
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: gunicorn's master and workers only
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
    if proc in _servers:
        _servers.remove(proc)


def servers_stop_all() -> None:
    for proc in list(_servers):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
    _servers.clear()


# --- HTTP client --------------------------------------------------------------------


class Client:
    """One keep-alive connection; reconnects when the server closes it."""

    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.conn: http.client.HTTPConnection | None = None
        self.reconnects = 0

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        for attempt in range(3):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
                self.conn.connect()
                # http.client writes headers and body separately: without NODELAY,
                # Nagle + delayed ACK add ~40 ms to small POSTs (urllib3 sets it too).
                self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.reconnects += 1
            try:
                self.conn.request(method, path, body=body, headers=self.headers)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    self.conn.close()
                    self.conn = None
                return resp.status, data
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def post_all(t: Target, bodies: list[tuple[bytes, int]], clients: int) -> float:
    """POST every body from `clients` keep-alive connections; seconds taken.
    Every body must be fully accepted."""
    lock = threading.Lock()
    it = iter(bodies)
    failures: list[str] = []
    barrier = threading.Barrier(clients + 1, timeout=120)

    def worker() -> None:
        c = Client(t.port, t.key)
        try:
            c.request("GET", "/health")  # open the connection before the clock starts
            barrier.wait()
            while not failures:
                with lock:
                    item = next(it, None)
                if item is None:
                    return
                body, n = item
                status, data = c.request("POST", "/events", body)
                if status != 200:
                    failures.append(f"HTTP {status}: {data[:300]!r}")
                    return
                got = _decode(data)
                if got["accepted"] + got["duplicates"] != n:
                    failures.append(f"accepted {got} of {n}")
        except Exception as exc:  # report, do not hang the barrier
            failures.append(repr(exc))
            barrier.abort()
        finally:
            c.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for th in threads:
        th.start()
    barrier.wait()
    start = time.perf_counter()
    for th in threads:
        th.join(timeout=900)
        if th.is_alive():
            failures.append("client thread still running after 900 s")
    elapsed = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"{t.name}: ingest failed: {failures[0]}")
    return elapsed


# --- raw inserts ----------------------------------------------------------------------


def raw_insert(t: Target, rows: list[tuple[Any, ...]], tx_rows: int, *, method: str = "executemany") -> float:
    """Plain inserts straight into events_event; seconds taken."""
    conn = t.connect()
    columns = EVENT_COLUMNS
    if _has_column(conn, t.vendor, "cost_status"):
        columns = EVENT_COLUMNS + V2_COLUMNS
        rows = [row + V2_VALUES for row in rows]
    cols = ", ".join(columns)
    try:
        if t.vendor == "sqlite":
            sql = f"INSERT INTO events_event ({cols}) VALUES ({', '.join(['?'] * len(columns))})"
            start = time.perf_counter()
            for i in range(0, len(rows), tx_rows):
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(sql, rows[i : i + tx_rows])
                conn.execute("COMMIT")
            return time.perf_counter() - start
        ph = ["%s::jsonb" if c in JSON_COLUMNS else "%s" for c in columns]
        sql = f"INSERT INTO events_event ({cols}) VALUES ({', '.join(ph)})"
        with conn.cursor() as cur:
            start = time.perf_counter()
            for i in range(0, len(rows), tx_rows):
                chunk = rows[i : i + tx_rows]
                if method == "copy":
                    with cur.copy(f"COPY events_event ({cols}) FROM STDIN") as cp:
                        for row in chunk:
                            cp.write_row(row)
                else:
                    cur.executemany(sql, chunk)
                conn.commit()
            return time.perf_counter() - start
    finally:
        conn.close()


def _has_column(conn: Any, vendor: str, column: str) -> bool:
    if vendor == "sqlite":
        return any(r[1] == column for r in conn.execute("PRAGMA table_info(events_event)"))
    with conn.cursor() as cur:
        cur.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_name = 'events_event' AND column_name = %s", [column]
        )
        return cur.fetchone() is not None


# --- the benchmark ------------------------------------------------------------------------


@dataclass
class Results:
    ours: dict[tuple[str, int, int], list[float]] = field(default_factory=dict)
    ratio: dict[tuple[str, int, int], list[float]] = field(default_factory=dict)
    raw: dict[str, list[float]] = field(default_factory=dict)
    raw_same_tx: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    raw_copy: dict[str, list[float]] = field(default_factory=dict)
    reads: dict[tuple[str, str, str], list[list[float]]] = field(default_factory=dict)
    load: dict[str, str] = field(default_factory=dict)
    stages: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)


def warm_up(t: Target, stream: Any) -> None:
    """A few requests on several connections, so both workers have imported
    everything, opened their database connection and built the price table."""
    bodies = [(body_of(take(stream, 200)), 200) for _ in range(4)]
    bodies += [(body_of(take(stream, 1)), 1) for _ in range(40)]
    post_all(t, bodies, 4)


def throughput_rep(t: Target, rep: int, tag: str, res: Results, log: Any, alt: Target | None = None) -> None:
    """One repetition on one database: the raw ceiling, then every HTTP case
    (against `t`, and `alt`, a second tree served on the same database, if any)."""
    servers = [t] if alt is None else [t, alt]
    stream = event_stream(f"{tag}-{t.vendor}-{rep}", seed=rep * 7919 + len(t.vendor))
    raw_stream = event_stream(f"{tag}-{t.vendor}-{rep}-raw", seed=rep * 104729 + len(t.vendor))
    if rep == 0:
        for server in servers:
            warm_up(server, stream)
    # The raw ceiling for this repetition, then each HTTP case beside it
    # (alternating which goes first, so table growth favours neither).
    rows = raw_rows(take(raw_stream, RAW_CEILING_ROWS), t.project_id, t.vendor)
    raw_eps = RAW_CEILING_ROWS / raw_insert(t, rows, 1000)
    res.raw.setdefault(t.vendor, []).append(raw_eps)
    log(f"  {t.name} rep {rep + 1}: raw executemany 1000-row tx {raw_eps:,.0f} rows/s")
    if t.vendor == "postgres":
        rows = raw_rows(take(raw_stream, RAW_CEILING_ROWS), t.project_id, t.vendor)
        copy_eps = RAW_CEILING_ROWS / raw_insert(t, rows, 1000, method="copy")
        res.raw_copy.setdefault(t.vendor, []).append(copy_eps)
        log(f"  {t.name} rep {rep + 1}: raw COPY 1000-row tx {copy_eps:,.0f} rows/s")
    for i, (size, clients, total) in enumerate(HTTP_CASES):
        bodies = []
        for _ in range(total // size):
            evs = take(stream, size)
            bodies.append((body_of(evs), size))

        same_tx = size in RAW_SAME_TX_ROWS and clients == max(c for s, c, _ in HTTP_CASES if s == size)
        order = ("ours", "raw") if (rep + i) % 2 == 0 else ("raw", "ours")
        for step in order:
            if step == "ours":
                for server in servers if (rep + i) % 2 == 0 else servers[::-1]:
                    if server is not servers[0] or len(servers) == 1:
                        batch = bodies
                    else:  # fresh event ids for the second tree
                        batch = [(body_of(take(stream, size)), size) for _ in range(total // size)]
                    eps = total / post_all(server, batch, clients)
                    key = (server.variant, t.vendor, size, clients)
                    res.ours.setdefault(key, []).append(eps)
                    res.ratio.setdefault(key, []).append(eps / raw_eps)
                    log(f"  {t.name} rep {rep + 1} [{server.variant}]: batch {size} x{clients} clients {eps:,.0f} ev/s")
            elif same_tx:
                n = RAW_SAME_TX_ROWS[size]
                rws = raw_rows(take(raw_stream, n), t.project_id, t.vendor)
                eps = n / raw_insert(t, rws, size)
                res.raw_same_tx.setdefault((t.vendor, size), []).append(eps)
                log(f"  {t.name} rep {rep + 1}: raw executemany {size}-row tx {eps:,.0f} rows/s")


def load_reads(t: Target, target_events: int, res: Results, log: Any) -> None:
    have = event_count(t)
    if have >= target_events:
        res.load[t.vendor] = f"already held {have:,} events (load skipped)"
        log(f"  {t.name}: read database holds {have:,} events; no load")
        return
    clients = 3
    n_batches = target_events // 1000
    first = max(0, have // 1000 - clients)  # earlier batches are all in (resends are duplicates anyway)
    log(f"  {t.name}: loading batches {first}..{n_batches - 1} through POST /events ({clients} clients)")
    lock = threading.Lock()
    counter = iter(range(first, n_batches))
    failures: list[str] = []
    done = [0]

    def worker() -> None:
        c = Client(t.port, t.key)
        try:
            while not failures:
                with lock:
                    b = next(counter, None)
                if b is None:
                    return
                status, data = c.request("POST", "/events", body_of(load_batch(b)))
                if status != 200:
                    failures.append(f"batch {b}: HTTP {status} {data[:300]!r}")
                    return
                with lock:
                    done[0] += 1
                    if done[0] % 100 == 0:
                        log(f"    {t.name}: {done[0] + first} / {n_batches} batches")
        except Exception as exc:
            failures.append(repr(exc))
        finally:
            c.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=4 * 3600)
    secs = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"{t.name}: load failed: {failures[0]}")
    have_now = event_count(t)
    loaded = have_now - have
    res.load[t.vendor] = (
        f"loaded {loaded:,} events in {secs:,.0f} s ({loaded / secs:,.0f} ev/s incl. client-side generation; "
        f"{clients} clients, batches of 1000); now {have_now:,}"
    )
    log(f"  {t.name}: {res.load[t.vendor]}")


def reads_rep(t: Target, rep: int, res: Results, per_endpoint: int, log: Any) -> None:
    run_ids = [
        r[0]
        for r in t.query(
            "SELECT run_id FROM events_run WHERE project_id = %s AND events BETWEEN 10 AND 30 "
            "ORDER BY RANDOM() LIMIT %s",
            (t.project_id, per_endpoint),
        )
    ]
    if not run_ids:
        raise RuntimeError(f"{t.name}: no runs of 10-30 events in the read database")
    c = Client(t.port, t.key)
    try:
        for _ in range(5):  # warm the connection and both code paths
            c.request("GET", "/runs/latest")
            c.request("GET", f"/runs/{run_ids[0]}")
        latest: list[float] = []
        detail: list[float] = []
        for i in range(per_endpoint):
            for path, sink in (("/runs/latest", latest), (f"/runs/{run_ids[i % len(run_ids)]}", detail)):
                start = time.perf_counter()
                status, data = c.request("GET", path)
                sink.append((time.perf_counter() - start) * 1000)
                if status != 200:
                    raise RuntimeError(f"{t.name}: GET {path} -> {status} {data[:200]!r}")
            if i == 0:
                body = _decode(data)
                if not body.get("tree"):
                    raise RuntimeError(f"{t.name}: run detail without a tree: {data[:200]!r}")
    finally:
        c.close()
    res.reads.setdefault((t.variant, t.vendor, "latest"), []).append(latest)
    res.reads.setdefault((t.variant, t.vendor, "detail"), []).append(detail)
    log(
        f"  {t.name} rep {rep + 1} [{t.variant}]: GET /runs/latest median {statistics.median(latest):.1f} ms, "
        f"GET /runs/{{id}} median {statistics.median(detail):.1f} ms"
    )


STAGES = (
    "decode + validate (schema.decode_batch)",
    "price_table_current()",
    "rows + costing + aggregate deltas (Python)",
    "INSERT events (_insert_events)",
    "aggregate upserts (_upsert_aggregates)",
    "COMMIT",
)


def stages_worker(vendor: str, batches: int) -> None:
    """In-process (no HTTP), inside a Django set up for `vendor`'s throughput
    database: where a 1000-event batch's time goes, ms per batch."""
    sys.path.insert(0, str(SRC))
    os.chdir(SRC)
    import django

    django.setup()
    from django.db.backends.base import base as db_base

    import events.services as services
    from events.schema import decode_batch
    from projects.models import Project

    spent: dict[str, float] = dict.fromkeys(STAGES, 0.0)

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.perf_counter() - start

        return wrapper

    services._insert_events = timed(STAGES[3], services._insert_events)
    services._upsert_aggregates = timed(STAGES[4], services._upsert_aggregates)
    services.price_table_current = timed(STAGES[1], services.price_table_current)
    db_base.BaseDatabaseWrapper._commit = timed(STAGES[5], db_base.BaseDatabaseWrapper._commit)
    project_id = Project.objects.get(name=PROJECT).id
    stream = event_stream(f"st{uuid.uuid4().hex[:6]}", 11)
    bodies = [body_of(take(stream, 1000)) for _ in range(batches + 2)]
    others = [s for s in STAGES[1:] if s != STAGES[2]]
    total = 0.0
    for i, body in enumerate(bodies):
        if i == 2:  # the first two batches warm up (imports, price table, connection)
            spent.update(dict.fromkeys(STAGES, 0.0))
            total = 0.0
        before = sum(spent[s] for s in others)
        start = time.perf_counter()
        events, _, _ = decode_batch(body)
        mid = time.perf_counter()
        services.event_batch_ingest(project_id=project_id, events=[e for e in events if e is not None])
        end = time.perf_counter()
        spent[STAGES[0]] += mid - start
        spent[STAGES[2]] += (end - mid) - (sum(spent[s] for s in others) - before)
        total += end - start
    print(
        _encode({"total": total / batches * 1000, "stages": {k: v / batches * 1000 for k, v in spent.items()}}).decode()
    )


def _run_shaped(events: list[dict[str, Any]]) -> None:
    """Attributes as the SDK's `run(user_id=..., customer=..., plan=...)` sends them:
    the same three on every event of a run (the user's customer and plan follow from it)."""
    for ev in events:
        user = (ev.get("attributes") or {}).get("user_id")
        if user:
            n = int(user.split("-", 1)[1])
            customer = int(400 * (n / 5000) ** 3)
            plan = "enterprise" if customer < 8 else "pro" if customer < 80 else "free"
            ev["attributes"] = {"user_id": user, "customer": f"c-{customer:03d}", "plan": plan}


def attributes_ratio_worker(rounds: int, shape: str) -> None:
    """In-process (no HTTP), on the database DATABASE_URL names (migrated by the
    tree --src points at): what the attribute rollups cost ingest.  The same kind
    of events with their attributes and with none, batch by batch interleaved,
    through events.services.event_batch_ingest; prints the median ms per batch of
    each and the throughput ratio.  shape "call": this benchmark's own attributes
    (user_id, tags, and a request_id on every call: a new value per call);
    "run": user_id, customer and plan per run, as the SDK copies a run's."""
    sys.path.insert(0, str(SRC))
    os.chdir(SRC)
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmobserve_site.settings")
    django.setup()
    import events.services as services
    from events.schema import decode_batch
    from projects.models import Project

    project = Project.objects.create(name=f"attr-ratio-{uuid.uuid4().hex[:8]}")
    tag = uuid.uuid4().hex[:6]
    # CPU time is this process's: all of SQLite's work, none of PostgreSQL's server.
    print(
        "| batch | with attributes ms | without ms | ratio (events/s with ÷ without) "
        "| CPU ms with / without | CPU ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for size, n in ((1000, rounds), (100, rounds * 4), (1, rounds * 40)):
        with_s = event_stream(f"aw{size}{tag}", 21)
        bare_s = event_stream(f"ab{size}{tag}", 21)
        timings: dict[bool, list[float]] = {True: [], False: []}
        cpu: dict[bool, list[float]] = {True: [], False: []}
        for i in range(n + 2):
            for attributes in (True, False):
                events = take(with_s if attributes else bare_s, size)
                if not attributes:
                    for ev in events:
                        ev.pop("attributes", None)
                elif shape == "run":
                    _run_shaped(events)
                decoded, _, _ = decode_batch(body_of(events))
                batch = [e for e in decoded if e is not None]
                start, cpu_start = time.perf_counter(), time.process_time()
                services.event_batch_ingest(project_id=project.id, events=batch)
                if i >= 2:  # two warm-up rounds (imports, price table, first key reads)
                    timings[attributes].append((time.perf_counter() - start) * 1000)
                    cpu[attributes].append((time.process_time() - cpu_start) * 1000)
        a, b = statistics.median(timings[True]), statistics.median(timings[False])
        ca, cb = statistics.mean(cpu[True]), statistics.mean(cpu[False])
        print(f"| {size} | {a:.2f} | {b:.2f} | {b / a:.2f}x | {ca:.2f} / {cb:.2f} | {cb / ca:.2f}x |", flush=True)


def stages_rep(t: Target, rep: int, batches: int, res: Results, log: Any) -> None:
    proc = subprocess.run(
        [PYTHON, str(Path(__file__).resolve()), "--src", str(t.src or SRC), "--stages", str(batches)]
        + ["--stages-worker", t.vendor],
        env=t.env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"stage timing on {t.name} failed:\n{proc.stderr[-3000:]}")
    got = _decode(proc.stdout.strip().splitlines()[-1])
    res.stages.setdefault((t.variant, t.vendor), []).append(got)
    log(f"  {t.name} rep {rep + 1} [{t.variant}]: in-process decode+ingest {got['total']:.1f} ms per 1000-event batch")


def describe(tree: Path) -> str:
    """The tree and, when it is a git checkout, its commit (and whether it is dirty)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode == 0 and Path(tree, ".git").exists():
            dirty = subprocess.run(
                ["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
            return f"{tree} @ {head.stdout.strip()}{' (dirty)' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        pass
    return str(tree)


def fmt_range(values: list[float], fmt: str = "{:,.0f}") -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def report(res: Results, vendors: list[str], args: argparse.Namespace) -> str:
    names = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
    cmp = bool(args.compare)
    head = "| DB | batch | client threads | ours: POST /events via gunicorn | raw ceiling: executemany, 1000-row tx "
    head += "| ours / raw |" + (" compare: POST /events | compare / raw |" if cmp else "") + " raw, tx per batch |"
    out: list[str] = []
    if res.ours:
        out += [
            f"### Ingest throughput (events/s; median (min–max) of {args.repeats} interleaved repetitions)",
            "",
            head,
            "|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if cmp else "") + "---:|",
        ]
    for v in vendors:
        for size, clients, _ in HTTP_CASES:
            key = ("ours", v, size, clients)
            if key not in res.ours:
                continue
            same = res.raw_same_tx.get((v, size))
            row = (
                f"| {names[v]} | {size} | {clients} | {fmt_range(res.ours[key])} | {fmt_range(res.raw[v])} "
                f"| {fmt_range(res.ratio[key], '{:.2f}')} |"
            )
            ckey = ("compare", v, size, clients)
            if cmp and ckey in res.ours:
                row += f" {fmt_range(res.ours[ckey])} | {fmt_range(res.ratio[ckey], '{:.2f}')} |"
            out.append(row + f" {fmt_range(same) if same else '(= ceiling)'} |")
    if "postgres" in res.raw_copy:
        out += ["", f"PostgreSQL raw `COPY`, 1000-row tx: {fmt_range(res.raw_copy['postgres'])} rows/s."]
    if res.stages:
        cols = [(k, v) for v in vendors for k in ("ours", "compare") if (k, v) in res.stages]
        present = [v for v in vendors if ("ours", v) in res.stages]
        out += [
            "",
            "### Where a 1000-event batch goes, in-process (no HTTP; ms per batch, median of repetitions)",
            "",
            "| stage | " + " | ".join(f"{names[v]}{' (compare)' if k == 'compare' else ''}" for k, v in cols) + " |",
            "|---|" + "---:|" * len(cols),
        ]
        for stage in (*STAGES, "total"):
            cells = []
            for col in cols:
                vals = [r["total"] if stage == "total" else r["stages"][stage] for r in res.stages[col]]
                cells.append(f"{statistics.median(vals):.1f}")
            out.append(f"| {stage} | " + " | ".join(cells) + " |")
        raw_ms = " / ".join(f"{names[v]} {1000 / statistics.median(res.raw[v]) * 1000:.0f} ms" for v in present)
        out.append(f"\nFor comparison, the raw ceiling's 1000 rows: {raw_ms}.")
    if res.reads:
        out += [
            "",
            f"### Read latency through gunicorn, {args.read_events:,} events stored "
            f"(ms, client-side; median over all requests, in brackets the per-repetition medians)",
            "",
            "| DB | tree | GET /runs/latest (limit 50) | GET /runs/{run_id} (10–30 events) | target |",
            "|---|---|---:|---:|---|",
        ]
        for v, variant in itertools.product(vendors, ("ours", "compare")):
            if (variant, v, "latest") not in res.reads:
                continue
            cells = []
            for kind in ("latest", "detail"):
                reps = res.reads[(variant, v, kind)]
                flat = [x for r in reps for x in r]
                per = ", ".join(f"{statistics.median(r):.1f}" for r in reps)
                p90 = sorted(flat)[int(0.9 * (len(flat) - 1))]
                cells.append(f"{statistics.median(flat):.1f} [{per}] p90 {p90:.1f}")
            tree = "--src" if variant == "ours" else "--compare"
            out.append(f"| {names[v]} | {tree} | {cells[0]} | {cells[1]} | ≤ 20 ms |")
        for v in vendors:
            if v in res.load:
                out.append(f"\n{names[v]} read database: {res.load[v]}.")
    out += [
        "",
        f"Set-up: gunicorn {' '.join(GUNICORN_ARGS)}; http.client keep-alive clients in the benchmark process; "
        f"events of runs of 10–30 (sections, chat/embedding/vector calls with tokens and attributes), "
        f"bodies encoded before timing; raw rows pre-built; SQLite raw via the sqlite3 module "
        f"(WAL, synchronous=NORMAL, BEGIN IMMEDIATE), PostgreSQL raw via psycopg 3 executemany (pipelined). "
        f"Throughput databases are fresh each run; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} "
        f"at the end; source tree {describe(SRC)}"
        + (
            f"; compare tree {describe(args.compare)} "
            + ("(on databases of its own)." if args.compare_own_db else "(served on the same databases).")
            if cmp
            else "."
        ),
    ]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--read-events", type=int, default=1_000_000)
    parser.add_argument("--read-requests", type=int, default=50, help="requests per endpoint per repetition")
    parser.add_argument("--skip-reads", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="print only the table")
    parser.add_argument("--src", type=Path, default=ROOT, help="the source tree to serve (default: this checkout)")
    parser.add_argument(
        "--stages", type=int, default=10, metavar="N", help="in-process stage timing over N 1000-event batches (0: off)"
    )
    parser.add_argument(
        "--compare", type=Path, help="a second source tree (e.g. a patched snapshot) measured beside --src, interleaved"
    )
    parser.add_argument(
        "--db-tag",
        default="",
        help="a suffix for the throughput databases' names, so two runs at once do not share them (e.g. _mine)",
    )
    parser.add_argument(
        "--compare-own-db",
        action="store_true",
        help="give the --compare tree its own throughput databases (needed when its migrations differ); "
        "the raw ceiling is measured on --src's",
    )
    parser.add_argument("--stages-worker", choices=["sqlite", "postgres"], help=argparse.SUPPRESS)
    parser.add_argument(
        "--attributes-ratio",
        type=int,
        default=0,
        metavar="N",
        help="only time ingest in-process with and without attributes (N 1000-event batches each, 4N of 100, 40N "
        "of 1) on the migrated database DATABASE_URL names, and print the ratio",
    )
    parser.add_argument(
        "--attributes-shape",
        choices=["call", "run"],
        default="call",
        help="with --attributes-ratio: call = this benchmark's attributes (a request_id per call), "
        "run = user_id/customer/plan per run as the SDK sends run(...) attributes",
    )
    args = parser.parse_args()
    global SRC
    SRC = args.src.resolve()
    if not (SRC / "manage.py").exists():
        parser.error(f"--src {SRC}: no manage.py there")
    if args.stages_worker:
        stages_worker(args.stages_worker, max(1, args.stages))
        return 0
    if args.attributes_ratio:
        attributes_ratio_worker(args.attributes_ratio, args.attributes_shape)
        return 0
    if not re.fullmatch(r"[a-z0-9_]*", args.db_tag):
        parser.error("--db-tag: lower-case letters, digits and _ only (it becomes part of a database name)")
    if args.compare:
        args.compare = args.compare.resolve()
        if not (args.compare / "manage.py").exists():
            parser.error(f"--compare {args.compare}: no manage.py there")
    if args.repeats < 1 or args.read_events < 1000:
        parser.error("--repeats >= 1 and --read-events >= 1000")
    vendors = ["sqlite", "postgres"] if args.db == "both" else [args.db]

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    def on_signal(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    res = Results()
    tag = f"t{uuid.uuid4().hex[:6]}"
    try:
        if not args.skip_ingest:
            tput = [Target(v, "tput", db_suffix=args.db_tag) for v in vendors]
            alts: dict[str, Target] = {}
            for t in tput:
                log(f"preparing {t.name} throughput database (fresh)")
                prepare(t, fresh=True)
                server_start(t)
                if args.compare:
                    suffix = args.db_tag + "_b" if args.compare_own_db else args.db_tag
                    alt = alts[t.vendor] = Target(
                        t.vendor, "tput", src=args.compare, variant="compare", db_suffix=suffix
                    )
                    if suffix:
                        # Trees whose migrations differ cannot share a table:
                        # the compare tree migrates a database of its own.
                        prepare(alt, fresh=True)
                    else:
                        alt.key, alt.project_id = t.key, t.project_id
                    server_start(alt)
            for rep in range(args.repeats):
                for t in tput if rep % 2 == 0 else list(reversed(tput)):
                    throughput_rep(t, rep, tag, res, log, alts.get(t.vendor))
                    if args.stages:
                        pair = [t, alts[t.vendor]] if t.vendor in alts else [t]
                        for one in pair if rep % 2 == 0 else pair[::-1]:
                            stages_rep(one, rep, args.stages, res, log)
            for t in [*tput, *alts.values()]:
                server_stop(t)
        if not args.skip_reads:
            reads = [Target(v, "reads") for v in vendors]
            for t in list(reads):
                log(f"preparing {t.name} read database (kept between runs)")
                prepare(t, fresh=False)
                server_start(t)
                load_reads(t, args.read_events, res, log)
                if t.vendor == "postgres":
                    t.query("ANALYZE")
                if args.compare:
                    alt = Target(t.vendor, "reads", src=args.compare, variant="compare")
                    alt.key, alt.project_id = t.key, t.project_id
                    server_start(alt)
                    reads.append(alt)
            for rep in range(args.repeats):
                for t in reads if rep % 2 == 0 else list(reversed(reads)):
                    reads_rep(t, rep, res, args.read_requests, log)
            for t in reads:
                server_stop(t)
    finally:
        servers_stop_all()
    print(report(res, vendors, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
