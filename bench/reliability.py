#!/usr/bin/env python
"""Reliability benchmark (issue 14): the production stack under attack, load,
crashes and an outage, with the real SDK.  Prints one table.

    .venv/bin/python bench/reliability.py [--db sqlite|postgres] [--load-seconds 60]
                                          [--outage-seconds 120] [--kills 3] [--rate 100]

The stack is started as docker-compose.yml starts it, on loopback only: gunicorn
with deploy/gunicorn.conf.py behind nginx via deploy/nginx.py (Debian's nginx
must be installed), on a database of its own (a fresh SQLite file under a temp
folder, or the PostgreSQL database `llmobserve_reliability`, created and
dropped by this script).  Every loop is bounded in count and time.

1. Slow-client attack: 20 connections send a request header one line every
   5 s and never end it, while ingest is tried once a second, 15 times.
2. Mixed load for --load-seconds: two clients post batches of 100 events, one
   posts single events, one reads GET /runs/latest and GET /runs/{id}:
   events/s stored, request latency p50/p99, errors (5xx or no answer).
3. kill -9 during SDK traffic: a child process runs the real SDK (sections at
   --rate per second) while gunicorn's whole process group is SIGKILLed
   --kills times and restarted: events recorded vs stored vs doubled
   (doubled = what the runs' aggregates count beyond the stored events).
4. Collector outage: the SDK keeps recording at --rate per second while the
   whole stack is down for --outage-seconds; then it comes back: recorded vs
   stored.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import select
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
BIN = Path(PY).parent
PG_DB = "llmobserve_reliability"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    """gunicorn behind nginx, as compose runs them; restartable."""

    def __init__(self, work: Path, db: str) -> None:
        self.work, self.db = work, db
        self.web_port, self.port = free_port(), free_port()
        self.web: subprocess.Popen[bytes] | None = None
        self.proxy: subprocess.Popen[bytes] | None = None
        self.env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "PORT"}}
        self.env.update(
            DJANGO_SETTINGS_MODULE="llmobserve_site.settings",
            SECRET_KEY=f"bench-{uuid.uuid4().hex}{uuid.uuid4().hex}",
            DEBUG="0",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            LLMOBSERVE_VAR_DIR=str(work / "var"),
            STATIC_ROOT=str(work / "static"),
            CELERY_BROKER_URL="",
            WEB_CONCURRENCY="2",
        )
        if db == "postgres":
            self.env["DATABASE_URL"] = f"postgres://{PG['user']}@{PG['host']}:{PG['port']}/{PG_DB}"

    def manage(self, *args: str) -> str:
        out = subprocess.run(
            [PY, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=600
        )
        if out.returncode:
            raise SystemExit(f"manage.py {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout

    def start_web(self) -> None:
        log = (self.work / "web.log").open("ab")
        self.web = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "llmobserve_site.wsgi:application"]
            + ["--bind", f"127.0.0.1:{self.web_port}"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed whole
        )

    def start_proxy(self) -> None:
        env = {
            **self.env,
            "NGINX_LISTEN": f"127.0.0.1:{self.port}",
            "NGINX_UPSTREAM": f"127.0.0.1:{self.web_port}",
            "NGINX_RUN_DIR": str(self.work / "nginx"),
        }
        log = (self.work / "proxy.log").open("ab")
        self.proxy = subprocess.Popen(
            [PY, "deploy/nginx.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def start(self) -> None:
        self.start_web()
        self.start_proxy()
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/health", headers={"Host": "127.0.0.1"})
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"the stack did not become healthy; see {self.work}/web.log and proxy.log")

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes] | None, sig: int) -> None:
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def kill_web(self) -> None:
        """kill -9 of gunicorn's master and workers, mid-request."""
        self._kill(self.web, signal.SIGKILL)

    def stop(self) -> None:
        self._kill(self.proxy, signal.SIGTERM)
        self._kill(self.web, signal.SIGTERM)

    def count(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        if self.db == "sqlite":
            path = self.work / "var" / "llmobserve.sqlite3"
            with sqlite3.connect(path, timeout=30) as conn:
                return int(conn.execute(sql.replace("%s", "?"), params).fetchone()[0] or 0)
        import psycopg

        with psycopg.connect(dbname=PG_DB, **PG) as conn:  # type: ignore[arg-type]
            return int(conn.execute(sql, params).fetchone()[0] or 0)  # type: ignore[index]


def post(port: int, key: str, events: list[dict[str, Any]], timeout: float = 10.0) -> tuple[int, float]:
    """(status, seconds); status 0 when nothing answered."""
    started = time.monotonic()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request(
            "POST",
            "/events",
            body=json.dumps({"events": events}),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json", "Host": "127.0.0.1"},
        )
        response = conn.getresponse()
        response.read()
        conn.close()
        return response.status, time.monotonic() - started
    except OSError:
        return 0, time.monotonic() - started


def get(port: int, key: str, path: str, timeout: float = 10.0) -> tuple[int, float, bytes]:
    started = time.monotonic()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request("GET", path, headers={"Authorization": f"Bearer {key}", "Host": "127.0.0.1"})
        response = conn.getresponse()
        body = response.read()
        conn.close()
        return response.status, time.monotonic() - started, body
    except OSError:
        return 0, time.monotonic() - started, b""


def events_for(run_id: str, n: int, service: str) -> list[dict[str, Any]]:
    return [
        {
            "event_id": uuid.uuid4().hex,
            "run_id": run_id,
            "span_id": uuid.uuid4().hex[:16],
            "span_type": "llm",
            "name": "chat.completions.create",
            "provider": "openai",
            "model": "gpt-4o-mini",
            "input_tokens": 900,
            "cached_input_tokens": 512,
            "output_tokens": 80,
            "latency_ms": 300.0,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "status": "ok",
            "service": service,
            "attributes": {"user_id": f"u-{n % 7}"},
        }
        for _ in range(n)
    ]


# --- 1. slow clients -------------------------------------------------------------------------


def slow_client_attack(stack: Stack, key: str, clients: int = 20, tries: int = 15) -> dict[str, Any]:
    stop = threading.Event()
    opened = [0]

    def slow() -> None:
        while not stop.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", stack.port), timeout=5)
            except OSError:
                stop.wait(0.2)
                continue
            opened[0] += 1
            try:
                sock.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\n")
                line = 0
                while not stop.is_set():
                    readable, _, _ = select.select([sock], [], [], 5.0)
                    if readable:
                        sock.recv(65536)
                        break
                    sock.sendall(f"X-Slow-{line}: aaaa\r\n".encode())
                    line += 1
            except OSError:
                pass
            finally:
                sock.close()

    threads = [threading.Thread(target=slow, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    results = []
    for _ in range(tries):
        began = time.monotonic()
        results.append(post(stack.port, key, events_for("slow-attack", 1, "attack"), timeout=5.0))
        time.sleep(max(0.0, 1.0 - (time.monotonic() - began)))
    stop.set()
    for t in threads:
        t.join(timeout=10)
    ok = [s for s, secs in results if s == 200]
    return {
        "clients": clients,
        "tries": tries,
        "ok": len(ok),
        "p50_ms": statistics.median(secs for _, secs in results) * 1000,
        "max_ms": max(secs for _, secs in results) * 1000,
        "slow_opened": opened[0],
    }


# --- 2. mixed load ----------------------------------------------------------------------------


def mixed_load(stack: Stack, key: str, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    latencies: list[float] = []
    errors = [0]
    stored = [0]
    run_ids: list[str] = []

    def record(status: int, secs: float, n_events: int = 0) -> None:
        with lock:
            latencies.append(secs)
            if status == 0 or status >= 500:
                errors[0] += 1
            elif status in (200, 207):
                stored[0] += n_events

    def poster(batch: int) -> None:
        i = 0
        while time.monotonic() < deadline:
            run_id = f"load-{uuid.uuid4().hex[:10]}"
            with lock:
                run_ids.append(run_id)
            status, secs = post(stack.port, key, events_for(run_id, batch, "load"))
            record(status, secs, batch)
            i += 1

    def reader() -> None:
        while time.monotonic() < deadline:
            status, secs, _ = get(stack.port, key, "/runs/latest?limit=50")
            record(status, secs)
            with lock:
                run_id = run_ids[-1] if run_ids else None
            if run_id:
                status, secs, _ = get(stack.port, key, f"/runs/{run_id}")
                record(status if status != 404 else 200, secs)

    threads = [threading.Thread(target=poster, args=(100,)) for _ in range(2)]
    threads += [threading.Thread(target=poster, args=(1,)), threading.Thread(target=reader)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    ordered = sorted(latencies)
    return {
        "seconds": elapsed,
        "requests": len(latencies),
        "events_per_s": stored[0] / elapsed,
        "p50_ms": ordered[len(ordered) // 2] * 1000 if ordered else 0.0,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000 if ordered else 0.0,
        "errors": errors[0],
    }


# --- 3 and 4. the real SDK through crashes and an outage ----------------------------------------

SDK_CHILD = r"""
import sys, time, json
import llmobserve
from llmobserve import observe, section, flush, stats
url, key, service, rate, seconds, flush_timeout = sys.argv[1:7]
rate, seconds, flush_timeout = float(rate), float(seconds), float(flush_timeout)
observe(collector_url=url, api_key=key, service=service)
recorded = 0
start = time.monotonic()
while time.monotonic() - start < seconds:
    with section("bench:reliability"):   # one section event per block
        pass
    recorded += 1
    delay = start + recorded / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
delivered = flush(timeout=flush_timeout)
print(json.dumps({"recorded": recorded, "flushed": delivered, "stats": stats()}))
"""


def sdk_traffic(stack: Stack, key: str, service: str, rate: float, seconds: float, flush_timeout: float) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMOBSERVE_") and k not in {"COLLECTOR_URL"}}
    env.update(PYTHONPATH=str(ROOT / "observe_sdk"), NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(name, None)
    return subprocess.Popen(
        [PY, "-c", SDK_CHILD, f"http://127.0.0.1:{stack.port}", key, service, str(rate), str(seconds)]
        + [str(flush_timeout)],
        cwd=stack.work,  # no .env there
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stored_and_doubled(stack: Stack, service: str) -> tuple[int, int]:
    stored = stack.count("SELECT COUNT(*) FROM events_event WHERE service = %s", (service,))
    counted = stack.count("SELECT SUM(events) FROM events_run WHERE service = %s", (service,))
    return stored, counted - stored


def kills_during_traffic(stack: Stack, key: str, kills: int, rate: float) -> dict[str, Any]:
    service = f"kill-{uuid.uuid4().hex[:6]}"
    seconds = 6.0 * kills + 6.0
    child = sdk_traffic(stack, key, service, rate, seconds, flush_timeout=120)
    for _ in range(kills):
        time.sleep(4.0)
        stack.kill_web()  # nginx stays: the SDK meets 502s, then a fresh gunicorn
        time.sleep(1.0)
        stack.start_web()
    out, err = child.communicate(timeout=seconds + 240)
    report = json.loads(out.strip().splitlines()[-1])
    stored, doubled = stored_and_doubled(stack, service)
    return {"recorded": report["recorded"], "stored": stored, "doubled": doubled, "stats": report["stats"]}


def outage(stack: Stack, key: str, seconds: float, rate: float) -> dict[str, Any]:
    service = f"outage-{uuid.uuid4().hex[:6]}"
    total = seconds + 20.0
    child = sdk_traffic(stack, key, service, rate, total, flush_timeout=180)
    time.sleep(10.0)
    stack.stop()  # the whole collector: nothing listens on the port
    time.sleep(seconds)
    stack.start()
    out, err = child.communicate(timeout=total + 300)
    report = json.loads(out.strip().splitlines()[-1])
    stored, doubled = stored_and_doubled(stack, service)
    return {
        "recorded": report["recorded"],
        "stored": stored,
        "doubled": doubled,
        "flushed": report["flushed"],
        "stats": report["stats"],
        "said": [line for line in err.splitlines() if "llmobserve" in line.lower()][:4],
    }


# --- main -------------------------------------------------------------------------------------


def pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:  # type: ignore[arg-type]
        conn.execute(sql)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--load-seconds", type=float, default=60.0)
    parser.add_argument("--outage-seconds", type=float, default=120.0)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--rate", type=float, default=100.0, help="SDK events per second")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llmo-reliability-"))
    if args.db == "postgres":
        pg_admin(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        pg_admin(f"CREATE DATABASE {PG_DB}")
    stack = Stack(work, args.db)
    try:
        stack.manage("migrate", "--noinput", "-v", "0")
        key = stack.manage("create_api_key", "--project", "reliability").strip().splitlines()[-1]
        stack.start()
        print(f"stack: nginx 127.0.0.1:{stack.port} -> gunicorn 127.0.0.1:{stack.web_port} ({args.db}); logs in {work}")
        attack = slow_client_attack(stack, key)
        print("slow clients:", attack, flush=True)
        load = mixed_load(stack, key, args.load_seconds)
        print("mixed load:", load, flush=True)
        killed = kills_during_traffic(stack, key, args.kills, args.rate)
        print("kill -9:", killed, flush=True)
        down = outage(stack, key, args.outage_seconds, args.rate)
        print("outage:", down, flush=True)
    finally:
        stack.stop()
        if args.db == "postgres":
            pg_admin(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
    print()
    print(f"### Reliability ({args.db}; nginx + gunicorn as compose runs them; 2 CPUs, shared machine)")
    print()
    print("| scenario | figure |")
    print("|---|---|")
    print(
        f"| slow-client attack: {attack['clients']} slow connections | ingest stored {attack['ok']}/{attack['tries']} "
        f"tries (p50 {attack['p50_ms']:.0f} ms, max {attack['max_ms']:.0f} ms) |"
    )
    print(
        f"| mixed load, {load['seconds']:.0f} s | {load['events_per_s']:,.0f} events/s stored, {load['requests']} "
        f"requests, p50 {load['p50_ms']:.0f} ms, p99 {load['p99_ms']:.0f} ms, {load['errors']} errors (5xx or none) |"
    )
    print(
        f"| kill -9 of gunicorn ×{args.kills} during SDK traffic ({args.rate:.0f}/s) | recorded "
        f"{killed['recorded']}, stored {killed['stored']}, doubled {killed['doubled']}, SDK dropped "
        f"{killed['stats'].get('dropped', 0)} |"
    )
    print(
        f"| collector down {args.outage_seconds:.0f} s during SDK traffic ({args.rate:.0f}/s) | recorded "
        f"{down['recorded']}, stored {down['stored']}, doubled {down['doubled']}, SDK dropped "
        f"{down['stats'].get('dropped', 0)} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
