"""OpenAI instrumentation (openai 1.x on ``httpx`` and 2.x/3.x on ``httpx2``).

Wrapped (sync and async): ``chat.completions.create`` / ``.parse``,
``responses.create`` / ``.parse``, ``embeddings.create``,
``completions.create``. ``chat.completions.stream()`` / ``responses.stream()``
and ``with_raw_response`` go through these methods and are covered too.

Hot path: read the context, time the call, put one small tuple on the
exporter queue. A non-streamed result's usage is read into a few numbers
there (the result itself is never queued); stream bodies are decoded on the
exporter thread. Every call also carries its client's provider and API host
(SPEC §2 ``provider``, ``provider_host``), worked out once per client.
"""

from __future__ import annotations

import inspect
import logging
import re
import time
import weakref
from typing import Any

import wrapt

from .. import _state
from .._events import P_NONE, P_OPENAI_RAW, P_OPENAI_STREAM, P_TOKENS, openai_tools, openai_usage
from .._guard import check as _guard_check
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
_SSEDecoder: Any = None  # openai's own text/event-stream decoder
_LineDecoder: Any = None  # the SSE decoder's line splitter, where openai has one (3.x; 1.x has none)
_Azure: tuple = ()  # openai's AzureOpenAI and AsyncAzureOpenAI classes
_UNKNOWN_CLIENT = ("openai", None)


def _who(instance: Any) -> tuple:
    """(provider, provider_host) of the client behind ``instance`` (one of
    its resources): worked out once per client and kept on it with the base
    URL it was worked out from, so a client whose ``base_url`` is set anew
    is looked at again. Cached: two attribute reads and a comparison a call."""
    try:
        c = instance._client
        w = c._llmo_who
        if w[0] is c._base_url:
            return w[1]
    except Exception:
        pass
    return _identify(instance)


def _identify(instance: Any) -> tuple:
    """The client's ``AzureOpenAI``/``AsyncAzureOpenAI`` class, or a base
    URL on ``*.openai.azure.com``: ``azure``; otherwise ``openai``. The host
    is the base URL's, with its port when not the scheme's default
    (``api.openai.com``, ``acme.openai.azure.com``, ``localhost:8080``)."""
    try:
        c = instance._client
        url = c._base_url
        host = url.netloc.decode("ascii").lower() or None
        azure = isinstance(c, _Azure) or (url.host or "").lower().endswith(".openai.azure.com")
        who = ("azure" if azure else "openai", host)
    except Exception:
        return _UNKNOWN_CLIENT
    try:
        c._llmo_who = (url, who)
    except Exception:  # pragma: no cover - a client that takes no attributes
        pass
    return who


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
    __slots__ = (
        "frame",
        "name",
        "who",
        "model",
        "wall",
        "t0",
        "first",
        "usage",
        "head",
        "ctx",
        "hide",
        "done",
        "kind",
        "hooked",
        "req",
    )

    def __init__(
        self, frame: Any, name: str, who: tuple, model: Any, wall: float, t0: float, hide: bool, kind: int
    ) -> None:
        self.frame = frame
        self.name = name
        self.who = who  # (provider, provider_host)
        self.model = model
        self.wall = wall
        self.t0 = t0
        self.first: float | None = None
        # usage object / dict, or the SSE line (bytes) of the chunk that carried it; None: not (yet) known
        self.usage: Any = None
        self.head: bytes | None = None  # start of the body (its "model", "service_tier"), decoded by the exporter
        self.ctx: tuple | None = None  # (service_tier, usage_details) read from parsed events
        self.hide = hide
        self.done = False
        self.kind = kind
        self.hooked = False  # the response body goes through _scan_bytes
        self.req = model  # the model the request named (self.model may become the response's)

    def __del__(self) -> None:
        # The last of what holds this state is gone (the stream, through its
        # decoder shim and close hook; the body scan; the proxy, where there is
        # one): a stream never finished is recorded incomplete.
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
        t = _perf()
        ttft = None if st.first is None else st.first - st.t0
        pay = (st.usage, st.head, ttft, incomplete, st.ctx)
        _emit(
            st.frame,
            "llm",
            st.name,
            st.who,
            st.model,
            st.wall,
            t - st.t0,
            error_type,
            P_OPENAI_STREAM,
            pay,
            None,
            st.req,
        )
    except Exception:  # pragma: no cover
        logger.debug("llmobserve: stream finish failed", exc_info=True)


def _see(st: _StreamState, item: Any) -> bool:
    """Record what a parsed chunk/event tells us; True if it must be hidden.
    Used for Responses streams, and for chat/completions streams when the
    body scan could not be hooked (other openai internals)."""
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
                    st.ctx = (getattr(r, "service_tier", None), openai_tools(getattr(r, "output", None) or ()))
        return False
    if st.first is None:
        st.first = _perf()
        m = getattr(item, "model", None)
        if m:
            st.model = m
    u = getattr(item, "usage", None)
    if u is not None:  # on the usage-only chunk, or on a content chunk (compatible servers)
        st.usage = u
        st.ctx = (getattr(item, "service_tier", None), None)
        if st.hide and not getattr(item, "choices", True):
            return True
    return False


def _line_start(buf: bytes, i: int) -> int:
    return max(buf.rfind(b"\n", 0, i), buf.rfind(b"\r", 0, i)) + 1


def _line_end(buf: bytes, i: int) -> int:
    """Just past the end of the line holding ``buf[i]`` (LF, CRLF or CR)."""
    n = buf.find(b"\n", i)
    r = buf.find(b"\r", i, n if n >= 0 else len(buf))
    if r >= 0:
        return r + 2 if buf[r + 1 : r + 2] == b"\n" else r + 1
    return len(buf) if n < 0 else n + 1


def _at_data_field(buf: bytes, i: int) -> bool:
    """Whether ``buf[i:]`` is the start of a ``data:`` field's value (so a
    marker found there is an event, not text inside some chunk's JSON)."""
    head = buf[_line_start(buf, i) : i]
    return head == b"data: " or head == b"data:"


# a usage object, compact or spaced JSON: one pass of the regex engine over
# the bytes (two finds, one per form, cost ~1.7x as much on a whole body)
_USAGE_OBJ = re.compile(rb'"usage": ?\{')


def _special(buf: bytes, st: _StreamState) -> bytes:
    """The complete SSE lines ``buf`` hold something besides the usual
    content chunks: a chunk carrying usage (kept as bytes for the exporter,
    the last one wins), ``[DONE]`` (the stream is complete), an in-stream
    error (openai raises APIError). The JSON markers cannot occur inside a
    string (its quotes are escaped), so a ``data:`` line holding a
    ``"usage":{`` object is a chunk carrying usage: the usage-only chunk
    (``"choices":[]``), cut out when we asked for it, or a content chunk
    that OpenAI-compatible servers send with the usage on it, passed on
    untouched (Azure's first chunk also has ``"choices":[]``, but no usage);
    ``[DONE]`` can occur in text, so it counts only as a ``data:`` field's
    whole value."""
    m = _USAGE_OBJ.search(buf)
    while m is not None:
        s = _line_start(buf, m.start())
        e = _line_end(buf, m.start())
        line = buf[s:e]
        if line.startswith(b"data:"):
            st.usage = line
            if st.hide and (line.find(b'"choices":[]') > 0 or line.find(b'"choices": []') > 0):
                # no data line left: the blank line after it dispatches no event
                buf = buf[:s] + buf[e:]
                e = s
        m = _USAGE_OBJ.search(buf, e)
    i = buf.rfind(b"[DONE]")  # the last event: any earlier one is text
    if i >= 0 and _at_data_field(buf, i):
        _finish(st)  # openai stops reading here: the stream is complete
    i = buf.find(b'{"error"')
    while i >= 0:
        if _at_data_field(buf, i):
            _finish(st, "APIError")  # openai raises APIError for this event
            break
        i = buf.find(b'{"error"', i + 1)
    return buf


# The usual network chunk is one content chunk, alone: one line (its first
# newline is the "\n\n" that ends it) holding ,"usage":null (compact JSON,
# the API's form), perhaps followed by other members (the API's "obfuscation"
# padding, of random length). Such a line cannot be the usage chunk, [DONE]
# or an error event, and the bytes cannot occur inside a string (its quotes
# would be escaped): so where rfind finds them is the member to cut (its 13
# bytes), by two slices (less than half the cost of a replace over the chunk).
_NULL_USAGE = b',"usage":null'
_DONE = b"data: [DONE]\n\n"
_USAGE_CHUNK = b'"choices":[],"usage":{'  # the usage-only chunk, in the API's form


def _take(st: _StreamState, carry: bytes, chunk: bytes, final: bool = False) -> tuple[bytes, bytes]:
    """One network chunk of a chat/completions stream in, before openai's
    decoder splits it: returns (complete lines, scanned, to hand on now; the
    incomplete last line, kept for the next chunk so no marker is ever split;
    ``final``: the body ended, take it all). When we asked for usage, every
    content chunk carries ``"usage":null``: stripped in one pass over the
    whole network chunk, so openai decodes exactly the bytes it would have
    got without us.

    The usual chunk (one content chunk alone: two finds and, when we asked
    for usage, two slices) is handled inline by the callers; the
    usage chunk alone and ``[DONE]`` alone leave by the first exits here;
    the rest is the general path. Every step costs several times its
    instruction count, as the caller's code between chunks evicts ours from
    the CPU's caches: so the fewest calls and passes over the bytes. Runs
    inside the caller's iteration, so it never raises: on any surprise the
    bytes go on untouched (at worst the caller sees what it asked for)."""
    try:
        buf = carry + chunk if carry else chunk
        if not buf:
            return b"", b""
        # the usual last two network chunks: the usage chunk alone, [DONE] alone
        if buf == _DONE:
            _finish(st)  # openai stops reading here: the stream is complete
            return buf, b""
        if buf.find(_USAGE_CHUNK) > 0 and buf.find(b"\n") == len(buf) - 2 and buf[-1:] == b"\n" and buf[:5] == b"data:":
            st.usage = buf
            return (b"" if st.hide else buf), b""
        rest = b""
        if buf[-1] != 10 and not final:
            i = max(buf.rfind(b"\n"), buf.rfind(b"\r")) + 1
            if i == 0:
                return b"", buf
            if i < len(buf):
                buf, rest = buf[:i], buf[i:]
        if st.first is None:
            st.first = _perf()
            st.head = buf[:512]  # its "model": read by the exporter
        if st.hide:
            new = buf.replace(_NULL_USAGE, b"")
            if len(new) == len(buf):
                new = buf.replace(b', "usage": null', b"")
            buf = new
        return _special(buf, st), rest
    except Exception:
        logger.debug("llmobserve: stream scan failed; bytes passed on as they came", exc_info=True)
        try:
            return carry + chunk, b""
        except Exception:
            return chunk, b""


def _error_name(e: BaseException) -> str:
    """The name of the error the caller sees for ``e``, raised by the
    response body: openai 2.x/3.x's ``Stream._iter_events`` turns transport
    errors into its own (1.x lets them through). Asked at error time, since
    openai's answer depends on which HTTP libraries are loaded by then."""
    try:
        from openai import _streaming

        for fn, name in (("timeout_exceptions", "APITimeoutError"), ("request_exceptions", "APIConnectionError")):
            types = getattr(_streaming, fn, None)
            if types is not None and isinstance(e, tuple(types())):
                return name
    except Exception:  # pragma: no cover
        pass
    return type(e).__name__


def _left(st: _StreamState, e: BaseException) -> None:
    """The body scan was left by ``e``: the caller abandoned the stream
    (``GeneratorExit``: recorded as ended early) or the body failed (recorded
    as an error, under the name the caller sees)."""
    if isinstance(e, GeneratorExit):
        _finish(st, None, True)
    else:
        _finish(st, _error_name(e))


def _scan_bytes(chunks: Any, st: _StreamState) -> Any:
    """Stands between the response body and openai's SSE decoder for one
    chat/completions stream (see :func:`_take`), and emits the stream's event:
    at ``[DONE]``, when the body ends, on a transport error, or when the
    stream is abandoned. Work is per network chunk, not per event."""
    carry = b""
    try:
        for chunk in chunks:
            # the usual chunk (see _take), inline: a call per chunk would be
            # most of its cost; exact bytes, so nothing here can raise
            if not carry and type(chunk) is bytes:
                i = chunk.rfind(_NULL_USAGE)
                if i > 0 and chunk.find(b"\n") == len(chunk) - 2 and chunk[-1] == 10:
                    if st.first is None:
                        st.first = _perf()
                        st.head = chunk[:512]  # its "model": read by the exporter
                    yield chunk[:i] + chunk[i + 13 :] if st.hide else chunk
                    continue
            out, carry = _take(st, carry, chunk)
            if out:
                yield out
        if carry:
            yield _take(st, b"", carry, True)[0]  # the body ended mid-line
    except BaseException as e:
        _left(st, e)
        raise
    _finish(st)


async def _adecode(dec: Any, chunks: Any, st: _StreamState) -> Any:
    """Async streams where openai's SSE decoder has a line splitter
    (``_SSELineDecoder``: openai 3.x): takes the place of the decoder's own
    ``aiter_bytes`` loop, doing its steps (its line splitter, its
    ``_decode_lines``, its reset at the end) with the byte scan of
    :func:`_scan_bytes` inline. An async iterator in front of openai's loop
    (:class:`_AsyncScanBytes`, openai 1.x) costs a coroutine per network
    chunk: ~12 µs a 20-chunk stream, measured in the caller's loop. Taking
    the place of openai's async generator adds none to finalise."""
    lines = _LineDecoder()
    decode = dec._decode_lines
    carry = b""
    try:
        async for chunk in chunks:
            if not carry and type(chunk) is bytes:
                i = chunk.rfind(_NULL_USAGE)
                if i > 0 and chunk.find(b"\n") == len(chunk) - 2 and chunk[-1] == 10:
                    if st.first is None:
                        st.first = _perf()
                        st.head = chunk[:512]
                    for sse in decode(lines.feed(chunk[:i] + chunk[i + 13 :] if st.hide else chunk)):
                        yield sse  # the usual chunk, inline (see _scan_bytes)
                    continue
            out, carry = _take(st, carry, chunk)
            if out:
                for sse in decode(lines.feed(out)):
                    yield sse
        if carry:  # the body ended mid-line
            for sse in decode(lines.feed(_take(st, b"", carry, True)[0])):
                yield sse
        for sse in decode(lines.finish()):
            yield sse
    except BaseException as e:
        _left(st, e)
        raise
    finally:
        dec._reset()
    _finish(st)


class _AsyncScanBytes:
    """The async twin of :func:`_scan_bytes` (openai 1.x; see :func:`_adecode`
    for later versions), as a plain async iterator, not
    an async generator: openai stops reading at ``[DONE]`` and leaves the
    iterator suspended, and an abandoned async generator costs a finaliser
    task on the event loop (``aclose()``). An abandoned stream is recorded by
    ``_StreamState.__del__``."""

    __slots__ = ("_next", "_st", "_carry", "_ended")

    def __init__(self, chunks: Any, st: _StreamState) -> None:
        self._next = chunks.__aiter__().__anext__
        self._st = st
        self._carry = b""
        self._ended = False

    def __aiter__(self) -> _AsyncScanBytes:
        return self

    async def __anext__(self) -> bytes:
        st = self._st
        while not self._ended:
            try:
                chunk = await self._next()
            except StopAsyncIteration:
                self._ended = True
                if self._carry:
                    out, self._carry = _take(st, b"", self._carry, True)[0], b""
                    return out
                break
            except BaseException as e:
                _left(st, e)
                raise
            if not self._carry and type(chunk) is bytes:
                i = chunk.rfind(_NULL_USAGE)
                if i > 0 and chunk.find(b"\n") == len(chunk) - 2 and chunk[-1] == 10:
                    if st.first is None:
                        st.first = _perf()
                        st.head = chunk[:512]
                    return chunk[:i] + chunk[i + 13 :] if st.hide else chunk  # the usual chunk, inline
            out, self._carry = _take(st, self._carry, chunk)
            if out:
                return out
        _finish(st)
        raise StopAsyncIteration


class _DecoderShim:
    """Takes the place of one stream's SSE decoder (``Stream._decoder``, used
    only once iteration starts) and hands openai's own decoder the response
    body through :func:`_scan_bytes`; anything else goes to the decoder."""

    __slots__ = ("_dec", "_st")

    def __init__(self, dec: Any, st: _StreamState) -> None:
        self._dec = dec
        self._st = st

    def iter_bytes(self, iterator: Any) -> Any:
        return self._dec.iter_bytes(_scan_bytes(iterator, self._st))

    def aiter_bytes(self, iterator: Any) -> Any:
        if _LineDecoder is not None:
            return _adecode(self._dec, iterator, self._st)
        return self._dec.aiter_bytes(_AsyncScanBytes(iterator, self._st))

    def __getattr__(self, name: str) -> Any:
        if name in _DecoderShim.__slots__:  # not set (a copy made without __init__): no recursion
            raise AttributeError(name)
        return getattr(self._dec, name)


def _hook_sse(stream: Any, st: _StreamState) -> None:
    """Route this stream's body through the byte scan (before iteration
    starts). Only under openai's own SSE decoder: a client may bring its own
    (``_make_sse_decoder``), perhaps for a body that is not text/event-stream
    lines at all, where holding bytes back until a newline could stall the
    stream. Then, or if openai's internals differ, ``st.hooked`` stays False
    and the proxy inspects parsed chunks instead."""
    dec = getattr(stream, "_decoder", None)
    if dec is None or _SSEDecoder is None or type(dec) is not _SSEDecoder:
        return
    if getattr(stream, "_iterator", None) is None:
        return
    try:
        stream._decoder = _DecoderShim(dec, st)
        st.hooked = True
    except Exception:  # pragma: no cover
        pass


class _Closer:
    """Takes the place of one stream's ``close`` (an instance attribute, so
    ``close()`` and the ``with`` block's exit reach it): closes the stream,
    then records it as ended early (a no-op once it has ended). It holds the
    stream weakly: no reference cycle, so a stream is freed by reference
    counting as before."""

    __slots__ = ("_ref", "_st")

    def __init__(self, stream: Any, st: _StreamState) -> None:
        self._ref = weakref.ref(stream)
        self._st = st

    def __call__(self) -> Any:
        s = self._ref()
        try:
            return None if s is None else type(s).close(s)
        finally:
            _finish(self._st, None, True)


class _AsyncCloser(_Closer):
    __slots__ = ()

    async def __call__(self) -> Any:  # type: ignore[override]
        s = self._ref()
        try:
            return None if s is None else await type(s).close(s)
        finally:
            _finish(self._st, None, True)


def _hook_close(stream: Any, st: _StreamState, is_async: bool) -> bool:
    """With the body scan hooked, the stream needs no proxy: the caller gets
    openai's own ``Stream`` (a proxy costs ~10 µs a stream, measured in the
    caller's loop), and only ``close`` is taken over, on this instance."""
    try:
        stream.close = (_AsyncCloser if is_async else _Closer)(stream, st)
        return True
    except Exception:  # e.g. a Stream with __slots__: keep the proxy
        return False


class SyncStreamProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    """Transparent proxy over ``openai.Stream``: same chunks (minus the usage
    chunk we asked for), same attributes, ``with``/``close()`` keep working.
    Emits the event once: exhausted, closed, exited, or garbage-collected
    (see ``_StreamState.__del__``).

    Used where the body scan could not be hooked (Responses streams, a
    client's own SSE decoder: chunks are inspected as parsed), or ``close``
    could not be taken over on the instance; otherwise the caller gets
    openai's own stream (see :func:`_hook_close`)."""

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
def _record(
    frame: Any, name: str, kind: int, who: tuple, model: Any, wall: float, latency: float, result: Any, raw: str | None
) -> None:
    usage = getattr(result, "usage", _MISSING)
    if usage is not _MISSING:
        # a few numbers, not the usage object: a queued record stays ~200
        # bytes; None: the result has no usage (a background response, still
        # queued), recorded as usage unknown
        if usage is None:
            pay = None
        elif kind == CHAT:
            pay = openai_usage(usage, getattr(result, "service_tier", None))
        elif kind == RESPONSES:
            pay = openai_usage(usage, getattr(result, "service_tier", None), getattr(result, "output", None))
        else:  # embeddings, legacy completions: no service_tier field (a missing attribute costs ~2 µs)
            pay = openai_usage(usage)
        _emit(
            frame,
            "llm",
            name,
            who,
            getattr(result, "model", None) or model,
            wall,
            latency,
            None,
            P_TOKENS,
            pay,
            None,
            model,
        )
        return
    http = getattr(result, "http_response", None)
    if http is not None:
        # with_raw_response (LegacyAPIResponse): the body is already read,
        # parsed on the exporter thread. with_streaming_response: the caller
        # reads the body after this returns, so the call is recorded when
        # the response is closed (its ``with`` block's exit), from the body
        # if the caller read it whole (we never consume the caller's body).
        attrs = {"raw_response": True, "http_status": getattr(http, "status_code", None)}
        rec = (frame, name, who, model, wall, latency, http, attrs)
        if raw == "stream" and _defer(result, rec):
            return
        _raw_body(rec)
        return
    # a result that is neither a response object nor a raw response: its usage is unknown
    _emit(frame, "llm", name, who, model, wall, latency, None, P_TOKENS, None, None)


def _raw_body(rec: tuple) -> None:
    """Record a raw response call: from its body when it was read (exact
    usage, parsed on the exporter thread), else as usage unknown."""
    frame, name, who, model, wall, latency, http, attrs = rec
    try:
        content = http.content  # raises when the body was not read
    except Exception:
        content = None
    if content is not None:
        _emit(frame, "llm", name, who, model, wall, latency, None, P_OPENAI_RAW, content, attrs, model)
    else:
        attrs["usage_unavailable"] = True
        _emit(frame, "llm", name, who, model, wall, latency, None, P_TOKENS, None, attrs)


class _RawState:
    """A ``with_streaming_response`` call waiting for its response to be
    closed; recorded once, then or when garbage-collected."""

    __slots__ = ("rec", "done")

    def __init__(self, rec: tuple) -> None:
        self.rec = rec
        self.done = False

    def end(self) -> None:
        if not self.done:
            self.done = True
            try:
                _raw_body(self.rec)
            except Exception:  # pragma: no cover
                logger.debug("llmobserve: raw response record failed", exc_info=True)

    def __del__(self) -> None:
        try:
            self.end()
        except Exception:  # pragma: no cover - interpreter teardown
            pass


class _RawCloser:
    """Takes the place of a ``with_streaming_response`` response's ``close``
    (on that instance; held weakly, like :class:`_Closer`)."""

    __slots__ = ("_ref", "_st")

    def __init__(self, resp: Any, st: _RawState) -> None:
        self._ref = weakref.ref(resp)
        self._st = st

    def __call__(self) -> Any:
        r = self._ref()
        try:
            return None if r is None else type(r).close(r)
        finally:
            self._st.end()


class _RawAsyncCloser(_RawCloser):
    __slots__ = ()

    async def __call__(self) -> Any:  # type: ignore[override]
        r = self._ref()
        try:
            return None if r is None else await type(r).close(r)
        finally:
            self._st.end()


def _defer(result: Any, rec: tuple) -> bool:
    try:
        closer = _RawAsyncCloser if inspect.iscoroutinefunction(type(result).close) else _RawCloser
        result.close = closer(result, _RawState(rec))
        return True
    except Exception:
        return False


def _error(
    frame: Any, name: str, who: tuple, model: Any, wall: float, t0: float, e: BaseException, stream: bool
) -> None:
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
            who,
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
    who: tuple,
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
                st = _StreamState(frame, name, who, model, wall, t0, hide, kind)
                if kind != RESPONSES:
                    _hook_sse(result, st)
                    if st.hooked and _hook_close(result, st, False):
                        return result
                return SyncStreamProxy(result, st)
            if _AsyncStream is not None and isinstance(result, _AsyncStream):
                st = _StreamState(frame, name, who, model, wall, t0, hide, kind)
                if kind != RESPONSES:
                    _hook_sse(result, st)
                    if st.hooked and _hook_close(result, st, True):
                        return result
                return AsyncStreamProxy(result, st)
        _record(frame, name, kind, who, model, wall, _perf() - t0, result, raw)
    except Exception:
        logger.debug("llmobserve: record failed", exc_info=True)
    return result


def _make_sync(name: str, kind: int) -> Any:
    streamable = kind in (CHAT, RESPONSES, COMPLETIONS) and not name.endswith(".parse")

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not _state.active:
            return wrapped(*args, **kwargs)
        frame = _get_frame()
        if _state.guarding:  # opt-in budget guard: may raise BudgetExceeded, before anything is sent
            _guard_check(frame, "llm", name, _who(instance), kwargs.get("model"))
        if sampled_out(frame):
            return wrapped(*args, **kwargs)
        stream, hide, raw = _prepare(kwargs, kind, streamable)
        model = kwargs.get("model")
        who = _who(instance)
        wall = _time()
        t0 = _perf()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as e:
            _error(frame, name, who, model, wall, t0, e, stream)
            raise
        return _result(frame, name, kind, who, model, wall, t0, result, stream, hide, raw)

    return wrapper


def _make_async(name: str, kind: int) -> Any:
    streamable = kind in (CHAT, RESPONSES, COMPLETIONS) and not name.endswith(".parse")

    async def call(wrapped: Any, instance: Any, args: Any, kwargs: Any, frame: Any) -> Any:
        stream, hide, raw = _prepare(kwargs, kind, streamable)
        model = kwargs.get("model")
        who = _who(instance)
        wall = _time()
        t0 = _perf()
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as e:
            _error(frame, name, who, model, wall, t0, e, stream)
            raise
        return _result(frame, name, kind, who, model, wall, t0, result, stream, hide, raw)

    async def guarded(wrapped: Any, instance: Any, args: Any, kwargs: Any, frame: Any) -> Any:
        # checked when the coroutine runs, as the request would start: the
        # caller gets BudgetExceeded from its ``await``, like any error of the call
        _guard_check(frame, "llm", name, _who(instance), kwargs.get("model"))
        if sampled_out(frame):
            return await wrapped(*args, **kwargs)
        return await call(wrapped, instance, args, kwargs, frame)

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not _state.active:
            return wrapped(*args, **kwargs)
        frame = _get_frame()
        if _state.guarding:
            return guarded(wrapped, instance, args, kwargs, frame)
        if sampled_out(frame):
            return wrapped(*args, **kwargs)
        return call(wrapped, instance, args, kwargs, frame)

    return wrapper


def instrument() -> bool:
    """Wrap the installed ``openai`` (idempotent). False if openai is absent."""
    global _Stream, _AsyncStream, _SSEDecoder, _LineDecoder, _Azure
    if _patcher.applied:
        return True
    try:
        import openai  # noqa: F401
        from openai import AsyncStream, Stream
    except Exception:
        return False
    _Stream, _AsyncStream = Stream, AsyncStream
    try:
        from openai import AsyncAzureOpenAI, AzureOpenAI

        _Azure = (AzureOpenAI, AsyncAzureOpenAI)
    except Exception:  # pragma: no cover
        _Azure = ()
    try:
        from openai._streaming import SSEDecoder

        _SSEDecoder = SSEDecoder
    except Exception:  # pragma: no cover - other openai internals: parsed-chunk path
        _SSEDecoder = None
    try:  # openai 3.x: async streams decoded by _adecode (1.x: _AsyncScanBytes)
        from openai._streaming import _SSELineDecoder

        ok = all(hasattr(SSEDecoder, m) for m in ("_decode_lines", "_reset"))
        _LineDecoder = _SSELineDecoder if ok and hasattr(_SSELineDecoder, "finish") else None
    except Exception:
        _LineDecoder = None
    for module, path, name, kind, is_async in TARGETS:
        _patcher.patch(module, path, _make_async(name, kind) if is_async else _make_sync(name, kind))
    return _patcher.applied


def uninstrument() -> None:
    _patcher.unpatch_all()


def is_instrumented() -> bool:
    return _patcher.applied
