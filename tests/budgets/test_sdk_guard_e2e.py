"""End to end (issue 16): the SDK's budget guard against the real collector
(pytest-django ``live_server``), the real openai client on a MockTransport
upstream that counts the requests it gets.

* ``run(max_cost_usd=…)`` priced with the rates the collector's
  ``GET /pricing/resolve`` gives (genai-prices' gpt-4o: $2.50 input, $1.25
  cached input, $10 output per 1M tokens; the upstream's usage: 1200 prompt
  tokens of which 1024 cached, 150 completion tokens):
  (1200 - 1024) * 2.5e-6 + 1024 * 1.25e-6 + 150 * 10e-6 = $0.00322 a call.
* ``observe(enforce_budgets=True)``: a hard $0.005/day budget on
  ``customer=acme`` created through ``POST /budgets``; the SDK's own events
  make the collector count $0.00644 of acme spend, ``GET /budgets/status``
  says exceeded, and the next acme call is refused before it is sent.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest

pytest.importorskip("openai")

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "observe_sdk", "tests"))

import llmobserve  # noqa: E402
from llmo_testkit import OpenAIUpstream, make_client  # noqa: E402
from llmobserve import BudgetExceeded, run  # noqa: E402

from tests.conftest import Api  # noqa: E402

CALL_USD = (1200 - 1024) * 2.5e-6 + 1024 * 1.25e-6 + 150 * 10e-6
MSGS = [{"role": "user", "content": "hi"}]


class KeyApi(Api):
    def post(self, path: str, payload: Any) -> Any:
        return self.client.post(
            path, data=json.dumps(payload), content_type="application/json", headers=self._headers()
        )


@pytest.fixture
def upstream() -> OpenAIUpstream:
    return OpenAIUpstream()


@pytest.fixture
def sdk(live_server, transactional_db, api_key, settings):
    # budgets count at ingest from the moment they are saved (no rules-cache lag)
    settings.BUDGETS_CACHE_SECONDS = 0
    settings.BUDGETS_CLOCK_SKEW_SECONDS = 0

    def start(**kw: Any) -> None:
        opts: dict[str, Any] = dict(service="svc", flush_interval=0.05, backoff_base=0.05, max_retries=3)
        opts.update(kw)
        assert llmobserve.observe(live_server.url, api_key=api_key, **opts)

    yield start
    llmobserve.shutdown(timeout=5)
    llmobserve.uninstrument()


def chat(client: Any) -> Any:
    return client.chat.completions.create(model="gpt-4o", messages=MSGS)


def test_run_cap_priced_by_the_collector(sdk, api_key, upstream) -> None:
    sdk()
    client = make_client(upstream, base_url="https://api.openai.test/v1")
    with run(run_id="capped-1", max_cost_usd=0.006) as r:
        chat(client)
        assert llmobserve.flush(15)  # the rates asked for, fetched from the collector
        assert r.spent_usd == pytest.approx(CALL_USD, abs=1e-12)
        chat(client)
        with pytest.raises(BudgetExceeded) as ei:
            chat(client)
    assert len(upstream.requests) == 2
    assert ei.value.spent_usd == pytest.approx(0.00644, abs=1e-12)
    assert llmobserve.flush(15)
    # the collector stored the refusal beside the two calls, and bills what the SDK counted
    body = Api(api_key).get("/runs/capped-1").json()
    assert body["calls"] == 3
    assert body["cost_usd"] == pytest.approx(2 * CALL_USD, abs=1e-9)
    nodes = {n["status"]: n for n in body["tree"]}
    assert nodes["error"]["name"] == "chat.completions.create"
    assert nodes["error"]["input_tokens"] == 0 and nodes["error"]["cost_usd"] == 0


def test_enforce_budgets_stops_a_customer_at_its_hard_budget(sdk, admin_key, api_key, upstream) -> None:
    admin = KeyApi(admin_key)
    r = admin.post(
        "/budgets",
        {
            "name": "acme daily",
            "amount_usd": 0.005,
            "period": "day",
            "mode": "hard",
            "scope": {"attribute": {"key": "customer", "value": "acme"}},
        },
    )
    assert r.status_code == 201, r.content
    sdk(enforce_budgets=True, budget_poll_interval=0.2)
    assert llmobserve.budgets_ready(15)
    client = make_client(upstream, base_url="https://api.openai.test/v1")
    with run(customer="acme"):
        chat(client)
        chat(client)
    assert llmobserve.flush(15)
    (status,) = Api(api_key).get("/budgets/status").json()["budgets"]
    assert status["spent_usd"] == pytest.approx(2 * CALL_USD, abs=1e-6)
    assert status["state"] == "exceeded"
    assert llmobserve.budgets_ready(15)  # a poll that read it
    with run(customer="acme"), pytest.raises(BudgetExceeded) as ei:
        chat(client)
    assert len(upstream.requests) == 2  # the refused call never reached the upstream
    e = ei.value
    assert e.reason == "budget" and e.limit_usd == 0.005
    assert e.budget is not None and e.budget["name"] == "acme daily" and e.budget["mode"] == "hard"
    assert e.scope["attribute"] == {"key": "customer", "value": "acme"}
    with run(customer="globex"):  # not covered by the budget
        chat(client)
    chat(client)  # nor is a call outside any run
    assert len(upstream.requests) == 4
