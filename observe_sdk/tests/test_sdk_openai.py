"""OpenAI instrumentation against the real openai client over a MockTransport."""

from __future__ import annotations

import asyncio
import gc
import json

import llmobserve
import pytest
from llmo_testkit import (
    STREAM_WORDS,
    USAGE_CHAT,
    code_interpreter_call,
    file_search_call,
    http_module,
    make_client,
    wait_for,
    web_search_call,
)
from llmobserve import section, trace

openai = pytest.importorskip("openai")


def dump(obj):
    return obj.model_dump(mode="json") if hasattr(obj, "model_dump") else obj


def flushed(collector, n):
    assert llmobserve.flush(5.0)
    assert wait_for(lambda: len(collector.events) >= n, 3)
    return collector


# ------------------------------------------------------------------- non-streaming
def test_chat_create_exact_tokens_and_caller_view(obs, oa_client):
    bare = None
    llmobserve.uninstrument()
    bare = oa_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    llmobserve.observe(obs.url, api_key="test-key", service="svc", flush_interval=0.05)
    got = oa_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert type(got) is type(bare)
    assert dump(got) == dump(bare)
    flushed(obs, 1)
    (e,) = obs.calls()
    assert e["span_type"] == "llm"
    assert e["name"] == e["endpoint"] == "chat.completions.create"
    assert e["provider"] == "openai"
    assert e["model"] == "gpt-4o-2024-08-06"  # the response's model
    assert (e["input_tokens"], e["output_tokens"], e["cached_input_tokens"], e["reasoning_tokens"]) == (
        1200,
        150,
        1024,
        64,
    )
    assert e["status"] == "ok" and e["error_type"] is None
    assert e["service"] == "svc"
    assert e["section"] is None and e["section_path"] is None and e["parent_span_id"] is None
    assert e["run_id"] and e["span_id"] and len(e["event_id"]) == 32
    assert e["latency_ms"] >= 0
    assert e["started_at"].endswith("Z") and len(e["started_at"]) == len("2026-11-26T09:00:00.120Z")
    assert obs.requests[0]["headers"]["Authorization"] == "Bearer test-key"


def test_calls_outside_sections_are_runs_of_their_own(obs, oa_client):
    for _ in range(2):
        oa_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    flushed(obs, 2)
    a, b = obs.calls()
    assert a["run_id"] != b["run_id"]


def test_sections_nesting_paths_parents_and_run(obs, oa_client):
    with section("agent:researcher"):
        with section("tool:web_search"):
            oa_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
        with section("step:analyze"):
            oa_client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    oa_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    flushed(obs, 6)
    ev = obs.events
    secs = {e["name"]: e for e in ev if e["span_type"] == "section"}
    assert set(secs) == {"agent:researcher", "tool:web_search", "step:analyze"}
    agent, tool, step = secs["agent:researcher"], secs["tool:web_search"], secs["step:analyze"]
    assert agent["parent_span_id"] is None and agent["section_path"] == "agent:researcher"
    assert tool["parent_span_id"] == agent["span_id"] and tool["section_path"] == "agent:researcher/tool:web_search"
    assert step["parent_span_id"] == agent["span_id"] and step["section_path"] == "agent:researcher/step:analyze"
    chat = next(e for e in ev if e["name"] == "chat.completions.create" and e["section"])
    assert chat["parent_span_id"] == tool["span_id"]
    assert chat["section"] == "tool:web_search" and chat["section_path"] == "agent:researcher/tool:web_search"
    emb = next(e for e in ev if e["name"] == "embeddings.create")
    assert emb["parent_span_id"] == step["span_id"] and emb["section_path"] == "agent:researcher/step:analyze"
    assert emb["input_tokens"] == 34 and emb["output_tokens"] == 0 and emb["model"] == "text-embedding-3-small"
    run_ids = {agent["run_id"], tool["run_id"], step["run_id"], chat["run_id"], emb["run_id"]}
    assert len(run_ids) == 1
    outside = next(e for e in ev if e["model"] == "gpt-4o-mini")
    assert outside["run_id"] not in run_ids and outside["section"] is None
    assert all(s["status"] == "ok" and s["latency_ms"] >= 0 for s in secs.values())
    assert agent["latency_ms"] >= tool["latency_ms"]


def test_explicit_run_groups_sections_and_copies_attributes(obs, oa_client):
    with llmobserve.run(run_id="run-42", user_id="u-7"):
        with section("a"):
            oa_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
        with section("b"):
            pass
        oa_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
    flushed(obs, 4)
    assert {e["run_id"] for e in obs.events} == {"run-42"}
    assert all(e["attributes"].get("user_id") == "u-7" for e in obs.events)
    direct = [e for e in obs.calls() if e["section"] is None]
    assert len(direct) == 1 and direct[0]["parent_span_id"] is None


def test_trace_decorator_sync_async_and_generator(obs, oa_client, oa_async_client):
    @trace(agent="researcher")
    def agent():
        return tool()

    @trace(tool="search")
    def tool():
        return oa_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}]).id

    @trace(step="plan")
    async def astep():
        r = await oa_async_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
        return r.id

    @trace(name="gen")
    def gen():
        yield 1
        yield 2

    assert agent() == "chatcmpl-abc123"
    assert asyncio.run(astep()) == "chatcmpl-abc123"
    assert list(gen()) == [1, 2]
    assert agent.__name__ == "agent"
    flushed(obs, 6)
    paths = sorted(e["section_path"] for e in obs.sections())
    assert paths == ["agent:researcher", "agent:researcher/tool:search", "gen", "step:plan"]
    calls = obs.calls()
    assert sorted(c["section_path"] for c in calls) == ["agent:researcher/tool:search", "step:plan"]


def test_section_error_status_and_exception_unchanged(obs):
    class Boom(Exception):
        pass

    err = Boom("x")
    with pytest.raises(Boom) as ei:
        with section("agent:fails"):
            raise err
    assert ei.value is err
    flushed(obs, 1)
    (s,) = obs.sections()
    assert s["status"] == "error" and s["error_type"] == "Boom"


def test_api_error_reaches_caller_unchanged_and_is_recorded(obs, oa_client, upstream):
    upstream.fail_with = 500
    with section("agent:x"):
        with pytest.raises(openai.InternalServerError) as ei:
            oa_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
    assert ei.value.status_code == 500 and ei.value.request_id == "req_err"
    flushed(obs, 2)
    (c,) = obs.calls()
    assert c["status"] == "error" and c["error_type"] == "InternalServerError"
    assert c["model"] == "gpt-4o" and c["attributes"]["http_status"] == 500
    assert c["input_tokens"] == 0
    (s,) = obs.sections()  # the exception was handled inside the section
    assert s["status"] == "ok" and c["parent_span_id"] == s["span_id"]


def test_asyncio_gather_two_sections_never_mix(obs, oa_async_client):
    async def worker(label, model, n):
        with section(label):
            for _ in range(n):
                await oa_async_client.chat.completions.create(model=model, messages=[{"role": "user", "content": "q"}])
                await asyncio.sleep(0)

    async def main():
        await asyncio.gather(worker("agent:a", "model-a", 3), worker("agent:b", "model-b", 3))

    asyncio.run(main())
    flushed(obs, 8)
    secs = {s["name"]: s for s in obs.sections()}
    assert secs["agent:a"]["run_id"] != secs["agent:b"]["run_id"]
    for c in obs.calls():
        owner = secs["agent:a"] if c["model"] == "model-a" else secs["agent:b"]
        assert c["section"] == owner["name"]
        assert c["parent_span_id"] == owner["span_id"]
        assert c["run_id"] == owner["run_id"]


def test_threads_have_separate_contexts(obs, oa_client):
    import threading

    barrier = threading.Barrier(2)

    def worker(label, model):
        with section(label):
            barrier.wait()
            oa_client.chat.completions.create(model=model, messages=[{"role": "user", "content": "q"}])
            barrier.wait()

    ts = [threading.Thread(target=worker, args=(f"agent:{m}", m)) for m in ("m1", "m2")]
    [t.start() for t in ts]
    [t.join() for t in ts]
    oa_client.chat.completions.create(model="m3", messages=[{"role": "user", "content": "q"}])
    flushed(obs, 5)
    for c in obs.calls():
        if c["model"] == "m3":
            assert c["section"] is None
        else:
            assert c["section"] == f"agent:{c['model']}"


def test_responses_api_tokens(obs, oa_client):
    r = oa_client.responses.create(model="gpt-4.1", input="hello")
    assert r.output_text == "Hi there"
    flushed(obs, 1)
    (e,) = obs.calls()
    assert e["name"] == "responses.create" and e["model"] == "gpt-4.1-2025-04-14"
    assert (e["input_tokens"], e["output_tokens"], e["cached_input_tokens"], e["reasoning_tokens"]) == (
        900,
        300,
        512,
        128,
    )


def test_legacy_completions(obs, oa_client):
    r = oa_client.completions.create(model="gpt-3.5-turbo-instruct", prompt="say hi")
    assert r.choices[0].text == "hello there"
    flushed(obs, 1)
    (e,) = obs.calls()
    assert e["name"] == "completions.create" and (e["input_tokens"], e["output_tokens"]) == (5, 7)


def test_chat_parse_structured_output(obs, oa_client):
    from pydantic import BaseModel

    class Answer(BaseModel):
        answer: int
        steps: list

    r = oa_client.chat.completions.parse(
        model="gpt-4o", messages=[{"role": "user", "content": "q"}], response_format=Answer
    )
    assert r.choices[0].message.parsed == Answer(answer=42, steps=["a", "b"])
    flushed(obs, 1)
    (e,) = obs.calls()
    assert e["name"] == "chat.completions.parse"
    assert (e["input_tokens"], e["output_tokens"], e["cached_input_tokens"], e["reasoning_tokens"]) == (
        1200,
        150,
        1024,
        64,
    )


def test_responses_parse(obs, oa_client):
    from pydantic import BaseModel

    if not hasattr(oa_client.responses, "parse"):
        pytest.skip("no responses.parse in this openai")

    class Answer(BaseModel):
        answer: int
        steps: list

    r = oa_client.responses.parse(model="gpt-4.1", input="q", text_format=Answer)
    assert r.output_parsed == Answer(answer=42, steps=["a", "b"])
    flushed(obs, 1)
    (e,) = obs.calls()
    assert e["name"] == "responses.parse" and e["input_tokens"] == 900 and e["reasoning_tokens"] == 128


def test_with_raw_response(obs, oa_client):
    raw = oa_client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "q"}]
    )
    assert raw.http_response.status_code == 200
    parsed = raw.parse()
    assert parsed.usage.prompt_tokens == 1200 and parsed.choices[0].message.content == "Hello, world!"
    flushed(obs, 1)
    (e,) = obs.calls()
    assert e["attributes"]["raw_response"] is True and e["attributes"]["http_status"] == 200
    assert (e["input_tokens"], e["output_tokens"], e["cached_input_tokens"], e["reasoning_tokens"]) == (
        1200,
        150,
        1024,
        64,
    )
    assert e["model"] == "gpt-4o-2024-08-06"


def test_with_raw_response_stream_is_not_altered(obs, oa_client, upstream):
    raw = oa_client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "q"}], stream=True
    )
    chunks = list(raw.parse())
    # we must not have injected include_usage into a raw request
    assert "stream_options" not in upstream.requests[-1]["body"]
    assert len(chunks) == len(STREAM_WORDS) + 2
    flushed(obs, 1)
    (e,) = obs.calls()
    assert e["attributes"]["raw_response"] is True
    assert e["usage_known"] is False and e["input_tokens"] == 0  # a body the SDK never sees


@pytest.mark.parametrize("use_async", [False, True])
def test_with_streaming_response_usage_from_the_body_read_or_unknown(obs, upstream, use_async):
    # the SDK never reads the caller's body: the call is recorded when the
    # response is closed, with the body's exact usage if the caller read it
    # whole, else as usage unknown (never an exact zero)
    kw = dict(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
    client = make_client(upstream, use_async)

    def sync_calls():
        with client.chat.completions.with_streaming_response.create(**kw) as resp:
            read = json.loads(resp.read())
        with client.chat.completions.with_streaming_response.create(**kw) as resp:
            lines = list(resp.iter_lines())
        return read, lines

    async def async_calls():
        async with client.chat.completions.with_streaming_response.create(**kw) as resp:
            read = json.loads(await resp.read())
        async with client.chat.completions.with_streaming_response.create(**kw) as resp:
            lines = [line async for line in resp.iter_lines()]
        return read, lines

    read, lines = asyncio.run(async_calls()) if use_async else sync_calls()
    assert read["usage"]["prompt_tokens"] == 1200 and json.loads("".join(lines)) == read
    flushed(obs, 2)
    (first,) = [e for e in obs.calls() if "usage_known" not in e]  # read whole
    (second,) = [e for e in obs.calls() if e is not first]  # iterated by lines
    assert first["name"] == second["name"] == "chat.completions.create"
    assert (first["input_tokens"], first["output_tokens"], first["cached_input_tokens"]) == (1200, 150, 1024)
    assert "usage_known" not in first and first["price_context"] == {"service_tier": "default"}
    assert first["attributes"]["raw_response"] is True and "usage_unavailable" not in first["attributes"]
    assert second["usage_known"] is False and second["input_tokens"] == 0
    assert second["attributes"]["usage_unavailable"] is True


def test_with_streaming_response_of_a_stream_read_whole_gives_its_usage(obs, oa_client):
    kw = dict(model="gpt-4o", messages=[{"role": "user", "content": "q"}], stream=True)
    with oa_client.chat.completions.with_streaming_response.create(
        **kw, stream_options={"include_usage": True}
    ) as resp:
        body = resp.read()
    with oa_client.chat.completions.with_streaming_response.create(**kw) as resp:
        chunks = list(resp.parse())  # the stream, decoded by openai: unseen by the SDK
    assert body.count(b"data: ") == len(STREAM_WORDS) + 4 and len(chunks) == len(STREAM_WORDS) + 2
    flushed(obs, 2)
    known = [e for e in obs.calls() if "usage_known" not in e]
    unknown = [e for e in obs.calls() if e.get("usage_known") is False]
    assert [(e["input_tokens"], e["output_tokens"]) for e in known] == [(1200, 150)]
    assert known[0]["price_context"] == {"service_tier": "default"}
    assert len(unknown) == 1 and unknown[0]["input_tokens"] == 0


# ----------------------------------------------------------------------- streams
def _stream_view(oa_client, oa_async_client, use_async: bool, **kw) -> list:
    """What the caller sees of a chat stream, from the sync or the async
    client: each chunk dumped with the fields it set. The stream must be
    openai's own class (no proxy)."""
    if not use_async:
        stream = oa_client.chat.completions.create(stream=True, **kw)
        assert type(stream) is openai.Stream and stream.response.status_code == 200
        return [c.model_dump(mode="json", exclude_unset=True) for c in stream]

    async def main() -> list:
        stream = await oa_async_client.chat.completions.create(stream=True, **kw)
        assert type(stream) is openai.AsyncStream and stream.response.status_code == 200
        return [c.model_dump(mode="json", exclude_unset=True) async for c in stream]

    return asyncio.run(main())


# the API's own chunks (compact JSON, "obfuscation" padding after "usage"),
# without the padding (include_obfuscation false, as many compatible servers
# send), and spaced JSON
@pytest.mark.parametrize("compact,obfuscation", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("use_async", [False, True])
def test_chat_stream_caller_view_unchanged_and_usage_exact(
    obs, oa_client, oa_async_client, upstream, compact, obfuscation, use_async
):
    upstream.compact = compact
    kw: dict = dict(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
    if not obfuscation:
        kw["stream_options"] = {"include_obfuscation": False}
    llmobserve.uninstrument()
    bare = _stream_view(oa_client, oa_async_client, use_async, **kw)
    assert ("stream_options" in upstream.requests[-1]["body"]) is not obfuscation
    assert all(("obfuscation" in c) is obfuscation for c in bare)
    llmobserve.observe(obs.url, api_key="test-key", service="svc", flush_interval=0.05)
    got = _stream_view(oa_client, oa_async_client, use_async, **kw)
    # we asked for usage...
    assert upstream.requests[-1]["body"]["stream_options"] == {**kw.get("stream_options", {}), "include_usage": True}
    # ...and the caller sees exactly the chunks (even the set fields) it would
    # have seen without us: no usage-only chunk, no "usage": null members
    assert got == bare
    assert len(got) == len(STREAM_WORDS) + 2
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in got) == "".join(STREAM_WORDS)
    flushed(obs, 1)
    (e,) = obs.calls()
    assert (e["input_tokens"], e["output_tokens"], e["cached_input_tokens"], e["reasoning_tokens"]) == (
        1200,
        150,
        1024,
        64,
    )
    assert e["attributes"]["stream"] is True and e["attributes"]["ttft_ms"] >= 0
    assert "stream_incomplete" not in e["attributes"]
    assert e["model"] == "gpt-4o-2024-08-06"


# How the body arrives must not matter: all at once (events coalesced in one
# network chunk, the usage chunk among them), or cut anywhere (a marker such
# as ',"usage":null' or '[DONE]' split across two chunks), LF or CRLF lines.
# Content that looks like a marker is text, not an event.
TRICKY_WORDS = ["data: [DONE]", ' {"error": 1}', ' "choices":[] ', ',"usage":null', " end"]


@pytest.mark.parametrize(
    "chunking,crlf,compact",
    [("whole", False, True), ("whole", True, False), (7, False, True), (1, False, False), (5, True, True)],
)
@pytest.mark.parametrize("use_async", [False, True])
def test_chat_stream_any_network_chunking_same_view_exact_usage(
    obs, oa_client, oa_async_client, upstream, chunking, crlf, compact, use_async
):
    upstream.chunking, upstream.crlf, upstream.compact = chunking, crlf, compact
    upstream.words = TRICKY_WORDS
    kw = dict(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
    llmobserve.uninstrument()
    bare = _stream_view(oa_client, oa_async_client, use_async, **kw)
    llmobserve.observe(obs.url, api_key="test-key", service="svc", flush_interval=0.05)
    got = _stream_view(oa_client, oa_async_client, use_async, **kw)
    assert upstream.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    assert got == bare
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in got) == "".join(TRICKY_WORDS)
    flushed(obs, 1)
    (e,) = obs.calls()
    assert (e["input_tokens"], e["output_tokens"], e["cached_input_tokens"], e["reasoning_tokens"]) == (
        1200,
        150,
        1024,
        64,
    )
    assert e["status"] == "ok" and "stream_incomplete" not in e["attributes"]
    assert e["model"] == "gpt-4o-2024-08-06"


@pytest.mark.parametrize("chunking", ["whole", 3])
def test_chat_stream_caller_usage_chunk_kept_whatever_the_chunking(obs, oa_client, upstream, chunking):
    upstream.chunking = chunking
    got = list(
        oa_client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "q"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert len(got) == len(STREAM_WORDS) + 3 and got[-1].choices == [] and got[-1].usage.prompt_tokens == 1200
    assert all(c.usage is None for c in got[:-1])
    flushed(obs, 1)
    assert obs.calls()[0]["input_tokens"] == 1200


@pytest.mark.parametrize("use_async", [False, True])
def test_client_with_its_own_sse_decoder_is_recorded_from_parsed_chunks(
    obs, oa_client, oa_async_client, upstream, use_async
):
    # A client that brings its own decoder (``_make_sse_decoder``) keeps it
    # untouched: the SDK falls back to looking at the parsed chunks.
    from openai._streaming import SSEDecoder

    class MyDecoder(SSEDecoder):
        pass

    kw = dict(model="gpt-4o", messages=[{"role": "user", "content": "q"}], stream=True)
    if use_async:
        oa_async_client._make_sse_decoder = MyDecoder

        async def main():
            s = await oa_async_client.chat.completions.create(**kw)
            assert type(s._decoder) is MyDecoder
            return [c async for c in s]

        got = asyncio.run(main())
    else:
        oa_client._make_sse_decoder = MyDecoder
        s = oa_client.chat.completions.create(**kw)
        assert type(s._decoder) is MyDecoder
        got = list(s)
    assert len(got) == len(STREAM_WORDS) + 2 and all(c.choices for c in got)  # usage chunk still hidden
    flushed(obs, 1)
    (e,) = obs.calls()
    assert (e["input_tokens"], e["output_tokens"], e["status"]) == (1200, 150, "ok")
    assert "stream_incomplete" not in e["attributes"]


def test_chat_stream_caller_stream_options_merged(obs, oa_client, upstream):
    s = oa_client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "q"}],
        stream=True,
        stream_options={"include_obfuscation": False},
    )
    got = list(s)
    assert upstream.requests[-1]["body"]["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert len(got) == len(STREAM_WORDS) + 2 and all(c.choices for c in got)
    flushed(obs, 1)
    assert obs.calls()[0]["output_tokens"] == 150


def test_chat_stream_caller_asked_for_usage_passes_through(obs, oa_client, upstream):
    stream = oa_client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "q"}], stream=True, stream_options={"include_usage": True}
    )
    got = list(stream)
    assert len(got) == len(STREAM_WORDS) + 3
    assert got[-1].choices == [] and got[-1].usage.prompt_tokens == 1200
    flushed(obs, 1)
    (e,) = obs.calls()
    assert e["input_tokens"] == 1200 and e["output_tokens"] == 150


def test_chat_stream_with_next_and_context_manager(obs, oa_client):
    with oa_client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "q"}], stream=True
    ) as s:
        first = next(s)
        rest = list(s)
    assert first.choices[0].delta.role == "assistant"
    assert len(rest) == len(STREAM_WORDS) + 1
    flushed(obs, 1)
    (e,) = obs.calls()
    assert e["input_tokens"] == 1200 and "stream_incomplete" not in e["attributes"]


def test_stream_closed_early_emits_once(obs, oa_client):
    s = oa_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}], stream=True)
    for i, _ in enumerate(s):
        if i == 1:
            break
    s.close()
    s.close()
    del s
    gc.collect()
    flushed(obs, 1)
    assert len(obs.calls()) == 1
    (e,) = obs.calls()
    assert e["attributes"]["stream_incomplete"] is True and e["status"] == "ok"


def test_stream_close_records_at_once_while_the_stream_is_still_held(obs, oa_client, oa_async_client):
    kw = dict(model="gpt-4o", messages=[{"role": "user", "content": "q"}], stream=True)
    s = oa_client.chat.completions.create(**kw)
    next(s)
    s.close()
    flushed(obs, 1)  # `s` is still referenced: the event comes from close()
    with oa_client.chat.completions.create(**kw) as s2:
        next(s2)
    flushed(obs, 2)

    async def main():
        a = await oa_async_client.chat.completions.create(**kw)
        await a.__anext__()
        await a.close()
        flushed(obs, 3)
        async with await oa_async_client.chat.completions.create(**kw) as a2:
            await a2.__anext__()
        flushed(obs, 4)
        return a, a2

    held = asyncio.run(main())
    s.close()  # again: nothing more
    assert len(obs.calls()) == 4
    assert all(e["attributes"]["stream_incomplete"] is True for e in obs.calls())
    assert all(e["status"] == "ok" and e["input_tokens"] == 0 for e in obs.calls())
    assert s.response.is_closed and s2.response.is_closed and all(a.response.is_closed for a in held)


def test_stream_garbage_collected_emits_once(obs, oa_client):
    s = oa_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}], stream=True)
    next(s)
    del s
    gc.collect()
    flushed(obs, 1)
    import time

    time.sleep(0.1)
    assert llmobserve.flush(2)
    assert len(obs.calls()) == 1
    assert obs.calls()[0]["attributes"]["stream_incomplete"] is True


def test_stream_iterated_without_a_name_is_complete(obs, oa_client, oa_async_client):
    # `for c in create(stream=True)` drops the returned stream object as soon
    # as iteration starts: the event must still be the complete one
    kw = dict(model="gpt-4o", messages=[{"role": "user", "content": "q"}], stream=True)
    n = 0
    for _ in oa_client.chat.completions.create(**kw):
        n += 1
    it = iter(oa_client.chat.completions.create(**kw))
    gc.collect()
    n2 = len(list(it))

    async def main():
        return [c async for c in await oa_async_client.chat.completions.create(**kw)]

    n3 = len(asyncio.run(main()))
    assert n == n2 == n3 == len(STREAM_WORDS) + 2
    flushed(obs, 3)
    for e in obs.calls():
        assert e["input_tokens"] == 1200 and e["status"] == "ok", e["attributes"]
        assert "stream_incomplete" not in e["attributes"]


@pytest.mark.parametrize("use_async", [False, True])
def test_stream_broken_mid_way_is_recorded_as_error(obs, oa_client, oa_async_client, upstream, use_async):
    upstream.stream_fault = "drop"
    kw = dict(model="gpt-4o", messages=[{"role": "user", "content": "q"}], stream=True)
    got = []

    async def consume_async():
        async for c in await oa_async_client.chat.completions.create(**kw):
            got.append(c)

    # openai 2+/3 wraps the transport error in APIConnectionError; 1.x lets
    # httpx's ReadError through. Either way the caller gets openai's own error.
    with pytest.raises((openai.APIConnectionError, http_module().ReadError)) as raised:
        if use_async:
            asyncio.run(consume_async())
        else:
            for c in oa_client.chat.completions.create(**kw):
                got.append(c)
    assert len(got) == 2  # the caller saw what arrived, then the error
    flushed(obs, 1)
    (e,) = obs.calls()
    assert (e["status"], e["error_type"]) == ("error", type(raised.value).__name__)
    assert e["attributes"]["stream"] is True and e["model"] == "gpt-4o-2024-08-06"


@pytest.mark.parametrize("use_async", [False, True])
def test_in_stream_error_event_is_recorded_as_error(obs, oa_client, oa_async_client, upstream, use_async):
    upstream.stream_fault = "error_event"
    kw = dict(model="gpt-4o", messages=[{"role": "user", "content": "q"}], stream=True)

    async def consume_async():
        got = []
        async for c in await oa_async_client.chat.completions.create(**kw):
            got.append(c)
        return got

    with pytest.raises(openai.APIError, match="overloaded"):
        if use_async:
            asyncio.run(consume_async())
        else:
            list(oa_client.chat.completions.create(**kw))
    flushed(obs, 1)
    (e,) = obs.calls()
    assert (e["status"], e["error_type"]) == ("error", "APIError"), (e["name"], e["attributes"], e["latency_ms"])


@pytest.mark.parametrize("chunking", ["whole", 7])
@pytest.mark.parametrize("use_async", [False, True])
def test_stream_body_ending_mid_line_still_gives_usage(obs, oa_client, oa_async_client, upstream, use_async, chunking):
    # the body ends inside its last line, the usage chunk we asked for (no
    # newline after it, no [DONE]): the scan's held-back line is taken as it is
    upstream.compact, upstream.chunking = True, chunking
    kw = dict(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
    llmobserve.uninstrument()
    bare = _stream_view(oa_client, oa_async_client, use_async, **kw)  # the whole body
    upstream.stream_fault = "cut_tail"
    llmobserve.observe(obs.url, api_key="test-key", service="svc", flush_interval=0.05)
    got = _stream_view(oa_client, oa_async_client, use_async, **kw)
    assert got == bare and len(got) == len(STREAM_WORDS) + 2
    flushed(obs, 1)
    (e,) = obs.calls()
    assert (e["input_tokens"], e["output_tokens"], e["status"]) == (1200, 150, "ok")
    assert "stream_incomplete" not in e["attributes"]


def test_stream_without_usage_from_the_server_keeps_chunk_model(obs, oa_client, upstream):
    upstream.stream_fault = "ignore_usage"  # e.g. an OpenAI-compatible server
    got = list(
        oa_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}], stream=True)
    )
    assert len(got) == len(STREAM_WORDS) + 2
    flushed(obs, 1)
    (e,) = obs.calls()
    assert e["status"] == "ok" and e["input_tokens"] == 0 and e["model"] == "gpt-4o-2024-08-06"
    assert e["usage_known"] is False  # not an exact $0
    assert "stream_incomplete" not in e["attributes"]


def test_chat_stream_helper_context_manager(obs, oa_client, upstream):
    with oa_client.chat.completions.stream(model="gpt-4o", messages=[{"role": "user", "content": "q"}]) as s:
        deltas = [ev.delta for ev in s if ev.type == "content.delta"]
        final = s.get_final_completion()
    assert "".join(deltas) == "".join(STREAM_WORDS)
    assert final.choices[0].message.content == "".join(STREAM_WORDS)
    flushed(obs, 1)
    (e,) = obs.calls()
    assert e["input_tokens"] == 1200 and e["cached_input_tokens"] == 1024


def test_responses_stream_and_helper(obs, oa_client):
    events = list(oa_client.responses.create(model="gpt-4.1", input="q", stream=True))
    assert [e.type for e in events].count("response.output_text.delta") == len(STREAM_WORDS)
    assert events[-1].type == "response.completed"
    with oa_client.responses.stream(model="gpt-4.1", input="q") as s:
        text = "".join(ev.delta for ev in s if ev.type == "response.output_text.delta")
        final = s.get_final_response()
    assert text == "".join(STREAM_WORDS) and final.usage.input_tokens == 900
    flushed(obs, 2)
    for e in obs.calls():
        assert e["name"] == "responses.create" and e["model"] == "gpt-4.1-2025-04-14"
        assert (e["input_tokens"], e["output_tokens"], e["cached_input_tokens"], e["reasoning_tokens"]) == (
            900,
            300,
            512,
            128,
        )
        assert e["attributes"]["ttft_ms"] >= 0


def test_completions_stream_hides_injected_usage(obs, oa_client):
    got = list(oa_client.completions.create(model="gpt-3.5-turbo-instruct", prompt="x", stream=True))
    assert [c.choices[0].text for c in got] == STREAM_WORDS
    flushed(obs, 1)
    (e,) = obs.calls()
    assert (e["input_tokens"], e["output_tokens"]) == (5, 7)


# ------------------------------------------------------------------------ async
def test_async_chat_and_stream(obs, oa_async_client, upstream):
    async def main():
        r = await oa_async_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
        s = await oa_async_client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "q"}], stream=True
        )
        assert isinstance(s, openai.AsyncStream)
        chunks = [c async for c in s]
        async with await oa_async_client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "q"}], stream=True
        ) as s2:
            first = await s2.__anext__()
        rs = await oa_async_client.responses.create(model="gpt-4.1", input="q", stream=True)
        revs = [e async for e in rs]
        emb = await oa_async_client.embeddings.create(model="text-embedding-3-small", input="a")
        return r, chunks, first, revs, emb

    r, chunks, first, revs, emb = asyncio.run(main())
    assert r.usage.prompt_tokens == 1200
    assert len(chunks) == len(STREAM_WORDS) + 2 and all(c.choices for c in chunks)
    assert first.choices[0].delta.role == "assistant"
    assert revs[-1].type == "response.completed"
    flushed(obs, 5)
    calls = obs.calls()
    assert len(calls) == 5
    streams = [c for c in calls if c["attributes"].get("stream")]
    assert len(streams) == 3
    complete = [c for c in streams if not c["attributes"].get("stream_incomplete")]
    assert sorted(c["input_tokens"] for c in complete) == [900, 1200]
    early = [c for c in streams if c["attributes"].get("stream_incomplete")]
    assert len(early) == 1
    assert any(c["name"] == "embeddings.create" and c["input_tokens"] == 17 for c in calls)


def test_async_error_reaches_caller(obs, oa_async_client, upstream):
    upstream.fail_with = 429

    async def main():
        await oa_async_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}])

    with pytest.raises(openai.RateLimitError):
        asyncio.run(main())
    flushed(obs, 1)
    (e,) = obs.calls()
    assert e["status"] == "error" and e["error_type"] == "RateLimitError" and e["attributes"]["http_status"] == 429


# ------------------------------------------------- what the bill depends on (wire v1.1)
def _calls_by_name(obs, n):
    flushed(obs, n)
    return {e["name"]: e for e in obs.calls()}


@pytest.mark.parametrize("use_async", [False, True])
def test_provider_and_host_from_the_client(obs, upstream, use_async):
    chat = dict(model="gpt-35-turbo", messages=[{"role": "user", "content": "q"}])
    clients = [
        ("openai", "api.openai.test", make_client(upstream, use_async, base_url="https://api.openai.test/v1")),
        ("openai", "localhost:8080", make_client(upstream, use_async, base_url="http://LocalHost:8080/v1")),
        (
            "azure",
            "acme.openai.azure.com",
            make_client(upstream, use_async, True, azure_endpoint="https://acme.openai.azure.com"),
        ),
        # the Azure client on any host is azure; an OpenAI client on an Azure host too
        (
            "azure",
            "llm.internal:8443",
            make_client(upstream, use_async, True, base_url="https://llm.internal:8443/openai"),
        ),
        (
            "azure",
            "acme.openai.azure.com",
            make_client(upstream, use_async, base_url="https://acme.openai.azure.com/openai/v1"),
        ),
    ]

    async def acall(c, **kw):
        return await c.chat.completions.create(**chat, **kw)

    for i, (_, _, c) in enumerate(clients):
        with llmobserve.run(run_id=f"r{i}"):
            for kw in ({}, {"stream": True}):
                if use_async:
                    r = asyncio.run(acall(c, **kw))
                    if kw:
                        asyncio.run(_drain(r))
                else:
                    r = c.chat.completions.create(**chat, **kw)
                    if kw:
                        list(r)
    upstream.fail_with = 500  # an error is recorded with its client's provider too
    with llmobserve.run(run_id="r2"), pytest.raises(openai.InternalServerError):
        asyncio.run(acall(clients[2][2])) if use_async else clients[2][2].chat.completions.create(**chat)
    flushed(obs, 11)
    for i, (provider, host, _) in enumerate(clients):
        got = [e for e in obs.calls() if e["run_id"] == f"r{i}"]
        assert len(got) == (3 if i == 2 else 2)
        for e in got:
            assert (e["provider"], e["provider_host"]) == (provider, host), (i, e["attributes"])


async def _drain(stream):
    return [c async for c in stream]


def test_provider_host_follows_a_new_base_url(obs, upstream):
    c = make_client(upstream, base_url="https://api.openai.test/v1")
    chat = dict(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
    c.chat.completions.create(**chat)
    c.base_url = "https://acme.openai.azure.com/openai/v1"
    c.chat.completions.create(**chat)
    flushed(obs, 2)
    got = sorted((e["provider"], e["provider_host"]) for e in obs.calls())
    assert got == [("azure", "acme.openai.azure.com"), ("openai", "api.openai.test")]


@pytest.mark.parametrize("use_async", [False, True])
def test_service_tier_of_chat_responses_and_streams(obs, upstream, use_async):
    upstream.tier, upstream.responses_tier = "flex", "priority"
    client = make_client(upstream, use_async, base_url="https://api.openai.test/v1")
    chat = dict(model="o3", messages=[{"role": "user", "content": "q"}])
    calls = [
        ("chat", lambda: client.chat.completions.create(**chat)),
        ("chat-stream", lambda: client.chat.completions.create(**chat, stream=True)),
        ("responses", lambda: client.responses.create(model="gpt-5", input="q")),
        ("responses-stream", lambda: client.responses.create(model="gpt-5", input="q", stream=True)),
        ("embeddings", lambda: client.embeddings.create(model="text-embedding-3-small", input="a")),
    ]

    async def run_async():
        for label, fn in calls:
            with section(label):
                r = await fn()
                if "stream" in label:
                    await _drain(r)

    if use_async:
        asyncio.run(run_async())
    else:
        for label, fn in calls:
            with section(label):
                r = fn()
                if "stream" in label:
                    list(r)
    flushed(obs, 10)
    by = {e["section"]: e for e in obs.calls()}
    assert by["chat"]["price_context"] == by["chat-stream"]["price_context"] == {"service_tier": "flex"}
    assert by["responses"]["price_context"] == by["responses-stream"]["price_context"] == {"service_tier": "priority"}
    assert "price_context" not in by["embeddings"]  # no service_tier reported
    assert by["chat-stream"]["input_tokens"] == 1200 and by["responses-stream"]["input_tokens"] == 900


def test_service_tier_sent_as_reported_and_only_then(obs, oa_client, upstream):
    chat = dict(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
    for tier in ("scale", None):
        upstream.tier = upstream.responses_tier = tier
        with section(f"tier {tier}"):
            oa_client.chat.completions.create(**chat)
            list(oa_client.chat.completions.create(**chat, stream=True))
            oa_client.responses.create(model="gpt-4.1", input="q")
    flushed(obs, 8)
    for e in obs.calls():
        assert e["input_tokens"] > 0 and "usage_known" not in e
        if e["section"] == "tier scale":
            assert e["price_context"] == {"service_tier": "scale"}, e["name"]
        else:
            assert "price_context" not in e, e["name"]


def test_stream_left_before_its_usage_keeps_the_tier_of_its_first_chunk(obs, oa_client, upstream):
    upstream.tier = "priority"
    s = oa_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}], stream=True)
    next(s)
    s.close()
    flushed(obs, 1)
    (e,) = obs.calls()
    assert e["price_context"] == {"service_tier": "priority"} and e["usage_known"] is False


AUDIO_CHAT = {
    "prompt_tokens": 1000,
    "completion_tokens": 700,
    "total_tokens": 1700,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 800, "cache_write_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 600},
}


@pytest.mark.parametrize("use_async", [False, True])
def test_audio_tokens_details_chat_and_stream(obs, upstream, use_async):
    upstream.usage_chat = AUDIO_CHAT
    client = make_client(upstream, use_async, base_url="https://api.openai.test/v1")
    chat = dict(model="gpt-4o-audio-preview", messages=[{"role": "user", "content": "q"}])

    async def run_async():
        await client.chat.completions.create(**chat)
        return await _drain(await client.chat.completions.create(**chat, stream=True))

    if use_async:
        asyncio.run(run_async())
    else:
        client.chat.completions.create(**chat)
        list(client.chat.completions.create(**chat, stream=True))
    flushed(obs, 2)
    for e in obs.calls():
        # included in input/output, as the provider reports them: those stay as they are
        assert (e["input_tokens"], e["output_tokens"], e["cached_input_tokens"]) == (1000, 700, 0)
        assert e["usage_details"] == {"input_audio_tokens": 800, "output_audio_tokens": 600}, e["attributes"]


def test_usage_details_only_non_zero_units(obs, oa_client, upstream):
    chat = dict(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
    upstream.usage_chat = dict(AUDIO_CHAT, completion_tokens_details={"reasoning_tokens": 0, "audio_tokens": 0})
    with section("audio in"):
        oa_client.chat.completions.create(**chat)
        list(oa_client.chat.completions.create(**chat, stream=True))
    # the default usage reports audio_tokens 0 (and no cache writes): no usage_details at all
    upstream.usage_chat = USAGE_CHAT
    with section("text"):
        oa_client.chat.completions.create(**chat)
        list(oa_client.chat.completions.create(**chat, stream=True))
    flushed(obs, 6)
    for e in obs.calls():
        if e["section"] == "audio in":
            assert e["usage_details"] == {"input_audio_tokens": 800}
        else:
            assert "usage_details" not in e and "usage_known" not in e and e["input_tokens"] == 1200


def test_cache_write_tokens_as_providers_and_proxies_report_them(obs, oa_client, upstream):
    chat = dict(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
    # the API's prompt_tokens_details.cache_write_tokens (non-streamed)
    upstream.usage_chat = dict(
        USAGE_CHAT_BASE, prompt_tokens_details={"cached_tokens": 1024, "cache_write_tokens": 150}
    )
    with section("api"):
        oa_client.chat.completions.create(**chat)
    # an Anthropic-shaped proxy: cache_creation_input_tokens on the usage (a stream, decoded from bytes)
    upstream.usage_chat = dict(USAGE_CHAT_BASE, cache_creation_input_tokens=300)
    with section("proxy"):
        list(oa_client.chat.completions.create(**chat, stream=True))
    # Responses: input_tokens_details.cache_write_tokens
    upstream.usage_responses = {
        "input_tokens": 900,
        "input_tokens_details": {"cached_tokens": 512, "cache_write_tokens": 200},
        "output_tokens": 300,
        "output_tokens_details": {"reasoning_tokens": 128},
        "total_tokens": 1200,
    }
    with section("responses"):
        oa_client.responses.create(model="gpt-5", input="q")
    flushed(obs, 6)
    by = {e["section"]: e for e in obs.calls()}
    assert by["api"]["usage_details"] == {"cache_write_tokens": 150}
    assert by["proxy"]["usage_details"] == {"cache_write_tokens": 300}
    assert by["responses"]["usage_details"] == {"cache_write_tokens": 200}
    assert (by["api"]["input_tokens"], by["proxy"]["input_tokens"], by["responses"]["input_tokens"]) == (
        1200,
        1200,
        900,
    )


USAGE_CHAT_BASE = {"prompt_tokens": 1200, "completion_tokens": 150, "total_tokens": 1350}
TOOLS = [
    web_search_call(1),
    web_search_call(2),
    file_search_call(1),
    code_interpreter_call(1, "cntr_a"),
    code_interpreter_call(2, "cntr_a"),
    code_interpreter_call(3, "cntr_b"),
]


@pytest.mark.parametrize("use_async", [False, True])
def test_responses_tool_calls_counted(obs, upstream, use_async):
    client = make_client(upstream, use_async, base_url="https://api.openai.test/v1")
    upstream.tools = TOOLS

    async def run_async():
        with section("plain"):
            await client.responses.create(model="gpt-5", input="q")
        with section("stream"):
            await _drain(await client.responses.create(model="gpt-5", input="q", stream=True))
        with section("raw"):
            await client.responses.with_raw_response.create(model="gpt-5", input="q")
        upstream.tools = TOOLS[:2]
        with section("two searches"):
            await client.responses.create(model="gpt-5", input="q")

    if use_async:
        asyncio.run(run_async())
    else:
        with section("plain"):
            client.responses.create(model="gpt-5", input="q")
        with section("stream"):
            list(client.responses.create(model="gpt-5", input="q", stream=True))
        with section("raw"):
            client.responses.with_raw_response.create(model="gpt-5", input="q")
        upstream.tools = TOOLS[:2]
        with section("two searches"):
            client.responses.create(model="gpt-5", input="q")
    flushed(obs, 8)
    by = {e["section"]: e for e in obs.calls()}
    want = {"web_search_calls": 2, "file_search_calls": 1, "code_interpreter_sessions": 2}
    for label in ("plain", "stream", "raw"):
        assert by[label]["usage_details"] == want, label
        assert (by[label]["input_tokens"], by[label]["output_tokens"]) == (900, 300)
    assert by["two searches"]["usage_details"] == {"web_search_calls": 2}


@pytest.mark.parametrize("chunking", ["event", "whole", 7])
@pytest.mark.parametrize("use_async", [False, True])
def test_usage_on_a_content_chunk_recorded_exactly_and_passed_on(
    obs, oa_client, oa_async_client, upstream, use_async, chunking
):
    # an OpenAI-compatible server puts the usage on its last content chunk
    # (no usage-only chunk): the caller gets that chunk as the server sent it
    upstream.stream_fault, upstream.chunking = "usage_on_content", chunking
    upstream.usage_chat = AUDIO_CHAT
    kw = dict(model="gemini-2.5-flash", messages=[{"role": "user", "content": "q"}])
    llmobserve.uninstrument()
    bare = _stream_view(oa_client, oa_async_client, use_async, **kw)
    llmobserve.observe(obs.url, api_key="test-key", service="svc", flush_interval=0.05)
    got = _stream_view(oa_client, oa_async_client, use_async, **kw)
    assert got == bare and len(got) == len(STREAM_WORDS) + 2
    assert got[-1]["usage"]["prompt_tokens"] == 1000 and got[-1]["choices"][0]["finish_reason"] == "stop"
    flushed(obs, 1)
    (e,) = obs.calls()
    assert (e["input_tokens"], e["output_tokens"], e["status"]) == (1000, 700, "ok")
    assert e["usage_details"] == {"input_audio_tokens": 800, "output_audio_tokens": 600}
    assert "usage_known" not in e and "stream_incomplete" not in e["attributes"]


def test_usage_on_a_content_chunk_when_the_caller_asked_for_usage(obs, oa_client, upstream):
    upstream.stream_fault = "usage_on_content"
    got = list(
        oa_client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "q"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert len(got) == len(STREAM_WORDS) + 2 and got[-1].usage.prompt_tokens == 1200 and got[-1].choices
    flushed(obs, 1)
    assert (obs.calls()[0]["input_tokens"], obs.calls()[0]["output_tokens"]) == (1200, 150)


@pytest.mark.parametrize("use_async", [False, True])
def test_stream_abandoned_before_its_usage_is_usage_unknown(obs, upstream, use_async):
    client = make_client(upstream, use_async, base_url="https://api.openai.test/v1")
    chat = dict(model="gpt-4o", messages=[{"role": "user", "content": "q"}], stream=True)

    def sync_calls():
        with section("break"):
            s = client.chat.completions.create(**chat)
            for i, _ in enumerate(s):
                if i == 2:
                    break  # after 3 chunks
            s.close()
        with section("with"), client.chat.completions.create(**chat) as s:
            next(s)
        with section("responses"), client.responses.create(model="gpt-5", input="q", stream=True) as r:
            next(r)
        with section("whole"):
            list(client.chat.completions.create(**chat))

    async def async_calls():
        with section("break"):
            s = await client.chat.completions.create(**chat)
            i = 0
            async for _ in s:
                i += 1
                if i == 3:
                    break
            await s.close()
        with section("with"):
            async with await client.chat.completions.create(**chat) as s:
                await s.__anext__()
        with section("responses"):
            async with await client.responses.create(model="gpt-5", input="q", stream=True) as r:
                await r.__anext__()
        with section("whole"):
            await _drain(await client.chat.completions.create(**chat))

    asyncio.run(async_calls()) if use_async else sync_calls()
    flushed(obs, 8)
    by = {e["section"]: e for e in obs.calls()}
    for label in ("break", "with", "responses"):
        e = by[label]
        assert e["usage_known"] is False and e["input_tokens"] == 0, label
        assert e["attributes"]["stream_incomplete"] is True and e["status"] == "ok"
    assert "usage_known" not in by["whole"] and by["whole"]["input_tokens"] == 1200


@pytest.mark.parametrize("use_async", [False, True])
def test_background_response_is_usage_unknown(obs, upstream, use_async):
    client = make_client(upstream, use_async, base_url="https://api.openai.test/v1")

    async def acreate(**kw):
        return await client.responses.create(**kw)

    kw = dict(model="o3-deep-research", input="q", background=True)
    r = asyncio.run(acreate(**kw)) if use_async else client.responses.create(**kw)
    assert r.status == "queued" and r.usage is None
    flushed(obs, 1)
    (e,) = obs.calls()
    assert e["usage_known"] is False and e["input_tokens"] == e["output_tokens"] == 0
    assert e["model"] == "o3-deep-research" and e["status"] == "ok"


def test_complete_calls_are_not_flagged_and_carry_the_default_tier(obs, oa_client):
    oa_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
    flushed(obs, 1)
    (e,) = obs.calls()
    assert "usage_known" not in e and "usage_details" not in e
    assert e["price_context"] == {"service_tier": "default"}
    assert (e["provider"], e["provider_host"]) == ("openai", "api.openai.test")


# ------------------------------------------------------------------ lifecycle
def test_observe_twice_instruments_once_and_uninstrument_restores(collector):
    from openai.resources.chat.completions import Completions

    original = Completions.__dict__["create"]
    llmobserve.observe(collector.url, flush_interval=0.05)
    wrapped_once = Completions.__dict__["create"]
    assert wrapped_once is not original
    llmobserve.observe(collector.url, flush_interval=0.05)
    assert Completions.__dict__["create"] is wrapped_once
    assert wrapped_once.__wrapped__ is original
    llmobserve.uninstrument()
    assert Completions.__dict__["create"] is original
    llmobserve.shutdown()


def test_uninstrumented_calls_send_nothing(obs, oa_client):
    llmobserve.uninstrument()
    oa_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
    assert llmobserve.flush(2)
    assert obs.calls() == []


def test_sampling_zero_records_nothing_and_one_everything(collector, oa_client):
    llmobserve.observe(collector.url, sample_rate=0.0, flush_interval=0.05)
    with section("s"):
        oa_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
    oa_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
    assert llmobserve.flush(2)
    assert collector.events == []
    llmobserve.observe(collector.url, sample_rate=1.0, flush_interval=0.05)
    with section("s"):
        oa_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
    flushed(collector, 2)
    assert len(collector.events) == 2


def test_finished_stream_is_freed_without_the_cycle_collector(obs, oa_client):
    import weakref

    gc.disable()
    try:
        s = oa_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}], stream=True)
        assert type(s) is openai.Stream  # openai's own object, no proxy
        inner = weakref.ref(s)
        assert len(list(s)) == len(STREAM_WORDS) + 2
        del s
        assert inner() is None  # freed by reference counting: the SDK adds no reference cycle
    finally:
        gc.enable()
    flushed(obs, 1)
    assert obs.calls()[0]["input_tokens"] == 1200


def test_stream_record_decoded_on_the_exporter_survives_bad_bytes():
    # what a stream queues (P_OPENAI_STREAM) is decoded on the exporter
    # thread: a usage line that is not JSON, or a first chunk without a
    # model, must give zero tokens and the call's own model, never an error
    from llmobserve import _state
    from llmobserve._events import P_OPENAI_STREAM, build_event

    def ev(usage, head, model="gpt-4o"):
        rec = (_state.KIND_CALL, None, "llm", "chat.completions.create", ("openai", "api.openai.com"), model)
        return build_event(rec + (0.0, 0.5, None, P_OPENAI_STREAM, (usage, head, 0.0123, False, None), None))

    good = b'data: {"model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}'
    e = ev(good, b'data: {"id":"c","model":"gpt-4o-2024-08-06","service_tier":"flex","choices":[')
    assert (e["model"], e["input_tokens"], e["output_tokens"]) == ("gpt-4o-mini-2024-07-18", 7, 3)
    assert e["attributes"] == {"stream": True, "ttft_ms": 12.3}
    assert (e["provider"], e["provider_host"], e["price_context"]) == (
        "openai",
        "api.openai.com",
        {"service_tier": "flex"},
    )
    assert "usage_known" not in e and "usage_details" not in e
    e = ev(b'data: {"choices":[],"usage":{"prompt_tok', b'data: {"id":"c","model":"gpt-4o-2024-08-06"')
    assert (e["model"], e["input_tokens"], e["output_tokens"], e["usage_known"]) == ("gpt-4o-2024-08-06", 0, 0, False)
    e = ev(b"\xff\xfe not json", b'data: {"model":"\xff\xfe","service_tier":"\xff"}')
    assert (e["model"], e["input_tokens"], e["usage_known"]) == ("gpt-4o", 0, False)
    assert "price_context" not in e
