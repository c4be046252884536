"""OpenAI instrumentation (openai 1.x on ``httpx`` and 2.x/3.x on ``httpx2``).

Wrapped (sync and async): ``chat.completions.create`` / ``.parse``,
``responses.create`` / ``.parse``, ``embeddings.create``,
``completions.create``. ``chat.completions.stream()`` / ``responses.stream()``
and ``with_raw_response`` go through these methods and are covered too.

Hot path: read the context, time the call, put one small tuple on the
exporter queue. Token extraction happens on the exporter thread.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import wrapt

from .. import _state
from .._events import P_NONE, P_OPENAI_RAW, P_TOKENS, openai_tokens
from ..context import _current, sampled_out
from ._patching import Patcher

logger = logging.getLogger("llmobserve")

CHAT, RESPONSES, EMBEDDINGS, COMPLETIONS = 0, 1, 2, 3

_RAW_HEADER = "X-Stainless-Raw-Response"

# (module, Class.method, event name, kind, is_async)
TARGETS = [
    ("openai.resources.chat.completions", "Completions.create", "chat.completions.create", CHAT, False),
    ("openai.resources.chat.completions", "AsyncCompletions.create", "chat.completions.create", CHAT, True),
    ("openai.resources.chat.completions", "Completions.parse", "chat.completions.parse", CHAT, False),
    ("openai.resources.chat.completions", "AsyncCompletions.parse", "chat.completions.parse", CHAT, True),
    ("openai.resources.responses", "Responses.create", "responses.create", RESPONSES, False),
    ("openai.resources.responses", "AsyncResponses.create", "responses.create", RESPONSES, True),
    ("openai.resources.responses", "Responses.parse", "responses.parse", RESPONSES, False),
    ("openai.resources.responses", "AsyncResponses.parse", "responses.parse", RESPONSES, True),
    ("openai.resources.embeddings", "Embeddings.create", "embeddings.create", EMBEDDINGS, False),
    ("openai.resources.embeddings", "AsyncEmbeddings.create", "embeddings.create", EMBEDDINGS, True),
    ("openai.resources.completions", "Completions.create", "completions.create", COMPLETIONS, False),
    ("openai.resources.completions", "AsyncCompletions.create", "completions.create", COMPLETIONS, True),
]

_patcher = Patcher()
_perf = time.perf_counter
_time = time.time
_emit = _state.emit_call
_get_frame = _current.get
_MISSING = object()
_RESP_FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})

_Stream: Any = None
_AsyncStream: Any = None


def _raw_mode(kwargs: dict) -> str | None:
    eh = kwargs.get("extra_headers")
    if eh:
        try:
            return eh.get(_RAW_HEADER)
        except Exception:
            return None
    return None


def _inject_usage(kwargs: dict) -> bool:
    """Ask for the final usage chunk on chat/completions streams. Returns True
    when we added it (so the usage-only chunk must be hidden from the caller)."""
    so = kwargs.get("stream_options")
    if isinstance(so, dict):
        if so.get("include_usage") is True:
            return False
        new = dict(so)
        new["include_usage"] = True
        kwargs["stream_options"] = new
        return True
    if so is None or not hasattr(so, "__getitem__"):  # absent / NOT_GIVEN / omit
        # Sent through ``extra_body``, which openai merges into the JSON body
        # as is: a ``stream_options`` kwarg would cost a pass of openai's
        # TypedDict transform on every stream. Same request body either way.
        eb = kwargs.get("extra_body")
        if eb is None:
            if so is None and "stream_options" in kwargs:
                del kwargs["stream_options"]  # explicit None: would be sent as null
            kwargs["extra_body"] = {"stream_options": {"include_usage": True}}
            return True
        if isinstance(eb, dict) and "stream_options" not in eb:
            if so is None and "stream_options" in kwargs:
                del kwargs["stream_options"]
            new = dict(eb)
            new["stream_options"] = {"include_usage": True}
            kwargs["extra_body"] = new
            return True
        kwargs["stream_options"] = {"include_usage": True}
        return True
    return False


# ----------------------------------------------------------------- streams
class _StreamState:
    __slots__ = ("frame", "name", "model", "wall", "t0", "first", "usage", "hide", "done", "kind", "hooked")

    def __init__(self, frame: Any, name: str, model: Any, wall: float, t0: float, hide: bool, kind: int) -> None:
        self.frame = frame
        self.name = name
        self.model = model
        self.wall = wall
        self.t0 = t0
        self.first: float | None = None
        self.usage: Any = None
        self.hide = hide
        self.done = False
        self.kind = kind
        self.hooked = False  # usage captured at the SSE level

    def __del__(self) -> None:
        # The last of the proxy, the stream and the SSE scan holding this state
        # is gone (``for c in create(stream=True)`` drops the proxy as soon as
        # iteration starts): a stream never finished is recorded incomplete.
        try:
            if not self.done:
                _finish(self, None, True)
        except Exception:  # pragma: no cover - interpreter teardown
            pass


def _finish(st: _StreamState, error_type: str | None = None, incomplete: bool = False) -> None:
    if st.done:
        return
    st.done = True
    try:
        latency = _perf() - st.t0
        attrs: dict = {"stream": True}
        if st.first is not None:
            attrs["ttft_ms"] = round((st.first - st.t0) * 1000.0, 3)
        if incomplete:
            attrs["stream_incomplete"] = True
        tokens = None if st.usage is None else openai_tokens(st.usage)
        _emit(st.frame, "llm", st.name, "openai", st.model, st.wall, latency, error_type, P_TOKENS, tokens, attrs)
    except Exception:  # pragma: no cover
        logger.debug("llmobserve: stream finish failed", exc_info=True)


def _see(st: _StreamState, item: Any) -> bool:
    """Record what a parsed chunk/event tells us; True if it must be hidden.
    Used for Responses streams, and for chat/completions streams when the
    SSE-level scan could not be hooked (other openai internals)."""
    if st.kind == RESPONSES:
        t = getattr(item, "type", None)
        if t is not None:
            if st.first is None and t.endswith(".delta"):
                st.first = _perf()
            if t in _RESP_FINAL:
                r = getattr(item, "response", None)
                if r is not None:
                    st.usage = getattr(r, "usage", None)
                    st.model = getattr(r, "model", None) or st.model
        return False
    if st.first is None:
        st.first = _perf()
        m = getattr(item, "model", None)
        if m:
            st.model = m
    u = getattr(item, "usage", None)
    if u is not None:
        st.usage = u
        if st.hide and not getattr(item, "choices", True):
            return True
    return False


def _usage_chunk(data: str) -> Any:
    """The decoded chunk if ``data`` is a usage-only chunk (top-level
    ``"choices": []`` and a usage object), else None."""
    try:
        d = json.loads(data)
    except Exception:
        return None
    if isinstance(d, dict) and d.get("choices") == [] and isinstance(d.get("usage"), dict):
        return d
    return None


def _model_of(data: str) -> str | None:
    """The top-level ``"model"`` of the first chunk, without decoding it."""
    i = data.find('"model":')
    if i < 0:
        return None
    i = data.find('"', i + 8)
    j = data.find('"', i + 1)
    return data[i + 1 : j] if 0 < i < j else None


def _first_event(data: str, st: _StreamState) -> None:
    st.first = _perf()
    m = _model_of(data)
    if m:
        st.model = m


def _special_event(sse: Any, data: str, st: _StreamState) -> bool:
    """A chat/completions SSE event that is not a plain content chunk:
    ``[DONE]``, the usage-only chunk, an in-stream error. True when it must be
    dropped (the usage chunk we asked for)."""
    if data[:1] != "{":
        if data.startswith("[DONE]"):
            _finish(st)  # openai stops reading here: the stream is complete
        return False
    if '"choices":[]' in data or '"choices": []' in data:
        d = _usage_chunk(data)
        if d is not None:
            st.usage = d["usage"]
            st.model = d.get("model") or st.model
            return st.hide
    elif data.startswith('{"error"'):
        _finish(st, "APIError")  # openai raises APIError for this event
    return False


def _drop_event(sse: Any, st: _StreamState) -> bool:
    """Look at one raw SSE event of a chat/completions stream before openai
    parses it; True when it must be hidden from the caller (the usage chunk
    we asked for). The common case is one C-level string operation: when we
    asked for usage every content chunk carries ``"usage":null``, which we
    strip (compact JSON, the API's form, first; ``replace`` hands back the
    same object when there is nothing to replace) so openai builds exactly
    the objects it would have built without us."""
    data = sse._data
    if st.first is None:
        _first_event(data, st)
    if st.hide:
        new = data.replace(',"usage":null', "", 1)
        if new is data:
            new = data.replace(', "usage": null', "", 1)
        if new is not data:
            sse._data = new
            return False
    elif '"choices":[{' in data or '"choices": [{' in data:
        return False  # a content chunk (the caller asked for usage itself)
    return _special_event(sse, data, st)


def _scan_events(events: Any, st: _StreamState) -> Any:
    """Wraps the raw SSE events of one chat/completions stream (see
    :func:`_drop_event`) and emits the stream's event: at ``[DONE]``, when
    the events end, on an upstream error, or when the stream is abandoned."""
    try:
        for sse in events:
            if not _drop_event(sse, st):
                yield sse
    except GeneratorExit:
        _finish(st, None, True)
        raise
    except BaseException as e:
        _finish(st, type(e).__name__)
        raise
    _finish(st)


class _AsyncScan:
    """The async twin of :func:`_scan_events`, as a plain async iterator, not
    an async generator: openai stops reading at ``[DONE]`` and leaves the
    iterator suspended, and an abandoned async generator costs a finaliser
    task on the event loop (``aclose()``), one more per stream than openai's
    own. An abandoned stream is recorded by ``_StreamState.__del__``."""

    __slots__ = ("_next", "_st")

    def __init__(self, events: Any, st: _StreamState) -> None:
        self._next = events.__anext__
        self._st = st

    def __aiter__(self) -> _AsyncScan:
        return self

    async def __anext__(self) -> Any:
        st = self._st
        while True:
            try:
                sse = await self._next()
            except StopAsyncIteration:
                _finish(st)
                raise
            except BaseException as e:
                _finish(st, type(e).__name__)
                raise
            if not _drop_event(sse, st):
                return sse


def _iter_events_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Class-level wrapper of ``Stream._iter_events`` (called once per stream):
    streams we proxy carry their state in ``_llmobserve_st``; others pass
    straight through. State on the instance, not a closure, so no reference
    cycle keeps a finished stream alive."""
    st = getattr(instance, "_llmobserve_st", None)
    if st is None:
        return wrapped(*args, **kwargs)
    return _scan_events(wrapped(*args, **kwargs), st)


def _aiter_events_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    st = getattr(instance, "_llmobserve_st", None)
    if st is None:
        return wrapped(*args, **kwargs)
    return _AsyncScan(wrapped(*args, **kwargs), st)


_sse_hooks = {"sync": False, "async": False}


def _hook_sse(stream: Any, st: _StreamState, is_async: bool) -> None:
    """Route this stream's raw SSE events through :func:`_scan_events` (before
    iteration starts). If openai's internals differ, ``st.hooked`` stays
    False and the proxy inspects parsed chunks instead."""
    if not _sse_hooks["async" if is_async else "sync"] or getattr(stream, "_iterator", None) is None:
        return
    try:
        stream._llmobserve_st = st
        st.hooked = True
    except Exception:  # pragma: no cover
        pass


class SyncStreamProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    """Transparent proxy over ``openai.Stream``: same chunks (minus the usage
    chunk we asked for), same attributes, ``with``/``close()`` keep working.
    Emits the event once: exhausted, closed, exited, or garbage-collected
    (see ``_StreamState.__del__``).

    When the SSE scan is hooked (the usual case) iteration is openai's own
    iterator, untouched: the scan below openai's parser sees every event, so
    the proxy adds nothing per chunk."""

    def __init__(self, wrapped: Any, state: _StreamState) -> None:
        super().__init__(wrapped)
        self._self_state = state

    def __iter__(self) -> Any:
        if self._self_state.hooked:
            return self.__wrapped__.__iter__()
        return self._iter_parsed()

    def _iter_parsed(self) -> Any:
        st = self._self_state
        try:
            for item in self.__wrapped__:
                if _see(st, item):
                    continue
                yield item
        except GeneratorExit:
            _finish(st, None, True)
            raise
        except BaseException as e:
            _finish(st, type(e).__name__)
            raise
        _finish(st)

    def __next__(self) -> Any:
        st = self._self_state
        if st.hooked:
            return self.__wrapped__.__next__()
        nxt = self.__wrapped__.__next__
        while True:
            try:
                item = nxt()
            except StopIteration:
                _finish(st)
                raise
            except BaseException as e:
                _finish(st, type(e).__name__)
                raise
            if not _see(st, item):
                return item

    def __enter__(self) -> Any:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc)
        finally:
            _finish(self._self_state, None, True)

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            _finish(self._self_state, None, True)

    def __copy__(self) -> Any:  # pragma: no cover
        raise NotImplementedError

    def __reduce_ex__(self, protocol: Any) -> Any:  # pragma: no cover
        raise NotImplementedError


class AsyncStreamProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    """The ``openai.AsyncStream`` twin of :class:`SyncStreamProxy`."""

    def __init__(self, wrapped: Any, state: _StreamState) -> None:
        super().__init__(wrapped)
        self._self_state = state

    def __aiter__(self) -> Any:
        if self._self_state.hooked:
            return self.__wrapped__.__aiter__()
        return self._aiter_parsed()

    async def _aiter_parsed(self) -> Any:
        st = self._self_state
        try:
            async for item in self.__wrapped__:
                if _see(st, item):
                    continue
                yield item
        except GeneratorExit:
            _finish(st, None, True)
            raise
        except BaseException as e:
            _finish(st, type(e).__name__)
            raise
        _finish(st)

    async def __anext__(self) -> Any:
        st = self._self_state
        if st.hooked:
            return await self.__wrapped__.__anext__()
        nxt = self.__wrapped__.__anext__
        while True:
            try:
                item = await nxt()
            except StopAsyncIteration:
                _finish(st)
                raise
            except BaseException as e:
                _finish(st, type(e).__name__)
                raise
            if not _see(st, item):
                return item

    async def __aenter__(self) -> Any:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc)
        finally:
            _finish(self._self_state, None, True)

    async def close(self) -> Any:
        try:
            return await self.__wrapped__.close()
        finally:
            _finish(self._self_state, None, True)

    def __copy__(self) -> Any:  # pragma: no cover
        raise NotImplementedError

    def __reduce_ex__(self, protocol: Any) -> Any:  # pragma: no cover
        raise NotImplementedError


# ----------------------------------------------------------------- results
def _record(frame: Any, name: str, model: Any, wall: float, latency: float, result: Any, raw: str | None) -> None:
    usage = getattr(result, "usage", _MISSING)
    if usage is not _MISSING:
        _emit(
            frame,
            "llm",
            name,
            "openai",
            getattr(result, "model", None) or model,
            wall,
            latency,
            None,
            P_TOKENS,
            # four ints, not the usage object: a queued record stays ~200 bytes
            None if usage is None else openai_tokens(usage),
            None,
        )
        return
    http = getattr(result, "http_response", None)
    if http is not None:
        # with_raw_response (LegacyAPIResponse): the body is already read, parse
        # it on the exporter thread. with_streaming_response: body not read, so
        # usage is unknown (we never consume the caller's body).
        content = None
        if raw != "stream":
            try:
                content = http.content
            except Exception:
                content = None
        attrs = {"raw_response": True, "http_status": getattr(http, "status_code", None)}
        if content is not None:
            _emit(frame, "llm", name, "openai", model, wall, latency, None, P_OPENAI_RAW, content, attrs)
        else:
            attrs["usage_unavailable"] = True
            _emit(frame, "llm", name, "openai", model, wall, latency, None, P_NONE, None, attrs)
        return
    _emit(frame, "llm", name, "openai", model, wall, latency, None, P_NONE, None, None)


def _error(frame: Any, name: str, model: Any, wall: float, t0: float, e: BaseException, stream: bool) -> None:
    try:
        attrs: dict | None = None
        status = getattr(e, "status_code", None)
        if stream or status is not None:
            attrs = {}
            if stream:
                attrs["stream"] = True
            if isinstance(status, int):
                attrs["http_status"] = status
        _emit(
            frame,
            "llm",
            name,
            "openai",
            model,
            wall,
            _perf() - t0,
            None if e is None else type(e).__name__,
            P_NONE,
            None,
            attrs,
        )
    except Exception:  # pragma: no cover
        logger.debug("llmobserve: error record failed", exc_info=True)


def _prepare(kwargs: dict, kind: int, streamable: bool) -> tuple[bool, bool, str | None]:
    """(stream, hide, raw) for a call about to start; may add the usage
    request to ``kwargs``."""
    stream = hide = False
    raw = None
    try:
        if kwargs.get("extra_headers"):
            raw = _raw_mode(kwargs)
        if streamable and kwargs.get("stream") is True:
            stream = True
            if raw is None and kind != RESPONSES:
                hide = _inject_usage(kwargs)
    except Exception:  # pragma: no cover
        pass
    return stream, hide, raw


def _result(
    frame: Any,
    name: str,
    kind: int,
    model: Any,
    wall: float,
    t0: float,
    result: Any,
    stream: bool,
    hide: bool,
    raw: Any,
) -> Any:
    """Record a finished call, or hand back a stream proxy that records it
    when the stream ends. Returns what the caller gets."""
    try:
        if stream and raw is None:
            if _Stream is not None and isinstance(result, _Stream):
                st = _StreamState(frame, name, model, wall, t0, hide, kind)
                if kind != RESPONSES:
                    _hook_sse(result, st, False)
                return SyncStreamProxy(result, st)
            if _AsyncStream is not None and isinstance(result, _AsyncStream):
                st = _StreamState(frame, name, model, wall, t0, hide, kind)
                if kind != RESPONSES:
                    _hook_sse(result, st, True)
                return AsyncStreamProxy(result, st)
        _record(frame, name, model, wall, _perf() - t0, result, raw)
    except Exception:
        logger.debug("llmobserve: record failed", exc_info=True)
    return result


def _make_sync(name: str, kind: int) -> Any:
    streamable = kind in (CHAT, RESPONSES, COMPLETIONS) and not name.endswith(".parse")

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not _state.active:
            return wrapped(*args, **kwargs)
        frame = _get_frame()
        if sampled_out(frame):
            return wrapped(*args, **kwargs)
        stream, hide, raw = _prepare(kwargs, kind, streamable)
        model = kwargs.get("model")
        wall = _time()
        t0 = _perf()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as e:
            _error(frame, name, model, wall, t0, e, stream)
            raise
        return _result(frame, name, kind, model, wall, t0, result, stream, hide, raw)

    return wrapper


def _make_async(name: str, kind: int) -> Any:
    streamable = kind in (CHAT, RESPONSES, COMPLETIONS) and not name.endswith(".parse")

    async def call(wrapped: Any, args: Any, kwargs: Any, frame: Any) -> Any:
        stream, hide, raw = _prepare(kwargs, kind, streamable)
        model = kwargs.get("model")
        wall = _time()
        t0 = _perf()
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as e:
            _error(frame, name, model, wall, t0, e, stream)
            raise
        return _result(frame, name, kind, model, wall, t0, result, stream, hide, raw)

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not _state.active:
            return wrapped(*args, **kwargs)
        frame = _get_frame()
        if sampled_out(frame):
            return wrapped(*args, **kwargs)
        return call(wrapped, args, kwargs, frame)

    return wrapper


def instrument() -> bool:
    """Wrap the installed ``openai`` (idempotent). False if openai is absent."""
    global _Stream, _AsyncStream
    if _patcher.applied:
        return True
    try:
        import openai  # noqa: F401
        from openai import AsyncStream, Stream
    except Exception:
        return False
    _Stream, _AsyncStream = Stream, AsyncStream
    for module, path, name, kind, is_async in TARGETS:
        _patcher.patch(module, path, _make_async(name, kind) if is_async else _make_sync(name, kind))
    _sse_hooks["sync"] = _patcher.patch("openai._streaming", "Stream._iter_events", _iter_events_wrapper)
    _sse_hooks["async"] = _patcher.patch("openai._streaming", "AsyncStream._iter_events", _aiter_events_wrapper)
    return _patcher.applied


def uninstrument() -> None:
    _sse_hooks["sync"] = _sse_hooks["async"] = False
    _patcher.unpatch_all()


def is_instrumented() -> bool:
    return _patcher.applied
