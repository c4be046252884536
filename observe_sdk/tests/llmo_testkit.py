"""Fakes for the SDK tests: a loopback collector, an OpenAI upstream served
through the real client's transport (``httpx2`` for openai 2.x/3.x, ``httpx``
for 1.x), and a loopback Pinecone data plane for the real pinecone client.
Our own code is never mocked."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import llmobserve
import pytest
from llmobserve import _state


# --------------------------------------------------------------------------- servers
class LoopbackServer:
    """A ThreadingHTTPServer on a free loopback port, served from a daemon
    thread; the fakes below (and the tests' own) start one with _serve."""

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- collector
class FakeCollector(LoopbackServer):
    """Records POST /events bodies. ``script`` is a list of actions consumed one
    per request: an int status, or a dict {status, headers, sleep}. When it
    is empty requests get 200 and are stored (idempotently, by event_id)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []  # every request: {status, events, headers}
        self.stored: dict[str, dict[str, Any]] = {}  # event_id -> event (2xx only)
        self.duplicates = 0
        self.script: list[Any] = []
        self.lock = threading.Lock()
        self.got_request = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                payload = json.loads(body)
                events = payload["events"] if isinstance(payload, dict) else payload
                with outer.lock:
                    action = outer.script.pop(0) if outer.script else 200
                if isinstance(action, int):
                    action = {"status": action}
                if action.get("sleep"):
                    time.sleep(action["sleep"])
                status = action.get("status", 200)
                with outer.lock:
                    outer.requests.append(
                        {
                            "status": status,
                            "events": events,
                            "headers": dict(self.headers),
                            "path": self.path,
                            "t": time.monotonic(),
                        }
                    )
                    accepted = dups = 0
                    if 200 <= status < 300:
                        for e in events:
                            if e["event_id"] in outer.stored:
                                dups += 1
                                outer.duplicates += 1
                            else:
                                outer.stored[e["event_id"]] = e
                                accepted += 1
                out = json.dumps({"accepted": accepted, "duplicates": dups, "rejected": []}).encode()
                outer.got_request.set()
                try:
                    self.send_response(status)
                    for k, v in (action.get("headers") or {}).items():
                        self.send_header(k, str(v))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except OSError:  # the client gave up (timeouts / exit tests)
                    pass

        self._serve(Handler)

    @property
    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.stored.values())

    def calls(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["span_type"] != "section"]

    def sections(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["span_type"] == "section"]


@pytest.fixture
def collector():
    c = FakeCollector()
    yield c
    c.close()


def unreachable_url() -> str:
    """A loopback port with nothing listening (connection refused at once)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


FAST = dict(flush_interval=0.05, backoff_base=0.02, backoff_max=0.2, max_retries=4, request_timeout=2.0)


@pytest.fixture
def obs(collector):
    """observe() against the fake collector; torn down (and unpatched) after."""
    assert llmobserve.observe(collector.url, api_key="test-key", service="svc", **FAST)
    yield collector
    llmobserve.shutdown(timeout=2.0)
    llmobserve.uninstrument()


_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def _clean_state(monkeypatch):
    # the exporter honours proxy variables, as urllib does: a proxy set on
    # the machine must not sit between the tests and their loopback fakes
    for v in _PROXY_VARS:
        monkeypatch.delenv(v, raising=False)
        monkeypatch.delenv(v.lower(), raising=False)
    yield
    if _state.exporter is not None or _state.active:
        llmobserve.shutdown(timeout=0.5)
        llmobserve.uninstrument()


# --------------------------------------------------------------------------- openai
def http_module():
    """The HTTP library the installed openai is built on: httpx2 (2.x/3.x) or httpx (1.x)."""
    import openai._base_client as bc

    if hasattr(bc, "httpx2"):
        import httpx2

        return httpx2
    import httpx

    return httpx


USAGE_CHAT = {
    "prompt_tokens": 1200,
    "completion_tokens": 150,
    "total_tokens": 1350,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 64,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
USAGE_RESPONSES = {
    "input_tokens": 900,
    "input_tokens_details": {"cached_tokens": 512},
    "output_tokens": 300,
    "output_tokens_details": {"reasoning_tokens": 128},
    "total_tokens": 1200,
}
STREAM_WORDS = ["Hel", "lo", ",", " wor", "ld", "!"]


def chat_completion(
    model: str, content: str = "Hello, world!", tier: str | None = "default", usage: Any = USAGE_CHAT
) -> dict[str, Any]:
    out = {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1764147600,
        "model": model + "-2024-08-06" if model == "gpt-4o" else model,
        "system_fingerprint": "fp_abc",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
        "service_tier": tier,
    }
    if tier is None:
        del out["service_tier"]
    return out


def chat_sse(
    model: str,
    include_usage: bool,
    words: list[str],
    compact: bool = False,
    obfuscation: bool = True,
    tier: str | None = "default",
    usage: Any = USAGE_CHAT,
    usage_on_content: bool = False,
) -> bytes:
    """A chat stream's body in the API's shape: every chunk ends with an
    ``obfuscation`` member (random padding of random length, on unless the
    request sets ``include_obfuscation`` false), after ``"usage": null``
    when usage was asked for. ``usage_on_content``: as OpenAI-compatible
    servers send it, whether asked or not: no usage member on the other
    chunks, the usage on the last content chunk (its finish_reason), no
    usage-only chunk."""
    resp_model = model + "-2024-08-06" if model == "gpt-4o" else model
    base = {
        "id": "chatcmpl-s1",
        "object": "chat.completion.chunk",
        "created": 1764147600,
        "model": resp_model,
        "service_tier": tier,
        "system_fingerprint": "fp_abc",
    }
    if tier is None:
        del base["service_tier"]
    chunks = []

    def mk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        c = dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])
        if include_usage and not usage_on_content:
            c["usage"] = None
        return c

    chunks.append(mk({"role": "assistant", "content": "", "refusal": None}))
    for w in words:
        chunks.append(mk({"content": w}))
    chunks.append(mk({}, "stop"))
    if usage_on_content:
        chunks[-1]["usage"] = usage
    elif include_usage:
        chunks.append(dict(base, choices=[], usage=usage))
    if obfuscation:
        for i, c in enumerate(chunks):
            c["obfuscation"] = "Zq8xW3kPb2Lm9TcR"[: 1 + (i * 7) % 16]
    seps = (",", ":") if compact else (", ", ": ")
    out = b"".join(b"data: " + json.dumps(c, separators=seps).encode() + b"\n\n" for c in chunks)
    return out + b"data: [DONE]\n\n"


def response_obj(
    model: str, text: str = "Hi there", tier: str | None = None, usage: Any = USAGE_RESPONSES, tools: Any = ()
) -> dict[str, Any]:
    """A Responses API result; ``tools``: output items (tool calls) before its message."""
    out = {
        "id": "resp_123",
        "object": "response",
        "created_at": 1764147600,
        "status": "completed",
        "model": model + "-2025-04-14" if model == "gpt-4.1" else model,
        "output": [
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
        "text": {"format": {"type": "text"}},
    }
    out["output"] = [*tools, *out["output"]]
    if tier is not None:
        out["service_tier"] = tier
    return out


def web_search_call(i: int) -> dict[str, Any]:
    return {
        "type": "web_search_call",
        "id": f"ws_{i}",
        "status": "completed",
        "action": {"type": "search", "query": f"q{i}"},
    }


def file_search_call(i: int) -> dict[str, Any]:
    return {"type": "file_search_call", "id": f"fs_{i}", "status": "completed", "queries": [f"q{i}"], "results": None}


def code_interpreter_call(i: int, container: str) -> dict[str, Any]:
    return {
        "type": "code_interpreter_call",
        "id": f"ci_{i}",
        "status": "completed",
        "code": "print(1)",
        "container_id": container,
        "outputs": [{"type": "logs", "logs": "1"}],
    }


def responses_sse(model: str, words: list[str], **kw: Any) -> bytes:
    """A Responses stream; ``kw`` as :func:`response_obj` (the final response
    in ``response.completed``)."""
    full = response_obj(model, "".join(words), **kw)
    started = dict(full, status="in_progress", output=[], usage=None)
    events = [
        ("response.created", {"type": "response.created", "response": started, "sequence_number": 0}),
        ("response.in_progress", {"type": "response.in_progress", "response": started, "sequence_number": 1}),
        (
            "response.output_item.added",
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "sequence_number": 2,
                "item": {"type": "message", "id": "msg_1", "status": "in_progress", "role": "assistant", "content": []},
            },
        ),
        (
            "response.content_part.added",
            {
                "type": "response.content_part.added",
                "item_id": "msg_1",
                "output_index": 0,
                "content_index": 0,
                "sequence_number": 3,
                "part": {"type": "output_text", "text": "", "annotations": []},
            },
        ),
    ]
    seq = 4
    for w in words:
        events.append(
            (
                "response.output_text.delta",
                {
                    "type": "response.output_text.delta",
                    "item_id": "msg_1",
                    "output_index": 0,
                    "content_index": 0,
                    "delta": w,
                    "logprobs": [],
                    "sequence_number": seq,
                },
            )
        )
        seq += 1
    text = "".join(words)
    events += [
        (
            "response.output_text.done",
            {
                "type": "response.output_text.done",
                "item_id": "msg_1",
                "output_index": 0,
                "content_index": 0,
                "text": text,
                "logprobs": [],
                "sequence_number": seq,
            },
        ),
        (
            "response.content_part.done",
            {
                "type": "response.content_part.done",
                "item_id": "msg_1",
                "output_index": 0,
                "content_index": 0,
                "part": {"type": "output_text", "text": text, "annotations": []},
                "sequence_number": seq + 1,
            },
        ),
        (
            "response.output_item.done",
            {
                "type": "response.output_item.done",
                "output_index": 0,
                "sequence_number": seq + 2,
                "item": full["output"][-1],
            },
        ),
        ("response.completed", {"type": "response.completed", "response": full, "sequence_number": seq + 3}),
    ]
    return b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events)


def _body(hx: Any, payload: bytes, chunking: Any, broken: bool = False, crlf: bool = False) -> Any:
    """A response body (for the sync and the async client) arriving in
    network chunks: ``"event"`` one SSE event per chunk, as a server flushing
    each token sends it; ``"whole"`` all at once; an int, pieces of that many
    bytes (markers split across chunks). ``broken``: then the connection
    drops. ``crlf``: lines end in CRLF."""
    sep = b"\n\n"
    if crlf:
        payload, sep = payload.replace(b"\n", b"\r\n"), b"\r\n\r\n"
    if chunking == "whole":
        parts = [payload]
    elif chunking == "event":
        parts = [e + sep for e in payload.split(sep) if e]
    else:
        parts = [payload[i : i + chunking] for i in range(0, len(payload), chunking)]

    class Body(hx.SyncByteStream, hx.AsyncByteStream):  # type: ignore[misc]
        def __iter__(self) -> Any:
            yield from parts
            if broken:
                raise hx.ReadError("peer closed connection")

        async def __aiter__(self) -> Any:
            for p in parts:
                yield p
            if broken:
                raise hx.ReadError("peer closed connection")

    return Body()


def _json(hx: Any, status: int, obj: Any, headers: dict[str, str] | None = None) -> Any:
    """A JSON response whose body arrives over the "network" (a byte stream
    the client reads, as from a socket: a ``with_streaming_response`` body
    stays unread until the caller reads it)."""
    h = {"content-type": "application/json", **(headers or {})}
    return hx.Response(status, stream=_body(hx, json.dumps(obj).encode(), "whole"), headers=h)


class OpenAIUpstream:
    """Handler for the transport's MockTransport: realistic JSON and SSE."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_with: int | None = None
        self.words = list(STREAM_WORDS)
        self.compact = True  # compact JSON, as OpenAI sends it (False: spaced, as some compatible servers)
        self.chunking: Any = "event"  # how SSE bodies arrive: see _body
        self.crlf = False
        # chat streams: None, "drop" (the connection breaks after two chunks),
        # "error_event" (an in-stream {"error": ...} event after two chunks),
        # "ignore_usage" (a compatible server that never sends usage),
        # "cut_tail" (no [DONE], and the body ends right after the last
        # event's data line, without the blank line that would dispatch it),
        # "usage_on_content" (a compatible server that always puts the usage
        # on its last content chunk: see chat_sse)
        self.stream_fault: str | None = None
        # what responses report: the service tier (chat; Responses: None, not
        # sent), usage objects, Responses tool-call output items
        self.tier: str | None = "default"
        self.responses_tier: str | None = None
        self.usage_chat: Any = USAGE_CHAT
        self.usage_responses: Any = USAGE_RESPONSES
        self.tools: list[dict[str, Any]] = []

    def __call__(self, request: Any) -> Any:
        hx = http_module()
        body = json.loads(request.content or b"{}")
        path = request.url.path
        self.requests.append({"path": path, "body": body})
        if self.fail_with:
            return _json(
                hx,
                self.fail_with,
                {"error": {"message": "boom", "type": "server_error", "param": None, "code": None}},
                {"x-request-id": "req_err"},
            )
        model = body.get("model", "gpt-4o")
        stream = body.get("stream") is True
        sse = {"content-type": "text/event-stream"}
        if path.endswith("/chat/completions"):
            if stream:
                inc = bool((body.get("stream_options") or {}).get("include_usage"))
                fault = self.stream_fault
                obf = (body.get("stream_options") or {}).get("include_obfuscation", True) is not False
                payload = chat_sse(
                    model,
                    inc and fault != "ignore_usage",
                    self.words,
                    self.compact,
                    obf,
                    self.tier,
                    self.usage_chat,
                    fault == "usage_on_content",
                )
                if fault == "cut_tail":
                    payload = payload[: payload.rindex(b"\n\ndata: [DONE]")]
                if fault in ("drop", "error_event"):
                    head = b"".join(e + b"\n\n" for e in payload.split(b"\n\n")[:2])
                    if fault == "error_event":
                        err = {"error": {"message": "overloaded", "type": "server_error", "param": None, "code": None}}
                        body = head + b"data: " + json.dumps(err).encode() + b"\n\n"
                        return hx.Response(200, stream=_body(hx, body, self.chunking, crlf=self.crlf), headers=sse)
                    broken = _body(hx, head, self.chunking, broken=True, crlf=self.crlf)
                    return hx.Response(200, stream=broken, headers=sse)
                return hx.Response(200, stream=_body(hx, payload, self.chunking, crlf=self.crlf), headers=sse)
            resp = chat_completion(model, tier=self.tier, usage=self.usage_chat)
            rf = body.get("response_format") or {}
            if rf.get("type") == "json_schema":
                resp["choices"][0]["message"]["content"] = json.dumps({"answer": 42, "steps": ["a", "b"]})
            return _json(hx, 200, resp)
        if path.endswith("/responses"):
            kw = dict(tier=self.responses_tier, usage=self.usage_responses, tools=self.tools)
            if stream:
                payload = responses_sse(model, self.words, **kw)
                return hx.Response(200, stream=_body(hx, payload, self.chunking), headers=sse)
            resp = response_obj(model, **kw)
            if body.get("background"):  # queued: no output, no usage yet
                resp = dict(resp, status="queued", background=True, output=[], usage=None)
            fmt = (body.get("text") or {}).get("format") or {}
            if fmt.get("type") == "json_schema":
                resp["output"][0]["content"][0]["text"] = json.dumps({"answer": 42, "steps": ["a", "b"]})
            return _json(hx, 200, resp)
        if path.endswith("/embeddings"):
            inputs = body.get("input")
            n = len(inputs) if isinstance(inputs, list) else 1
            return _json(
                hx,
                200,
                {
                    "object": "list",
                    "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(n)],
                    "model": model,
                    "usage": {"prompt_tokens": 17 * n, "total_tokens": 17 * n},
                },
            )
        if path.endswith("/completions"):
            usage = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
            if stream:
                inc = bool((body.get("stream_options") or {}).get("include_usage"))
                base = {"id": "cmpl-1", "object": "text_completion", "created": 1764147600, "model": model}
                chunks = [
                    dict(base, choices=[{"index": 0, "text": w, "logprobs": None, "finish_reason": None}])
                    for w in self.words
                ]
                if inc:
                    for c in chunks:
                        c["usage"] = None
                    chunks.append(dict(base, choices=[], usage=usage))
                out = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
                return hx.Response(200, stream=_body(hx, out, self.chunking, crlf=self.crlf), headers=sse)
            return _json(
                hx,
                200,
                {
                    "id": "cmpl-1",
                    "object": "text_completion",
                    "created": 1764147600,
                    "model": model,
                    "choices": [{"index": 0, "text": "hello there", "logprobs": None, "finish_reason": "stop"}],
                    "usage": usage,
                },
            )
        return _json(hx, 404, {"error": {"message": "not found"}})


@pytest.fixture
def upstream():
    return OpenAIUpstream()


@pytest.fixture
def oa_client(upstream):
    import openai

    hx = http_module()
    return openai.OpenAI(
        api_key="sk-test",
        base_url="https://api.openai.test/v1",
        max_retries=0,
        http_client=hx.Client(transport=hx.MockTransport(upstream)),
    )


def make_client(upstream: Any, use_async: bool = False, azure: bool = False, **kw: Any) -> Any:
    """The real openai client (``azure``: ``AzureOpenAI``), talking to
    ``upstream`` through its HTTP library's MockTransport; ``kw``: e.g.
    ``base_url``, ``azure_endpoint``."""
    import openai

    hx = http_module()
    http = (hx.AsyncClient if use_async else hx.Client)(transport=hx.MockTransport(upstream))
    cls: Any
    if azure:
        cls = openai.AsyncAzureOpenAI if use_async else openai.AzureOpenAI
        kw.setdefault("api_version", "2024-10-21")
    else:
        cls = openai.AsyncOpenAI if use_async else openai.OpenAI
    return cls(api_key="sk-test", max_retries=0, http_client=http, **kw)


@pytest.fixture
def oa_async_client(upstream):
    import openai

    hx = http_module()
    return openai.AsyncOpenAI(
        api_key="sk-test",
        base_url="https://api.openai.test/v1",
        max_retries=0,
        http_client=hx.AsyncClient(transport=hx.MockTransport(upstream)),
    )


def wait_for(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


# --------------------------------------------------------------------------- pinecone
class FakePinecone(LoopbackServer):
    """Loopback fake of a Pinecone index data plane (REST, JSON)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.with_usage = True
        self.fail_with: int | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _reply(self, status: int, obj: Any) -> None:
                out = b"" if obj is None else json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def _handle(self, method: str) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                path = self.path.split("?", 1)[0]
                outer.requests.append({"method": method, "path": self.path, "body": raw})
                if outer.fail_with:
                    return self._reply(outer.fail_with, {"code": 3, "message": "bad request", "details": []})
                u = outer.with_usage
                if path == "/query":
                    body = json.loads(raw)
                    r = {
                        "matches": [
                            {"id": "v1", "score": 0.91, "values": []},
                            {"id": "v2", "score": 0.82, "values": []},
                        ],
                        "namespace": body.get("namespace", ""),
                    }
                    if u:
                        r["usage"] = {"readUnits": 5}
                    return self._reply(200, r)
                if path == "/vectors/upsert":
                    body = json.loads(raw)
                    return self._reply(200, {"upsertedCount": len(body["vectors"])})
                if path == "/vectors/fetch":
                    r = {"vectors": {"v1": {"id": "v1", "values": [0.1, 0.2, 0.3]}}, "namespace": "docs"}
                    if u:
                        r["usage"] = {"readUnits": 1}
                    return self._reply(200, r)
                if path == "/vectors/delete":
                    return self._reply(200, {})
                if path == "/vectors/update":
                    return self._reply(200, {"matchedRecords": 1})
                if path.startswith("/records/namespaces/") and path.endswith("/search"):
                    r = {
                        "result": {"hits": [{"_id": "r1", "_score": 0.77, "fields": {"text": "hello"}}]},
                        "usage": {"read_units": 6, "embed_total_tokens": 12},
                    }
                    if not u:
                        r["usage"] = {"read_units": 6}
                        del r["usage"]
                    return self._reply(200, r)
                if path.startswith("/records/namespaces/") and path.endswith("/upsert"):
                    return self._reply(201, None)
                return self._reply(404, {"code": 5, "message": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

            def do_GET(self) -> None:  # noqa: N802
                self._handle("GET")

        self._serve(Handler)
        self.host = self.url


@pytest.fixture
def pinecone_server():
    s = FakePinecone()
    yield s
    s.close()
