"""Pinecone data-plane instrumentation.

Wrapped on ``Index`` and its asyncio twin (``AsyncIndex`` in pinecone 8+,
``_IndexAsyncio`` in older releases): ``query``, ``upsert``, ``fetch``,
``delete``, ``update``, ``search``, ``upsert_records``, ``search_records``
(where present). Read/write units come from the response's ``usage`` when
Pinecone reports it; otherwise an estimate (see ``_events.UNIT_ESTIMATES``)
is recorded with ``attributes.units_estimated = true``.

Note: ``Index`` objects built *before* ``observe()`` keep per-instance
bound methods for ``query``/``upsert`` in pinecone 10 (its legacy
``async_req`` shim); create indexes after ``observe()``.
"""

from __future__ import annotations

import contextvars
import logging
import time
from typing import Any

from .. import _state
from .._events import P_PINECONE
from ..context import _current, sampled_out
from ._patching import Patcher

logger = logging.getLogger("llmobserve")

OPS = ("query", "upsert", "fetch", "delete", "update", "search", "upsert_records", "search_records")

# (module, class, is_async)
CLASSES = [
    ("pinecone.index", "Index", False),
    ("pinecone.async_client.async_index", "AsyncIndex", True),
    # pinecone 5.x-7.x layout
    ("pinecone.db_data.index", "Index", False),
    ("pinecone.db_data.index_asyncio", "_IndexAsyncio", True),
]

_patcher = Patcher()
_perf = time.perf_counter
_time = time.time
_emit = _state.emit_call
_get_frame = _current.get
# search_records delegates to search (and upsert batches to helpers): record
# only the outermost instrumented call.
_inside: contextvars.ContextVar[bool] = contextvars.ContextVar("llmobserve_pinecone_inside", default=False)


def _vec_dim(v: Any) -> int:
    try:
        if isinstance(v, tuple):
            return len(v[1])
        if isinstance(v, dict):
            return len(v.get("values") or ())
        return len(getattr(v, "values", None) or ())
    except Exception:
        return 0


def _estimate_args(op: str, kwargs: dict) -> tuple[int, int]:
    """(records, approx request bytes) — cheap: looks at one record only."""
    try:
        if op == "fetch":
            return len(kwargs.get("ids") or ()), 0
        if op == "upsert":
            vecs: Any = kwargs.get("vectors") or ()
            n = len(vecs)
            dim = _vec_dim(vecs[0]) if n else 0
            return n, n * (dim * 4 + 100)
        if op == "upsert_records":
            recs: Any = kwargs.get("records") or ()
            n = len(recs)
            one = len(repr(recs[0])) if n else 0
            return n, n * (one + 20)
        if op == "delete":
            return len(kwargs.get("ids") or ()), 0
        if op == "update":
            return 1, 0
    except Exception:
        pass
    return 0, 0


def _payload(op: str, instance: Any, kwargs: dict, result: Any) -> tuple:
    usage = getattr(result, "usage", None) if result is not None else None
    n, size = (0, 0) if usage is not None else _estimate_args(op, kwargs)
    extra: dict | None = None
    if op in ("fetch", "delete", "upsert", "upsert_records") and n:
        extra = {"records": n}
    host = getattr(instance, "_host", None) or getattr(instance, "host", None)
    return (usage, op, n, size, host if isinstance(host, str) else None, kwargs.get("namespace"), extra)


def _record_error(
    frame: Any, op: str, name: str, instance: Any, kwargs: dict, wall: float, t0: float, e: BaseException
) -> None:
    try:
        status = getattr(e, "status_code", None) or getattr(e, "status", None)
        p = (None, op, 0, 0, getattr(instance, "_host", None), kwargs.get("namespace"), None)
        attrs = {"http_status": status} if isinstance(status, int) else None
        _emit(frame, "vector_db", name, "pinecone", None, wall, _perf() - t0, type(e).__name__, P_PINECONE, p, attrs)
    except Exception:  # pragma: no cover
        pass


def _record(frame: Any, op: str, name: str, instance: Any, kwargs: dict, wall: float, t0: float, result: Any) -> None:
    try:
        payload = _payload(op, instance, kwargs, result)
        _emit(frame, "vector_db", name, "pinecone", None, wall, _perf() - t0, None, P_PINECONE, payload, None)
    except Exception:
        logger.debug("llmobserve: pinecone record failed", exc_info=True)


def _make_sync(op: str) -> Any:
    name = "index." + op

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not _state.active or _inside.get():
            return wrapped(*args, **kwargs)
        frame = _get_frame()
        if sampled_out(frame):
            return wrapped(*args, **kwargs)
        # calls pinecone makes from inside this one are not recorded again
        token = _inside.set(True)
        wall = _time()
        t0 = _perf()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as e:
            _record_error(frame, op, name, instance, kwargs, wall, t0, e)
            raise
        finally:
            _inside.reset(token)
        _record(frame, op, name, instance, kwargs, wall, t0, result)
        return result

    return wrapper


def _make_async(op: str) -> Any:
    name = "index." + op

    async def call(wrapped: Any, instance: Any, args: Any, kwargs: Any, frame: Any) -> Any:
        token = _inside.set(True)
        wall = _time()
        t0 = _perf()
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as e:
            _record_error(frame, op, name, instance, kwargs, wall, t0, e)
            raise
        finally:
            _inside.reset(token)
        _record(frame, op, name, instance, kwargs, wall, t0, result)
        return result

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not _state.active or _inside.get():
            return wrapped(*args, **kwargs)
        frame = _get_frame()
        if sampled_out(frame):
            return wrapped(*args, **kwargs)
        return call(wrapped, instance, args, kwargs, frame)

    return wrapper


def instrument() -> bool:
    if _patcher.applied:
        return True
    try:
        import pinecone  # noqa: F401
    except Exception:
        return False
    for module, cls, is_async in CLASSES:
        for op in OPS:
            _patcher.patch(module, f"{cls}.{op}", _make_async(op) if is_async else _make_sync(op))
    return _patcher.applied


def uninstrument() -> None:
    _patcher.unpatch_all()


def is_instrumented() -> bool:
    return _patcher.applied
