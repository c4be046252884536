"""The background exporter: one daemon thread, a bounded queue, batching,
gzip'd JSON over a kept-alive ``http.client`` connection (stdlib), retries with backoff, fork safety.
Like ``urllib``, it goes through ``HTTP_PROXY`` / ``HTTPS_PROXY`` unless
``NO_PROXY`` names the collector's host.

The host only ever calls :meth:`Exporter.put`: one ``append`` on a
``collections.deque`` (atomic under the GIL, no lock or condition variable,
so nothing a fork can leave locked). The queue holds at most ``max_queue``
records: when it is full the oldest record is dropped (and counted) to make
room, so memory stays bounded and the newest events survive. The worker
wakes every ``flush_interval`` seconds (or as soon as a batch is full, or on
``flush()``), turns records into events, and posts them. A batch that cannot
be delivered (the collector down, 5xx, 429) is retried, with capped
exponential backoff and jitter, for as long as the queue behind it has room;
when the queue fills up, that batch, the oldest events, is dropped instead.

JSON: ``orjson`` when it is installed, else the standard library; the
module's ``_orjson`` (None without it) is the switch. Either way a batch is
valid JSON the collector accepts: NaN and infinities become ``null``,
integers beyond 2**53 - 1 become strings, and an event no encoder takes
(nesting deeper than any encoder recurses, lone surrogates, keys that are not
text) is repaired alone, its neighbours going as they are.
"""

from __future__ import annotations

import base64
import collections
import gzip
import http.client
import json
import logging
import math
import os
import random
import re
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from . import _guard, _state
from ._events import build_event

logger = logging.getLogger("llmobserve")

try:  # optional accelerator (pinecone already depends on it); the standard library otherwise
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None  # type: ignore[assignment]

#: integers the collector (and JavaScript) take exactly: larger ones are sent as strings
MAX_SAFE_INT = 2**53 - 1
#: attribute values nested deeper than this (the attributes object is level 1, as
#: the collector counts: its MAX_ATTRIBUTES_DEPTH) are cut when an event has to be repaired
MAX_NESTING = 64
_TOO_DEEP = "[nested too deep]"
# a number of 16 digits or more in the standard library's output: maybe an
# integer beyond MAX_SAFE_INT (orjson checks that itself: OPT_STRICT_INTEGER)
_LONG_NUMBER = re.compile(rb"[:,\[]-?[0-9]{16}")
# what an interrupted retry waits for at most when the collector sends Retry-After
_RETRY_AFTER_MAX = 60.0
# an outage starting within this many seconds of the last one said is not said again
OUTAGE_NOTICE_INTERVAL = 300.0
# the budget guard (see _guard.py): a fetched price is asked again after
# PRICE_TTL seconds, one the collector could not give after PRICE_RETRY; at
# most PRICE_FETCHES_PER_TICK prices are fetched between two batches; the
# budgets' status is stale after STALE_POLLS poll intervals without an answer
PRICE_TTL = 600.0
PRICE_RETRY = 30.0
PRICE_FETCHES_PER_TICK = 32
STALE_POLLS = 3
# a backoff wait is cut in slices this long so the guard's polls go on
GUARD_SLICE = 0.2


def _default(obj: Any) -> str:
    return str(obj)


def _encode(obj: Any, checked: bool = False) -> bytes:
    """``obj`` as JSON bytes; raises when it would not be valid JSON the
    collector takes (NaN in the standard library, an integer beyond
    MAX_SAFE_INT, a lone surrogate, too deep). ``checked``: already made
    safe, skip the integer check."""
    if _orjson is not None:
        return _orjson.dumps(obj, default=_default, option=0 if checked else _orjson.OPT_STRICT_INTEGER)
    body = json.dumps(obj, separators=(",", ":"), default=_default, allow_nan=False, ensure_ascii=False).encode()
    if not checked and _LONG_NUMBER.search(body) is not None:
        raise ValueError("an integer may be out of range")
    return body


def _safe_text(s: str) -> str:
    s = str.__str__(s)  # a str subclass (an enum member) as its text
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:  # lone surrogates
        return s.encode("utf-8", "replace").decode("utf-8")


def _safe_key(k: Any) -> str:
    if isinstance(k, str):
        return _safe_text(k)
    if k is None or isinstance(k, bool | int | float):
        return json.dumps(k)  # as the standard library writes such keys
    return _safe_text(str(k))


def _safe(v: Any, depth: int) -> Any:
    """A copy of ``v`` every encoder takes and the collector accepts: NaN and
    infinities as None, integers beyond MAX_SAFE_INT as their digits (text),
    text without lone surrogates, containers nested deeper than MAX_NESTING
    cut, anything else as its ``str()``. Never changes ``v`` itself (a run's
    attributes are shared by its events)."""
    if v is None or v is True or v is False:
        return v
    if isinstance(v, str):
        return _safe_text(v)
    if isinstance(v, int):
        v = int(v)
        return v if -MAX_SAFE_INT <= v <= MAX_SAFE_INT else str(v)
    if isinstance(v, float):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, dict | list | tuple):
        if depth > MAX_NESTING:
            return _TOO_DEEP
        if isinstance(v, dict):
            return {_safe_key(k): _safe(x, depth + 1) for k, x in v.items()}
        return [_safe(x, depth + 1) for x in v]
    try:
        return _safe_text(str(v))
    except Exception:
        return f"[{type(v).__name__}]"


def encode_batch(events: list[dict[str, Any]]) -> tuple[bytes, list[dict[str, Any]]]:
    """(body, the events in it): the whole batch in one pass when it encodes
    as it is (nearly always); else each event made safe and encoded alone,
    and one that still fails (nothing should) left out."""
    try:
        return _encode({"events": events}), events
    except Exception:
        pass
    parts: list[bytes] = []
    kept: list[dict[str, Any]] = []
    for event in events:
        try:
            safe = _safe(event, 0)
            parts.append(_encode(safe, checked=True))
            kept.append(safe)
        except Exception:
            logger.debug("llmobserve: an event could not be encoded; dropped", exc_info=True)
    return b'{"events":[' + b",".join(parts) + b"]}", kept


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
        max_queue: int = 20_000,
        batch_size: int = 1000,
        flush_interval: float = 1.0,
        max_retries: int | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 10.0,
        request_timeout: float = 5.0,
        before_send: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
        budgets: _guard.BudgetState | None = None,
    ) -> None:
        self.before_send = before_send
        # observe(enforce_budgets=True): polled from this thread; None: off
        self.budgets = budgets
        # (provider, model) -> Rates or None: the calling threads read it (_state.prices)
        self.prices: dict[tuple[str, str], Any] = {}
        self.url = collector_url.rstrip("/") + "/events"
        self.api_key = api_key
        self.max_queue = max(1, int(max_queue))
        self.batch_size = max(1, min(1000, int(batch_size)))
        self.flush_interval = max(0.001, float(flush_interval))
        # None: retry for as long as the queue has room (a full queue drops the batch)
        self.max_retries = None if max_retries is None else max(0, int(max_retries))
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
        # GET paths of the guard (/pricing/resolve, /budgets/status): this prefix + the path
        self._base = (parts.path or "/events")[: -len("/events")]
        self._proxy = _proxy_for(self._scheme, self._host)
        if self._proxy is not None:
            if self._scheme != "https":
                # a forward proxy takes the absolute URL on the request line
                self._path = f"http://{parts.netloc.rpartition('@')[2]}{self._path}"
                self._base = f"http://{parts.netloc.rpartition('@')[2]}{self._base}"
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
        self.dropped = 0  # the oldest records, dropped by put() to make room in a full queue
        self._dropped_in_flight = 0  # a batch being retried, dropped by the worker when the queue filled up
        self.dropped_failed = 0  # events dropped after failed delivery (4xx, retries given up, at exit)
        self.sent = 0  # events accepted by the collector (2xx; stored or duplicates)
        self.rejected = 0  # events the collector rejected one by one (207)
        self.batches_sent = 0
        self.built = 0  # events serialised
        self.dropped_hook = 0  # events before_send dropped (returned None or raised)
        self.cpu_seconds = 0.0  # worker thread CPU time (time.thread_time)
        self._cpu0 = 0.0
        self._failed_since_marker = False
        # flush() markers put() had to take off the head of a full queue: the
        # worker releases them after the batch it is sending
        self._loose_markers: list[_Marker] = []
        self._conn = None  # never reuse a socket inherited across fork
        # set at exit / shutdown: cut backoff sleeps short, no further retries
        self._no_retry = False
        # wakes a backoff wait early: exit / shutdown (with _no_retry), or a full queue
        self._kick = threading.Event()
        # consecutive failed attempts (of any batch): the backoff's exponent
        self._failures = 0
        # what has been said (once): notice keys; an outage in progress
        self._said: set[str] = set()
        self._outage = False
        self._outage_said = False
        self._outage_lost0 = 0
        self._outage_said_at = -math.inf
        # the budget guard: prices asked by the calling threads (set.add and
        # pop are atomic under the GIL), when each cached price is due again,
        # the next poll of /budgets/status, a connection of its own
        self._wanted: set[tuple[str, str]] = set()
        self._fetching: tuple[str, str] | None = None  # the price being fetched now
        # (a forked child asks again for the prices its parent had)
        self._price_due: dict[tuple[str, str], float] = dict.fromkeys(self.prices, 0.0)
        self._next_price_due = 0.0 if self._price_due else math.inf
        self._next_poll = 0.0
        self._gconn: http.client.HTTPConnection | None = None
        self.polls = 0  # answers to /budgets/status read (good ones)
        self.poll_failures = 0
        self.polls_done = 0  # polls ended, answered or not
        self.price_fetches = 0
        self.refused = 0  # calls the guard refused (BudgetExceeded)

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

    def start(self) -> None:
        """Start the worker now (observe(enforce_budgets=True): the first poll
        must not wait for the first event)."""
        if self._thread is None and not self._closed:
            self._ensure_thread()

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
            self._make_room()
        q.append(item)
        if n >= self.batch_size and not self._wake.is_set():
            self._wake.set()

    def _make_room(self) -> None:
        """The queue is full (the collector is down or slow): drop its oldest
        record, count it, and wake the worker, whose batch in flight is older
        still. Only reached when full; one popleft, no lock."""
        try:
            old = self._queue.popleft()
        except IndexError:  # the worker emptied it meanwhile
            return
        if type(old) is _Marker:
            self._loose_markers.append(old)  # not a record: released after the batch in flight
        else:
            self.dropped += 1
            self._failed_since_marker = True
        if not self._kick.is_set():
            self._kick.set()

    def _queue_full(self) -> bool:
        return len(self._queue) >= self.max_queue

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
        self._kick.set()

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

    def want_price(self, key: tuple[str, str]) -> None:
        """A calling thread needs the price of ``key``: fetched by the worker
        at its next wake-up (woken now). Never blocks, never raises."""
        try:
            if key in self._wanted or key == self._fetching:
                return
            self._wanted.add(key)
            if self._thread is None:
                if self._closed:
                    return
                self._ensure_thread()
            self._wake.set()
        except Exception:  # pragma: no cover
            logger.debug("llmobserve: want_price failed", exc_info=True)

    def guard_stats(self) -> dict[str, Any]:
        b = self.budgets
        age = None
        if b is not None and b.polled_at is not None:
            age = round(time.monotonic() - b.polled_at, 3)
        return {
            "prices_cached": sum(1 for v in list(self.prices.values()) if v is not None),
            "prices_unknown": sorted(f"{p}/{m}" for (p, m), v in list(self.prices.items()) if v is None),
            "price_fetches": self.price_fetches,
            "budget_polls": self.polls,
            "budget_poll_failures": self.poll_failures,
            "budget_status_age_s": age,
            "budgets_exceeded_hard": None
            if b is None or b.blocked is None
            else (sum(len(r) for r in b.blocked.by_model.values()) + len(b.blocked.any_model)),
            "refused": self.refused,
        }

    def stats(self) -> dict[str, Any]:
        return {
            "queued": self.queued(),
            "dropped": self.dropped + self._dropped_in_flight,
            "dropped_failed": self.dropped_failed,
            "sent": self.sent,
            "rejected": self.rejected,
            "batches_sent": self.batches_sent,
            "built": self.built,
            "dropped_hook": self.dropped_hook,
            "cpu_seconds": self.cpu_seconds,
            "guard": self.guard_stats(),
        }

    # ------------------------------------------------------------------- worker
    def _run(self) -> None:
        cpu0 = self._cpu0 = time.thread_time()
        while True:
            try:
                self._guard_tick()
                wait = self.flush_interval
                if self.budgets is not None:
                    wait = min(wait, max(0.0, self._next_poll - time.monotonic()))
                self._wake.wait(wait)
                self._wake.clear()
                self._guard_tick()  # prices asked meanwhile: fetched before the batch (flush() sees them)
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
            if self._loose_markers:  # taken off a full queue's head: they came before this batch's
                early = []
                while self._loose_markers:  # (put() only appends to it; only this thread pops)
                    early.append(self._loose_markers.pop(0))
                markers = early + markers
            if markers and self._wanted:
                self._guard_tick()  # flush() returns with the prices asked before it fetched
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
            # the user's code: say so loudly (once), and never send what it was meant to change
            self._say("hook_raised", "llmobserve: before_send raised; event dropped", exc_info=True)
            out = None
        if out is not None and not isinstance(out, dict):
            self._say(
                "hook_type", f"llmobserve: before_send returned {type(out).__name__}, not a dict or None; event dropped"
            )
            out = None
        if out is None:
            self.dropped_hook += 1
        return out

    def _send(self, events: list[dict[str, Any]]) -> bool:
        try:
            raw, sendable = encode_batch(events)
            body = gzip.compress(raw, compresslevel=1)
        except Exception:  # pragma: no cover - encode_batch leaves out what it cannot encode
            logger.debug("llmobserve: could not serialise batch", exc_info=True)
            self.dropped_failed += len(events)
            return False
        lost = len(events) - len(sendable)
        if lost:
            self.dropped_failed += lost
        events = sendable
        n = len(events)
        if not n:
            return not lost
        attempt = 0
        while True:
            status, retry_after, reply, reason = self._post(body)
            if 200 <= status < 300:
                self._failures = 0
                self._delivered(n, status, reply)
                return not lost
            if status == 413 and n > 1:
                half = n // 2
                a = self._send(events[:half])
                b = self._send(events[half:])
                return a and b and not lost
            retryable = status == 0 or status in _RETRYABLE or status >= 500
            if not retryable:
                # it answers again, if only to refuse: the outage is over, and
                # what it refuses (said below) is the news, not that it is back
                self._outage = self._outage_said = False
                self.dropped_failed += n
                self._rejected_batch(status, n)
                return False
            self._outage_begins(status, reason)
            if self._no_retry or (self.max_retries is not None and attempt >= self.max_retries):
                self.dropped_failed += n
                logger.debug(
                    "llmobserve: dropping %d events after %d attempts (last status %s)", n, attempt + 1, reason
                )
                return False
            if self._queue_full():
                return self._drop_in_flight(n)
            if retry_after is not None:
                delay = min(max(retry_after, 0.0), max(self.backoff_max, _RETRY_AFTER_MAX))
            else:  # capped exponential backoff, with jitter (half to all of it)
                delay = min(self.backoff_max, self.backoff_base * (2.0 ** min(self._failures, 62)))
                delay *= 0.5 + random.random() / 2
            self._failures += 1
            attempt += 1
            logger.debug("llmobserve: POST %s -> %s, retry %d in %.2fs", self.url, reason, attempt, delay)
            # cut short at exit/shutdown (one last immediate attempt) or when the queue fills up
            self._backoff_wait(delay)
            if not self._no_retry:
                self._kick.clear()
            if self._queue_full():
                return self._drop_in_flight(n)

    def _backoff_wait(self, delay: float) -> None:
        """Wait ``delay`` (or until kicked); with the guard in use, in slices,
        so its polls and price fetches go on while a batch waits to retry."""
        if self.budgets is None and not self._wanted and not self._price_due:
            self._kick.wait(delay)
            return
        end = time.monotonic() + delay
        while True:
            left = end - time.monotonic()
            if left <= 0 or self._kick.wait(min(left, GUARD_SLICE)):
                return
            self._guard_tick()

    def _drop_in_flight(self, n: int) -> bool:
        """The queue filled up behind the batch being retried: drop that batch,
        the oldest events, so the worker takes the next (False: not delivered)."""
        self._dropped_in_flight += n
        if not self._no_retry:
            self._kick.clear()  # the full queue is dealt with: the next batch waits its backoff
        return False

    # ----------------------------------------------------------- said once
    def _say(self, key: str, message: str, exc_info: bool = False) -> None:
        """Say ``message`` once for this exporter (see _state.notice)."""
        if key not in self._said:
            self._said.add(key)
            _state.notice(message, exc_info)

    def _lost(self) -> int:
        return self.dropped + self._dropped_in_flight + self.dropped_failed

    def _outage_begins(self, status: int, reason: str) -> None:
        if self._outage:
            return
        self._outage = True
        self._outage_lost0 = self._lost()
        now = time.monotonic()
        if now - self._outage_said_at < OUTAGE_NOTICE_INTERVAL:
            return  # a flapping collector: said at most every few minutes, never per batch
        self._outage_said = True
        self._outage_said_at = now
        what = f"cannot reach the collector at {self.url} ({reason})"
        if status:
            what = f"the collector at {self.url} answered {reason}"
        if self._no_retry:  # at exit (or shutdown): one attempt each, nothing kept
            _state.notice(f"llmobserve: {what}; the events still pending at exit are not delivered")
        else:
            _state.notice(f"llmobserve: {what}; events are kept in memory (up to {self.max_queue}) and retried")

    def _outage_ends(self) -> None:
        self._outage = False
        if self._outage_said:
            self._outage_said = False
            lost = self._lost() - self._outage_lost0
            _state.notice(
                f"llmobserve: the collector at {self.url} is reachable again; "
                + ("no events were lost" if not lost else f"{lost} events were dropped meanwhile")
            )

    def _delivered(self, n: int, status: int, reply: bytes) -> None:
        if self._outage:
            self._outage_ends()
        self.batches_sent += 1
        if status != 207:
            self.sent += n
            return
        try:  # some events rejected one by one (SPEC §2): count them, say the first reason once
            rejected = json.loads(reply).get("rejected") or []
        except Exception:
            rejected = []
        self.sent += n - len(rejected)
        self.rejected += len(rejected)
        if rejected:
            first = rejected[0] if isinstance(rejected[0], dict) else {}
            why = json.dumps(first.get("errors"), ensure_ascii=False, default=str)[:300]
            self._say(
                "207",
                f"llmobserve: the collector at {self.url} rejected {len(rejected)} of the {n} events of a batch "
                f"(the others were stored): event {first.get('index')}: {why}",
            )

    def _rejected_batch(self, status: int, n: int) -> None:
        if status in (401, 403):
            if self.api_key:
                message = f"rejected the API key (HTTP {status})"
            else:
                message = f"answered HTTP {status}: no API key was sent"
            self._say(
                "auth",
                f"llmobserve: the collector at {self.url} {message}: events are dropped until "
                "LLMOBSERVE_API_KEY (or observe(api_key=...)) holds a key it accepts",
            )
            return
        hint = " (is COLLECTOR_URL the collector's base URL?)" if status in (404, 405) else ""
        self._say(
            f"status:{status}",
            f"llmobserve: the collector at {self.url} rejected a batch of {n} events with HTTP {status}; dropped{hint}",
        )

    # ------------------------------------------------------------ the guard
    def _guard_tick(self) -> None:
        """Poll /budgets/status when due, fetch the prices asked for and
        refresh those due. Runs on the worker only; never raises."""
        try:
            if self.budgets is not None and time.monotonic() >= self._next_poll:
                self._poll_budgets()
            if self._wanted or time.monotonic() >= self._next_price_due:
                self._fetch_prices()
        except Exception:  # pragma: no cover - never die
            logger.debug("llmobserve: budget guard error", exc_info=True)

    def _poll_budgets(self) -> None:
        try:
            self._poll_budgets_once()
        finally:
            self.polls_done += 1  # budgets_ready() waits for this

    def _poll_budgets_once(self) -> None:
        b = self.budgets
        assert b is not None
        status, body = self._get("/budgets/status")
        self._next_poll = time.monotonic() + b.interval
        where = f"{self._base_url()}/budgets/status"
        if status == 200:
            try:
                blocked, n = _guard.status_compile(json.loads(body), _state.service)
            except Exception:
                blocked = None
                n = -1
            if n >= 0:
                b.blocked = blocked
                b.budgets = n
                now = time.monotonic()
                b.polled_at = now
                b.fresh_until = now + STALE_POLLS * b.interval
                self.polls += 1
                return
            self._say("budgets:json", f"llmobserve: {where} answered something that is not a budgets status: ignored")
        elif status in (401, 403):
            self._say(
                "budgets:auth",
                f"llmobserve: {where} rejected the API key (HTTP {status}): enforce_budgets cannot see the budgets "
                "(calls proceed unless fail_closed=True)",
            )
        elif status in (404, 405):
            self._say(
                "budgets:missing",
                f"llmobserve: {where} does not exist (HTTP {status}; a collector without budgets?): "
                "enforce_budgets cannot see the budgets (calls proceed unless fail_closed=True)",
            )
        self.poll_failures += 1
        if time.monotonic() > b.fresh_until:
            b.blocked = None  # stale: fail-open forgets it (fail_closed refuses on staleness itself)

    def _fetch_prices(self) -> None:
        now = time.monotonic()
        keys: list[tuple[str, str]] = []
        while self._wanted and len(keys) < PRICE_FETCHES_PER_TICK:
            try:
                keys.append(self._wanted.pop())
            except KeyError:
                break
        if now >= self._next_price_due:
            keys += [k for k, due in list(self._price_due.items()) if due <= now and k not in keys]
        for key in keys[: PRICE_FETCHES_PER_TICK * 2]:
            if self._stop.is_set() and self._no_retry:
                break
            self._fetching = key
            try:
                self._fetch_price(key)
            finally:
                self._fetching = None
        self._next_price_due = min(self._price_due.values(), default=math.inf)

    def _fetch_price(self, key: tuple[str, str]) -> None:
        provider, model = key
        query = urllib.parse.urlencode({"provider": provider, "model": model})
        self.price_fetches += 1
        status, body = self._get(f"/pricing/resolve?{query}")
        rates: Any = None
        ok = False
        if status == 200:
            try:
                rates = _guard.rates_parse(json.loads(body))
                ok = True
            except Exception:
                logger.debug("llmobserve: unreadable /pricing/resolve answer for %s/%s", *key, exc_info=True)
        if ok:
            self.prices[key] = rates
            self._price_due[key] = time.monotonic() + PRICE_TTL
            return
        if status in (401, 403):
            self._say(
                "pricing:auth",
                f"llmobserve: {self._base_url()}/pricing/resolve rejected the API key (HTTP {status}): "
                "run(max_cost_usd=...) counts calls without a price as $0",
            )
        if self.prices.get(key) is None:
            self.prices[key] = None  # unknown for now: counts $0 (fail-open), asked again soon
        self._price_due[key] = time.monotonic() + PRICE_RETRY

    def _base_url(self) -> str:
        return self.url[: -len("/events")]

    def _get(self, path: str) -> tuple[int, bytes]:
        """One GET of the guard (status 0: no answer), on its own kept-alive
        connection (the event batches keep theirs)."""
        headers = {"Accept": "application/json", "User-Agent": "llmobserve-python"}
        auth = self._headers.get("Authorization")
        if auth:
            headers["Authorization"] = auth
        proxy_auth = self._headers.get("Proxy-Authorization")
        if proxy_auth:
            headers["Proxy-Authorization"] = proxy_auth
        for attempt in range(2):
            conn = self._gconn
            reused = conn is not None
            if conn is None:
                conn = self._gconn = self._new_conn()
            try:
                conn.request("GET", self._base + path, headers=headers)
                resp = conn.getresponse()
                body = resp.read(4 << 20)  # a status or a price is a few KB: never more than this
                if resp.will_close or not resp.isclosed():
                    self._close_gconn()
                return resp.status, body
            except Exception:
                self._close_gconn()
                if reused and attempt == 0:
                    continue  # an idle kept-alive connection the server dropped
                logger.debug("llmobserve: GET %s failed", path, exc_info=True)
                return 0, b""
        return 0, b""  # pragma: no cover

    def _close_gconn(self) -> None:
        conn, self._gconn = self._gconn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

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

    def _post(self, body: bytes) -> tuple[int, float | None, bytes, str]:
        """One POST over a kept-alive connection (stdlib http.client); a
        stale kept-alive connection is retried once on a fresh one.
        Returns (status, retry_after, response body, what happened); status 0
        means a connection error (what happened: the exception's name)."""
        reason = "no answer"
        for _ in range(2):
            conn = self._conn
            reused = conn is not None
            if conn is None:
                conn = self._conn = self._new_conn()
            try:
                conn.request("POST", self._path, body=body, headers=self._headers)
                resp = conn.getresponse()
                reply = resp.read()
                status = resp.status
                ra_header = resp.getheader("Retry-After")
                if resp.will_close:
                    self._close_conn()
                ra = _parse_retry_after(ra_header) if ra_header else None
                return status, ra, reply, f"HTTP {status}"
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self._close_conn()
                reason = type(exc).__name__
                if reused:
                    continue  # the server dropped an idle keep-alive connection
                logger.debug("llmobserve: POST %s failed", self.url, exc_info=True)
                return 0, None, b"", reason
            except Exception as exc:
                self._close_conn()
                logger.debug("llmobserve: POST %s failed", self.url, exc_info=True)
                return 0, None, b"", type(exc).__name__
        return 0, None, b"", reason


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
