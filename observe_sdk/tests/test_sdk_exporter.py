"""Exporter faults: unreachable / slow / 5xx / 4xx / 429 collectors, overflow,
fork, exit with events pending, LLMOBSERVE_DISABLED."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time

import llmobserve
import pytest
from llmo_testkit import FAST, LoopbackServer, unreachable_url, wait_for
from llmobserve import _state, section


def _record(n, label="work"):
    """Record n sections (each one section event) through the public API."""
    for _ in range(n):
        with section(label):
            pass


def _exporter_threads():
    return [t for t in threading.enumerate() if t.name == "llmobserve-exporter" and t.is_alive()]


# ------------------------------------------------------------------ unreachable
def test_collector_unreachable_nothing_raises_and_flush_times_out(oa_client):
    assert llmobserve.observe(unreachable_url(), api_key="k", **FAST)
    t0 = time.perf_counter()
    for _ in range(20):
        r = oa_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
        assert r.usage.prompt_tokens == 1200
    _record(5)
    host_time = time.perf_counter() - t0
    t1 = time.perf_counter()
    assert llmobserve.flush(timeout=0.3) is False
    took = time.perf_counter() - t1
    # Bounds are loose on purpose (a shared, loaded machine): what they catch is
    # a wait on the unreachable collector, which would take seconds.
    assert took < 1.5
    assert host_time < 5.0
    # eventually the batch is given up after bounded retries and counted
    assert wait_for(lambda: llmobserve.stats()["dropped_failed"] >= 25, 5)


def test_collector_never_answers_flush_bounded(collector, oa_client):
    collector.script = [{"sleep": 3.0}]
    assert llmobserve.observe(collector.url, api_key="k", flush_interval=0.05, request_timeout=10)
    _record(3)
    t0 = time.perf_counter()
    assert llmobserve.flush(timeout=0.4) is False
    assert time.perf_counter() - t0 < 2.0  # the collector sleeps 3 s: flush did not wait for it


# ------------------------------------------------------------------------ slow
def test_slow_collector_does_not_block_the_host(collector, oa_client):
    collector.script = [{"sleep": 2.0}] * 3
    assert llmobserve.observe(collector.url, api_key="k", **FAST)
    durations = []
    for i in range(60):
        t = time.perf_counter()
        oa_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
        durations.append(time.perf_counter() - t)
        if i % 20 == 0:
            time.sleep(0.06)  # let the worker start a (slow) POST
    durations.sort()
    assert collector.got_request.wait(3)
    # Loose bounds (shared machine); speed itself is bench/sdk_overhead.py's job.
    assert durations[len(durations) // 2] < 0.25  # the bare mocked call takes ~1-2 ms
    assert durations[-1] < 1.5  # never waits on the 2 s collector
    assert llmobserve.flush(10)
    assert len(collector.calls()) == 60


# ------------------------------------------------------------- 500 then 200
def test_500_then_200_retried_and_delivered_once(collector):
    collector.script = [500, 503]
    assert llmobserve.observe(collector.url, api_key="k", **FAST)
    _record(10)
    assert llmobserve.flush(5) is True
    reqs = collector.requests
    assert [r["status"] for r in reqs] == [500, 503, 200]
    ids = [sorted(e["event_id"] for e in r["events"]) for r in reqs]
    assert ids[0] == ids[1] == ids[2]  # the same batch, same event_ids (idempotent resend)
    assert len(collector.events) == 10 and collector.duplicates == 0


def test_connection_error_then_recovery(collector):
    # collector comes up on the port after the first attempts fail
    url = unreachable_url()
    assert llmobserve.observe(url, api_key="k", flush_interval=0.05, backoff_base=0.2, backoff_max=0.5, max_retries=6)
    _record(3)
    time.sleep(0.1)
    from http.server import ThreadingHTTPServer

    port = int(url.rsplit(":", 1)[1])
    late = ThreadingHTTPServer(("127.0.0.1", port), collector.server.RequestHandlerClass)
    threading.Thread(target=late.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        assert llmobserve.flush(5) is True
        assert len(collector.events) == 3
    finally:
        late.shutdown()
        late.server_close()


# ------------------------------------------------------------------------ 400
def test_400_dropped_with_one_warning(collector, caplog):
    collector.script = [400]
    assert llmobserve.observe(collector.url, api_key="k", **FAST)
    with caplog.at_level(logging.DEBUG, logger="llmobserve"):
        _record(4)
        assert llmobserve.flush(3) is False
    warnings_ = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings_) == 1 and "400" in warnings_[0].getMessage()
    assert len(collector.requests) == 1  # not retried
    assert llmobserve.stats()["dropped_failed"] == 4
    # later events flow again
    _record(2)
    assert llmobserve.flush(3) is True
    assert len(collector.events) == 2


# ------------------------------------------------------------------------ 429
def test_429_honours_retry_after(collector):
    collector.script = [{"status": 429, "headers": {"Retry-After": "0.6"}}]
    assert llmobserve.observe(collector.url, api_key="k", **FAST)
    _record(2)
    assert llmobserve.flush(5) is True
    r1, r2 = collector.requests
    assert r1["status"] == 429 and r2["status"] == 200
    assert r2["t"] - r1["t"] >= 0.55  # backoff alone would be ~0.02 s
    assert len(collector.events) == 2


# -------------------------------------------------------------------- overflow
def test_queue_overflow_drops_and_counts(collector):
    collector.script = [{"sleep": 1.5}]
    assert llmobserve.observe(collector.url, api_key="k", max_queue=100, batch_size=50, flush_interval=0.05)
    _record(10)
    assert collector.got_request.wait(0) or wait_for(lambda: _state.exporter.queued() == 0, 2)
    time.sleep(0.1)  # the worker is now stuck in the slow POST
    t0 = time.perf_counter()
    _record(5000)
    per_call = (time.perf_counter() - t0) / 5000
    st = llmobserve.stats()
    assert st["queued"] <= 100
    assert st["dropped"] >= 5000 - 100 - 50
    assert per_call < 0.005  # room made at the door, never a wait on the stuck POST
    assert llmobserve.flush(5) is False  # the oldest of them were dropped: not all delivered
    assert llmobserve.flush(5) is True
    # the first batch (in flight) and the newest 100; every other one counted
    assert len(collector.events) == 10 + 100
    assert len(collector.events) + llmobserve.stats()["dropped"] == 5010


# ------------------------------------------------------------------------ fork
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_sends_with_its_own_thread(collector):
    assert llmobserve.observe(collector.url, api_key="k", flush_interval=30, backoff_base=0.02)
    _record(1, "parent:before")  # pending in the parent at fork time
    parent_thread = _state.exporter.thread
    assert parent_thread is not None and parent_thread.is_alive()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(r)
            exp = _state.exporter
            fresh = exp.thread is None and exp.queued() == 0
            _record(2, "child:work")
            ok = llmobserve.flush(5)
            new_thread = exp.thread is not None and exp.thread is not parent_thread and exp.thread.is_alive()
            os.write(w, f"{int(fresh)}{int(ok)}{int(new_thread)}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    out = os.read(r, 10).decode()
    os.close(r)
    assert os.WEXITSTATUS(status) == 0
    assert out == "111", out
    assert llmobserve.flush(5)
    names = sorted(e["name"] for e in collector.events)
    # the parent's pending event is sent once (by the parent), the child's by the child
    assert names == ["child:work", "child:work", "parent:before"]


# ------------------------------------------------------------------------ exit
SCRIPT = r"""
import sys, time, json
url, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode == "bare":
    # the same imports observe() triggers, without the SDK: the interpreter's
    # own teardown time (openai/pydantic modules) on this machine
    import openai, pinecone, pinecone.index, pinecone.async_client.async_index
else:
    import llmobserve
    from llmobserve import section
    llmobserve.observe(url, api_key="k", service="exit-test", request_timeout=10)
    for i in range(n):
        with section("agent:exit"):
            pass
print(json.dumps({"t": time.time()}), flush=True)
"""


def _run_script(tmp_path, url, n, mode="sdk"):
    import json

    p = tmp_path / "script.py"
    p.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(p), url, str(n), mode], capture_output=True, text=True, timeout=30)
    end = time.time()
    assert proc.returncode == 0, proc.stderr
    done = json.loads(proc.stdout.strip().splitlines()[-1])["t"]
    return end - done, proc


def _exit_delay(tmp_path, url, n):
    """Exit delay the SDK adds: (print -> process end) minus the same for a
    bare interpreter with the same modules loaded (best of 2 each)."""
    sdk = min(_run_script(tmp_path, url, n)[0] for _ in range(2))
    bare = min(_run_script(tmp_path, url, n, "bare")[0] for _ in range(2))
    return sdk - bare


def test_exit_with_unreachable_collector_is_fast(tmp_path):
    delay = _exit_delay(tmp_path, unreachable_url(), 200)
    # Refused connections: one quick attempt, no backoff at exit.  The bound is
    # loose on purpose (a shared, loaded machine); a retry loop with backoff, as
    # the peers do, takes several seconds.  bench/sdk_overhead.py measures it.
    assert delay < 2.0, delay


def test_exit_with_hanging_collector_is_bounded(tmp_path, collector):
    collector.script = [{"sleep": 5}] * 10
    delay = _exit_delay(tmp_path, collector.url, 200)
    assert delay < 3.0, delay  # exit_timeout (0.5 s by default) caps it: the collector sleeps 5 s a request


def test_exit_flushes_pending_events_to_reachable_collector(tmp_path, collector):
    delay, proc = _run_script(tmp_path, collector.url, 25)
    assert proc.stderr == ""
    assert len(collector.events) == 25  # delivered by the atexit flush (flush_interval is 1 s)
    assert {e["service"] for e in collector.events} == {"exit-test"}
    bare = min(_run_script(tmp_path, collector.url, 25, "bare")[0] for _ in range(2))
    assert delay - bare < 3.0  # no multi-second wait at exit (loose bound: shared machine)


def test_disabled_env_no_patching_no_thread_nothing_sent(tmp_path, collector):
    script = tmp_path / "disabled.py"
    script.write_text(
        textwrap.dedent(r"""
        import sys, threading
        import llmobserve
        from llmobserve import section
        from openai.resources.chat.completions import Completions
        orig = Completions.__dict__["create"]
        assert llmobserve.observe(sys.argv[1], api_key="k") is False
        with section("agent:x"):
            pass
        assert Completions.__dict__["create"] is orig
        assert llmobserve.flush(1) is True
        assert not [t for t in threading.enumerate() if t.name == "llmobserve-exporter"]
        print("OK")
    """)
    )
    proc = subprocess.run(
        [sys.executable, str(script), collector.url],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, LLMOBSERVE_DISABLED="1"),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK"
    time.sleep(0.2)
    assert collector.requests == []


def test_disabled_in_process(monkeypatch, collector, oa_client):
    from openai.resources.chat.completions import Completions

    before = _exporter_threads()
    orig = Completions.__dict__["create"]
    monkeypatch.setenv("LLMOBSERVE_DISABLED", "1")
    assert llmobserve.observe(collector.url) is False
    oa_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
    assert Completions.__dict__["create"] is orig
    assert _state.exporter is None
    assert _exporter_threads() == before


def test_wire_format_headers_and_gzip(obs):
    _record(1)
    assert llmobserve.flush(3)
    (req,) = obs.requests
    assert req["path"] == "/events"
    assert req["headers"]["Content-Encoding"] == "gzip"
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["headers"]["Authorization"] == "Bearer test-key"
    (e,) = req["events"]
    expected = {
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
        "latency_ms",
        "started_at",
        "status",
        "error_type",
        "service",
        "attributes",
    }
    assert set(e) == expected


def test_batches_at_most_batch_size(collector):
    assert llmobserve.observe(collector.url, api_key="k", batch_size=1000, flush_interval=0.5)
    _record(2500)
    assert llmobserve.flush(5)
    sizes = [len(r["events"]) for r in collector.requests]
    assert sum(sizes) == 2500 and max(sizes) <= 1000
    assert len({e["event_id"] for e in collector.events}) == 2500


# ---------------------------------------------------------------- before_send
def test_before_send_changes_drops_and_survives_a_failing_hook(collector, caplog):
    seen: list[str] = []

    def hook(event):
        seen.append(threading.current_thread().name)
        name = event["name"]
        if name == "drop-me":
            return None
        if name == "boom":
            raise RuntimeError("scrubber bug")
        if name == "wrong":
            return "not an event"
        event["attributes"]["scrubbed"] = True
        return event

    assert llmobserve.observe(collector.url, api_key="k", flush_interval=0.05, before_send=hook)
    with caplog.at_level(logging.WARNING, logger="llmobserve"):
        for label in ("keep", "drop-me", "boom", "wrong"):
            with section(label):
                pass
        assert llmobserve.flush(3)
    # only the kept event arrives, changed; nothing raised in the host
    assert [(e["name"], e["attributes"]) for e in collector.events] == [("keep", {"scrubbed": True})]
    assert set(seen) == {"llmobserve-exporter"}  # ran on the exporter thread
    assert llmobserve.stats()["dropped_hook"] == 3
    messages = [r.getMessage() for r in caplog.records]
    assert any("before_send raised" in m for m in messages)
    assert any("not a dict or None" in m for m in messages)


# ---------------------------------------------------------------- proxies
class _ForwardProxy(LoopbackServer):
    """A loopback HTTP forward proxy: relays absolute-URL POSTs to their
    target and records each request line; refuses CONNECT (a tunnel) after
    recording it."""

    def __init__(self) -> None:
        import http.client
        from http.server import BaseHTTPRequestHandler
        from urllib.parse import urlsplit

        self.seen: list[tuple[str, str | None]] = []  # (request line, Proxy-Authorization)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):  # noqa: N802
                outer.seen.append((self.requestline, self.headers.get("Proxy-Authorization")))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                u = urlsplit(self.path)
                up = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
                fwd = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-authorization", "host")}
                up.request("POST", u.path, body=body, headers=fwd)
                r = up.getresponse()
                data = r.read()
                self.send_response(r.status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                up.close()

            def do_CONNECT(self):  # noqa: N802
                outer.seen.append((self.requestline, self.headers.get("Proxy-Authorization")))
                self.send_response(502)
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()

        self._serve(Handler)


@pytest.fixture
def fwd_proxy():
    p = _ForwardProxy()
    yield p
    p.close()


def test_http_proxy_from_environment_carries_the_batch(collector, fwd_proxy, monkeypatch):
    # user:p@ss in the proxy URL becomes Basic credentials for the proxy only
    monkeypatch.setenv("HTTP_PROXY", fwd_proxy.url.replace("http://", "http://user:p%40ss@"))
    assert llmobserve.observe(collector.url, api_key="k", **FAST)
    _record(3)
    assert llmobserve.flush(3)
    assert len(collector.events) == 3
    ((line, auth),) = fwd_proxy.seen
    assert line == f"POST {collector.url}/events HTTP/1.1"
    assert auth == "Basic dXNlcjpwQHNz"  # base64("user:p@ss")
    # the collector sees the API key, never the proxy's credentials
    assert "Proxy-Authorization" not in collector.requests[0]["headers"]
    assert collector.requests[0]["headers"]["Authorization"] == "Bearer k"


def test_no_proxy_host_goes_direct(collector, fwd_proxy, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", fwd_proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert llmobserve.observe(collector.url, api_key="k", **FAST)
    _record(2)
    assert llmobserve.flush(3)
    assert len(collector.events) == 2
    assert fwd_proxy.seen == []


def test_https_collector_is_tunnelled_through_https_proxy(fwd_proxy, monkeypatch):
    # No TLS collector here: the proxy refuses the tunnel, and what matters is
    # that the exporter asked it for one to the collector's host and port,
    # with the proxy's credentials, and that the refusal raises nothing.
    monkeypatch.setenv("HTTPS_PROXY", fwd_proxy.url.replace("http://", "http://u:pw@"))
    assert llmobserve.observe("https://collector.example:8443", api_key="k", **dict(FAST, max_retries=0))
    _record(1)
    assert llmobserve.flush(3) is False
    ((line, auth),) = fwd_proxy.seen
    assert line.startswith("CONNECT collector.example:8443 HTTP/")  # http.client says HTTP/1.0 here
    assert auth == "Basic dTpwdw=="  # base64("u:pw")
    assert llmobserve.stats()["dropped_failed"] == 1
