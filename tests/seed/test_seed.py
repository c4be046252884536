"""`make seed` on a small scale against a live server: what it promises arrives.

Two days (today and one day of baseline) of 12 runs each is the smallest
history that clears every detector's minimums (insights/detectors.py): 5 runs
on each side for section_spike, 20 LLM calls on each side for token_bloat, 20
calls for model_inefficiency, 10 runs for retry_loop.  The seed runs
in-process (the real SDK, openai and pinecone clients, fake upstreams), posts
over HTTP to the live server, and computes insights in this test's database.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import random
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from events.models import Event, Run
from projects.models import ApiKey, Project

ROOT = Path(__file__).resolve().parents[2]
# 20 runs a day, not the bare minimum of 12: with 12, some states of the
# global `random` (which earlier tests move) left a detector just under its
# minimum and the test failed depending on what ran before it.
DAYS, RUNS_PER_DAY = 2, 20
RANDOM_STATE = int(os.environ.get("SEED_TEST_RANDOM", "0"))


def load_seed() -> Any:
    # scripts/ is not a package: load the file; dataclasses need it in sys.modules.
    if "llmobserve_seed" not in sys.modules:
        spec = importlib.util.spec_from_file_location("llmobserve_seed", ROOT / "scripts" / "seed.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules["llmobserve_seed"] = module
        spec.loader.exec_module(module)
    return sys.modules["llmobserve_seed"]


def get(url: str, key: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def seeded(live_server, transactional_db, tmp_path, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    for name in ("OPENAI_API_KEY", "PINECONE_API_KEY", "LLMOBSERVE_DISABLED", "LLMOBSERVE_API_KEY", "COLLECTOR_URL"):
        monkeypatch.delenv(name, raising=False)
    project = Project.objects.create(name="default")
    _, key = ApiKey.generate(project=project)
    random.seed(RANDOM_STATE)  # the fake upstreams draw from the global generator
    seed = load_seed()
    code = seed.main(
        [
            "--days",
            str(DAYS),
            "--runs-per-day",
            str(RUNS_PER_DAY),
            "--collector-url",
            live_server.url,
            "--api-key",
            key,
            "--dotenv",
            str(tmp_path / ".env"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    return {"project": project, "key": key, "url": live_server.url, "out": out, "seed": seed}


@pytest.mark.slow
def test_seed_runs_costs_trees_and_insights(seeded):  # type: ignore[no-untyped-def]
    project, key, url, out = seeded["project"], seeded["key"], seeded["url"], seeded["out"]

    # Runs: every one arrived, today's and yesterday's.
    runs = Run.objects.filter(project=project, service="support-bot")
    assert runs.count() == DAYS * RUNS_PER_DAY
    now = timezone.now()
    today = runs.filter(started_at__gte=now - dt.timedelta(hours=24)).count()
    assert today == RUNS_PER_DAY
    assert runs.filter(started_at__lt=now - dt.timedelta(hours=24), started_at__gte=now - dt.timedelta(days=2)).count()

    # The backdating hook's private attribute never reaches the store.
    events = Event.objects.filter(project=project)
    assert not events.filter(attributes__has_key="_seed_shift_s").exists()
    assert events.filter(attributes__has_key="user_id").count() == events.count()

    # Who the runs are for (issue 15): every run carries user_id, customer and plan,
    # and the breakdown by customer shows a few customers costing most.
    assert runs.filter(attributes__has_key="customer").count() == runs.count()
    assert runs.filter(attributes__has_key="user_id").filter(attributes__has_key="plan").count() == runs.count()
    by_customer = get(f"{url}/costs?group_by=attribute:customer&days=3&limit=3", key)
    assert by_customer["rows"][0]["key"] in {"acme", "globex"}
    assert sum(r["share"] for r in by_customer["rows"]) > 0.5

    # Exact costs: every LLM call costs what OpenAI's price list says for its
    # tokens (openai.com/api/pricing, USD per 1M: input, cached input, output).
    published = {
        "gpt-4o-2024-08-06": (2.5, 1.25, 10.0),
        "gpt-4o-mini": (0.15, 0.075, 0.6),
        "gpt-4.1-2025-04-14": (2.0, 0.5, 8.0),
    }
    llm = events.filter(span_type="llm")
    assert llm.count() > 100
    checked = 0
    for event in llm.filter(model__in=published)[:20]:
        rate_in, rate_cached, rate_out = published[event.model]
        uncached = event.input_tokens - event.cached_input_tokens
        expected = (uncached * rate_in + event.cached_input_tokens * rate_cached + event.output_tokens * rate_out) / 1e6
        checked += 1
        assert event.cost_usd == pytest.approx(expected, rel=1e-9) and event.cost_usd > 0
        assert event.priced and event.cost_status == "exact"
    assert checked == 20
    assert all(r.cost_usd > 0 for r in runs)

    # Streaming, async, vector queries, errors and retries all went through the SDK.
    assert llm.filter(section="step:answer", attributes__stream=True).count() == DAYS * RUNS_PER_DAY * 2
    assert events.filter(span_type="vector_db", provider="pinecone", read_units__gt=0).exists()
    assert events.filter(span_type="llm", model="text-embedding-3-small").count() == DAYS * RUNS_PER_DAY
    assert events.filter(section="tool:web_search", status="error", error_type="RateLimitError").exists()

    # Nested trees through the read API.
    latest = get(f"{url}/runs/latest?limit=1", key)["runs"][0]
    assert latest["root_sections"] == ["agent:support"]
    tree = get(f"{url}/runs/{latest['run_id']}", key)["tree"]
    assert [n["name"] for n in tree] == ["agent:support"]
    support = {n["name"]: n for n in tree[0]["children"]}
    assert {"step:classify", "agent:researcher", "agent:writer"} <= set(support)
    research = [n["name"] for n in support["agent:researcher"]["children"]]
    assert research.count("tool:web_search") == 2 and "tool:vector_search" in research
    assert [n["name"] for n in support["agent:writer"]["children"] if n["span_type"] == "section"] == ["step:answer"]
    assert tree[0]["cost_usd"] == pytest.approx(latest["cost_usd"])

    # Every insight kind fires on the seeded data.  The job is run again here,
    # now that every event is known to be stored (the counts above): the
    # seed's own run can race the last batches on a loaded machine (seen once
    # in CI on PostgreSQL: only section_spike), and beat recomputes anyway.
    assert seeded["seed"].compute_insights(key)
    kinds = {i["kind"]: i for i in get(f"{url}/insights/daily", key)["insights"]}
    assert set(kinds) == {"section_spike", "model_inefficiency", "token_bloat", "retry_loop"}, out
    assert kinds["section_spike"]["section"] == "agent:writer"
    assert kinds["model_inefficiency"]["section"] == "step:classify"
    assert kinds["token_bloat"]["section"] == "step:answer"
    assert kinds["retry_loop"]["section"] == "tool:web_search"
    assert "section_spike" in out  # the seed's summary lists what its own run found
    assert f"Produced:   {DAYS * RUNS_PER_DAY} runs" in out
    assert f"Dashboard:  {url}/" in out


def test_seed_creates_a_key_when_none_is_configured(live_server, transactional_db, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    for name in ("OPENAI_API_KEY", "PINECONE_API_KEY", "LLMOBSERVE_API_KEY", "COLLECTOR_URL"):
        monkeypatch.delenv(name, raising=False)
    dotenv = tmp_path / ".env"
    dotenv.write_text("# mine\nDEBUG=1\n")
    seed = load_seed()
    code = seed.main(
        [
            "--days",
            "1",
            "--runs-per-day",
            "1",
            "--collector-url",
            live_server.url,
            "--dotenv",
            str(dotenv),
            "--skip-insights",
        ]
    )
    assert code == 0
    values = seed.read_dotenv(dotenv)
    assert values["DEBUG"] == "1" and values["LLMOBSERVE_API_KEY"].startswith("lo_")
    assert ApiKey.objects.get(project__name="default").prefix == values["LLMOBSERVE_API_KEY"][:10]
    assert Run.objects.filter(project__name="default").count() == 1


def test_seed_says_what_to_do_without_a_collector(tmp_path, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("PINECONE_API_KEY", raising=False)
    seed = load_seed()
    monkeypatch.delenv("LLMOBSERVE_API_KEY", raising=False)
    # No key either: the collector is checked first (no database is touched: this test has none).
    code = seed.main(["--collector-url", "http://127.0.0.1:9", "--dotenv", str(tmp_path / ".e")])
    assert code == 1
    assert "make run" in capsys.readouterr().err
    assert not (tmp_path / ".e").exists()


def test_seed_refuses_real_services_without_yes(monkeypatch, capsys):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real")
    assert load_seed().main(["--api-key", "lo_x"]) == 2
    assert "--yes" in capsys.readouterr().out


def test_backdating_hook_moves_started_at_and_drops_the_attribute() -> None:
    seed = load_seed()
    old = {"started_at": "2026-11-26T09:00:00.120Z", "attributes": {seed.SHIFT_ATTR: 86400 + 1.5, "user_id": "u"}}
    today = {"started_at": "2026-11-26T09:00:00.120Z", "attributes": {}}
    assert seed.backdate(old) == {"started_at": "2026-11-25T08:59:58.620Z", "attributes": {"user_id": "u"}}
    assert seed.backdate(today) == {"started_at": "2026-11-26T09:00:00.120Z", "attributes": {}}


def test_scenario_clears_each_threshold_with_room() -> None:
    """The seed's day-to-day changes against insights/detectors.py, so a changed
    threshold shows up here by name rather than as a missing insight."""
    from insights import detectors as d

    seed = load_seed()
    today, before = seed.Day(0), seed.Day(3)
    # section_spike: agent:writer's direct calls per run (same prompt, same output).
    assert today.writer_drafts / before.writer_drafts > d.SPIKE_RATIO * 1.2
    # token_bloat: step:answer's prompt is the retrieved documents (~300 tokens each) plus the question.
    assert today.answer_top_k / before.answer_top_k > d.BLOAT_RATIO * 1.5
    # retry_loop: two searches a run, each asked 1 + rejections times.
    rng = seed.random.Random(1)
    assert min(2 * (1 + today.search_rejections(rng)) for _ in range(50)) > d.RETRY_MAX_CALLS
    assert max(2 * (1 + before.search_rejections(rng)) for _ in range(50)) <= d.RETRY_MAX_CALLS
    # model_inefficiency: step:classify asks gpt-4o for 5 tokens.
    assert 5 <= d.INEFFICIENCY_SIMPLE_MEDIAN_OUTPUT
    # The test's scale clears every minimum.
    assert RUNS_PER_DAY >= max(d.SPIKE_MIN_WINDOW_RUNS, d.RETRY_MIN_RUNS)
    assert 2 * RUNS_PER_DAY >= max(d.BLOAT_MIN_WINDOW_CALLS, d.BLOAT_MIN_BASELINE_CALLS, d.INEFFICIENCY_MIN_CALLS)


def test_run_attributes_skew_to_a_few_customers() -> None:
    seed = load_seed()
    rng = seed.random.Random(7)
    draws = [seed.run_attributes(rng) for _ in range(2000)]
    counts: dict[str, int] = {}
    for d in draws:
        counts[d["customer"]] = counts.get(d["customer"], 0) + 1
    # three of twelve customers send 68% of the runs (CUSTOMERS' shares)
    assert sum(sorted(counts.values(), reverse=True)[:3]) / len(draws) > 0.6
    plans = {name: plan for name, plan, _, _ in seed.CUSTOMERS}
    users = seed.customer_users()
    assert all(d["user_id"] in users[d["customer"]] and d["plan"] == plans[d["customer"]] for d in draws)
    assert len({d["user_id"] for d in draws}) == sum(c[3] for c in seed.CUSTOMERS) == 41
