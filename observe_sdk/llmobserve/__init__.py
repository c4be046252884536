"""llmobserve — LLM cost observability SDK.

    from llmobserve import observe, section, trace, run, flush, shutdown
    observe(collector_url="http://127.0.0.1:8000", api_key="...", service="support-bot")

See README.md for the full surface.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import _state
from ._guard import BudgetExceeded, BudgetState
from .context import run, section, trace
from .exporter import Exporter

__all__ = [
    "observe",
    "section",
    "trace",
    "run",
    "flush",
    "shutdown",
    "uninstrument",
    "stats",
    "is_enabled",
    "BudgetExceeded",
    "budgets_ready",
]
__version__ = "0.1.0"

# No handler of its own (not even a NullHandler): the few things a user has to
# act on are WARNINGs (see _state.notice), which logging's last resort prints
# on stderr when the app configured no logging; everything else is DEBUG.
logger = logging.getLogger("llmobserve")

DEFAULT_COLLECTOR_URL = "http://127.0.0.1:8000"
DEFAULT_EXIT_TIMEOUT = 0.5
#: the SDK's settings, read from the environment, else from ./.env
SETTINGS = (
    "COLLECTOR_URL",
    "LLMOBSERVE_API_KEY",
    "LLMOBSERVE_SERVICE",
    "LLMOBSERVE_SAMPLE_RATE",
    "LLMOBSERVE_DISABLED",
)

_lock = threading.Lock()
_atexit_registered = False
_exit_timeout = DEFAULT_EXIT_TIMEOUT
_instrumented: dict[str, bool] = {}
_said_no_key = False


def _read_dotenv(path: str = ".env") -> dict[str, str]:
    """The SDK's settings (``SETTINGS``) among the ``KEY=VALUE`` lines of
    ``path`` (``make run`` writes ``COLLECTOR_URL`` and
    ``LLMOBSERVE_API_KEY`` there): blank lines and ``#`` comments skipped,
    an ``export`` prefix and quotes around the value removed, ``  # …``
    after an unquoted value ignored. Nothing else in the file is read, and
    nothing is put into ``os.environ``. No file (or an unreadable one): {}."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(1 << 20)
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("export "):
            line = line[7:].lstrip()
        name, eq, value = line.partition("=")
        name = name.strip()
        if not eq or name not in SETTINGS:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value or "\t#" in value:
            value = value.replace("\t#", " #").split(" #", 1)[0].rstrip()
        out[name] = value
    return out


def _settings() -> Mapping[str, str]:
    """The environment, then ./.env for what it does not set."""
    return collections.ChainMap(os.environ, _read_dotenv())  # type: ignore[arg-type]


def _env_true(name: str, environ: Mapping[str, str] | None = None) -> bool:
    value = (os.environ if environ is None else environ).get(name, "")
    return value.strip().lower() in ("1", "true", "yes", "on")


def _instrument(which: Iterable[str]) -> None:
    for lib in which:
        try:
            if lib == "openai":
                from .instrumentation import openai as mod
            elif lib == "pinecone":
                from .instrumentation import pinecone as mod  # type: ignore[no-redef]
            else:
                logger.debug("llmobserve: unknown instrumentation %r", lib)
                continue
            _instrumented[lib] = bool(mod.instrument())
        except Exception:
            logger.debug("llmobserve: instrumenting %s failed", lib, exc_info=True)


def observe(
    collector_url: str | None = None,
    api_key: str | None = None,
    *,
    service: str | None = None,
    sample_rate: float | None = None,
    max_queue: int = 20_000,
    batch_size: int = 1000,
    flush_interval: float = 1.0,
    max_retries: int | None = None,
    backoff_base: float = 0.5,
    backoff_max: float = 10.0,
    request_timeout: float = 5.0,
    exit_timeout: float = DEFAULT_EXIT_TIMEOUT,
    instrument: Iterable[str] = ("openai", "pinecone"),
    before_send: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
    enforce_budgets: bool = False,
    budget_poll_interval: float = 30.0,
    fail_closed: bool = False,
) -> bool:
    """Start observing: patch the installed ``openai``/``pinecone`` clients and
    send events to ``{collector_url}/events`` from a background thread.

    Environment (else ``./.env``, as ``make run`` writes it): ``COLLECTOR_URL``,
    ``LLMOBSERVE_API_KEY``, ``LLMOBSERVE_SERVICE``, ``LLMOBSERVE_SAMPLE_RATE``
    (0..1, per run), ``LLMOBSERVE_DISABLED=1`` (no patching, no thread,
    nothing sent). Calling it again re-configures but never instruments
    twice. Returns True when observing, False when disabled. Never raises.
    Without an API key it says so once (a WARNING; on stderr when logging is
    not configured).

    A batch the collector cannot take now (down, 5xx, 429) is retried with
    capped exponential backoff (``backoff_base`` doubling up to
    ``backoff_max``, with jitter) for as long as the queue behind it has
    room (``max_retries=None``; a number gives up after that many retries);
    a full queue drops its oldest events, counted in ``stats()["dropped"]``.

    ``before_send(event)`` runs on the exporter thread for every built event
    (a SPEC §2 dict): return it (changed or not) to send it, or None to drop
    it, e.g. to scrub attributes. An exception in it drops that event and is
    logged (a scrubbing hook that fails must not let the raw event through).

    ``enforce_budgets=True`` (opt-in): the exporter thread polls
    ``GET /budgets/status`` every ``budget_poll_interval`` seconds; while a
    ``hard`` budget whose scope covers a call is exceeded, the call raises
    :class:`BudgetExceeded` before it is sent. Fail-open: a collector that
    is down, slow, without the endpoint (404) or answering nonsense lets
    calls proceed. ``fail_closed=True`` (only with ``enforce_budgets``)
    refuses calls instead while the status is unknown or stale (no good
    answer for 3 poll intervals): see :func:`budgets_ready`.
    ``run(max_cost_usd=...)`` needs none of this (see :class:`run`).
    """
    global _atexit_registered, _exit_timeout, _said_no_key
    try:
        if _env_true("LLMOBSERVE_DISABLED"):
            return False  # off: not even ./.env is read
        environ = _settings()
        if _env_true("LLMOBSERVE_DISABLED", environ):
            return False
        url = collector_url or environ.get("COLLECTOR_URL") or DEFAULT_COLLECTOR_URL
        key = api_key if api_key is not None else environ.get("LLMOBSERVE_API_KEY")
        if sample_rate is None:
            env_rate = environ.get("LLMOBSERVE_SAMPLE_RATE")
            try:
                sample_rate = float(env_rate) if env_rate else 1.0
            except ValueError:
                sample_rate = 1.0
        budgets = None
        if enforce_budgets:
            budgets = BudgetState(max(0.05, float(budget_poll_interval)), bool(fail_closed))
        with _lock:
            old = _state.exporter
            _state.exporter = new = Exporter(
                url,
                key,
                max_queue=max_queue,
                batch_size=batch_size,
                flush_interval=flush_interval,
                max_retries=max_retries,
                backoff_base=backoff_base,
                backoff_max=backoff_max,
                request_timeout=request_timeout,
                before_send=before_send,
                budgets=budgets,
            )
            _state.prices = new.prices
            _state.budgets = budgets
            if budgets is not None:
                _state.guarding = True
            _state.service = service or environ.get("LLMOBSERVE_SERVICE") or _state.service
            _state.sample_rate = min(1.0, max(0.0, float(sample_rate)))
            _exit_timeout = max(0.0, float(exit_timeout))
            _instrument(instrument)
            _state.active = True
            if budgets is not None:
                new.start()  # the first poll now, not at the first event
            if not _atexit_registered:
                atexit.register(_at_exit)
                _atexit_registered = True
        if old is not None:
            # re-configured: hand over quietly (bounded wait, never blocks long)
            old.shutdown(timeout=0.5)
        if not key and not _said_no_key:
            _said_no_key = True
            _state.notice(
                f"llmobserve: no API key, so the collector at {new.url} will reject every event: "
                "set LLMOBSERVE_API_KEY (in the environment or ./.env) or pass observe(api_key=...)"
            )
        return True
    except Exception:
        logger.debug("llmobserve: observe() failed", exc_info=True)
        return False


def flush(timeout: float = 5.0) -> bool:
    """Block until every event recorded so far is delivered (True) or the
    timeout / a delivery failure happens (False). Never raises."""
    exp = _state.exporter
    if exp is None:
        return True
    return exp.flush(timeout)


def shutdown(timeout: float = 2.0) -> bool:
    """Flush (bounded by ``timeout``), stop the exporter thread and stop
    recording. The patches stay in place but pass calls straight through;
    ``observe()`` starts again."""
    with _lock:
        exp = _state.exporter
        _state.active = False
        _state.exporter = None
        _state.budgets = None
    if exp is None:
        return True
    try:
        return exp.shutdown(timeout)
    except Exception:  # pragma: no cover
        return False


def uninstrument() -> None:
    """Remove every patch (restoring the original methods) and stop
    recording. Pending events are still delivered by the exporter until
    ``shutdown()``/exit."""
    _state.active = False
    for lib in list(_instrumented):
        try:
            if lib == "openai":
                from .instrumentation import openai as mod
            else:
                from .instrumentation import pinecone as mod  # type: ignore[no-redef]
            mod.uninstrument()
        except Exception:  # pragma: no cover
            logger.debug("llmobserve: uninstrument %s failed", lib, exc_info=True)
    _instrumented.clear()


def stats() -> dict[str, Any]:
    """Exporter counters: queued, dropped (queue full), dropped_failed, sent, …"""
    exp = _state.exporter
    return exp.stats() if exp is not None else {}


def is_enabled() -> bool:
    return _state.active


def budgets_ready(timeout: float = 5.0) -> bool:
    """With ``observe(enforce_budgets=True)``: wait (at most ``timeout``
    seconds) until the exporter thread has polled ``GET /budgets/status``
    once more, and say whether the status is now known and fresh. Useful
    right after ``observe(..., fail_closed=True)``, whose calls are refused
    until the first good answer. False when budgets are not enforced.
    Never raises."""
    try:
        exp = _state.exporter
        b = _state.budgets
        if exp is None or b is None:
            return False
        seen = exp.polls_done
        exp._next_poll = 0.0  # due now
        exp.start()
        exp._wake.set()
        deadline = time.monotonic() + max(0.0, timeout)
        while exp.polls_done == seen and time.monotonic() < deadline:
            time.sleep(0.005)
        return not b.stale()
    except Exception:
        logger.debug("llmobserve: budgets_ready failed", exc_info=True)
        return False


def _at_exit() -> None:
    exp = _state.exporter
    if exp is None:
        return
    try:
        # Deliver what is pending, but never hold the exit for more than
        # exit_timeout: no backoff sleeps, one attempt per batch.
        exp.stop_retrying()
        exp.flush(_exit_timeout)
        _state.quiet = True  # the interpreter is going: the worker says nothing more
        exp._closed = True
        exp._stop.set()
        exp._wake.set()
    except Exception:  # pragma: no cover
        pass
