"""Pinecone instrumentation: the real pinecone client against a loopback data plane."""

from __future__ import annotations

import asyncio
import warnings

import llmobserve
import pytest
from llmo_testkit import wait_for
from llmobserve import section

pinecone = pytest.importorskip("pinecone")


def make_index(host):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pinecone.Pinecone(api_key="pc-test").Index(host=host)


def make_async_index(host):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pinecone.Pinecone(api_key="pc-test").IndexAsyncio(host=host)


def flushed(collector, n):
    assert llmobserve.flush(5.0)
    assert wait_for(lambda: len(collector.events) >= n, 3)
    return collector


def by_name(collector):
    return {e["name"]: e for e in collector.calls()}


def test_pinecone_ops_with_reported_usage(obs, pinecone_server):
    idx = make_index(pinecone_server.host)
    with section("retrieval"):
        q = idx.query(vector=[0.1, 0.2, 0.3], top_k=2, namespace="docs")
        f = idx.fetch(ids=["v1"], namespace="docs")
        s = idx.search(namespace="docs", query={"inputs": {"text": "hello"}, "top_k": 1})
    # the caller's view is unchanged
    assert [m.id for m in q.matches] == ["v1", "v2"] and q.usage.read_units == 5
    assert list(f.vectors) == ["v1"]
    assert s.result.hits[0].id == "r1" and s.usage.read_units == 6
    flushed(obs, 4)
    ev = by_name(obs)
    qe, fe, se = ev["index.query"], ev["index.fetch"], ev["index.search"]
    assert qe["span_type"] == "vector_db" and qe["provider"] == "pinecone"
    assert qe["read_units"] == 5 and qe["write_units"] == 0
    assert fe["read_units"] == 1
    assert se["read_units"] == 6 and se["attributes"]["embed_total_tokens"] == 12
    for e in (qe, fe, se):
        assert e["section"] == "retrieval" and e["attributes"]["namespace"] == "docs"
        assert e["attributes"]["index_host"] == pinecone_server.host
        assert "units_estimated" not in e["attributes"]
        assert e["status"] == "ok"


def test_pinecone_estimated_units(obs, pinecone_server):
    pinecone_server.with_usage = False
    idx = make_index(pinecone_server.host)
    vectors = [(f"id{i}", [0.5] * 256) for i in range(20)]  # 20 x (1024 + 100) B ~ 22 KB
    up = idx.upsert(vectors=vectors, namespace="docs")
    assert up.upserted_count == 20
    idx.query(vector=[0.1] * 3, top_k=2, namespace="docs")
    idx.fetch(ids=[f"id{i}" for i in range(25)], namespace="docs")
    idx.delete(ids=["id1", "id2"], namespace="docs")
    idx.update(id="id1", values=[0.2] * 3, namespace="docs")
    flushed(obs, 5)
    ev = by_name(obs)
    assert ev["index.upsert"]["write_units"] == 22.0  # ceil(20*1124/1024)
    assert ev["index.upsert"]["attributes"]["records"] == 20
    assert ev["index.query"]["read_units"] == 0.25
    assert ev["index.fetch"]["read_units"] == 3.0  # ceil(25/10)
    assert ev["index.delete"]["write_units"] == 5.0
    assert ev["index.update"]["write_units"] == 5.0
    for e in ev.values():
        assert e["attributes"]["units_estimated"] is True


def test_search_records_is_one_event(obs, pinecone_server):
    idx = make_index(pinecone_server.host)
    if not hasattr(idx, "search_records"):
        pytest.skip("no search_records")
    idx.search_records(namespace="docs", query={"inputs": {"text": "hi"}, "top_k": 1})
    idx.upsert_records(namespace="docs", records=[{"_id": "r1", "text": "hello"}])
    flushed(obs, 2)
    names = sorted(e["name"] for e in obs.calls())
    assert names == ["index.search_records", "index.upsert_records"]
    assert by_name(obs)["index.search_records"]["read_units"] == 6


def test_pinecone_error_reaches_caller(obs, pinecone_server):
    pinecone_server.fail_with = 400
    idx = make_index(pinecone_server.host)
    with pytest.raises(Exception) as ei:
        idx.query(vector=[0.1, 0.2, 0.3], top_k=2, namespace="docs")
    assert "bad request" in str(ei.value)
    flushed(obs, 1)
    (e,) = obs.calls()
    assert e["status"] == "error" and e["error_type"] == type(ei.value).__name__


def test_pinecone_asyncio_index(obs, pinecone_server):
    async def main():
        idx = make_async_index(pinecone_server.host)
        async with idx:

            async def one(label, ns):
                with section(label):
                    return await idx.query(vector=[0.1, 0.2, 0.3], top_k=2, namespace=ns)

            a, b = await asyncio.gather(one("agent:a", "ns-a"), one("agent:b", "ns-b"))
            await idx.upsert(vectors=[("x", [0.1, 0.2, 0.3])], namespace="ns-a")
            return a, b

    a, b = asyncio.run(main())
    assert a.usage.read_units == 5 and b.namespace == "ns-b"
    flushed(obs, 5)
    qs = [e for e in obs.calls() if e["name"] == "index.query"]
    assert sorted((e["section"], e["attributes"]["namespace"]) for e in qs) == [
        ("agent:a", "ns-a"),
        ("agent:b", "ns-b"),
    ]
    assert all(e["read_units"] == 5 for e in qs)
    (up,) = [e for e in obs.calls() if e["name"] == "index.upsert"]
    assert up["write_units"] == 5.0 and up["attributes"]["units_estimated"] is True


def test_pinecone_uninstrument_restores(collector):
    from pinecone.index import Index

    orig = Index.__dict__["query"]
    llmobserve.observe(collector.url, flush_interval=0.05)
    assert Index.__dict__["query"] is not orig
    llmobserve.uninstrument()
    assert Index.__dict__["query"] is orig
    llmobserve.shutdown()
