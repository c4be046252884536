"""The SDK's budget guard (issue 16): ``run(max_cost_usd=...)`` and
``observe(enforce_budgets=True)``, through the real ``openai`` client on a
MockTransport of its HTTP library (the upstream counts every request it
gets) and a loopback fake collector serving ``/events``, ``/pricing``,
``/pricing/resolve`` and ``/budgets/status`` in the shapes the collector
documents (pricing/api.py, the budgets contract).

Costs are computed by hand from the fake's rates: gpt-4o at $2.50 input,
$1.25 cached input, $10 output per 1M tokens; the upstream's usage is
1200 prompt tokens (1024 cached) and 150 completion tokens (64 reasoning,
billed as output: the card has no reasoning rate):
(1200 - 1024) * 2.5e-6 + 1024 * 1.25e-6 + 150 * 10e-6 = $0.00322 a call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import Any

import llmobserve
import pytest
from llmo_testkit import FAST, FakeCollector, make_client, unreachable_url, wait_for
from llmobserve import BudgetExceeded, run, section

MSGS = [{"role": "user", "content": "hi"}]
CALL_USD = (1200 - 1024) * 2.5e-6 + 1024 * 1.25e-6 + 150 * 10e-6  # 0.00322
GPT4O_RATES = {
    "cached_input_tokens": {"usd_per_1m": 1.25},
    "input_tokens": {"usd_per_1m": 2.5},
    "output_tokens": {"usd_per_1m": 10.0},
}
MINI_RATES = {
    "cached_input_tokens": {"usd_per_1m": 0.075},
    "input_tokens": {"usd_per_1m": 0.15},
    "output_tokens": {"usd_per_1m": 0.6},
}
MINI_USD = (1200 - 1024) * 0.15e-6 + 1024 * 0.075e-6 + 150 * 0.6e-6


def test_call_usd_by_hand() -> None:
    assert CALL_USD == pytest.approx(0.00322)
    assert MINI_USD == pytest.approx(0.0001932)


class GuardCollector(FakeCollector):
    """The fake collector (POST /events) plus the GET endpoints the guard
    reads. ``rates``: (provider, model) -> rates as /pricing/resolve
    returns them (absent: ``"matched": null``); ``budgets``: the list
    /budgets/status returns; ``status_mode``: ``"ok"``, an int status,
    ``"bad_json"`` or ``"hold"`` (the answer waits for ``release``)."""

    def __init__(self) -> None:
        self.rates: dict[tuple[str, str], dict[str, Any]] = {
            ("openai", "gpt-4o"): GPT4O_RATES,
            ("openai", "gpt-4o-2024-08-06"): GPT4O_RATES,
            ("openai", "gpt-4o-mini"): MINI_RATES,
        }
        self.budgets: list[dict[str, Any]] = []
        self.status_mode: Any = "ok"
        self.release = threading.Event()
        self.gets: list[str] = []  # paths of every GET, in order
        self.status_served = 0  # /budgets/status answers sent
        super().__init__()

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        outer = self

        class Handler(handler):  # type: ignore[valid-type,misc]
            def _send(self, status: int, body: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

            def do_GET(self) -> None:  # noqa: N802
                url = urllib.parse.urlsplit(self.path)
                with outer.lock:
                    outer.gets.append(self.path)
                if self.headers.get("Authorization") != "Bearer test-key":
                    return self._send(401, b'{"detail": "Invalid API key."}')
                if url.path == "/pricing/resolve":
                    q = dict(urllib.parse.parse_qsl(url.query))
                    return self._send(200, json.dumps(outer.resolve(q["provider"], q["model"])).encode())
                if url.path == "/pricing":
                    return self._send(200, json.dumps(outer.pricing()).encode())
                if url.path == "/budgets/status":
                    mode = outer.status_mode
                    if mode == "hold":
                        outer.release.wait(10)
                        mode = "ok"
                    if isinstance(mode, int):
                        return self._send(mode, b'{"detail": "no"}')
                    if mode == "bad_json":
                        return self._send(200, b'{"budgets": [{"id": 1,')
                    with outer.lock:
                        body = json.dumps({"budgets": outer.budgets, "generated_at": "2026-11-30T10:00:00Z"})
                        outer.status_served += 1
                    return self._send(200, body.encode())
                return self._send(404, b'{"detail": "Not found."}')

        super()._serve(Handler)

    def resolve(self, provider: str, model: str) -> dict[str, Any]:
        """GET /pricing/resolve's shape (pricing/selectors.price_resolve)."""
        asked = {
            "provider": provider,
            "model": model,
            "service_tier": None,
            "processing": None,
            "at": "2026-11-30T10:00:00Z",
        }
        rates = self.rates.get((provider, model))
        if rates is None:
            return {**asked, "matched": None}
        return {
            **asked,
            "matched": {
                "provider": provider,
                "model": model,
                "source": "global",
                "label": f"global: {provider}/{model}",
                "note": None,
                "effective_from": "2024-08-06T00:00:00Z",
                "discount_percent": 0.0,
                "cheaper_alternative": None,
                "rates": rates,
            },
            "source_version": "genai-prices 0.0.0",
        }

    def pricing(self) -> dict[str, Any]:
        """GET /pricing's shape (SPEC §4): one row per model."""
        rows = []
        for (provider, model), r in sorted(self.rates.items()):
            rows.append(
                {
                    "provider": provider,
                    "model": model,
                    "input_per_1m": r["input_tokens"]["usd_per_1m"],
                    "cached_input_per_1m": r["cached_input_tokens"]["usd_per_1m"],
                    "output_per_1m": r["output_tokens"]["usd_per_1m"],
                    "per_1m_read_units": None,
                    "per_1m_write_units": None,
                    "per_request": None,
                    "cheaper_alternative": None,
                    "effective_from": "2024-08-06T00:00:00Z",
                }
            )
        return {"prices": rows}

    def resolves(self) -> list[str]:
        with self.lock:
            return [g for g in self.gets if g.startswith("/pricing/resolve")]

    def status_gets(self) -> int:
        with self.lock:
            return sum(1 for g in self.gets if g.startswith("/budgets/status"))

    def refusals(self) -> list[dict[str, Any]]:
        return [e for e in self.calls() if e.get("error_type") == "BudgetExceeded"]


def budget(
    bid: int = 1,
    *,
    mode: str = "hard",
    state: str = "exceeded",
    section: str | None = None,
    model: str | None = None,
    service: str | None = None,
    attribute: dict[str, str] | None = None,
    amount: float = 5.0,
    spent: float = 5.25,
) -> dict[str, Any]:
    """One /budgets/status entry, in the contract's shape."""
    return {
        "id": bid,
        "name": f"budget-{bid}",
        "mode": mode,
        "period": "day",
        "period_start": "2026-11-30T00:00:00Z",
        "period_end": "2026-12-01T00:00:00Z",
        "scope": {"section": section, "model": model, "service": service, "attribute": attribute},
        "amount_usd": amount,
        "spent_usd": spent,
        "percent": round(spent / amount * 100, 1),
        "forecast_usd": spent * 1.5,
        "state": state,
    }


@pytest.fixture
def gcol():
    c = GuardCollector()
    yield c
    c.release.set()
    c.close()


def start(url: str, **kw: Any) -> None:
    opts: dict[str, Any] = dict(FAST, api_key="test-key", service="svc")
    opts.update(kw)
    assert llmobserve.observe(url, **opts)


def chat(client: Any, model: str = "gpt-4o", **kw: Any) -> Any:
    return client.chat.completions.create(model=model, messages=MSGS, **kw)


# ------------------------------------------------------------------ run caps
def test_run_cap_refuses_the_call_past_it_before_it_is_sent(gcol, upstream) -> None:
    start(gcol.url)
    client = make_client(upstream, base_url="https://api.openai.test/v1")
    with run(max_cost_usd=0.006, customer="acme") as r:
        chat(client)
        # the rates are fetched by the exporter thread: a real call lasts far
        # longer than that; flush() waits for the prices asked before it
        assert llmobserve.flush(5)
        assert r.spent_usd == pytest.approx(CALL_USD)
        chat(client)  # spent $0.00322 < $0.006: goes
        assert r.spent_usd == pytest.approx(2 * CALL_USD)
        with pytest.raises(BudgetExceeded) as ei:
            chat(client)  # spent $0.00644 >= $0.006: refused
        with pytest.raises(BudgetExceeded):
            chat(client, stream=True)  # and every call after it
    assert len(upstream.requests) == 2  # the refused calls never reached the upstream
    e = ei.value
    assert e.reason == "run_cap"
    assert e.limit_usd == e.cap_usd == 0.006
    assert e.spent_usd == pytest.approx(0.00644)
    assert e.scope == {"run_id": r.run_id}
    assert e.budget is None
    assert "0.006" in str(e)
    # the refusals are events: status error, error_type BudgetExceeded, no tokens
    assert llmobserve.flush(5)
    calls = sorted(gcol.calls(), key=lambda ev: ev["started_at"])
    assert [c["status"] for c in calls].count("ok") == 2
    refused = gcol.refusals()
    assert len(refused) == 2
    for ev in refused:
        assert ev["status"] == "error"
        assert ev["run_id"] == r.run_id
        assert ev["model"] == "gpt-4o"
        assert ev["provider"] == "openai"
        assert ev["name"] == "chat.completions.create"
        assert (ev["input_tokens"], ev["output_tokens"], ev["cached_input_tokens"]) == (0, 0, 0)
        assert ev["attributes"]["budget_refused"] == "run_cap"
        assert ev["attributes"]["budget_limit_usd"] == 0.006
        assert ev["attributes"]["budget_spent_usd"] == pytest.approx(0.00644)
        assert ev["attributes"]["customer"] == "acme"  # the run's attributes, as on every event of it
    # the prices came from the collector, once per (provider, model)
    assert sorted(gcol.resolves()) == [
        "/pricing/resolve?provider=openai&model=gpt-4o",
        "/pricing/resolve?provider=openai&model=gpt-4o-2024-08-06",
    ]
    assert llmobserve.stats()["guard"]["refused"] == 2


def test_run_cap_async(gcol, upstream) -> None:
    start(gcol.url)
    client = make_client(upstream, use_async=True, base_url="https://api.openai.test/v1")

    async def main() -> BudgetExceeded:
        with run(max_cost_usd=0.006):
            await chat(client)
            assert llmobserve.flush(5)
            await chat(client)
            coro = chat(client)  # nothing is checked (or sent) until it is awaited
            with pytest.raises(BudgetExceeded) as ei:
                await coro
            return ei.value

    e = asyncio.run(main())
    assert len(upstream.requests) == 2
    assert e.spent_usd == pytest.approx(2 * CALL_USD)
    assert llmobserve.flush(5)
    assert len(gcol.refusals()) == 1


@pytest.mark.parametrize("use_async", [False, True])
def test_run_cap_counts_streams(gcol, upstream, use_async) -> None:
    """A stream's usage (asked for by the SDK, its chunk hidden) counts when
    the stream ends; the next stream past the cap is refused at create()."""
    start(gcol.url)
    client = make_client(upstream, use_async=use_async, base_url="https://api.openai.test/v1")
    texts: list[str] = []

    async def astream() -> None:
        s = await chat(client, stream=True)
        texts.append("".join([c.choices[0].delta.content or "" async for c in s if c.choices]))

    def sstream() -> None:
        texts.append("".join(c.choices[0].delta.content or "" for c in chat(client, stream=True) if c.choices))

    def one() -> None:
        if use_async:
            asyncio.run(astream())
        else:
            sstream()

    with run(max_cost_usd=0.005) as r:
        one()
        assert llmobserve.flush(5)
        assert r.spent_usd == pytest.approx(CALL_USD)
        one()  # $0.00322 < $0.005
        assert r.spent_usd == pytest.approx(2 * CALL_USD)
        with pytest.raises(BudgetExceeded):
            one()
    assert texts == ["Hello, world!", "Hello, world!"]
    assert len(upstream.requests) == 2
    assert llmobserve.flush(5)
    assert len(gcol.refusals()) == 1
    assert sum(1 for c in gcol.calls() if c["status"] == "ok" and c["attributes"].get("stream")) == 2


def test_run_cap_zero_refuses_the_first_call(gcol, upstream) -> None:
    start(gcol.url)
    client = make_client(upstream, base_url="https://api.openai.test/v1")
    with run(max_cost_usd=0), pytest.raises(BudgetExceeded):
        chat(client)
    assert upstream.requests == []


def test_run_cap_argument_checked() -> None:
    with pytest.raises(ValueError):
        run(max_cost_usd=-1)
    with pytest.raises(ValueError):
        run(max_cost_usd=float("nan"))
    with pytest.raises(TypeError):
        run(max_cost_usd="2.0")  # type: ignore[arg-type]
    assert run(max_cost_usd=2).max_cost_usd == 2.0
    assert run(user_id="u-7").attributes == {"user_id": "u-7"}  # a keyword, never an attribute


def test_nested_runs_count_towards_every_enclosing_cap(gcol, upstream) -> None:
    start(gcol.url)
    client = make_client(upstream, base_url="https://api.openai.test/v1")
    with run(max_cost_usd=0.005) as outer:
        with run() as inner:  # no cap of its own: its calls count towards the outer cap
            chat(client)
            assert llmobserve.flush(5)
            chat(client)
        assert inner.spent_usd is None
        assert outer.spent_usd == pytest.approx(2 * CALL_USD)
        with pytest.raises(BudgetExceeded) as ei:
            chat(client)
    assert ei.value.scope == {"run_id": outer.run_id}
    assert len(upstream.requests) == 2

    upstream.requests.clear()
    with run(max_cost_usd=1.0) as outer:
        with run(max_cost_usd=0.003) as inner:  # tighter: reached first
            chat(client)
            with pytest.raises(BudgetExceeded) as ei:
                chat(client)
            assert ei.value.scope == {"run_id": inner.run_id}
        chat(client)  # the outer run still has room
        assert outer.spent_usd == pytest.approx(2 * CALL_USD)
        assert inner.spent_usd == pytest.approx(CALL_USD)
    assert len(upstream.requests) == 2


def test_snapshot_model_priced_by_its_own_rates(gcol, upstream) -> None:
    """The call is priced as the collector prices it: by the model the
    response names (here a snapshot with its own, higher, price)."""
    gcol.rates[("openai", "gpt-4o-2024-08-06")] = {
        "input_tokens": {"usd_per_1m": 5.0},
        "output_tokens": {"usd_per_1m": 15.0},
    }
    start(gcol.url)
    client = make_client(upstream, base_url="https://api.openai.test/v1")
    with run(max_cost_usd=1.0) as r:
        chat(client)
        assert llmobserve.flush(5)
        # no cached rate: cached input billed as input; reasoning inside output
        assert r.spent_usd == pytest.approx(1200 * 5e-6 + 150 * 15e-6)


def test_unknown_price_counts_zero_and_is_said(gcol, upstream, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="llmobserve")
    start(gcol.url)
    client = make_client(upstream, base_url="https://api.openai.test/v1")
    with run(max_cost_usd=0.000001) as r:
        chat(client, model="acme-large")
        assert llmobserve.flush(5)
        chat(client, model="acme-large")
        chat(client, model="acme-large")
        assert r.spent_usd == 0.0
    assert len(upstream.requests) == 3
    said = [m for m in caplog.messages if "no price for openai/acme-large" in m]
    assert len(said) == 1
    assert llmobserve.stats()["guard"]["prices_unknown"] == ["openai/acme-large"]


def test_run_cap_with_the_collector_down_fails_open(upstream) -> None:
    start(unreachable_url(), request_timeout=0.5)
    client = make_client(upstream, base_url="https://api.openai.test/v1")
    with run(max_cost_usd=0.001) as r:
        for _ in range(4):
            chat(client)
            llmobserve.flush(1)
    assert len(upstream.requests) == 4  # no price could be fetched: counted $0, calls proceed
    assert r.spent_usd == 0.0


def test_bad_price_answer_fails_open(gcol, upstream) -> None:
    gcol.rates[("openai", "gpt-4o")] = {"input_tokens": {"usd_per_1m": "lots"}}  # unreadable
    gcol.rates[("openai", "gpt-4o-2024-08-06")] = {"input_tokens": {"usd_per_1m": -1}}
    start(gcol.url)
    client = make_client(upstream, base_url="https://api.openai.test/v1")
    with run(max_cost_usd=0.001) as r:
        for _ in range(3):
            chat(client)
            assert llmobserve.flush(5)
    assert len(upstream.requests) == 3
    assert r.spent_usd == 0.0


def test_run_cap_counts_pinecone_read_units(gcol, pinecone_server) -> None:
    """A Pinecone index call is priced by the provider-wide row (model ``*``,
    as the collector's registry has it): 5 read units at $16 per 1M = $0.00008."""
    import warnings

    pinecone = pytest.importorskip("pinecone")
    gcol.rates[("pinecone", "*")] = {"read_units": {"usd_per_1m": 16.0}, "write_units": {"usd_per_1m": 4.0}}
    start(gcol.url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idx = pinecone.Pinecone(api_key="pc-test").Index(host=pinecone_server.host)
    with run(max_cost_usd=0.0001) as r:
        idx.query(vector=[0.1, 0.2, 0.3], top_k=2, namespace="docs")
        assert llmobserve.flush(5)
        assert r.spent_usd == pytest.approx(5 * 16e-6)
        idx.query(vector=[0.1, 0.2, 0.3], top_k=2, namespace="docs")  # $0.00008 < $0.0001
        with pytest.raises(BudgetExceeded):
            idx.query(vector=[0.1, 0.2, 0.3], top_k=2, namespace="docs")
    assert [q["path"] for q in pinecone_server.requests] == ["/query", "/query"]
    assert llmobserve.flush(5)
    (ev,) = gcol.refusals()
    assert (ev["provider"], ev["span_type"], ev["name"], ev["read_units"]) == (
        "pinecone",
        "vector_db",
        "index.query",
        0,
    )


# ---------------------------------------------------------- server budgets
def test_enforce_budgets_picks_up_an_exceeded_budget_within_one_poll(gcol, upstream) -> None:
    gcol.budgets = [budget(1, state="ok", spent=1.0)]
    start(gcol.url, enforce_budgets=True, budget_poll_interval=0.2)
    assert llmobserve.budgets_ready(5)
    client = make_client(upstream, base_url="https://api.openai.test/v1")
    chat(client)
    assert len(upstream.requests) == 1
    with gcol.lock:
        gcol.budgets = [budget(1, state="exceeded", spent=5.25)]
        # answers built before the change; the SDK polls one at a time on one
        # connection, so the next answer it reads is the first with the change
        served_at_flip = gcol.status_served
    assert wait_for(lambda: llmobserve.stats()["guard"]["budget_polls"] >= served_at_flip + 1, timeout=5)
    refused: list[BudgetExceeded] = []
    try:
        chat(client)  # the first answer after the change was enough
    except BudgetExceeded as exc:
        refused.append(exc)
    assert len(refused) == 1
    assert len(upstream.requests) == 1  # the refused call was never sent
    e = refused[0]
    assert e.reason == "budget"
    assert (e.limit_usd, e.spent_usd) == (5.0, 5.25)
    assert e.budget is not None and e.budget["id"] == 1 and e.budget["name"] == "budget-1"
    assert e.scope == {"section": None, "model": None, "service": None, "attribute": None}
    # back under (a new period): calls go again within a poll
    with gcol.lock:
        gcol.budgets = [budget(1, state="ok", spent=0.0)]
    n = len(upstream.requests)

    def sent_now() -> bool:
        try:
            chat(client)
            return True
        except BudgetExceeded:
            return False

    assert wait_for(sent_now, timeout=5)
    assert len(upstream.requests) == n + 1
    assert llmobserve.flush(5)
    ev = gcol.refusals()[0]
    assert ev["attributes"]["budget_refused"] == "budget"
    assert ev["attributes"]["budget_id"] == 1
    assert ev["attributes"]["budget_name"] == "budget-1"
    assert (ev["input_tokens"], ev["output_tokens"]) == (0, 0)


def test_enforce_budgets_async_and_streams(gcol, upstream) -> None:
    gcol.budgets = [budget(2, model="gpt-4o")]
    start(gcol.url, enforce_budgets=True, budget_poll_interval=0.2)
    assert llmobserve.budgets_ready(5)
    sync = make_client(upstream, base_url="https://api.openai.test/v1")
    client = make_client(upstream, use_async=True, base_url="https://api.openai.test/v1")

    async def main() -> None:
        with pytest.raises(BudgetExceeded):
            await chat(client)
        with pytest.raises(BudgetExceeded):
            await chat(client, stream=True)
        s = await chat(client, model="gpt-4o-mini", stream=True)  # another model: not covered
        assert [c async for c in s]

    asyncio.run(main())
    with pytest.raises(BudgetExceeded):
        chat(sync, stream=True)
    with pytest.raises(BudgetExceeded):
        sync.responses.create(model="gpt-4o", input="hi")
    assert [r["body"]["model"] for r in upstream.requests] == ["gpt-4o-mini"]


def test_soft_or_not_exceeded_budgets_never_refuse(gcol, upstream) -> None:
    gcol.budgets = [budget(1, mode="soft"), budget(2, state="warning", spent=4.5), budget(3, state="ok", spent=0.1)]
    start(gcol.url, enforce_budgets=True, budget_poll_interval=0.2)
    assert llmobserve.budgets_ready(5)
    client = make_client(upstream, base_url="https://api.openai.test/v1")
    chat(client)
    chat(client)
    assert len(upstream.requests) == 2


SCOPES = [
    # (budget scope, a call it covers, a call it does not cover)
    (dict(section="agent:a"), dict(sections=["agent:a"]), dict(sections=["agent:b"])),
    (dict(section="agent:a"), dict(sections=["agent:a", "tool:x"]), dict(sections=[])),  # an enclosing section
    (dict(section="tool:x"), dict(sections=["agent:a", "tool:x", "step:y"]), dict(sections=["agent:a", "step:y"])),
    (dict(model="gpt-4o"), dict(model="gpt-4o"), dict(model="gpt-4o-mini")),
    (dict(service="svc"), dict(service="svc"), dict(service="other-svc")),
    (
        dict(attribute={"key": "customer", "value": "acme"}),
        dict(attrs={"customer": "acme"}),
        dict(attrs={"customer": "initech"}),
    ),
    (dict(attribute={"key": "customer", "value": "acme"}), dict(attrs={"customer": "acme"}), dict(attrs=None)),
    (dict(attribute={"key": "tier", "value": "7"}), dict(attrs={"tier": 7}), dict(attrs={"tier": 8})),
    (dict(attribute={"key": "paid", "value": "true"}), dict(attrs={"paid": True}), dict(attrs={"paid": "yes"})),
    (dict(attribute={"key": "k", "value": "null"}), dict(attrs={"k": "null"}), dict(attrs={"k": None})),
    (
        dict(section="agent:a", model="gpt-4o", attribute={"key": "customer", "value": "acme"}),
        dict(sections=["agent:a"], model="gpt-4o", attrs={"customer": "acme"}),
        dict(sections=["agent:a"], model="gpt-4o", attrs={"customer": "initech"}),  # all fields must match
    ),
]


def _call_in(
    client: Any, sections: list[str] | None = None, model: str = "gpt-4o", attrs: Any = None, **_: Any
) -> None:
    def inner(rest: list[str]) -> None:
        if not rest:
            chat(client, model=model)
            return
        with section(rest[0]):
            inner(rest[1:])

    if attrs is None:
        inner(sections or [])
    else:
        with run(**attrs):
            inner(sections or [])


@pytest.mark.parametrize(("scope", "covered", "not_covered"), SCOPES)
def test_budget_scope_matching(gcol, upstream, scope, covered, not_covered) -> None:
    gcol.budgets = [budget(9, **scope)]
    client = make_client(upstream, base_url="https://api.openai.test/v1")
    start(gcol.url, enforce_budgets=True, budget_poll_interval=0.2, service=covered.get("service", "svc"))
    assert llmobserve.budgets_ready(5)
    with pytest.raises(BudgetExceeded) as ei:
        _call_in(client, **covered)
    assert ei.value.budget is not None and ei.value.budget["id"] == 9
    assert upstream.requests == []
    if "service" in not_covered:
        llmobserve.shutdown(1)
        start(gcol.url, enforce_budgets=True, budget_poll_interval=0.2, service=not_covered["service"])
        assert llmobserve.budgets_ready(5)
    _call_in(client, **not_covered)
    assert len(upstream.requests) == 1


def test_collector_down_calls_proceed(upstream) -> None:
    start(unreachable_url(), enforce_budgets=True, budget_poll_interval=0.05, request_timeout=0.5)
    assert llmobserve.budgets_ready(5) is False  # unknown
    client = make_client(upstream, base_url="https://api.openai.test/v1")
    for _ in range(3):
        chat(client)
    assert len(upstream.requests) == 3
    assert llmobserve.stats()["guard"]["budget_poll_failures"] >= 1


def test_slow_collector_never_holds_a_call(gcol, upstream) -> None:
    """The poll is held by the collector (it answers only when released): the
    calls meanwhile go through at once, on their thread."""
    gcol.budgets = [budget(1)]
    gcol.status_mode = "hold"
    start(gcol.url, enforce_budgets=True, budget_poll_interval=0.05, request_timeout=10)
    assert wait_for(lambda: gcol.status_gets() == 1)
    client = make_client(upstream, base_url="https://api.openai.test/v1")
    for _ in range(3):
        chat(client)
    assert len(upstream.requests) == 3
    assert gcol.status_served == 0  # the poll was still waiting all along
    gcol.release.set()  # it answers now: the exceeded budget applies from then on
    with pytest.raises(BudgetExceeded):
        assert wait_for(lambda: bool(chat(client)) and False, timeout=5)
    assert gcol.status_served >= 1


@pytest.mark.parametrize("answer", [404, 401, 500, "bad_json"])
def test_status_errors_fail_open_and_are_said_once(gcol, upstream, caplog, answer) -> None:
    caplog.set_level(logging.WARNING, logger="llmobserve")
    gcol.budgets = [budget(1)]
    gcol.status_mode = answer
    start(gcol.url, enforce_budgets=True, budget_poll_interval=0.05)
    assert wait_for(lambda: gcol.status_gets() >= 4)
    client = make_client(upstream, base_url="https://api.openai.test/v1")
    chat(client)
    chat(client)
    assert len(upstream.requests) == 2
    said = [m for m in caplog.messages if "/budgets/status" in m]
    if answer == 404:
        assert len(said) == 1 and "does not exist (HTTP 404" in said[0]
    elif answer == 401:
        assert len(said) == 1 and "rejected the API key (HTTP 401)" in said[0]
    elif answer == "bad_json":
        assert len(said) == 1 and "not a budgets status" in said[0]
    else:  # a 500 is an outage, retried quietly
        assert said == []


def test_an_exceeded_status_gone_stale_is_dropped_when_failing_open(gcol, upstream) -> None:
    gcol.budgets = [budget(1)]
    start(gcol.url, enforce_budgets=True, budget_poll_interval=0.1)
    assert llmobserve.budgets_ready(5)
    client = make_client(upstream, base_url="https://api.openai.test/v1")
    with pytest.raises(BudgetExceeded):
        chat(client)
    gcol.status_mode = 503  # no answer any more: 3 intervals later the status is stale
    assert wait_for(lambda: not llmobserve.budgets_ready(1), timeout=5)
    chat(client)
    assert len(upstream.requests) == 1


def test_fail_closed_refuses_while_the_status_is_unknown_or_stale(gcol, upstream) -> None:
    start(unreachable_url(), enforce_budgets=True, budget_poll_interval=0.05, fail_closed=True, request_timeout=0.5)
    client = make_client(upstream, base_url="https://api.openai.test/v1")
    with pytest.raises(BudgetExceeded) as ei:
        chat(client)
    assert ei.value.reason == "status_unknown"
    assert upstream.requests == []
    llmobserve.shutdown(1)

    gcol.budgets = [budget(1, state="ok", spent=0.5)]
    start(gcol.url, enforce_budgets=True, budget_poll_interval=0.1, fail_closed=True)
    assert llmobserve.budgets_ready(5) is True
    chat(client)
    assert len(upstream.requests) == 1
    gcol.status_mode = 503  # the collector stops answering: stale after 3 intervals
    assert wait_for(lambda: not llmobserve.budgets_ready(1), timeout=5)
    with pytest.raises(BudgetExceeded) as ei:
        chat(client)
    assert ei.value.reason == "status_unknown"
    assert len(upstream.requests) == 1
    gcol.status_mode = "ok"
    assert llmobserve.budgets_ready(5) is True
    chat(client)
    assert len(upstream.requests) == 2


def test_disabled_env_var_turns_everything_off(gcol, upstream, monkeypatch) -> None:
    monkeypatch.setenv("LLMOBSERVE_DISABLED", "1")
    gcol.budgets = [budget(1)]
    assert llmobserve.observe(gcol.url, api_key="test-key", enforce_budgets=True, fail_closed=True) is False
    client = make_client(upstream, base_url="https://api.openai.test/v1")
    with run(max_cost_usd=0):
        chat(client)
        chat(client)
    assert len(upstream.requests) == 2
    assert gcol.gets == [] and gcol.requests == []  # nothing asked, nothing sent


def test_budget_exceeded_is_exported_and_picklable() -> None:
    assert llmobserve.BudgetExceeded is BudgetExceeded
    assert "BudgetExceeded" in llmobserve.__all__
    e = BudgetExceeded(
        "stop", reason="budget", limit_usd=5.0, spent_usd=5.5, scope={"model": "gpt-4o"}, budget={"id": 3}
    )
    f = pickle.loads(pickle.dumps(e))
    assert (str(f), f.reason, f.limit_usd, f.spent_usd, f.scope, f.budget) == (
        "stop",
        "budget",
        5.0,
        5.5,
        {"model": "gpt-4o"},
        {"id": 3},
    )


def test_pricing_rules_by_hand() -> None:
    """The SDK prices as the collector's engine (pricing/costing.apply_card):
    child units out of their parents when priced on their own, else inside
    them (cached, reasoning) or unpriced (audio); long-context tiers; the
    per-call price; the project's discount. Figures by hand."""
    from llmobserve._guard import rates_parse, usage_usd

    def rates(r: dict[str, Any], discount: float = 0.0) -> Any:
        return rates_parse({"matched": {"model": "m", "discount_percent": discount, "rates": r}})

    plain = rates({"input_tokens": {"usd_per_1m": 2.0}, "output_tokens": {"usd_per_1m": 8.0}})
    assert plain is not None and plain.tokens is not None
    # cached and reasoning have no rate of their own: billed inside input and output
    assert usage_usd(plain, (1000, 100, 600, 40, None)) == pytest.approx(1000 * 2e-6 + 100 * 8e-6)
    own = rates(
        {
            "input_tokens": {"usd_per_1m": 2.0},
            "cached_input_tokens": {"usd_per_1m": 0.5},
            "output_tokens": {"usd_per_1m": 8.0},
            "reasoning_tokens": {"usd_per_1m": 4.0},
            "requests": {"usd_per_call": 0.001},
        },
        discount=10,
    )
    expected = (400 * 2e-6 + 600 * 0.5e-6 + 60 * 8e-6 + 40 * 4e-6 + 0.001) * 0.9
    assert usage_usd(own, (1000, 100, 600, 40, None)) == pytest.approx(expected)
    # the same through the general path (a unit beyond the four counts: audio, unpriced, out of input)
    assert usage_usd(own, (1000, 100, 600, 40, {"input_audio_tokens": 100})) == pytest.approx(
        (300 * 2e-6 + 600 * 0.5e-6 + 60 * 8e-6 + 40 * 4e-6 + 0.001) * 0.9
    )
    tiered = rates(
        {
            "input_tokens": {"usd_per_1m": 1.25, "tiers": [{"above_input_tokens": 200_000, "usd_per_1m": 2.5}]},
            "output_tokens": {"usd_per_1m": 10.0, "tiers": [{"above_input_tokens": 200_000, "usd_per_1m": 15.0}]},
        }
    )
    assert tiered is not None and tiered.tokens is None
    assert usage_usd(tiered, (100_000, 1000, 0, 0, None)) == pytest.approx(100_000 * 1.25e-6 + 1000 * 10e-6)
    assert usage_usd(tiered, (250_000, 1000, 0, 0, None)) == pytest.approx(250_000 * 2.5e-6 + 1000 * 15e-6)
    assert rates_parse({"matched": None}) is None
    with pytest.raises(ValueError):
        rates_parse({"matched": {"rates": {"input_tokens": {"usd_per_1m": float("nan")}}}})
