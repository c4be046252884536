"""The four detectors of SPEC §7: fire, just under the threshold, below the minimums, flat control."""

from __future__ import annotations

import datetime as dt

import pytest

from insights import detectors
from insights.detectors import Window, model_inefficiency, retry_loop, section_spike, token_bloat
from tests.insights.conftest import AT, BASELINE_AT, WINDOW_AT, History, cost

pytestmark = pytest.mark.django_db

BIG = {"model": "gpt-4o", "input_tokens": 40_000, "output_tokens": 1_000}  # $0.11 a call


def by_section(findings):
    return {f.section: f for f in findings}


# --- section_spike -----------------------------------------------------------------


def test_section_spike_fires_with_exact_figures(history: History, window: Window):
    per_call = cost("gpt-4o", 40_000, 1_000)
    history.runs("summarize", 10, BASELINE_AT, [BIG])  # baseline: 1 call a run
    history.runs("summarize", 10, WINDOW_AT, [BIG, BIG, BIG])  # window: 3 calls a run
    history.runs("flat", 10, BASELINE_AT, [BIG])
    history.runs("flat", 10, WINDOW_AT, [BIG])
    history.ingest()

    found = by_section(section_spike(window))

    assert set(found) == {"summarize"}
    spike = found["summarize"]
    assert spike.kind == "section_spike"
    assert spike.observed == pytest.approx(3 * per_call, rel=1e-9)  # $0.33 per run
    assert spike.baseline == pytest.approx(per_call, rel=1e-9)  # $0.11 per run
    assert spike.ratio == pytest.approx(3.0, rel=1e-9)
    # Excess over the baseline rate: 10 runs × ($0.33 − $0.11).
    assert spike.est_savings_usd == pytest.approx(10 * 2 * per_call, rel=1e-9)
    assert spike.est_savings_usd == pytest.approx(2.20, rel=1e-9)
    assert spike.severity == "medium"  # ratio ≥ 3, excess ≥ $1
    assert spike.message == (
        "Section `summarize` cost $0.33 per run over the last 24 h (10 runs, $3.30), 3.0× its 7-day baseline "
        "of $0.11 per run; $2.20 above baseline: check what changed in its prompts, model or number of calls."
    )


def test_section_spike_just_under_threshold_does_not_fire(history: History, window: Window):
    history.runs("summarize", 10, BASELINE_AT, [BIG])
    history.runs("summarize", 10, WINDOW_AT, [BIG, BIG])  # exactly 2×: the SPEC says "> 2×"
    history.ingest()
    assert section_spike(window) == []


def test_section_spike_below_minimums_does_not_fire(history: History, window: Window):
    small = {"input_tokens": 1000, "output_tokens": 100}  # $0.00021 a call on gpt-4o-mini
    # 4 runs in the window (minimum 5), 3× the baseline.
    history.runs("few-runs", 10, BASELINE_AT, [BIG])
    history.runs("few-runs", detectors.SPIKE_MIN_WINDOW_RUNS - 1, WINDOW_AT, [BIG, BIG, BIG])
    # 4 runs in the baseline (minimum 5).
    history.runs("new-section", detectors.SPIKE_MIN_BASELINE_RUNS - 1, BASELINE_AT, [BIG])
    history.runs("new-section", 10, WINDOW_AT, [BIG, BIG, BIG])
    # 10× the baseline but $0.02 in the whole window (minimum $0.50).
    history.runs("cheap", 10, BASELINE_AT, [small])
    history.runs("cheap", 10, WINDOW_AT, [small] * 10)
    history.ingest()
    assert section_spike(window) == []


def test_section_spike_ignores_events_outside_the_periods(history: History, window: Window):
    # A spike after `at` and one more than 8 days before it do not count.
    history.runs("summarize", 10, BASELINE_AT, [BIG])
    history.runs("summarize", 10, WINDOW_AT, [BIG])
    history.runs("summarize", 10, AT + dt.timedelta(minutes=1), [BIG] * 5)
    history.runs("summarize", 10, AT - dt.timedelta(days=9), [BIG] * 5)
    history.ingest()
    assert section_spike(window) == []


# --- model_inefficiency ---------------------------------------------------------------------


def simple_calls(n: int, *, model: str = "gpt-4o-2024-08-06", output: int | None = None) -> list[dict]:
    """n calls, 10,000 input tokens (2,000 cached) and 10, 11, … output tokens (or `output` each)."""
    return [
        {"model": model, "input_tokens": 10_000, "cached_input_tokens": 2_000, "output_tokens": output or 10 + i}
        for i in range(n)
    ]


def test_model_inefficiency_fires_for_simple_calls(history: History, window: Window):
    calls = simple_calls(40)  # outputs 10..49: median (29 + 30) / 2 = 29.5
    history.run("classify", WINDOW_AT, calls)
    history.runs("flat", 30, WINDOW_AT, [{"model": "gpt-4o-mini", "output_tokens": 20}])
    history.ingest()

    found = by_section(model_inefficiency(window))

    assert set(found) == {"classify"}
    f = found["classify"]
    out = sum(c["output_tokens"] for c in calls)
    assert out == 1180
    spent = 40 * cost("gpt-4o", 10_000, 0, cached=2_000) + out * 10.0 / 1e6
    cheaper = 40 * cost("gpt-4o-mini", 10_000, 0, cached=2_000) + out * 0.6 / 1e6
    assert spent == pytest.approx(0.9118, rel=1e-9)
    assert cheaper == pytest.approx(0.054708, rel=1e-9)
    assert (f.kind, f.section, f.model, f.endpoint) == ("model_inefficiency", "classify", "gpt-4o-2024-08-06", "")
    assert f.observed == pytest.approx(spent, rel=1e-9)
    assert f.baseline == pytest.approx(cheaper, rel=1e-9)
    assert f.ratio == pytest.approx(spent / cheaper, rel=1e-9)
    assert f.est_savings_usd == pytest.approx(0.9118 - 0.054708, rel=1e-9)
    assert f.severity == "low"
    assert f.details["median_output_tokens"] == 29.5
    assert f.details["cheaper_model"] == "gpt-4o-mini"
    assert f.details["reason"] == "simple_calls"
    assert f.message == (
        "Section `classify` spent $0.91 on gpt-4o-2024-08-06 with a median of 30 output tokens and no errors over "
        "40 calls in the last 24 h; gpt-4o-mini would have cost $0.05 (save $0.86 a day)."
    )


def test_model_inefficiency_for_calls_outside_any_section(history: History, window: Window):
    for i, call in enumerate(simple_calls(40)):
        history.events.append(
            {
                "event_id": f"lone-{i}",
                "run_id": f"lone-{i}",
                "span_id": f"lone-{i}",
                "span_type": "llm",
                "provider": "openai",
                "endpoint": "chat.completions.create",
                "started_at": WINDOW_AT.isoformat(),
                **call,
            }
        )
    history.ingest()
    [f] = model_inefficiency(window)
    assert (f.section, f.model) == ("", "gpt-4o-2024-08-06")
    assert f.est_savings_usd == pytest.approx(0.9118 - 0.054708, rel=1e-9)
    assert f.message.startswith("Calls outside any section spent $0.91 on gpt-4o-2024-08-06 with a median of 30")


def test_model_inefficiency_fires_at_a_median_of_exactly_200(history: History, window: Window):
    history.run("classify", WINDOW_AT, simple_calls(25, output=200))
    history.ingest()
    assert [f.details["median_output_tokens"] for f in model_inefficiency(window)] == [200.0]


def test_model_inefficiency_just_over_the_median_does_not_fire(history: History, window: Window):
    history.run("draft", WINDOW_AT, simple_calls(40, output=201))
    history.ingest()
    assert model_inefficiency(window) == []


def test_model_inefficiency_one_error_means_not_simple(history: History, window: Window):
    calls = simple_calls(40)
    calls[7]["status"] = "error"
    history.run("classify", WINDOW_AT, calls)
    history.ingest()
    assert model_inefficiency(window) == []


def test_model_inefficiency_fires_when_the_section_already_runs_the_cheaper_model(history: History, window: Window):
    long_answers = [{"model": "gpt-4o", "input_tokens": 5_000, "output_tokens": 800} for _ in range(30)]
    history.run("answer", WINDOW_AT, long_answers + [{"model": "gpt-4o-mini-2024-07-18"}] * 5)
    history.ingest()

    [f] = model_inefficiency(window)

    spent = 30 * cost("gpt-4o", 5_000, 800)
    cheaper = 30 * cost("gpt-4o-mini", 5_000, 800)
    assert (f.section, f.model) == ("answer", "gpt-4o")
    assert f.observed == pytest.approx(spent, rel=1e-9)  # $0.615
    assert f.baseline == pytest.approx(cheaper, rel=1e-9)  # $0.0369
    assert f.est_savings_usd == pytest.approx(0.615 - 0.0369, rel=1e-9)
    assert f.details["reason"] == "cheaper_model_in_use"
    assert "while it already runs gpt-4o-mini without errors" in f.message


def test_model_inefficiency_cheaper_model_with_errors_is_not_proven(history: History, window: Window):
    long_answers = [{"model": "gpt-4o", "input_tokens": 5_000, "output_tokens": 800} for _ in range(30)]
    mini = [{"model": "gpt-4o-mini"}] * 9 + [{"model": "gpt-4o-mini", "status": "error"}]
    history.run("answer", WINDOW_AT, long_answers + mini)
    history.ingest()
    assert model_inefficiency(window) == []


def test_model_inefficiency_below_minimums_does_not_fire(history: History, window: Window):
    # 19 calls (minimum 20), worth $0.41 of savings.
    history.run("few", WINDOW_AT, simple_calls(detectors.INEFFICIENCY_MIN_CALLS - 1))
    # 100 simple calls whose saving is $0.14 (minimum $0.50).
    history.run("small", WINDOW_AT, [{"model": "gpt-4o", "input_tokens": 500, "output_tokens": 20}] * 100)
    # Calls before the window do not count.
    history.run("old", BASELINE_AT, simple_calls(40))
    history.ingest()
    assert model_inefficiency(window) == []


# --- token_bloat ----------------------------------------------------------------------------


def test_token_bloat_fires_with_exact_figures(history: History, window: Window):
    history.runs("rag", 30, BASELINE_AT, [{"input_tokens": 1_000}])
    history.runs("rag", 30, WINDOW_AT, [{"input_tokens": 2_000}])
    history.runs("flat", 30, BASELINE_AT, [{"input_tokens": 1_000}])
    history.runs("flat", 30, WINDOW_AT, [{"input_tokens": 1_000}])
    history.ingest()

    [f] = token_bloat(window)

    assert (f.kind, f.section, f.model, f.endpoint) == ("token_bloat", "rag", "", "")
    assert f.observed == 2000.0
    assert f.baseline == 1000.0
    assert f.ratio == 2.0
    # The window's input cost, 30 × 2,000 tokens at $0.15/1M = $0.009, half of it above the baseline.
    assert f.est_savings_usd == pytest.approx(0.0045, rel=1e-9)
    assert f.severity == "medium"
    assert f.message == (
        "Section `rag` sent 2,000 input tokens per call over the last 24 h (30 calls), 2.0× its 7-day mean "
        "of 1,000; trim the prompt, history or retrieved context back to the baseline to save about $0.0045 a day."
    )


def test_token_bloat_just_under_threshold_does_not_fire(history: History, window: Window):
    history.runs("rag", 30, BASELINE_AT, [{"input_tokens": 1_000}])
    history.runs("rag", 30, WINDOW_AT, [{"input_tokens": 1_500}])  # exactly 1.5×: SPEC says "> 1.5×"
    history.ingest()
    assert token_bloat(window) == []


def test_token_bloat_below_minimums_does_not_fire(history: History, window: Window):
    # 19 calls in the window (minimum 20).
    history.runs("few", 30, BASELINE_AT, [{"input_tokens": 1_000}])
    history.runs("few", detectors.BLOAT_MIN_WINDOW_CALLS - 1, WINDOW_AT, [{"input_tokens": 3_000}])
    # 19 calls in the baseline (minimum 20).
    history.runs("new", detectors.BLOAT_MIN_BASELINE_CALLS - 1, BASELINE_AT, [{"input_tokens": 1_000}])
    history.runs("new", 30, WINDOW_AT, [{"input_tokens": 3_000}])
    # 3× but 150 tokens a call (minimum mean 200).
    history.runs("short", 30, BASELINE_AT, [{"input_tokens": 50}])
    history.runs("short", 30, WINDOW_AT, [{"input_tokens": 150}])
    history.ingest()
    assert token_bloat(window) == []


def test_token_bloat_baseline_is_exactly_the_seven_days_before(history: History, window: Window):
    """Whole days come from DailyRollup, the two partial days from events: the sum is exact."""
    # AT is 12:00, so the baseline is [12:00 eight days before, 12:00 the day before).
    inside = [
        AT - dt.timedelta(days=8) + dt.timedelta(minutes=30),  # the first, partial day
        AT - dt.timedelta(days=5),  # a whole day
        AT - dt.timedelta(days=1, minutes=30),  # the last, partial day
    ]
    for moment, tokens in zip(inside, (1_000, 2_000, 3_000), strict=True):
        history.runs("rag", 10, moment, [{"input_tokens": tokens}])
    history.runs("rag", 10, AT - dt.timedelta(days=8, minutes=45), [{"input_tokens": 100_000}])  # before it
    history.runs("rag", 30, WINDOW_AT, [{"input_tokens": 4_100}])
    history.ingest()
    [f] = token_bloat(window)
    assert f.baseline == 2000.0
    assert f.details["baseline_calls"] == 30
    assert f.ratio == 2.05


def test_token_bloat_counts_model_calls_only(history: History, window: Window):
    # Vector DB calls (no model, no input tokens) in the window do not dilute the mean.
    history.runs("rag", 30, BASELINE_AT, [{"input_tokens": 1_000}])
    vector = {"span_type": "vector_db", "provider": "pinecone", "model": None, "endpoint": "query", "input_tokens": 0}
    history.runs("rag", 30, WINDOW_AT, [{"input_tokens": 1_000}, vector, vector])
    history.ingest()
    assert token_bloat(window) == []


# --- retry_loop ----------------------------------------------------------------------------


def growing(n: int) -> list[dict]:
    """n calls whose input grows: 1,000, 2,000, … tokens."""
    return [{"input_tokens": 1000 * (j + 1)} for j in range(n)]


def test_retry_loop_fires_with_exact_figures(history: History, window: Window):
    history.runs("search", 10, BASELINE_AT, growing(1))
    history.runs("search", 10, WINDOW_AT, growing(1))
    history.runs("search", 10, WINDOW_AT + dt.timedelta(hours=1), growing(5))  # p95 over 20 runs: 5
    history.runs("flat", 20, WINDOW_AT, growing(1))
    history.ingest()

    [f] = retry_loop(window)

    assert (f.kind, f.section, f.model, f.endpoint) == ("retry_loop", "search", "", "chat.completions.create")
    assert f.observed == 5.0
    assert f.baseline == 1.0
    assert f.ratio == 5.0
    # Calls 4 and 5 of each looping run: 4,000 and 5,000 input tokens, 100 output each, at gpt-4o-mini.
    assert f.est_savings_usd == pytest.approx(10 * (cost("gpt-4o-mini", 4_000, 100) + cost("gpt-4o-mini", 5_000, 100)))
    assert f.est_savings_usd == pytest.approx(0.0147, rel=1e-9)
    assert f.details == {"runs": 20, "calls": 60, "max_calls": 5, "extra_calls": 20}
    assert f.severity == "low"
    assert f.message == (
        "Section `search` called chat.completions.create 5 times in one run at p95 over the last 24 h (20 runs, "
        "up to 5; 7-day p95 1); cap retries or break the loop: the 20 calls beyond 3 per run cost $0.01."
    )


def test_retry_loop_p95_is_not_the_maximum(history: History, window: Window):
    # One runaway run in 20: the p95 (rank 19 of 20) is 1.
    history.runs("search", 19, WINDOW_AT, growing(1))
    history.run("search", WINDOW_AT, growing(10))
    history.ingest()
    assert retry_loop(window) == []


def test_retry_loop_just_under_threshold_does_not_fire(history: History, window: Window):
    history.runs("search", 20, WINDOW_AT, growing(3))  # p95 = 3: SPEC says "> 3"
    history.ingest()
    assert retry_loop(window) == []


def test_retry_loop_below_minimums_does_not_fire(history: History, window: Window):
    history.runs("search", detectors.RETRY_MIN_RUNS - 1, WINDOW_AT, growing(6))  # 9 runs (minimum 10)
    history.runs("old", 20, BASELINE_AT, growing(6))  # looping, but in the baseline only
    history.ingest()
    assert retry_loop(window) == []


def test_retry_loop_counts_per_endpoint(history: History, window: Window):
    # 4 calls a run, but to two endpoints: 2 each, no loop.
    mixed = [{"endpoint": "chat.completions.create"}, {"endpoint": "embeddings.create"}] * 2
    history.runs("search", 20, WINDOW_AT, mixed)
    history.ingest()
    assert retry_loop(window) == []


def test_retry_loop_without_baseline_compares_with_the_limit(history: History, window: Window):
    history.runs("search", 10, WINDOW_AT, growing(6))
    history.ingest()
    [f] = retry_loop(window)
    assert (f.observed, f.baseline, f.ratio) == (6.0, 0.0, 2.0)
    assert f.details["extra_calls"] == 30


# --- all together -----------------------------------------------------------------------------


def test_flat_history_never_fires(history: History, window: Window):
    for i in range(8):
        history.runs("flat", 12, AT - dt.timedelta(days=i, hours=2), [{"model": "gpt-4o-mini"}] * 2)
    history.ingest()
    assert detectors.detect_all(window) == []


def test_section_spike_reads_the_run_section_index_alone(window: Window):
    """The events migration 0002 index serves section_spike without touching the table (SQLite's plan)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        section_spike(window)
    [sql] = [q["sql"] for q in ctx.captured_queries if "events_runsection" in q["sql"]]
    if connection.vendor != "sqlite":
        pytest.skip("the plan is checked on SQLite; PostgreSQL picks by its statistics")
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + sql)
        plan = " ".join(str(row) for row in cursor.fetchall())
    assert "COVERING INDEX runsection_started_cover" in plan
