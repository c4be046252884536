"""Overhead of llmobserve vs the bare OpenAI client and two peers.

Run in the benchmark venv (peers are never installed in the app's venv):

    python3.11 -m venv .venv-bench && .venv-bench/bin/pip install -r bench/requirements.txt
    .venv-bench/bin/python bench/sdk_overhead.py            # ~5 min
    .venv-bench/bin/python bench/sdk_overhead.py --quick    # ~1 min, noisier
    .venv-bench/bin/python bench/sdk_overhead.py --body whole   # stream bodies in one chunk

What it measures (the collector / trace endpoints are unreachable throughout,
the OpenAI upstream is a MockTransport so there is no network):

* per-call latency added over the bare client (median µs), chat.completions
  non-streaming and 20-chunk streaming, sync and async (stream chunks in
  the API's shape, "obfuscation" padding included; bodies arrive one SSE
  event per network chunk, as from a server flushing each token;
  ``--body whole``: all in one chunk). Each library runs in
  its own long-lived worker process (the instrumentations patch openai
  globally, so they cannot share a process); the parent interleaves blocks
  of calls across workers (bare, llmobserve, langfuse, openllmetry) in a
  shuffled order each repetition, and reports the median over repetitions of
  (library block median − bare block median), because this machine drifts;
* background CPU per call: process CPU minus the calling thread's CPU, over
  a block of calls followed by an idle wait long enough for every exporter's
  schedule (OTel's BatchSpanProcessor waits 5 s), divided by calls;
  for llmobserve also the exporter thread's own CPU per event it built and
  sent to a reachable loopback collector (the cost when delivery works);
* exit delay with events pending and the endpoint unreachable: subprocess
  wall time from the last statement to process end, minus the same for a
  bare interpreter with the same modules imported;
* memory: RSS of one process recording 1,000,000 events through
  llmobserve with the collector down (bounded queue), plus 20,000 real
  instrumented OpenAI calls (``--mem-calls 1000000`` for the full million,
  ~30 min; or alone: ``bench/sdk_overhead.py --memory 0 1000000``).
* ``--guard``: only the budget guard (issue 16): calling-thread CPU of the
  bare client, llmobserve with the guard off, and with it on (a capped run
  priced from cached rates, enforce_budgets with a budget exceeded for
  another model), rotated call by call in one process; medians.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)
LIBS = ["bare", "llmobserve", "langfuse", "openllmetry"]
SCENARIOS = ["sync", "sync_stream", "async", "async_stream"]
# in-process pairs; *_usage: the caller passes stream_options include_usage itself, so the
# upstream payload is identical with and without the SDK (isolates the SDK's own work from
# the cost of the extra usage data the SDK asks for)
PAIRED = SCENARIOS + ["sync_stream_usage", "async_stream_usage"]
STREAM_CHUNKS = 20  # chunks the caller sees


def unreachable_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


# ----------------------------------------------------------------------- upstream
def _http():
    import openai._base_client as bc

    if hasattr(bc, "httpx2"):
        import httpx2

        return httpx2
    import httpx

    return httpx


USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 150,
    "total_tokens": 1350,
    "prompt_tokens_details": {"cached_tokens": 1024},
    "completion_tokens_details": {"reasoning_tokens": 64},
}
COMPLETION = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1764147600,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there, how can I help?", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }
).encode()


def _sse(include_usage: bool) -> bytes:
    """A 20-chunk chat stream in the API's shape: compact JSON, every chunk
    ending with an "obfuscation" member (random padding of random length,
    on by default), after "usage":null when usage was asked for."""
    base = {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "created": 1764147600,
        "model": "gpt-4o-2024-08-06",
        "service_tier": "default",
        "system_fingerprint": "fp_f986a632b0",
    }
    choice = {"index": 0, "logprobs": None, "finish_reason": None}
    chunks = [dict(base, choices=[dict(choice, delta={"role": "assistant", "content": "", "refusal": None})])]
    for i in range(STREAM_CHUNKS - 2):
        chunks.append(dict(base, choices=[dict(choice, delta={"content": f"tok{i} "})]))
    chunks.append(dict(base, choices=[dict(choice, delta={}, finish_reason="stop")]))
    if include_usage:
        for c in chunks:
            c["usage"] = None
        chunks.append(dict(base, choices=[], usage=USAGE))
    for i, c in enumerate(chunks):
        c["obfuscation"] = "RmYFV8ad65HP9F"[: 1 + (i * 5) % 14]
    body = b"".join(b"data: " + json.dumps(c, separators=(",", ":")).encode() + b"\n\n" for c in chunks)
    return body + b"data: [DONE]\n\n"


SSE_PLAIN = _sse(False)
SSE_USAGE = _sse(True)
# How a stream's body reaches the client: "event" = one SSE event per network
# chunk, as a server flushing each token sends it (default); "whole" = the
# whole body in one chunk (events coalesced). Set by --body; read by workers.
BODY = os.environ.get("BENCH_BODY", "event")
_PARTS = {k: [e + b"\n\n" for e in v.split(b"\n\n") if e] for k, v in (("plain", SSE_PLAIN), ("usage", SSE_USAGE))}
_body_cls = None


def _stream_body(hx, inc: bool) -> dict:
    global _body_cls
    if BODY == "whole":
        return {"content": SSE_USAGE if inc else SSE_PLAIN}
    if _body_cls is None:

        class Body(hx.SyncByteStream, hx.AsyncByteStream):
            def __init__(self, parts):
                self.parts = parts

            def __iter__(self):
                return iter(self.parts)

            async def __aiter__(self):
                for p in self.parts:
                    yield p

        _body_cls = Body
    return {"stream": _body_cls(_PARTS["usage" if inc else "plain"])}


def handler(request):
    hx = _http()
    body = json.loads(request.content)
    if body.get("stream"):
        inc = bool((body.get("stream_options") or {}).get("include_usage"))
        return hx.Response(200, headers={"content-type": "text/event-stream"}, **_stream_body(hx, inc))
    return hx.Response(200, content=COMPLETION, headers={"content-type": "application/json"})


# ------------------------------------------------------------------------- setup
def setup(lib: str, dead_url: str):
    """Configure one library against an unreachable endpoint; returns a
    callable giving background stats, or None."""
    if lib == "llmobserve":
        import llmobserve

        llmobserve.observe(dead_url, api_key="bench", service="bench")
        return llmobserve.stats
    if lib == "langfuse":
        os.environ.update(
            LANGFUSE_PUBLIC_KEY="pk-lf-bench",
            LANGFUSE_SECRET_KEY="sk-lf-bench",
            LANGFUSE_BASE_URL=dead_url,
            LANGFUSE_HOST=dead_url,
        )
        import langfuse.openai  # noqa: F401  (patches openai on import)
        from langfuse import get_client

        get_client()
        return None
    if lib == "openllmetry":
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        tp = TracerProvider()
        tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=dead_url + "/v1/traces")))
        trace.set_tracer_provider(tp)
        OpenAIInstrumentor().instrument()
        return None
    return None


def clients():
    import openai

    hx = _http()
    sync = openai.OpenAI(
        api_key="sk-bench",
        base_url="https://api.openai.test/v1",
        max_retries=0,
        http_client=hx.Client(transport=hx.MockTransport(handler)),
    )
    asy = openai.AsyncOpenAI(
        api_key="sk-bench",
        base_url="https://api.openai.test/v1",
        max_retries=0,
        http_client=hx.AsyncClient(transport=hx.MockTransport(handler)),
    )
    return sync, asy


MSGS = [{"role": "user", "content": "Say hello"}]


class Runner:
    def __init__(self, lib: str, dead_url: str):
        self.lib = lib
        self.stats = setup(lib, dead_url)
        self.sync, self.asy = clients()
        self.loop = asyncio.new_event_loop()
        self.calls = 0

    def one_sync(self):
        self.sync.chat.completions.create(model="gpt-4o", messages=MSGS)

    def one_sync_stream(self):
        n = 0
        for _ in self.sync.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True):
            n += 1
        assert n == STREAM_CHUNKS, n

    def one_sync_stream_usage(self):
        # the caller asks for usage itself: same upstream payload with and without the SDK
        n = 0
        for _ in self.sync.chat.completions.create(
            model="gpt-4o", messages=MSGS, stream=True, stream_options={"include_usage": True}
        ):
            n += 1
        assert n == STREAM_CHUNKS + 1, n

    async def one_async_stream_usage(self):
        n = 0
        async for _ in await self.asy.chat.completions.create(
            model="gpt-4o", messages=MSGS, stream=True, stream_options={"include_usage": True}
        ):
            n += 1
        assert n == STREAM_CHUNKS + 1, n

    async def one_async(self):
        await self.asy.chat.completions.create(model="gpt-4o", messages=MSGS)

    async def one_async_stream(self):
        n = 0
        async for _ in await self.asy.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True):
            n += 1
        assert n == STREAM_CHUNKS, n

    def block(self, scenario: str, n: int):
        """Median wall time and median calling-thread CPU time per call (µs).
        Thread CPU time is what instrumentation adds on the caller's thread
        and is far less disturbed by other processes on a busy machine."""
        perf, cpu = time.perf_counter, time.thread_time
        walls, cpus = [], []
        if scenario.startswith("async"):
            fn = self.one_async_stream if scenario == "async_stream" else self.one_async

            async def run():
                for _ in range(n):
                    c, t = cpu(), perf()
                    await fn()
                    walls.append(perf() - t)
                    cpus.append(cpu() - c)

            self.loop.run_until_complete(run())
        else:
            fn = self.one_sync_stream if scenario == "sync_stream" else self.one_sync
            for _ in range(n):
                c, t = cpu(), perf()
                fn()
                walls.append(perf() - t)
                cpus.append(cpu() - c)
        self.calls += n
        return {"wall": statistics.median(walls) * 1e6, "cpu": statistics.median(cpus) * 1e6}

    def bg_cpu(self, n: int, wait: float):
        """Background CPU per call (µs): all threads but the calling one."""
        gc.collect()
        p0, t0 = time.process_time(), time.thread_time()
        for _ in range(n):
            self.one_sync()
        time.sleep(wait)
        p1, t1 = time.process_time(), time.thread_time()
        return ((p1 - p0) - (t1 - t0)) / n * 1e6


def paired(r: Runner, scenario: str, pairs: int) -> dict:
    """llmobserve only: alternate recording off/on call by call in one
    process (the patch stays installed; ``active`` False makes the wrapper a
    pass-through), so drift and other processes hit both sides equally.
    Returns calling-thread CPU medians (µs)."""
    from llmobserve import _state

    cpu = time.thread_time
    fn = {
        "sync": r.one_sync,
        "sync_stream": r.one_sync_stream,
        "sync_stream_usage": r.one_sync_stream_usage,
    }.get(scenario)
    afn = {
        "async": r.one_async,
        "async_stream": r.one_async_stream,
        "async_stream_usage": r.one_async_stream_usage,
    }.get(scenario)
    on: list[float] = []
    off: list[float] = []

    async def arun():
        for _ in range(pairs):
            for flag, acc in ((False, off), (True, on)):
                _state.active = flag
                c = cpu()
                await afn()
                acc.append(cpu() - c)

    gc.disable()
    try:
        if fn is not None:
            for _ in range(pairs):
                for flag, acc in ((False, off), (True, on)):
                    _state.active = flag
                    c = cpu()
                    fn()
                    acc.append(cpu() - c)
        else:
            r.loop.run_until_complete(arun())
    finally:
        _state.active = True
        gc.enable()
    q = lambda v, p: sorted(v)[int(len(v) * p)]  # noqa: E731
    return {
        "off": statistics.median(off) * 1e6,
        "on": statistics.median(on) * 1e6,
        "diff_median": (statistics.median(on) - statistics.median(off)) * 1e6,
        # each call against its neighbour: the figure least moved by drift
        "pair_median": statistics.median([a - b for a, b in zip(on, off, strict=True)]) * 1e6,
        "diff_p25": (q(on, 0.25) - q(off, 0.25)) * 1e6,
    }


def guard_paired(r: Runner, scenario: str, pairs: int) -> dict:
    """llmobserve only: the budget guard's cost on the calling thread. Three
    states, rotated call by call in one process: ``bare`` (recording off: the
    wrapper passes through), ``off`` (recording on, no guard: today's SDK),
    ``on`` (a capped run whose cap is never reached, its calls priced with
    cached rates, plus enforce_budgets with a hard budget exceeded for another
    model: the hot path does the run-cap compare, the exceeded-budget look-up
    and, when the call ends, the accounting). Calling-thread CPU medians (µs)."""
    import llmobserve
    from llmobserve import _guard, _state

    rates = _guard.rates_parse(
        {
            "matched": {
                "model": "gpt-4o",
                "discount_percent": 0,
                "rates": {
                    "input_tokens": {"usd_per_1m": 2.5},
                    "cached_input_tokens": {"usd_per_1m": 1.25},
                    "output_tokens": {"usd_per_1m": 10.0},
                },
            }
        }
    )
    for model in ("gpt-4o", "gpt-4o-2024-08-06"):
        _state.prices[("openai", model)] = rates
    state = _guard.BudgetState(30.0, False)
    other = {"id": 1, "name": "other", "mode": "hard", "state": "exceeded", "amount_usd": 1, "spent_usd": 2}
    other["scope"] = {"section": None, "model": "gpt-4o-mini", "service": None, "attribute": None}
    state.blocked, _ = _guard.status_compile({"budgets": [other]}, _state.service)
    state.fresh_until = float("inf")  # as if just polled (the collector is unreachable here)
    _state.budgets = state
    fn = {"sync": r.one_sync, "sync_stream": r.one_sync_stream}.get(scenario)
    afn = {"async": r.one_async, "async_stream": r.one_async_stream}.get(scenario)
    cpu = time.thread_time
    out: dict[str, list[float]] = {"bare": [], "off": [], "on": []}
    modes = [("bare", False, False), ("off", True, False), ("on", True, True)]

    async def arun():
        for i in range(pairs):
            for name, active, guarding in modes[i % 3 :] + modes[: i % 3]:
                _state.active, _state.guarding = active, guarding
                c = cpu()
                await afn()
                out[name].append(cpu() - c)

    gc.disable()
    try:
        with llmobserve.run(max_cost_usd=1e9) as capped:
            if fn is not None:
                for i in range(pairs):
                    for name, active, guarding in modes[i % 3 :] + modes[: i % 3]:
                        _state.active, _state.guarding = active, guarding
                        c = cpu()
                        fn()
                        out[name].append(cpu() - c)
            else:
                r.loop.run_until_complete(arun())
            spent = capped.spent_usd or 0.0
    finally:
        _state.active, _state.guarding, _state.budgets = True, False, None
        gc.enable()
    med = {k: statistics.median(v) * 1e6 for k, v in out.items()}
    return {
        **med,
        "guard_added": statistics.median([a - b for a, b in zip(out["on"], out["off"], strict=True)]) * 1e6,
        "sdk_added": statistics.median([a - b for a, b in zip(out["off"], out["bare"], strict=True)]) * 1e6,
        "counted_calls": round(spent / 0.00322),
    }


def guard_main(quick: bool) -> None:
    import openai

    pairs = 300 if quick else 1500
    w = Worker("llmobserve")
    try:
        rows = {sc: w.ask(op="guard", scenario=sc, n=pairs) for sc in SCENARIOS}
    finally:
        w.close()
    print()
    print(
        f"openai {openai.__version__}, MockTransport upstream, collector unreachable; llmobserve's budget guard, "
        f"{pairs} rotations of (bare, guard off, guard on) call by call in one process; calling-thread CPU, medians."
    )
    print()
    print(
        "| scenario | bare | llmobserve, guard off | llmobserve, guard on | SDK added (off - bare) "
        "| guard added (on - off) | calls the capped run counted |"
    )
    print("|---|---|---|---|---|---|---|")
    for sc, p in rows.items():
        print(
            f"| {sc} | {p['bare']:.1f} µs | {p['off']:.1f} µs | {p['on']:.1f} µs "
            f"| {p['sdk_added']:+.1f} µs | {p['guard_added']:+.1f} µs | {p['counted_calls']} |"
        )


def worker(lib: str, dead_url: str) -> None:
    r = Runner(lib, dead_url)
    for sc in SCENARIOS:  # warm up imports, caches, first-call paths
        r.block(sc, 30)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "block":
            out = r.block(cmd["scenario"], cmd["n"])
        elif cmd["op"] == "paired":
            out = paired(r, cmd["scenario"], cmd["n"])
        elif cmd["op"] == "guard":
            out = guard_paired(r, cmd["scenario"], cmd["n"])
        elif cmd["op"] == "bgcpu":
            out = {"us": r.bg_cpu(cmd["n"], cmd["wait"])}
        else:
            break
        print(json.dumps(out), flush=True)


# -------------------------------------------------------------- exit-delay child
def exit_child(lib: str, dead_url: str, n: int) -> None:
    if lib == "bare":
        # the same heavy imports as the instrumented runs
        # (not langfuse.openai: importing it patches openai)
        for m in (
            "llmobserve",
            "langfuse",
            "opentelemetry.sdk.trace",
            "opentelemetry.instrumentation.openai",
            "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        ):
            try:
                __import__(m)
            except Exception:
                pass
    r = Runner(lib, dead_url) if lib != "bare" else None
    if r is None:
        sync, _ = clients()
        for _ in range(n):
            sync.chat.completions.create(model="gpt-4o", messages=MSGS)
    else:
        for _ in range(n):
            r.one_sync()
    print(json.dumps({"t": time.time()}), flush=True)


def exit_delay(lib: str, n: int = 50) -> float:
    dead = unreachable_url()
    env = dict(
        os.environ,
        LANGFUSE_PUBLIC_KEY="pk-lf-bench",
        LANGFUSE_SECRET_KEY="sk-lf-bench",
        LANGFUSE_BASE_URL=dead,
        LANGFUSE_HOST=dead,
    )
    proc = subprocess.run(
        [sys.executable, HERE, "--exit-child", lib, dead, str(n)], capture_output=True, text=True, timeout=120, env=env
    )
    end = time.time()
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(proc.stderr[-2000:])
    return end - json.loads(proc.stdout.strip().splitlines()[-1])["t"]


# ------------------------------------------------------------------------ memory
def memory_child(n_events: int, n_calls: int) -> None:
    import llmobserve
    import psutil
    from llmobserve import section

    proc = psutil.Process()
    llmobserve.observe(unreachable_url(), api_key="bench")
    sync, _ = clients()
    for _ in range(200):
        sync.chat.completions.create(model="gpt-4o", messages=MSGS)
    with section("warmup"):
        pass
    gc.collect()
    out = {"rss_start_mb": proc.memory_info().rss / 2**20, "checkpoints": []}
    t = time.perf_counter()
    step = max(1, n_events // 5)
    for i in range(1, n_events + 1):
        with section("mem"):
            pass
        if i % step == 0:
            out["checkpoints"].append((i, round(proc.memory_info().rss / 2**20, 1)))
    out["events_s"] = time.perf_counter() - t
    step = max(1, n_calls // 5)
    out["call_checkpoints"] = []
    t = time.perf_counter()
    for i in range(1, n_calls + 1):
        sync.chat.completions.create(model="gpt-4o", messages=MSGS)
        if i % step == 0:
            out["call_checkpoints"].append((i, round(proc.memory_info().rss / 2**20, 1)))
    out["calls_s"] = time.perf_counter() - t
    gc.collect()
    st = llmobserve.stats()
    out.update(
        rss_end_mb=proc.memory_info().rss / 2**20,
        queued=st["queued"],
        dropped=st["dropped"],
        dropped_failed=st["dropped_failed"],
        events=n_events + n_calls,
    )
    print(json.dumps(out), flush=True)


# ---------------------------------------------------------- reachable sink (CPU)
def sink_cpu_child(n: int) -> None:
    """llmobserve exporter CPU per event when delivery works (loopback sink in
    another process, so the sink's CPU is not counted)."""
    import llmobserve

    sink = subprocess.Popen([sys.executable, HERE, "--sink"], stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None
    url = sink.stdout.readline().strip()
    try:
        llmobserve.observe(url, api_key="bench", service="bench")
        sync, _ = clients()
        for _ in range(n):
            sync.chat.completions.create(model="gpt-4o", messages=MSGS)
        assert llmobserve.flush(30)
        st = llmobserve.stats()
        print(
            json.dumps({"us_per_event": st["cpu_seconds"] / max(1, st["built"]) * 1e6, "sent": st["sent"]}), flush=True
        )
    finally:
        sink.kill()


def sink_main() -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    print(f"http://127.0.0.1:{srv.server_address[1]}", flush=True)
    srv.serve_forever()


# -------------------------------------------------------------------------- main
class Worker:
    def __init__(self, lib: str):
        self.lib = lib
        self.p = subprocess.Popen(
            [sys.executable, HERE, "--worker", lib, unreachable_url()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.p.stdout is not None and self.p.stdin is not None
        self.stdin, self.stdout = self.p.stdin, self.p.stdout
        line = self.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {lib} failed to start")

    def ask(self, **cmd):
        self.stdin.write(json.dumps(cmd) + "\n")
        self.stdin.flush()
        line = self.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.lib} died")
        return json.loads(line)

    def close(self):
        try:
            self.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.stdin.flush()
            self.p.wait(timeout=15)
        except Exception:
            self.p.kill()


def fmt(v, plus=True):
    if v is None:
        return "n/a"
    return f"{v:+.0f}" if plus else f"{v:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--block", type=int, default=None)
    ap.add_argument("--libs", default=",".join(LIBS))
    ap.add_argument("--body", choices=("event", "whole"), default="event", help="stream body: see BODY")
    ap.add_argument("--mem-events", type=int, default=1_000_000)
    # real instrumented OpenAI calls after the events (1,000,000 takes ~25 min)
    ap.add_argument("--mem-calls", type=int, default=20_000)
    ap.add_argument("--guard", action="store_true", help="only the budget guard's table (guard off vs on)")
    args = ap.parse_args()
    if args.guard:
        os.environ["BENCH_BODY"] = args.body
        guard_main(args.quick)
        return
    os.environ["BENCH_BODY"] = args.body  # the worker processes read it
    reps = args.reps or (5 if args.quick else 15)
    block = args.block or (40 if args.quick else 100)
    pairs_n = 300 if args.quick else 1500
    libs = [x for x in args.libs.split(",") if x]
    if "bare" not in libs:
        libs.insert(0, "bare")
    random.seed(1)

    import openai

    print(
        f"python {sys.version.split()[0]}, openai {openai.__version__}; reps={reps}, block={block} calls; "
        f"stream bodies: {args.body}",
        file=sys.stderr,
    )
    workers = {lib: Worker(lib) for lib in libs}
    medians: dict[tuple[str, str], list[dict[str, float]]] = {(lib, sc): [] for lib in libs for sc in SCENARIOS}
    diffs: dict[tuple[str, str], list[dict[str, float]]] = {(lib, sc): [] for lib in libs for sc in SCENARIOS}
    try:
        for rep in range(reps):
            for sc in SCENARIOS:
                order = libs[:]
                random.shuffle(order)
                got = {lib: workers[lib].ask(op="block", scenario=sc, n=block) for lib in order}
                for lib in libs:
                    medians[(lib, sc)].append(got[lib])
                    diffs[(lib, sc)].append({k: got[lib][k] - got["bare"][k] for k in ("wall", "cpu")})
            print(f"  rep {rep + 1}/{reps} done", file=sys.stderr)
        pair = {}
        if "llmobserve" in workers:
            for sc in PAIRED:
                pair[sc] = workers["llmobserve"].ask(op="paired", scenario=sc, n=pairs_n)
        bg = {}
        for lib in libs:  # one at a time so background threads do not overlap
            bg[lib] = workers[lib].ask(op="bgcpu", n=400 if args.quick else 1000, wait=6.5)["us"]
    finally:
        for w in workers.values():
            w.close()

    exits: dict[str, list[float]] = {lib: [] for lib in libs}
    for _ in range(2 if args.quick else 3):
        for lib in random.sample(libs, len(libs)):
            try:
                exits[lib].append(exit_delay(lib))
            except Exception as e:  # pragma: no cover
                print(f"exit delay {lib}: {e}", file=sys.stderr)
    exit_med = {lib: statistics.median(v) if v else None for lib, v in exits.items()}

    sink = json.loads(
        subprocess.run(
            [sys.executable, HERE, "--sink-cpu", "2000" if args.quick else "5000"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    mem = json.loads(
        subprocess.run(
            [sys.executable, HERE, "--memory", str(args.mem_events), str(2000 if args.quick else args.mem_calls)],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        .stdout.strip()
        .splitlines()[-1]
    )

    # ------------------------------------------------------------------ table
    print()
    print(
        f"openai {openai.__version__}, MockTransport upstream, collector/trace endpoint unreachable; "
        f"{reps} interleaved repetitions x {block} calls per block; medians."
    )
    print()
    print(
        "Added per call over the bare client: calling-thread CPU time (wall time in brackets); "
        "medians over repetitions of (library block median - bare block median)."
    )
    print()
    print(
        "| library | sync call | sync stream (20 chunks) | async call | async stream (20 chunks) "
        "| background CPU / call | exit delay, events pending |"
    )
    print("|---|---|---|---|---|---|---|")
    bare_exit = exit_med.get("bare")
    for lib in libs:
        cells = []
        for sc in SCENARIOS:
            if lib == "bare":
                cpu_m = statistics.median(m["cpu"] for m in medians[(lib, sc)])
                wall_m = statistics.median(m["wall"] for m in medians[(lib, sc)])
                cells.append(f"{cpu_m:.0f} µs ({wall_m:.0f}) baseline")
            else:
                cpu_d = statistics.median(d["cpu"] for d in diffs[(lib, sc)])
                wall_d = statistics.median(d["wall"] for d in diffs[(lib, sc)])
                cells.append(f"{cpu_d:+.0f} µs ({wall_d:+.0f})")
        bgc = f"{bg[lib]:.0f} µs" if lib != "bare" else f"{bg[lib]:.0f} µs (noise floor)"
        lib_exit = exit_med[lib]
        if lib_exit is None or bare_exit is None:
            ex = "n/a"
        elif lib == "bare":
            ex = f"{lib_exit:.2f} s (interpreter teardown, baseline)"
        else:
            ex = f"+{max(0.0, lib_exit - bare_exit):.2f} s"
        print(f"| {lib} | " + " | ".join(cells) + f" | {bgc} | {ex} |")
    if pair:
        print()
        print(f"llmobserve, same process, recording toggled off/on call by call ({pairs_n} pairs, calling-thread CPU):")
        print()
        print(
            "| scenario | bare median | instrumented median | added (median of pair differences) "
            "| added (diff of medians) | added (diff of 25th pct) |"
        )
        print("|---|---|---|---|---|---|")
        for sc in PAIRED:
            p = pair[sc]
            print(
                f"| {sc} | {p['off']:.0f} µs | {p['on']:.0f} µs "
                f"| {p['pair_median']:+.0f} µs | {p['diff_median']:+.0f} µs | {p['diff_p25']:+.0f} µs |"
            )
    print()
    print(
        f"llmobserve exporter CPU per event when the collector accepts (gzip JSON, loopback sink): "
        f"{sink['us_per_event']:.1f} µs/event ({sink['sent']} events sent)"
    )
    print(
        f"llmobserve memory, collector down: RSS {mem['rss_start_mb']:.1f} MB before -> "
        f"{mem['rss_end_mb']:.1f} MB after {mem['events']:,} recorded events "
        f"({args.mem_events:,} section events + {mem['events'] - args.mem_events:,} OpenAI calls); "
        f"checkpoints (events, MB): {mem['checkpoints']}; (calls, MB): {mem['call_checkpoints']}; "
        f"queue {mem['queued']}, dropped {mem['dropped']:,}, "
        f"given up after retries {mem['dropped_failed']:,}"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "--exit-child":
        exit_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--memory":
        memory_child(int(sys.argv[2]), int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--sink-cpu":
        sink_cpu_child(int(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--sink":
        sink_main()
    else:
        main()
