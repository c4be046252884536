"""Pinecone instrumentation: the data plane and Pinecone Inference.

What is wrapped is one table of (module, ``Class.method``, wrapper),
``_targets()``, built from ``INDEX_CLASSES`` x ``OPS`` and
``INFERENCE_CLASSES`` x ``INFERENCE_OPS``. On ``Index``, its asyncio twin
(``AsyncIndex`` in pinecone 8+, ``_IndexAsyncio`` in older releases) and the
gRPC index (``GrpcIndex``, pinecone 10's built-in transport, no extra
needed; ``GRPCIndex`` of the 5.x-7.x ``pinecone[grpc]`` extra, untested
here): ``query``, ``upsert``, ``fetch``, ``delete``, ``update``, ``search``,
``upsert_records``, ``search_records``, ``fetch_by_metadata``,
``list_paginated`` and ``list`` (one event per walk of the pages, see
``_walk``); on the gRPC index also the ``*_async`` methods, so that the
request pinecone runs on its thread pool is recorded in the caller's
section. On ``Inference`` / ``AsyncInference``: ``embed`` and ``rerank``.
A method missing in the installed version is skipped.

The caller's thread only times the call and queues the response object with
a few request facts (``_payload``); units are read from it on the exporter
thread (``_events.pinecone_event``). Read/write units come from the
response's ``usage`` when Pinecone reports it; otherwise, for the original
operations, an estimate (see ``_events.UNIT_ESTIMATES``) is recorded with
``attributes.units_estimated = true``, and for the others the event carries
``usage_known: false``.

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
from .._guard import check as _guard_check
from ..context import _current, sampled_out
from ._patching import Patcher

logger = logging.getLogger("llmobserve")

OPS = (
    "query",
    "upsert",
    "fetch",
    "delete",
    "update",
    "search",
    "upsert_records",
    "search_records",
    "fetch_by_metadata",
    "list_paginated",
)
# GrpcIndex: each runs the sync method on pinecone's own thread pool
FUTURE_OPS = ("upsert_async", "query_async", "fetch_async", "delete_async", "update_async")
INFERENCE_OPS = ("embed", "rerank")

# (module, class, flavour): "sync", "async" or "grpc" (sync, plus FUTURE_OPS)
INDEX_CLASSES = [
    ("pinecone.index", "Index", "sync"),
    ("pinecone.async_client.async_index", "AsyncIndex", "async"),
    ("pinecone.grpc", "GrpcIndex", "grpc"),
    # pinecone 5.x-7.x layout (and the pinecone[grpc] extra of those releases)
    ("pinecone.db_data.index", "Index", "sync"),
    ("pinecone.db_data.index_asyncio", "_IndexAsyncio", "async"),
    ("pinecone.grpc.index_grpc", "GRPCIndex", "grpc"),
]
# (module, class, is_async); in pinecone 10 the older paths name the same
# classes, which the Patcher then leaves alone (already wrapped)
INFERENCE_CLASSES = [
    ("pinecone.client.inference", "Inference", False),
    ("pinecone.async_client.inference", "AsyncInference", True),
    ("pinecone.inference.inference", "Inference", False),
    ("pinecone.inference.inference_asyncio", "AsyncioInference", True),
]

_patcher = Patcher()
_perf = time.perf_counter
_time = time.time
_emit = _state.emit_call
_get_frame = _current.get


class _Pages:
    """The pages one ``list()`` walk fetched: while it runs, its
    ``list_paginated`` calls add their response here instead of sending an
    event of their own."""

    __slots__ = ("pages",)

    def __init__(self) -> None:
        self.pages: list[Any] = []

    def add(self, page: Any) -> Any:
        self.pages.append(page)
        return page

    async def add_awaited(self, coro: Any) -> Any:
        page = await coro
        self.pages.append(page)
        return page


# None outside any instrumented call; True inside one (search_records
# delegates to search, upsert batches to helpers: only the outermost call is
# recorded); a _Pages while a list() walk fetches a page.
_inside: contextvars.ContextVar[Any] = contextvars.ContextVar("llmobserve_pinecone_inside", default=None)


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


def _host(instance: Any) -> str | None:
    host = getattr(instance, "_host", None) or getattr(instance, "host", None)
    return host if isinstance(host, str) else None


def _payload(op: str, instance: Any, kwargs: dict, result: Any) -> tuple:
    """P_PINECONE payload: (op, result, est_n, est_bytes, host, namespace,
    extra, req). ``req`` is what the request adds to the response: the
    search's ``rerank`` argument, ``"filter"`` / ``"dry_run"`` for an update by
    metadata filter, True for a list() walk closed before its last page."""
    n = size = 0
    extra: dict | None = None
    req: Any = None
    if op in ("search", "search_records"):
        req = kwargs.get("rerank")
    elif op == "update" and kwargs.get("filter") is not None:
        req = "dry_run" if kwargs.get("dry_run") else "filter"
    if req is None and getattr(result, "usage", None) is None:
        n, size = _estimate_args(op, kwargs)
        if op in ("fetch", "delete", "upsert", "upsert_records") and n:
            extra = {"records": n}
    return (op, result, n, size, _host(instance), kwargs.get("namespace"), extra, req)


def _model_arg(args: Any, kwargs: dict) -> Any:
    model = kwargs.get("model")
    if model is None and args:
        model = args[0]
    return model


def _record_error(
    frame: Any,
    span: str,
    op: str,
    name: str,
    model: Any,
    instance: Any,
    kwargs: dict,
    wall: float,
    t0: float,
    e: BaseException,
    result: Any = None,
) -> None:
    try:
        status = getattr(e, "status_code", None) or getattr(e, "status", None)
        p = (op, result, 0, 0, _host(instance), kwargs.get("namespace"), None, None)
        attrs = {"http_status": status} if isinstance(status, int) else None
        _emit(frame, span, name, "pinecone", model, wall, _perf() - t0, type(e).__name__, P_PINECONE, p, attrs)
    except Exception:  # pragma: no cover
        pass


def _record(
    frame: Any,
    span: str,
    op: str,
    name: str,
    model: Any,
    instance: Any,
    kwargs: dict,
    wall: float,
    t0: float,
    result: Any,
) -> None:
    try:
        payload = _payload(op, instance, kwargs, result)
        _emit(frame, span, name, "pinecone", model, wall, _perf() - t0, None, P_PINECONE, payload, None)
    except Exception:
        logger.debug("llmobserve: pinecone record failed", exc_info=True)


def _make_sync(prefix: str, op: str) -> Any:
    name = prefix + op
    inference = prefix == "inference."
    span = "llm" if inference else "vector_db"
    paged = op == "list_paginated"

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not _state.active:
            return wrapped(*args, **kwargs)
        inside = _inside.get()
        if inside is not None:
            if paged and inside is not True:
                return inside.add(wrapped(*args, **kwargs))
            return wrapped(*args, **kwargs)
        frame = _get_frame()
        model = _model_arg(args, kwargs) if inference else None
        if _state.guarding:  # opt-in budget guard: may raise BudgetExceeded, before anything is sent
            _guard_check(frame, span, name, "pinecone", model)
        if sampled_out(frame):
            return wrapped(*args, **kwargs)
        # calls pinecone makes from inside this one are not recorded again
        token = _inside.set(True)
        wall = _time()
        t0 = _perf()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as e:
            _record_error(frame, span, op, name, model, instance, kwargs, wall, t0, e)
            raise
        finally:
            _inside.reset(token)
        _record(frame, span, op, name, model, instance, kwargs, wall, t0, result)
        return result

    return wrapper


def _make_async(prefix: str, op: str) -> Any:
    name = prefix + op
    inference = prefix == "inference."
    span = "llm" if inference else "vector_db"
    paged = op == "list_paginated"

    async def guarded(wrapped: Any, instance: Any, args: Any, kwargs: Any, frame: Any, model: Any) -> Any:
        _guard_check(frame, span, name, "pinecone", model)  # raised from the caller's await
        if sampled_out(frame):
            return await wrapped(*args, **kwargs)
        return await call(wrapped, instance, args, kwargs, frame, model)

    async def call(wrapped: Any, instance: Any, args: Any, kwargs: Any, frame: Any, model: Any) -> Any:
        token = _inside.set(True)
        wall = _time()
        t0 = _perf()
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as e:
            _record_error(frame, span, op, name, model, instance, kwargs, wall, t0, e)
            raise
        finally:
            _inside.reset(token)
        _record(frame, span, op, name, model, instance, kwargs, wall, t0, result)
        return result

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not _state.active:
            return wrapped(*args, **kwargs)
        inside = _inside.get()
        if inside is not None:
            if paged and inside is not True:
                return inside.add_awaited(wrapped(*args, **kwargs))
            return wrapped(*args, **kwargs)
        frame = _get_frame()
        if _state.guarding:
            return guarded(wrapped, instance, args, kwargs, frame, _model_arg(args, kwargs) if inference else None)
        if sampled_out(frame):
            return wrapped(*args, **kwargs)
        return call(wrapped, instance, args, kwargs, frame, _model_arg(args, kwargs) if inference else None)

    return wrapper


# ------------------------------------------------------------------ list()
# list() is a generator over list_paginated: nothing is requested until it is
# iterated. One event per walk, sent when the walk ends: its last page, an
# error, or the caller closing (or dropping) it early; a walk never started
# requested nothing and sends nothing.
def _walk_done(
    frame: Any, instance: Any, kwargs: dict, wall: float, t0: float, acc: _Pages, ended: bool, error: Any
) -> None:
    if error is not None:  # with the pages fetched before it
        _record_error(frame, "vector_db", "list", "index.list", None, instance, kwargs, wall, t0, error, acc)
        return
    try:
        payload = ("list", acc, 0, 0, _host(instance), kwargs.get("namespace"), None, None if ended else True)
        _emit(frame, "vector_db", "index.list", "pinecone", None, wall, _perf() - t0, None, P_PINECONE, payload, None)
    except Exception:
        logger.debug("llmobserve: pinecone record failed", exc_info=True)


def _walk(pages: Any, frame: Any, instance: Any, kwargs: dict) -> Any:
    acc = _Pages()
    wall = _time()
    t0 = _perf()
    ended = False
    error: BaseException | None = None
    try:
        while True:
            token = _inside.set(acc)
            try:
                page = next(pages)
            except StopIteration:
                ended = True
                return
            finally:
                _inside.reset(token)
            yield page
    except GeneratorExit:
        raise
    except BaseException as e:
        error = e
        raise
    finally:
        _walk_done(frame, instance, kwargs, wall, t0, acc, ended, error)
        if not ended:
            try:
                pages.close()
            except Exception:
                pass


async def _awalk(pages: Any, frame: Any, instance: Any, kwargs: dict) -> Any:
    acc = _Pages()
    wall = _time()
    t0 = _perf()
    ended = False
    error: BaseException | None = None
    try:
        while True:
            token = _inside.set(acc)
            try:
                page = await pages.__anext__()
            except StopAsyncIteration:
                ended = True
                return
            finally:
                _inside.reset(token)
            yield page
    except GeneratorExit:
        raise
    except BaseException as e:
        error = e
        raise
    finally:
        _walk_done(frame, instance, kwargs, wall, t0, acc, ended, error)


def _make_list(is_async: bool) -> Any:
    walk = _awalk if is_async else _walk
    step = "__anext__" if is_async else "__next__"

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not _state.active or _inside.get() is not None:
            return wrapped(*args, **kwargs)
        frame = _get_frame()
        if _state.guarding:
            _guard_check(frame, "vector_db", "index.list", "pinecone", None)
        if sampled_out(frame):
            return wrapped(*args, **kwargs)
        pages = wrapped(*args, **kwargs)
        if not hasattr(pages, step):  # not the generator of pages we know: left as it is
            return pages
        return walk(pages, frame, instance, kwargs)

    return wrapper


# ------------------------------------------------------- GrpcIndex *_async
class _CallersContext:
    """Stands in for a GrpcIndex's thread pool during one ``*_async`` call:
    the request it submits runs in a copy of the caller's context, so its
    event belongs to the caller's section and run."""

    __slots__ = ("_executor",)

    def __init__(self, executor: Any) -> None:
        self._executor = executor

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        return self._executor.submit(contextvars.copy_context().run, fn, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._executor, name)


def _in_callers_context(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if not _state.active:
        return wrapped(*args, **kwargs)
    try:
        executor = vars(instance).get("_executor")
        if executor is None or isinstance(executor, _CallersContext):
            return wrapped(*args, **kwargs)
        instance._executor = _CallersContext(executor)
    except Exception:
        return wrapped(*args, **kwargs)
    try:
        return wrapped(*args, **kwargs)
    finally:
        instance._executor = executor


def _targets() -> list[tuple[str, str, Any]]:
    """The table of wrap targets: (module, "Class.method", wrapper)."""
    out: list[tuple[str, str, Any]] = []
    for module, cls, flavour in INDEX_CLASSES:
        make = _make_async if flavour == "async" else _make_sync
        out.extend((module, f"{cls}.{op}", make("index.", op)) for op in OPS)
        out.append((module, f"{cls}.list", _make_list(flavour == "async")))
        if flavour == "grpc":
            out.extend((module, f"{cls}.{op}", _in_callers_context) for op in FUTURE_OPS)
    for module, cls, is_async in INFERENCE_CLASSES:
        make = _make_async if is_async else _make_sync
        out.extend((module, f"{cls}.{op}", make("inference.", op)) for op in INFERENCE_OPS)
    return out


def instrument() -> bool:
    if _patcher.applied:
        return True
    try:
        import pinecone  # noqa: F401
    except Exception:
        return False
    for module, path, wrapper in _targets():
        _patcher.patch(module, path, wrapper)
    return _patcher.applied


def uninstrument() -> None:
    _patcher.unpatch_all()


def is_instrumented() -> bool:
    return _patcher.applied
