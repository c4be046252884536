"""The background exporter: one daemon thread, a bounded queue, batching,
gzip'd JSON over a kept-alive ``http.client`` connection (stdlib), retries with backoff, fork safety.
Like ``urllib``, it goes through ``HTTP_PROXY`` / ``HTTPS_PROXY`` unless
``NO_PROXY`` names the collector's host.

The host only ever calls :meth:`Exporter.put`: one ``append`` on a bounded
``collections.deque`` (atomic under the GIL, no lock or condition variable,
so nothing a fork can leave locked); when ``max_queue`` records are waiting
the record is dropped and counted instead (the queue never grows). The
worker wakes every ``flush_interval`` seconds (or as soon as a batch is full,
or on ``flush()``), turns records into events, and posts them.
"""

from __future__ import annotations

import base64
import collections
import gzip
import http.client
import json
import logging
import os
import random
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from . import _state
from ._events import build_event

logger = logging.getLogger("llmobserve")

try:  # optional accelerator (pinecone already depends on it); stdlib json otherwise
    import orjson as _orjson

    def _dumps(obj: Any) -> bytes:
        try:
            return _orjson.dumps(obj, default=str)
        except Exception:  # e.g. ints beyond 64 bits: fall back
            return json.dumps(obj, separators=(",", ":"), default=str).encode("utf-8")

except ImportError:  # pragma: no cover - depends on the environment

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), default=str).encode("utf-8")


__all__ = ["Exporter"]

_RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


class _Marker:
    """Put on the queue by flush(); set once every record before it is done."""

    __slots__ = ("event", "ok")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.ok = True


class Exporter:
    def __init__(
        self,
        collector_url: str,
        api_key: str | None = None,
        *,
        max_queue: int = 10_000,
        batch_size: int = 1000,
        flush_interval: float = 1.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        request_timeout: float = 5.0,
        before_send: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
    ) -> None:
        self.before_send = before_send
        self.url = collector_url.rstrip("/") + "/events"
        self.api_key = api_key
        self.max_queue = max(1, int(max_queue))
        self.batch_size = max(1, min(1000, int(batch_size)))
        self.flush_interval = max(0.001, float(flush_interval))
        self.max_retries = max(0, int(max_retries))
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.request_timeout = float(request_timeout)
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip", "User-Agent": "llmobserve-python"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._headers = headers
        parts = urllib.parse.urlsplit(self.url)
        self._scheme = parts.scheme or "http"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port
        self._path = (parts.path or "/events") + (f"?{parts.query}" if parts.query else "")
        self._proxy = _proxy_for(self._scheme, self._host)
        if self._proxy is not None:
            if self._scheme != "https":
                # a forward proxy takes the absolute URL on the request line
                self._path = f"http://{parts.netloc.rpartition('@')[2]}{self._path}"
                if self._proxy[2]:
                    headers["Proxy-Authorization"] = self._proxy[2]
            logger.debug("llmobserve: posting to %s through proxy %s:%s", self.url, *self._proxy[:2])
        self._conn: http.client.HTTPConnection | None = None
        self._init_runtime()

    # ---------------------------------------------------------------- lifecycle
    def _init_runtime(self) -> None:
        """(Re)create everything a forked child must not share with its parent."""
        self._queue: collections.deque[Any] = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closed = False
        # stats
        self.dropped = 0  # records dropped because the queue was full
        self.dropped_failed = 0  # events dropped after failed delivery
        self.sent = 0  # events accepted by the collector (2xx)
        self.batches_sent = 0
        self.built = 0  # events serialised
        self.dropped_hook = 0  # events before_send dropped (returned None or raised)
        self.cpu_seconds = 0.0  # worker thread CPU time (time.thread_time)
        self._cpu0 = 0.0
        self._failed_since_marker = False
        self._conn = None  # never reuse a socket inherited across fork
        # set at exit / shutdown: cut backoff sleeps short, no further retries
        self._no_retry = False
        self._interrupt = threading.Event()

    def after_fork_in_child(self) -> None:
        # The parent's queue (and its lock, possibly held by the parent's worker
        # at fork time) and thread do not exist here: start fresh. Records queued
        # in the parent stay the parent's to send (no duplicates).
        try:
            self._init_runtime()
        except Exception:  # pragma: no cover
            logger.debug("llmobserve: after-fork reinit failed", exc_info=True)

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._pid != os.getpid():  # forked without the at-fork hook (e.g. os.fork in C)
                self._init_runtime()
            if self._thread is not None or self._closed:
                return
            t = threading.Thread(target=self._run, name="llmobserve-exporter", daemon=True)
            self._thread = t
            t.start()

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def queued(self) -> int:
        return sum(1 for x in list(self._queue) if not isinstance(x, _Marker))

    # ----------------------------------------------------------------- hot path
    def put(self, item: Any) -> None:
        if self._thread is None:
            if self._closed:
                return
            self._ensure_thread()
        q = self._queue
        n = len(q)
        if n >= self.max_queue:
            self.dropped += 1
            return
        q.append(item)
        if n >= self.batch_size and not self._wake.is_set():
            self._wake.set()

    # ------------------------------------------------------------------- public
    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued before this call is delivered (True),
        or fail/time out (False). Never raises."""
        try:
            if self._closed and self._thread is None:
                return not self._queue
            if self._pid != os.getpid() or self._thread is None:
                if not self._queue:
                    return True
                self._ensure_thread()
            deadline = time.monotonic() + max(0.0, timeout)
            marker = _Marker()
            self._queue.append(marker)  # markers bypass the bound
            self._wake.set()
            if not marker.event.wait(max(0.0, deadline - time.monotonic())):
                return False
            return marker.ok
        except Exception:
            logger.debug("llmobserve: flush failed", exc_info=True)
            return False

    def stop_retrying(self) -> None:
        """From now on each batch gets one attempt (used at interpreter exit)."""
        self._no_retry = True
        self._interrupt.set()

    def shutdown(self, timeout: float = 2.0) -> bool:
        ok = self.flush(timeout)
        try:
            self.stop_retrying()
            self._closed = True
            self._stop.set()
            self._wake.set()
            t = self._thread
            if t is not None and t is not threading.current_thread():
                t.join(min(0.2, max(0.0, timeout)))
        except Exception:  # pragma: no cover
            logger.debug("llmobserve: shutdown failed", exc_info=True)
        return ok

    def stats(self) -> dict[str, Any]:
        return {
            "queued": self.queued(),
            "dropped": self.dropped,
            "dropped_failed": self.dropped_failed,
            "sent": self.sent,
            "batches_sent": self.batches_sent,
            "built": self.built,
            "dropped_hook": self.dropped_hook,
            "cpu_seconds": self.cpu_seconds,
        }

    # ------------------------------------------------------------------- worker
    def _run(self) -> None:
        cpu0 = self._cpu0 = time.thread_time()
        while True:
            try:
                self._wake.wait(self.flush_interval)
                self._wake.clear()
                self._drain()
            except Exception:  # pragma: no cover - never die
                logger.debug("llmobserve: exporter loop error", exc_info=True)
            finally:
                self.cpu_seconds = time.thread_time() - cpu0
            if self._stop.is_set() and not self._queue:
                return

    def _drain(self) -> None:
        q = self._queue
        pop = q.popleft
        while True:
            batch: list[dict[str, Any]] = []
            markers: list[_Marker] = []
            while len(batch) < self.batch_size:
                try:
                    item = pop()
                except IndexError:
                    break
                if isinstance(item, _Marker):
                    markers.append(item)
                    break  # send what precedes the marker, then release it
                event: dict[str, Any] | None
                try:
                    event = build_event(item)
                except Exception:
                    logger.debug("llmobserve: could not build event", exc_info=True)
                    continue
                if self.before_send is not None:
                    event = self._run_hook(event)
                    if event is None:
                        continue
                batch.append(event)
            self.built += len(batch)
            if batch and not self._send(batch):
                self._failed_since_marker = True
            self.cpu_seconds = time.thread_time() - self._cpu0
            for m in markers:
                m.ok = not self._failed_since_marker
                self._failed_since_marker = False
                m.event.set()
            if not batch and not markers:
                return

    def _run_hook(self, event: dict[str, Any]) -> dict[str, Any] | None:
        try:
            out = self.before_send(event)  # type: ignore[misc]
        except Exception:
            # the user's code: say so loudly, and never send what it was meant to change
            logger.warning("llmobserve: before_send raised; event dropped", exc_info=True)
            out = None
        if out is not None and not isinstance(out, dict):
            logger.warning("llmobserve: before_send returned %s, not a dict or None; event dropped", type(out).__name__)
            out = None
        if out is None:
            self.dropped_hook += 1
        return out

    def _send(self, events: list[dict[str, Any]]) -> bool:
        try:
            body = gzip.compress(_dumps({"events": events}), compresslevel=1)
        except Exception:
            logger.debug("llmobserve: could not serialise batch", exc_info=True)
            self.dropped_failed += len(events)
            return False
        attempt = 0
        while True:
            status, retry_after = self._post(body)
            if 200 <= status < 300:
                self.sent += len(events)
                self.batches_sent += 1
                return True
            if status == 413 and len(events) > 1:
                half = len(events) // 2
                a = self._send(events[:half])
                b = self._send(events[half:])
                return a and b
            retryable = status == 0 or status in _RETRYABLE or status >= 500
            if retryable and attempt < self.max_retries and not self._no_retry:
                delay = min(self.backoff_max, self.backoff_base * (2**attempt))
                delay = delay * (0.5 + random.random() / 2)  # jitter
                if retry_after is not None:
                    delay = min(max(retry_after, 0.0), max(self.backoff_max, 1.0))
                attempt += 1
                logger.debug(
                    "llmobserve: POST %s -> %s, retry %d in %.2fs", self.url, status or "conn error", attempt, delay
                )
                # interrupted (exit/shutdown): one last immediate attempt, then give up
                self._interrupt.wait(delay)
                continue
            self.dropped_failed += len(events)
            if retryable:
                logger.debug(
                    "llmobserve: dropping %d events after %d attempts (last status %s)",
                    len(events),
                    attempt + 1,
                    status or "conn error",
                )
            else:
                logger.warning(
                    "llmobserve: collector rejected a batch of %d events with HTTP %s; dropped", len(events), status
                )
            return False

    def _new_conn(self) -> http.client.HTTPConnection:
        proxy = self._proxy
        if self._scheme == "https":
            if proxy is None:
                return http.client.HTTPSConnection(
                    self._host, self._port, timeout=self.request_timeout, context=ssl.create_default_context()
                )
            # TLS to the collector inside a CONNECT tunnel through the proxy
            conn = http.client.HTTPSConnection(
                proxy[0], proxy[1], timeout=self.request_timeout, context=ssl.create_default_context()
            )
            conn.set_tunnel(self._host, self._port, headers={"Proxy-Authorization": proxy[2]} if proxy[2] else None)
            return conn
        if proxy is not None:
            return http.client.HTTPConnection(proxy[0], proxy[1], timeout=self.request_timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.request_timeout)

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _post(self, body: bytes) -> tuple[int, float | None]:
        """One POST over a kept-alive connection (stdlib http.client); a
        stale kept-alive connection is retried once on a fresh one.
        Returns (status, retry_after); status 0 means a connection error."""
        for _ in range(2):
            conn = self._conn
            reused = conn is not None
            if conn is None:
                conn = self._conn = self._new_conn()
            try:
                conn.request("POST", self._path, body=body, headers=self._headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
                ra_header = resp.getheader("Retry-After")
                if resp.will_close:
                    self._close_conn()
                ra = _parse_retry_after(ra_header) if ra_header else None
                return status, ra
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._close_conn()
                if reused:
                    continue  # the server dropped an idle keep-alive connection
                logger.debug("llmobserve: POST %s failed", self.url, exc_info=True)
                return 0, None
            except Exception:
                self._close_conn()
                logger.debug("llmobserve: POST %s failed", self.url, exc_info=True)
                return 0, None
        return 0, None


def _proxy_for(scheme: str, host: str) -> tuple[str, int, str | None] | None:
    """(host, port, Proxy-Authorization or None) of the proxy the environment
    names for ``scheme`` (``HTTP_PROXY`` / ``HTTPS_PROXY``, as urllib reads
    them), or None: no proxy set, or ``NO_PROXY`` covers ``host``. Imported
    here: urllib.request pulls in much that ``import llmobserve`` need not."""
    try:
        import urllib.request

        url = urllib.request.getproxies().get(scheme)
        if not url or urllib.request.proxy_bypass(host):
            return None
        if "://" not in url:
            url = "http://" + url  # "proxy:3128", as urllib accepts it
        p = urllib.parse.urlsplit(url)
        if not p.hostname:
            return None
        auth = None
        if p.username is not None:
            cred = f"{urllib.parse.unquote(p.username)}:{urllib.parse.unquote(p.password or '')}"
            auth = "Basic " + base64.b64encode(cred.encode()).decode("ascii")
        return p.hostname, p.port or (443 if p.scheme == "https" else 80), auth
    except Exception:  # a malformed proxy variable: go direct rather than never send
        logger.warning("llmobserve: ignoring the malformed %s proxy setting", scheme, exc_info=True)
        return None


def _parse_retry_after(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        import email.utils

        dt = email.utils.parsedate_to_datetime(value)
        return max(0.0, dt.timestamp() - time.time())
    except Exception:
        return None


# ------------------------------------------------------------------ fork hook
def _after_fork_child() -> None:
    exp = _state.exporter
    if exp is not None:
        exp.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)
