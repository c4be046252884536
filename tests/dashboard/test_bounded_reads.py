"""Reads that must not grow with history (issues 15 and 17): the overview's
unpriced-units sample, the run list's metric sorts and its cost distribution.

Values are checked against hand-computed ones, and the number of queries a
page makes is checked not to grow with the runs it shows (no N+1)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dashboard.formatting import usd
from tests.dashboard.conftest import day_start, ingest, run_events

pytestmark = pytest.mark.django_db
MINI_IN = 0.15 / 1e6  # gpt-4o-mini, USD per input token (published price)


def _odd_unit_call(unit: str) -> dict[str, object]:
    """A gpt-5 call that also used a unit nobody prices: cost_status "unpriced"."""
    return {"model": "gpt-5", "input_tokens": 100, "output_tokens": 10, "usage_details": {unit: 2}}


@pytest.fixture
def odd_units(project, api_key):
    """Three partly unpriced calls, one a day (today, yesterday, three days ago),
    each with its own unpriced unit, and one call of a model with no price."""
    events = []
    for days_ago, unit in ((0, "hologram_minutes"), (1, "smell_units"), (3, "teleport_grams")):
        events += run_events(f"odd-{unit}", when=day_start(days_ago), calls=[_odd_unit_call(unit)])
    events += run_events(
        "odd-house",
        when=day_start(2),
        calls=[{"provider": "acme-ai", "model": "house-model", "input_tokens": 10, "output_tokens": 1}],
    )
    ingest(api_key, events)
    return project


def _units_table(body: str) -> str:
    section = body[body.index('id="unpriced-units"') :]
    return section[: section.index("</table>")]


def test_unpriced_units_counted_over_the_window(odd_units, owner_client):
    from dashboard.selectors import spend_unpriced_summary

    summary = spend_unpriced_summary(project_id=odd_units.id, since=day_start(29).date())
    assert summary.units == [
        {"unit": "hologram_minutes", "calls": 1},
        {"unit": "smell_units", "calls": 1},
        {"unit": "teleport_grams", "calls": 1},
    ]
    assert summary.sampled is False
    # Models: three gpt-5 calls (last today) and one house-model call (two days ago).
    assert summary.models == [
        {"provider": "openai", "model": "gpt-5", "calls": 3, "last_day": day_start(0).date()},
        {"provider": "acme-ai", "model": "house-model", "calls": 1, "last_day": day_start(2).date()},
    ]
    table = _units_table(owner_client.get("/").content.decode())
    assert "teleport_grams" in table and "newest" not in table


def test_unpriced_units_sample_the_newest_calls(odd_units, owner_client, monkeypatch):
    import dashboard.selectors as selectors

    monkeypatch.setattr(selectors, "UNIT_SAMPLE", 2)
    summary = selectors.spend_unpriced_summary(project_id=odd_units.id, since=day_start(29).date())
    # The newest two unpriced calls with a model are today's and yesterday's.
    assert summary.units == [{"unit": "hologram_minutes", "calls": 1}, {"unit": "smell_units", "calls": 1}]
    assert summary.sampled is True
    # The models list is the whole window's, whatever the sample.
    assert [(m["model"], m["calls"]) for m in summary.models] == [("gpt-5", 3), ("house-model", 1)]
    table = _units_table(owner_client.get("/").content.decode())
    assert "(newest 2 unpriced calls)" in table and "teleport_grams" not in table

    # The newest three: today's, yesterday's and the house-model call (no unit of its own).
    monkeypatch.setattr(selectors, "UNIT_SAMPLE", 3)
    summary = selectors.spend_unpriced_summary(project_id=odd_units.id, since=day_start(29).date())
    assert [u["unit"] for u in summary.units] == ["hologram_minutes", "smell_units"]
    # Four reach back three days: every unit.
    monkeypatch.setattr(selectors, "UNIT_SAMPLE", 4)
    summary = selectors.spend_unpriced_summary(project_id=odd_units.id, since=day_start(29).date())
    assert [u["unit"] for u in summary.units] == ["hologram_minutes", "smell_units", "teleport_grams"]
    assert summary.sampled is True


def _count_queries(client, path: str, params: dict[str, str]) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(path, params).status_code == 200
    return len(captured.captured_queries)


@pytest.mark.parametrize(
    "params",
    [
        {"sort": "cost"},
        {"sort": "duration"},
        {"sort": "calls", "dir": "asc"},
        {"sort": "cost", "offset": "1"},
        {"sort": "cost", "status": "error"},
        {},
    ],
)
def test_run_list_queries_do_not_grow_with_the_runs_shown(project, api_key, owner_client, params):
    """The number of queries of a page is the same for 3 runs and for 60."""
    since = {"since": day_start(2).date().isoformat()}
    ingest(api_key, [e for k in range(3) for e in run_events(f"few-{k}", when=day_start(1) + dt.timedelta(minutes=k))])
    few = _count_queries(owner_client, "/dashboard/runs/", {**since, **params})
    ingest(
        api_key,
        [e for k in range(60) for e in run_events(f"many-{k}", when=day_start(0) + dt.timedelta(minutes=k))],
    )
    assert _count_queries(owner_client, "/dashboard/runs/", {**since, **params}) == few
    assert few <= 12


def test_sort_by_cost_pages_and_ties_by_hand(project, api_key, owner_client):
    """Cost k × $0.15 for k = 1..7, two runs at $0.45: highest first, ties by the later id first."""
    events = []
    for n, k in enumerate((3, 1, 7, 3, 5, 2, 6)):
        events += run_events(
            f"cost-{n}",
            when=day_start(1) + dt.timedelta(minutes=n),
            calls=[{"model": "gpt-4o-mini", "input_tokens": k * 1_000_000, "output_tokens": 0}],
        )
    ingest(api_key, events)
    day = day_start(1).date().isoformat()
    body = owner_client.get("/dashboard/runs/", {"since": day, "until": day, "sort": "cost"}).content.decode()
    order = [part.split('"', 1)[0] for part in body.split('data-run-id="')[1:]]
    # cost-3 was stored after cost-0 (a higher id): first among the two $0.45 runs.
    assert order == ["cost-2", "cost-6", "cost-4", "cost-3", "cost-0", "cost-5", "cost-1"]
    assert usd(7 * 1e6 * MINI_IN) == "$1.05" and usd(7 * 1e6 * MINI_IN) in body


@pytest.mark.parametrize(
    ("costs_k", "p50_k", "p95_k"),
    [
        ((4,), 4, 4),  # one run: every rank is that run
        ((2, 2, 2, 9), 2, 9),  # ranks 2 and 4 of four (ceil(0.5 × 4), ceil(0.95 × 4))
        ((1, 2, 3, 4, 5), 3, 5),  # ranks 3 and 5 of five
    ],
)
def test_cost_distribution_nearest_rank_by_hand(project, api_key, owner_client, costs_k, p50_k, p95_k):
    events = []
    for n, k in enumerate(costs_k):
        events += run_events(
            f"dist-{n}",
            when=day_start(3) + dt.timedelta(minutes=n),
            calls=[{"model": "gpt-4o-mini", "input_tokens": k * 1_000_000, "output_tokens": 0}],
        )
    ingest(api_key, events)
    day = day_start(3).date().isoformat()
    body = owner_client.get("/dashboard/runs/", {"since": day, "until": day}).content.decode()
    assert f'<strong data-dist="runs">{len(costs_k)}</strong>' in body
    assert f'data-dist="p50">{usd(p50_k * 1e6 * MINI_IN)}<' in body
    assert f'data-dist="p95">{usd(p95_k * 1e6 * MINI_IN)}<' in body
    assert f'data-dist="max">{usd(max(costs_k) * 1e6 * MINI_IN)}<' in body


def test_cost_distribution_with_a_model_tests_the_newest_runs(project, api_key, owner_client, monkeypatch):
    """A model filter probes each run: the distribution covers the period's newest
    DISTRIBUTION_MODEL_RUNS runs (here 4) and says so."""
    monkeypatch.setattr("events.selectors.DISTRIBUTION_MODEL_RUNS", 4)
    events = []
    # Minutes 0-5 after day_start(3): gpt-4o-mini at k = 1, 2, 3, then a gpt-4o run, then k = 4, 5.
    plan = [("gpt-4o-mini", 1), ("gpt-4o-mini", 2), ("gpt-4o-mini", 3), ("gpt-4o", 1), ("gpt-4o-mini", 4)]
    plan.append(("gpt-4o-mini", 5))
    for n, (model, k) in enumerate(plan):
        events += run_events(
            f"mod-{n}",
            when=day_start(3) + dt.timedelta(minutes=n),
            calls=[{"model": model, "input_tokens": k * 1_000_000, "output_tokens": 0}],
        )
    ingest(api_key, events)
    day = day_start(3).date().isoformat()
    body = owner_client.get("/dashboard/runs/", {"since": day, "until": day, "model": "gpt-4o-mini"}).content.decode()
    # The newest four runs are minutes 5, 4, 3, 2; of those, k = 5, 4, 3 call gpt-4o-mini.
    assert '<strong data-dist="runs">3</strong>' in body
    assert f'data-dist="p50">{usd(4 * 1e6 * MINI_IN)}<' in body  # rank 2 of 3
    assert f'data-dist="p95">{usd(5 * 1e6 * MINI_IN)}<' in body  # rank 3 of 3
    start = (day_start(3) + dt.timedelta(minutes=2)).strftime("%Y-%m-%d %H:%M")
    assert f"(of the newest 4 runs, from {start})" in body
    # A model no call used in the period: no runs, without testing any.
    body = owner_client.get("/dashboard/runs/", {"since": day, "until": day, "model": "o3-mini"}).content.decode()
    assert '<span class="muted" data-dist="runs">no runs</span>' in body


def test_cost_distribution_reads_the_periods_newest_runs(project, api_key, owner_client, monkeypatch):
    """Past DISTRIBUTION_MAX_RUNS runs (here 3) the distribution covers the newest ones and says so."""
    monkeypatch.setattr("events.selectors.DISTRIBUTION_MAX_RUNS", 3)
    events = []
    for n, k in enumerate((9, 8, 1, 2, 3)):  # minutes 0-4: the newest three cost $0.15, $0.30, $0.45
        events += run_events(
            f"cap-{n}",
            when=day_start(4) + dt.timedelta(minutes=n),
            calls=[{"model": "gpt-4o-mini", "input_tokens": k * 1_000_000, "output_tokens": 0}],
        )
    ingest(api_key, events)
    day = day_start(4).date().isoformat()
    body = owner_client.get("/dashboard/runs/", {"since": day, "until": day}).content.decode()
    assert '<strong data-dist="runs">3</strong>' in body
    assert f'data-dist="p50">{usd(2 * 1e6 * MINI_IN)}<' in body
    assert f'data-dist="max">{usd(3 * 1e6 * MINI_IN)}<' in body
    start = (day_start(4) + dt.timedelta(minutes=2)).strftime("%Y-%m-%d %H:%M")
    assert f"(of the newest 3 runs, from {start})" in body
    # No more runs than the cap: all of them, nothing said.
    monkeypatch.setattr("events.selectors.DISTRIBUTION_MAX_RUNS", 5)
    body = owner_client.get("/dashboard/runs/", {"since": day, "until": day}).content.decode()
    assert '<strong data-dist="runs">5</strong>' in body and "of the newest" not in body
    assert f'data-dist="max">{usd(9 * 1e6 * MINI_IN)}<' in body
