"""Pinecone instrumentation: the real pinecone client against a loopback data plane."""

from __future__ import annotations

import asyncio
import warnings

import llmobserve
import pytest
from llmo_testkit import wait_for
from llmobserve import section
from pinecone_fakes import (
    EMBED_TOKENS,
    FBM_RU,
    INFER_EMBED_TOKENS,
    INFER_RERANK_UNITS,
    LIST_RU,
    MATCHED,
    RERANK_UNITS,
    SEARCH_RU,
    FakeDataPlane,
    FakeGrpcDataPlane,
)

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


# ----------------------------------------------------------------------------
# wire v1.1: embed/rerank units, update by filter, list / fetch_by_metadata,
# Pinecone Inference, the gRPC index. Real pinecone clients against the
# loopback fakes of pinecone_fakes.py.
RERANK = {"model": "bge-reranker-v2-m3", "rank_fields": ["text"], "top_n": 1}


@pytest.fixture
def data_plane():
    s = FakeDataPlane()
    yield s
    s.close()


@pytest.fixture
def grpc_plane():
    s = FakeGrpcDataPlane()
    yield s
    s.close()


def calls_named(collector, name):
    return [e for e in collector.calls() if e["name"] == name]


def run_async(host, body):
    """body(idx) on an AsyncIndex of ``host``, in a fresh event loop."""

    async def main():
        idx = make_async_index(host)
        async with idx:
            return await body(idx)

    return asyncio.run(main())


def search_both(idx_search):
    """search_records with and without rerank (sync or async result)."""
    return [
        idx_search(namespace="docs", query={"inputs": {"text": "hi"}, "top_k": 1}, rerank=RERANK),
        idx_search(namespace="docs", query={"inputs": {"text": "hi"}, "top_k": 1}),
    ]


def assert_search_events(obs):
    flushed(obs, 2)
    ranked, plain = sorted(calls_named(obs, "index.search_records"), key=lambda e: "price_context" not in e)
    assert ranked["usage_details"] == {"embed_tokens": EMBED_TOKENS, "rerank_units": RERANK_UNITS}
    assert ranked["price_context"] == {"rerank_model": "bge-reranker-v2-m3"}  # no embed_model: not known cheaply
    assert plain["usage_details"] == {"embed_tokens": EMBED_TOKENS}
    assert "price_context" not in plain
    for e in (ranked, plain):
        assert e["read_units"] == SEARCH_RU and e.get("usage_known", True) is True


def test_search_records_embed_and_rerank_units(obs, data_plane):
    idx = make_index(data_plane.url)
    ranked, plain = search_both(idx.search_records)
    assert ranked.usage.rerank_units == RERANK_UNITS and plain.usage.rerank_units is None  # caller's view
    assert_search_events(obs)


def test_search_records_embed_and_rerank_units_async(obs, data_plane):
    async def body(idx):
        return await asyncio.gather(*search_both(idx.search_records))

    ranked, _ = run_async(data_plane.url, body)
    assert ranked.result.hits[0].id == "r1"
    assert_search_events(obs)


def update_by_filter(idx_update):
    return [
        idx_update(filter={"genre": {"$eq": "drama"}}, set_metadata={"reviewed": True}, namespace="docs"),
        idx_update(filter={"genre": {"$eq": "drama"}}, set_metadata={"reviewed": True}, namespace="docs", dry_run=True),
        idx_update(id="v1", values=[0.1, 0.2, 0.3], namespace="docs"),
    ]


def assert_update_events(obs):
    flushed(obs, 3)
    evs = calls_named(obs, "index.update")
    applied = [e for e in evs if "usage_details" in e]
    dry = [e for e in evs if e["attributes"].get("dry_run")]
    by_id = [e for e in evs if e["attributes"].get("units_estimated")]
    assert len(applied) == len(dry) == len(by_id) == 1
    (applied,), (dry,), (by_id,) = applied, dry, by_id
    # no usage in the response: the records the filter matched are the unit
    assert applied["usage_details"] == {"matched_records": MATCHED}
    assert applied["write_units"] == 0 and applied["attributes"]["matched_records"] == MATCHED
    assert "units_estimated" not in applied["attributes"] and applied.get("usage_known", True) is True
    # a dry run writes nothing and reports no usage
    assert dry["usage_known"] is False and dry["write_units"] == 0 and dry["attributes"]["matched_records"] == MATCHED
    assert "usage_details" not in dry
    assert by_id["write_units"] == 5.0 and "usage_details" not in by_id  # by id: as before


def test_update_by_filter_reports_matched_records(obs, data_plane):
    res = update_by_filter(make_index(data_plane.url).update)
    assert [r.matched_records for r in res] == [MATCHED, MATCHED, None]
    assert_update_events(obs)


def test_update_by_filter_reports_matched_records_async(obs, data_plane):
    async def body(idx):
        return [await c for c in update_by_filter(idx.update)]

    assert run_async(data_plane.url, body)[0].matched_records == MATCHED
    assert_update_events(obs)


def page_calls(idx):
    return [
        idx.list_paginated(namespace="docs", limit=2),
        idx.fetch_by_metadata(filter={"genre": "drama"}, namespace="docs"),
    ]


def assert_page_events(obs, with_usage):
    flushed(obs, 2)
    (lp,) = calls_named(obs, "index.list_paginated")
    (fbm,) = calls_named(obs, "index.fetch_by_metadata")
    assert lp["attributes"]["records"] == 2 and fbm["attributes"]["records"] == 2
    assert lp["attributes"]["namespace"] == fbm["attributes"]["namespace"] == "docs"
    if with_usage:
        assert (lp["read_units"], fbm["read_units"]) == (LIST_RU[0], FBM_RU)
        assert "usage_known" not in lp and "usage_known" not in fbm
    else:  # never a silent 0
        assert lp["usage_known"] is False and fbm["usage_known"] is False
        assert lp["read_units"] == fbm["read_units"] == 0
    for e in (lp, fbm):
        assert e["span_type"] == "vector_db" and e["provider"] == "pinecone" and e["status"] == "ok"


@pytest.mark.parametrize("with_usage", [True, False])
def test_list_paginated_and_fetch_by_metadata(obs, data_plane, with_usage):
    data_plane.with_usage = with_usage
    lp, fbm = page_calls(make_index(data_plane.url))
    assert [v.id for v in lp.vectors] == ["a1", "a2"] and sorted(fbm.vectors) == ["m1", "m2"]
    assert_page_events(obs, with_usage)


@pytest.mark.parametrize("with_usage", [True, False])
def test_list_paginated_and_fetch_by_metadata_async(obs, data_plane, with_usage):
    data_plane.with_usage = with_usage

    async def body(idx):
        return [await c for c in page_calls(idx)]

    lp, _ = run_async(data_plane.url, body)
    assert lp.pagination.next == "p2"
    assert_page_events(obs, with_usage)


def assert_walk_events(obs, n):
    flushed(obs, n)
    assert not calls_named(obs, "index.list_paginated")  # the pages are the walk's
    walks = calls_named(obs, "index.list")
    assert len(walks) == n
    full = [e for e in walks if "ended_early" not in e["attributes"]]
    early = [e for e in walks if e["attributes"].get("ended_early")]
    assert len(full) == len(early) == 1
    assert full[0]["read_units"] == sum(LIST_RU) and full[0]["attributes"]["pages"] == 2
    assert full[0]["attributes"]["records"] == 3 and full[0]["section"] == "walk"
    assert early[0]["read_units"] == LIST_RU[0] and early[0]["attributes"]["pages"] == 1
    return walks


def test_list_walk_is_one_event(obs, data_plane):
    idx = make_index(data_plane.url)
    idx.list(namespace="docs")  # never iterated: nothing requested, nothing sent
    with section("walk"):
        ids = [v.id for page in idx.list(namespace="docs") for v in page.vectors]
    walk = idx.list(namespace="docs")
    first = next(walk)
    del walk  # dropped after the first page
    assert ids == ["a1", "a2", "a3"] and [v.id for v in first.vectors] == ["a1", "a2"]
    assert len([r for r in data_plane.requests if r[1] == "/vectors/list"]) == 3
    assert_walk_events(obs, 2)


def test_list_walk_is_one_event_async(obs, data_plane):
    async def body(idx):
        with section("walk"):
            ids = [v.id async for page in idx.list(namespace="docs") for v in page.vectors]
        walk = idx.list(namespace="docs")
        async for _ in walk:
            break
        await walk.aclose()
        return ids

    assert run_async(data_plane.url, body) == ["a1", "a2", "a3"]
    assert_walk_events(obs, 2)


def test_list_walk_without_usage_is_usage_unknown(obs, data_plane):
    data_plane.with_usage = False
    assert len(list(make_index(data_plane.url).list(namespace="docs"))) == 2
    flushed(obs, 1)
    (e,) = obs.calls()
    assert e["name"] == "index.list" and e["usage_known"] is False and e["read_units"] == 0


def test_list_walk_error_reaches_caller(obs, data_plane):
    data_plane.fail_with = 400
    with pytest.raises(Exception) as ei:
        list(make_index(data_plane.url).list(namespace="docs"))
    flushed(obs, 1)
    (e,) = obs.calls()
    assert e["name"] == "index.list" and e["status"] == "error" and e["error_type"] == type(ei.value).__name__


def make_client(url):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pinecone.Pinecone(api_key="pc-test", host=url)


def infer(inference):
    docs = [{"id": "d1", "text": "Acme Inc. revolutionized tech."}]
    return [
        inference.embed(model="multilingual-e5-large", inputs=["a", "b"], parameters={"input_type": "passage"}),
        inference.rerank(model="bge-reranker-v2-m3", query="tech", documents=docs),
    ]


def assert_inference_events(obs):
    flushed(obs, 2)
    ev = by_name(obs)
    emb, rr = ev["inference.embed"], ev["inference.rerank"]
    assert emb["usage_details"] == {"embed_tokens": INFER_EMBED_TOKENS} and emb["model"] == "multilingual-e5-large"
    assert rr["usage_details"] == {"rerank_units": INFER_RERANK_UNITS} and rr["model"] == "bge-reranker-v2-m3"
    for e in (emb, rr):
        assert e["provider"] == "pinecone" and e["span_type"] == "llm" and e["endpoint"] == e["name"]
        assert e["section"] == "rag" and e["status"] == "ok"
        assert e["read_units"] == e["write_units"] == e["input_tokens"] == 0


def test_inference_embed_and_rerank(obs, data_plane):
    with section("rag"):
        emb, rr = infer(make_client(data_plane.url).inference)
    assert len(emb) == 2 and emb.usage.total_tokens == INFER_EMBED_TOKENS and rr.data[0].index == 0
    assert_inference_events(obs)


def test_inference_embed_and_rerank_async(obs, data_plane):
    async def main():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pc = pinecone.PineconeAsyncio(api_key="pc-test", host=data_plane.url)
        try:
            with section("rag"):
                return await asyncio.gather(*infer(pc.inference))
        finally:
            await pc.close()

    emb, rr = asyncio.run(main())
    assert emb.model == "multilingual-e5-large" and rr.usage.rerank_units == INFER_RERANK_UNITS
    assert_inference_events(obs)


def make_grpc_index(url):
    from pinecone.grpc import GrpcIndex

    return GrpcIndex(host=url, api_key="pc-test", grpc_scheme="http", secure=False)


@pytest.mark.parametrize("with_usage", [True, False])
def test_grpc_index(obs, grpc_plane, with_usage):
    grpc_plane.with_usage = with_usage
    idx = make_grpc_index(grpc_plane.url)
    try:
        with section("grpc"):
            q = idx.query(vector=[0.1, 0.2, 0.3], top_k=2, namespace="docs")
            idx.fetch(ids=["v1"], namespace="docs")
            idx.fetch_by_metadata(filter={"genre": "drama"}, namespace="docs")
            idx.list_paginated(namespace="docs")
            ids = [v.id for page in idx.list(namespace="docs") for v in page.vectors]
            u = idx.update(filter={"genre": {"$eq": "drama"}}, set_metadata={"reviewed": True}, namespace="docs")
            idx.upsert(vectors=[("x", [0.1, 0.2, 0.3])], namespace="docs", show_progress=False)
            fut = idx.query_async(vector=[0.1, 0.2, 0.3], top_k=2, namespace="async-ns")
        assert fut.result(timeout=10).namespace == "async-ns"
    finally:
        idx.close()
    assert [m.id for m in q.matches] == ["v1", "v2"] and ids == ["a1", "a2", "a3"] and u.matched_records == MATCHED
    assert [c[0] for c in grpc_plane.calls].count("List") == 3
    flushed(obs, 8)
    evs = obs.calls()
    assert len(evs) == 8 and all(e["section"] == "grpc" for e in evs)  # query_async too: the caller's section
    assert all(e["attributes"]["index_host"] == idx.host for e in evs)
    ev = {(e["name"], e["attributes"].get("namespace")): e for e in evs}
    q, fbm = ev[("index.query", "docs")], ev[("index.fetch_by_metadata", "docs")]
    lp, walk = ev[("index.list_paginated", "docs")], ev[("index.list", "docs")]
    aq, f = ev[("index.query", "async-ns")], ev[("index.fetch", "docs")]
    assert ev[("index.update", "docs")]["usage_details"] == {"matched_records": MATCHED}
    assert ev[("index.upsert", "docs")]["write_units"] == 5.0  # no usage over gRPC either: the estimate
    assert walk["attributes"]["pages"] == 2
    if with_usage:
        assert (q["read_units"], aq["read_units"], f["read_units"]) == (5, 5, 1)
        assert (fbm["read_units"], lp["read_units"], walk["read_units"]) == (FBM_RU, LIST_RU[0], sum(LIST_RU))
        assert not any("usage_known" in e for e in evs)
    else:
        assert q["attributes"]["units_estimated"] is True and q["read_units"] == 0.25  # as the REST index
        assert fbm["usage_known"] is lp["usage_known"] is walk["usage_known"] is False


NEW_TARGETS = [
    ("pinecone.index", "Index", ["fetch_by_metadata", "list_paginated", "list"]),
    ("pinecone.async_client.async_index", "AsyncIndex", ["fetch_by_metadata", "list_paginated", "list"]),
    ("pinecone.grpc", "GrpcIndex", ["query", "update", "fetch_by_metadata", "list", "query_async", "upsert_async"]),
    ("pinecone.client.inference", "Inference", ["embed", "rerank"]),
    ("pinecone.async_client.inference", "AsyncInference", ["embed", "rerank"]),
]


def test_uninstrument_restores_new_methods(collector):
    import importlib

    owners = [(getattr(importlib.import_module(m), c), names) for m, c, names in NEW_TARGETS]
    before = {(cls, n): cls.__dict__[n] for cls, names in owners for n in names}
    for _ in range(2):  # instrument/uninstrument is a pair, twice over
        llmobserve.observe(collector.url, flush_interval=0.05)
        llmobserve.observe(collector.url, flush_interval=0.05)  # instruments once
        for (cls, n), orig in before.items():
            wrapped = cls.__dict__[n]
            assert wrapped is not orig and wrapped.__wrapped__ is orig, (cls, n)
        llmobserve.uninstrument()
        assert all(cls.__dict__[n] is orig for (cls, n), orig in before.items())
        llmobserve.shutdown()
