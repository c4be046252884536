"""End to end: the SDK instruments the real openai and pinecone clients and
posts to the real Django collector (pytest-django ``live_server``); the run
arrives with its tree and exact costs.

Skipped when pytest-django is not active (``-p no:django``, or the
openai-1.x venv that has no Django)."""

from __future__ import annotations

import os
import warnings

import pytest

if not os.environ.get("DJANGO_SETTINGS_MODULE"):
    pytest.skip("needs pytest-django (the collector's settings)", allow_module_level=True)
pytest.importorskip("pytest_django")

import llmobserve  # noqa: E402
from llmobserve import section, trace  # noqa: E402

try:  # the collector's shared fixtures (tests/conftest.py at the repo root)
    from tests.conftest import Api, api_key, project  # noqa: E402,F401
except Exception as e:  # pragma: no cover
    pytest.skip(f"collector test fixtures unavailable: {e}", allow_module_level=True)

EXACT = 1e-9


@pytest.fixture
def e2e_observe(live_server, transactional_db, api_key):
    assert llmobserve.observe(
        live_server.url, api_key=api_key, service="support-bot", flush_interval=0.05, backoff_base=0.05, max_retries=3
    )
    yield api_key
    llmobserve.shutdown(timeout=5)
    llmobserve.uninstrument()


def test_nested_agent_tool_step_flow_arrives_with_tree_and_exact_costs(e2e_observe, oa_client, pinecone_server):
    import pinecone

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idx = pinecone.Pinecone(api_key="pc-test").Index(host=pinecone_server.host)

    @trace(tool="web_search")
    def web_search():
        return oa_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "search"}])

    with llmobserve.run(run_id="e2e-run-1", user_id="u-7"):
        with section("agent:researcher"):
            web_search()
            with section("step:retrieve"):
                oa_client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
                idx.query(vector=[0.1, 0.2, 0.3], top_k=2, namespace="docs")
            stream = oa_client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], stream=True
            )
            text = "".join(c.choices[0].delta.content or "" for c in stream)
    assert text == "Hello, world!"
    assert llmobserve.flush(15)

    body = Api(e2e_observe).get("/runs/e2e-run-1").json()
    assert body["run_id"] == "e2e-run-1"
    assert body["calls"] == 4
    (agent,) = body["tree"]
    assert agent["name"] == "agent:researcher" and agent["span_type"] == "section" and agent["status"] == "ok"

    tool_cost = (1200 - 1024) * 2.5 / 1e6 + 1024 * 1.25 / 1e6 + 150 * 10 / 1e6  # gpt-4o-2024-08-06 -> gpt-4o
    emb_cost = 34 * 0.02 / 1e6  # text-embedding-3-small
    query_cost = 5 * 16.0 / 1e6  # 5 read units reported by Pinecone
    mini_cost = (
        (1200 - 1024) * 0.15 / 1e6 + 1024 * 0.075 / 1e6 + 150 * 0.6 / 1e6
    )  # streamed gpt-4o-mini, usage injected

    children = {c["name"]: c for c in agent["children"]}
    assert set(children) == {"tool:web_search", "step:retrieve", "chat.completions.create"}
    tool, step, direct = children["tool:web_search"], children["step:retrieve"], children["chat.completions.create"]
    assert tool["section_path"] == "agent:researcher/tool:web_search"
    assert step["section_path"] == "agent:researcher/step:retrieve"
    (leaf,) = tool["children"]
    assert leaf["span_type"] == "llm" and leaf["input_tokens"] == 1200 and leaf["output_tokens"] == 150
    assert tool["cost_usd"] == pytest.approx(tool_cost, abs=EXACT)
    assert sorted(c["span_type"] for c in step["children"]) == ["llm", "vector_db"]
    assert step["cost_usd"] == pytest.approx(emb_cost + query_cost, abs=EXACT)
    assert direct["span_type"] == "llm" and direct["cost_usd"] == pytest.approx(mini_cost, abs=EXACT)
    assert agent["cost_usd"] == pytest.approx(tool_cost + emb_cost + query_cost + mini_cost, abs=EXACT)
    assert agent["self_cost_usd"] == pytest.approx(mini_cost, abs=EXACT)
    assert body["cost_usd"] == pytest.approx(tool_cost + emb_cost + query_cost + mini_cost, abs=EXACT)
    assert llmobserve.stats()["sent"] == 7  # 4 calls + 3 sections


class LossyProxy:
    """An HTTP proxy in front of the collector that forwards the first POST
    (the collector stores it) but answers the SDK 502, as a load balancer
    timing out after the backend committed. The SDK resends the batch."""

    def __init__(self, upstream: str) -> None:
        import threading
        import urllib.request
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.responses: list = []
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # noqa: ANN002
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() in ("authorization", "content-type", "content-encoding")
                }
                req = urllib.request.Request(upstream + self.path, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=10) as r:
                    out, status = r.read(), r.status
                outer.responses.append((status, out))
                if len(outer.responses) == 1:
                    status, out = 502, b"bad gateway"
                self.send_response(status)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_batch_resent_after_lost_response_is_not_double_counted(live_server, transactional_db, api_key, oa_client):
    import json

    proxy = LossyProxy(live_server.url)
    try:
        assert llmobserve.observe(
            proxy.url, api_key=api_key, service="support-bot", flush_interval=0.05, backoff_base=0.05, max_retries=3
        )
        with llmobserve.run(run_id="e2e-resend"):
            with section("agent:a"):
                oa_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
        assert llmobserve.flush(15)
    finally:
        llmobserve.shutdown(timeout=5)
        llmobserve.uninstrument()
        proxy.close()
    (first_status, first), (second_status, second) = proxy.responses
    assert json.loads(first)["accepted"] == 2
    assert json.loads(second)["accepted"] == 0 and json.loads(second)["duplicates"] == 2
    body = Api(api_key).get("/runs/e2e-resend").json()
    assert body["calls"] == 1
    assert body["cost_usd"] == pytest.approx((1200 - 1024) * 2.5 / 1e6 + 1024 * 1.25 / 1e6 + 150 * 10 / 1e6, abs=EXACT)
