"""OpenAI instrumentation against the real openai client over a MockTransport."""

from __future__ import annotations

import asyncio
import gc
import json

import llmobserve
import pytest
from llmo_testkit import STREAM_WORDS, http_module, wait_for
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


def test_with_streaming_response_keeps_working(obs, oa_client):
    with oa_client.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "q"}]
    ) as resp:
        data = json.loads(resp.read())
    assert data["usage"]["prompt_tokens"] == 1200
    flushed(obs, 1)
    (e,) = obs.calls()
    assert e["name"] == "chat.completions.create" and e["attributes"]["usage_unavailable"] is True


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
        rec = (_state.KIND_CALL, None, "llm", "chat.completions.create", "openai", model, 0.0, 0.5, None)
        return build_event(rec + (P_OPENAI_STREAM, (usage, head, 0.0123, False), None))

    good = b'data: {"model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}'
    e = ev(good, b'data: {"id":"c","model":"gpt-4o-2024-08-06","choices":[')
    assert (e["model"], e["input_tokens"], e["output_tokens"]) == ("gpt-4o-mini-2024-07-18", 7, 3)
    assert e["attributes"] == {"stream": True, "ttft_ms": 12.3}
    e = ev(b'data: {"choices":[],"usage":{"prompt_tok', b'data: {"id":"c","model":"gpt-4o-2024-08-06"')
    assert (e["model"], e["input_tokens"], e["output_tokens"]) == ("gpt-4o-2024-08-06", 0, 0)
    e = ev(b"\xff\xfe not json", b'data: {"model":"\xff\xfe"}')
    assert (e["model"], e["input_tokens"]) == ("gpt-4o", 0)
