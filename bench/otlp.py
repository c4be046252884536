#!/usr/bin/env python
"""OTLP ingest beside native ingest (issue 18, "Benchmark").

    .venv/bin/python bench/otlp.py [--db sqlite|postgres|both] [--reps 5] [--batches 8]

Spans per second through `POST /v1/traces` (OTLP/HTTP protobuf, 512 spans a
request, the OTel SDK's default batch) beside events per second through
`POST /events` carrying the same calls (512 events a request, JSON), in one
run, on one gunicorn process (1 worker, 2 threads) on loopback, one
keep-alive client posting serially: the figure is the per-span cost of
HTTP + decoding + mapping + costing + insert + aggregates.

Two shapes, each a fresh set of ids per request (no duplicates):
  agent  128 traces of an agent span with 3 chat calls under it (512 spans:
         128 sections + 384 calls; the /events side sends the same sections)
  calls  512 chat calls, each its own trace (a call outside any section)

Every call carries what `opentelemetry-instrumentation-openai-v2` and
OpenLLMetry send (operation, provider, request and response model, input,
output and cached tokens, service tier, server address, finish reasons,
response id).  Bodies are built before the clock starts.  Each repetition
posts `--batches` requests of each kind, alternating which goes first; the
table shows medians over repetitions (min-max beside) and OTLP / native.

Databases: SQLite under var/bench-otlp/ (recreated each run); PostgreSQL
database llmobserve_bench_otlp on 127.0.0.1:5432 (created and dropped by this
script).  This script imports no Django: it drives manage.py and gunicorn.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
GUNICORN = str(ROOT / ".venv" / "bin" / "gunicorn")
VAR = ROOT / "var" / "bench-otlp"
PG_DB = "llmobserve_bench_otlp"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
BATCH = 512
T0 = dt.datetime(2026, 11, 26, 9, tzinfo=dt.UTC)


# --- Workload ----------------------------------------------------------------------------


@dataclass(slots=True)
class Call:
    trace: bytes
    span: bytes
    parent: bytes | None
    start_ns: int
    end_ns: int
    kind: str  # "section" | "call"
    name: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached: int = 0


def workload(rng: random.Random, shape: str, base_ns: int) -> list[Call]:
    out: list[Call] = []
    if shape == "calls":
        for i in range(BATCH):
            start = base_ns + i * 1_000_000
            out.append(_call(rng, rng.randbytes(16), None, start))
        return out
    for i in range(BATCH // 4):
        trace = rng.randbytes(16)
        agent = rng.randbytes(8)
        start = base_ns + i * 10_000_000
        out.append(Call(trace, agent, None, start, start + 9_000_000, "section", "agent:researcher"))
        for j in range(3):
            out.append(_call(rng, trace, agent, start + (j + 1) * 2_000_000))
    return out


def _call(rng: random.Random, trace: bytes, parent: bytes | None, start: int) -> Call:
    input_tokens = rng.randint(200, 4000)
    return Call(
        trace,
        rng.randbytes(8),
        parent,
        start,
        start + rng.randint(200, 2000) * 1_000_000,
        "call",
        "chat gpt-4o-mini",
        input_tokens,
        rng.randint(10, 600),
        rng.choice((0, 0, input_tokens // 2)),
    )


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, list):
        any_value = AnyValue()
        any_value.array_value.values.extend(AnyValue(string_value=v) for v in value)
        return KeyValue(key=key, value=any_value)
    return KeyValue(key=key, value=AnyValue(string_value=value))


def otlp_body(calls: list[Call]) -> bytes:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(_kv("service.name", "bench-app"))
    scope = resource_spans.scope_spans.add()
    scope.scope.name = "opentelemetry.instrumentation.openai_v2"
    for c in calls:
        span = scope.spans.add(
            trace_id=c.trace,
            span_id=c.span,
            parent_span_id=c.parent or b"",
            name=c.name,
            kind=Span.SPAN_KIND_CLIENT if c.kind == "call" else Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=c.start_ns,
            end_time_unix_nano=c.end_ns,
        )
        if c.kind == "call":
            span.attributes.extend(
                [
                    _kv("gen_ai.operation.name", "chat"),
                    _kv("gen_ai.provider.name", "openai"),
                    _kv("gen_ai.request.model", "gpt-4o-mini"),
                    _kv("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
                    _kv("gen_ai.response.id", "chatcmpl-" + c.span.hex()),
                    _kv("gen_ai.response.finish_reasons", ["stop"]),
                    _kv("gen_ai.usage.input_tokens", c.input_tokens),
                    _kv("gen_ai.usage.output_tokens", c.output_tokens),
                    _kv("gen_ai.usage.cache_read.input_tokens", c.cached),
                    _kv("openai.response.service_tier", "default"),
                    _kv("server.address", "api.openai.com"),
                ]
            )
    return request.SerializeToString()


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat().replace("+00:00", "Z")


def events_body(calls: list[Call]) -> bytes:
    events: list[dict[str, Any]] = []
    for c in calls:
        trace, span = c.trace.hex(), c.span.hex()
        event: dict[str, Any] = {
            "event_id": f"ev-{trace}-{span}",
            "run_id": trace,
            "span_id": span,
            "parent_span_id": c.parent.hex() if c.parent else None,
            "name": c.name,
            "started_at": _iso(c.start_ns),
            "latency_ms": (c.end_ns - c.start_ns) / 1e6,
            "status": "ok",
            "service": "bench-app",
        }
        if c.kind == "section":
            event.update(span_type="section", section=c.name, section_path=c.name)
        else:
            event.update(
                span_type="llm",
                section="agent:researcher" if c.parent else None,
                section_path="agent:researcher" if c.parent else None,
                provider="openai",
                model="gpt-4o-mini-2024-07-18",
                endpoint="chat",
                input_tokens=c.input_tokens,
                output_tokens=c.output_tokens,
                cached_input_tokens=c.cached,
                price_context={"service_tier": "default"},
                provider_host="api.openai.com",
            )
        events.append(event)
    return json.dumps({"events": events}).encode()


# --- Collector -------------------------------------------------------------------------------


@dataclass
class Collector:
    vendor: str
    port: int = 0
    key: str = ""
    proc: subprocess.Popen[bytes] | None = None
    log: Any = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
        env.update(
            DJANGO_SETTINGS_MODULE="llmobserve_site.settings",
            LLMOBSERVE_VAR_DIR=str(VAR / self.vendor),
            SECRET_KEY="bench-only-not-a-secret-0123456789abcdefghijklmnop",
            DEBUG="0",
            LOG_LEVEL="WARNING",
            PYTHONDONTWRITEBYTECODE="1",
        )
        if self.vendor == "postgres":
            env["DATABASE_URL"] = f"postgres://{PG['user']}@{PG['host']}:{PG['port']}/{PG_DB}"
        return env

    def manage(self, *args: str) -> str:
        proc = subprocess.run(
            [PYTHON, "manage.py", *args], cwd=ROOT, env=self.env(), capture_output=True, text=True, timeout=900
        )
        if proc.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def prepare(self) -> None:
        shutil.rmtree(VAR / self.vendor, ignore_errors=True)
        (VAR / self.vendor).mkdir(parents=True, exist_ok=True)
        if self.vendor == "postgres":
            _pg_admin(f"DROP DATABASE IF EXISTS {PG_DB}")
            _pg_admin(f"CREATE DATABASE {PG_DB}")
        self.manage("migrate", "--noinput")
        self.key = self.manage("create_api_key", "--project", "bench-otlp").strip().splitlines()[-1].strip()

    def start(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.log = open(VAR / f"gunicorn-{self.vendor}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [GUNICORN, "llmobserve_site.wsgi", "-b", f"127.0.0.1:{self.port}", "-w", "1", "-k", "gthread"]
            + ["--threads", "2", "--log-level", "warning"],
            cwd=ROOT,
            env=self.env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited; see {self.log.name}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/health")
                ok = conn.getresponse().status == 200
                conn.close()
                if ok:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("gunicorn did not answer /health within 60 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: this gunicorn only
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None
        if self.log is not None:
            self.log.close()
        if self.vendor == "postgres":
            _pg_admin(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:  # type: ignore[arg-type]
        conn.execute(sql)  # type: ignore[arg-type]


class Client:
    """One keep-alive connection, reopened when the server has closed it
    (gunicorn ends idle keep-alive connections after 2 s, while bodies are built)."""

    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.auth = f"Bearer {key}"
        self.conn: http.client.HTTPConnection | None = None

    def open(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        self.conn.connect()
        assert self.conn.sock is not None
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def post(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        for attempt in range(2):
            if self.conn is None:
                self.open()
            assert self.conn is not None
            try:
                self.conn.request(
                    "POST", path, body=body, headers={"Authorization": self.auth, "Content-Type": content_type}
                )
                response = self.conn.getresponse()
                data = response.read()
                if response.will_close:
                    self.conn.close()
                    self.conn = None
                return response.status, data
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def _check(kind: str, status: int, data: bytes) -> None:
    if status != 200:
        raise RuntimeError(f"{kind}: HTTP {status}: {data[:300]!r}")
    if kind == "events":
        got = json.loads(data)
        if got["accepted"] != BATCH:
            raise RuntimeError(f"events: accepted {got['accepted']} of {BATCH}")
    else:
        message = ExportTraceServiceResponse()
        message.ParseFromString(data)
        if message.HasField("partial_success"):
            raise RuntimeError(f"otlp: partial success {message.partial_success}")


# --- Run -------------------------------------------------------------------------------------


@dataclass
class Result:
    rates: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)  # (db, shape, kind) -> spans/s
    latency: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)  # ms per request


PATHS = {"events": ("/events", "application/json"), "otlp": ("/v1/traces", "application/x-protobuf")}


def run_db(vendor: str, reps: int, batches: int, result: Result, seed: int) -> None:
    collector = Collector(vendor)
    print(f"[{vendor}] migrating and starting gunicorn ...", file=sys.stderr, flush=True)
    collector.prepare()
    collector.start()
    rng = random.Random(seed)
    base = int(T0.timestamp() * 1e9)
    try:
        client = Client(collector.port, collector.key)
        # Warm up both paths (imports, the price table, first connections).
        for kind, build in (("events", events_body), ("otlp", otlp_body)):
            path, ctype = PATHS[kind]
            _check(kind, *client.post(path, build(workload(rng, "agent", base)), ctype))
        for rep in range(reps):
            for shape in ("agent", "calls"):
                order = ("events", "otlp") if rep % 2 == 0 else ("otlp", "events")
                for kind in order:
                    build = events_body if kind == "events" else otlp_body
                    bodies = [build(workload(rng, shape, base + rep * 10**12)) for _ in range(batches)]
                    path, ctype = PATHS[kind]
                    client.open()  # a fresh connection, outside the clock
                    times: list[float] = []
                    start = time.perf_counter()
                    for body in bodies:
                        t = time.perf_counter()
                        _check(kind, *client.post(path, body, ctype))
                        times.append((time.perf_counter() - t) * 1000)
                    elapsed = time.perf_counter() - start
                    result.rates.setdefault((vendor, shape, kind), []).append(batches * BATCH / elapsed)
                    result.latency.setdefault((vendor, shape, kind), []).append(statistics.median(times))
            print(f"[{vendor}] rep {rep + 1}/{reps} done", file=sys.stderr, flush=True)
    finally:
        collector.stop()


def table(result: Result, dbs: list[str], reps: int, batches: int) -> str:
    lines = [
        f"POST /v1/traces (protobuf) beside POST /events (JSON), {BATCH} spans a request, "
        f"{batches} requests x {reps} reps, serial client, gunicorn 1 worker",
        "",
        "| db | shape | native /events spans/s | OTLP /v1/traces spans/s | OTLP / native "
        "| ms/request native | ms/request OTLP |",
        "|---|---|---|---|---|---|---|",
    ]
    for db in dbs:
        for shape in ("agent", "calls"):
            native = result.rates[(db, shape, "events")]
            otlp = result.rates[(db, shape, "otlp")]
            ratio = statistics.median(otlp) / statistics.median(native)
            lines.append(
                f"| {db} | {shape} | {statistics.median(native):,.0f} ({min(native):,.0f}-{max(native):,.0f}) "
                f"| {statistics.median(otlp):,.0f} ({min(otlp):,.0f}-{max(otlp):,.0f}) | {ratio:.0%} "
                f"| {statistics.median(result.latency[(db, shape, 'events')]):.1f} "
                f"| {statistics.median(result.latency[(db, shape, 'otlp')]):.1f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args(argv)
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    result = Result()
    for db in dbs:
        run_db(db, args.reps, args.batches, result, args.seed)
    print(table(result, dbs, args.reps, args.batches))
    return 0


if __name__ == "__main__":
    sys.exit(main())
