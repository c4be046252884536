"""Finding runs (issue 15): search kinds, sorts, presets, the cost distribution, row texts."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import urlencode

import pytest

from dashboard.formatting import usd
from dashboard.views import run_id_short
from events.models import Run
from tests.dashboard.conftest import day_start, ingest, run_events, stamp

pytestmark = pytest.mark.django_db
MINI_IN, MINI_OUT = 0.15 / 1e6, 0.6 / 1e6  # gpt-4o-mini, USD per token (published prices)


def ids(body: str) -> list[str]:
    return re.findall(r'data-run-id="([^"]+)"', body)


@pytest.fixture
def found(seeded, api_key):
    """Three runs with attributes and a classify section beside the seeded ones."""
    events = []
    for run_id, attrs, when in (
        ("run-u7", {"user_id": "u-7", "plan": "pro"}, day_start(0) + dt.timedelta(minutes=7)),
        ("run-u8", {"user_id": "u-8", "plan": "free", "customer": "acme"}, day_start(0) + dt.timedelta(minutes=8)),
    ):
        for e in run_events(run_id, when=when, tool="step:classify_ticket"):
            e["attributes"] = attrs
            events.append(e)
    ingest(api_key, events)
    return seeded


@pytest.mark.parametrize(
    ("q", "expect"),
    [
        ("id:run-u", {"run-u7", "run-u8", "run-unpriced"}),  # run id prefix
        ("run-er", {"run-err"}),  # a bare word that starts a run id
        ("model:o3-mini", {f"run-old-{d}-2" for d in range(2, 14)}),
        ("section:CLASSIFY", {"run-u7", "run-u8"}),  # part of a section's label, any case
        ("user_id:u-7", {"run-u7"}),  # key:value
        ("plan:free", {"run-u8"}),
        ("acme", {"run-u8"}),  # a bare attribute value
        ("classify", {"run-u7", "run-u8"}),  # a bare part of a section
        ("mystery-model-1", {"run-unpriced"}),  # a bare model
        ("nothing-like-this", set()),
    ],
)
def test_search_kinds(found, owner_client, q, expect):
    body = owner_client.get("/dashboard/runs/", {"q": q}).content.decode()
    assert set(ids(body)) == expect
    assert "globex-secret-run" not in body


def test_attribute_badges_short_ids_roots_and_first_model(found, owner_client, project, api_key):
    sdk_id = "92be3f2d8225c3e0ce0f" + "00000000002a"
    ingest(api_key, run_events(sdk_id, when=day_start(0) + dt.timedelta(minutes=9)))
    body = owner_client.get("/dashboard/runs/").content.decode()
    row = body[body.index('data-run-id="run-u8"') :].split("</tr>")[0]
    # user_id, customer, plan in that order (the keys that tell users apart first).
    assert re.findall(r'<span class="muted">(\w+)</span> ([\w-]+)</a>', row) == [
        ("user_id", "u-8"),
        ("customer", "acme"),
        ("plan", "free"),
    ]
    assert 'href="/dashboard/runs/?q=user_id%3Au-8"' in row
    assert '<span class="chip">agent:researcher</span>' in row
    assert '<span class="model small" data-first-model>gpt-4o-2024-08-06</span>' in row
    sdk_row = body[body.index(f'data-run-id="{sdk_id}"') :].split("</tr>")[0]
    assert f'title="{sdk_id}">92be…2a</a>' in sdk_row
    assert run_id_short("run-42") == "run-42"
    assert run_id_short("x" * 40) == "xxxxxxxx…xxxxxxxxxxxx"


def test_sorts_by_cost_duration_calls_and_start(found, owner_client, project):
    since = (day_start(13)).date().isoformat()
    window = {"since": since, "until": day_start(0).date().isoformat()}
    runs = list(Run.objects.filter(project=project))
    by_cost = [r.run_id for r in sorted(runs, key=lambda r: (-r.cost_usd, -r.id))]
    body = owner_client.get("/dashboard/runs/", {**window, "sort": "cost"}).content.decode()
    assert ids(body) == by_cost[:50]
    assert 'aria-sort="descending"' in body and "Sorted by cost, highest first" in body
    body = owner_client.get("/dashboard/runs/", {**window, "sort": "cost", "dir": "asc"}).content.decode()
    assert ids(body) == [r.run_id for r in sorted(runs, key=lambda r: (r.cost_usd, r.id))][:50]
    body = owner_client.get("/dashboard/runs/", {**window, "sort": "calls"}).content.decode()
    assert ids(body) == [r.run_id for r in sorted(runs, key=lambda r: (-r.calls, -r.id))][:50]
    assert ids(body)[0] == "run-err"  # the only run with two calls
    body = owner_client.get("/dashboard/runs/", {**window, "sort": "duration"}).content.decode()
    assert ids(body) == [r.run_id for r in sorted(runs, key=lambda r: (-r.duration_ms, -r.id))][:50]
    body = owner_client.get("/dashboard/runs/", {**window, "dir": "asc"}).content.decode()
    assert ids(body) == [r.run_id for r in sorted(runs, key=lambda r: (r.started_at, r.id))][:50]
    bad = owner_client.get("/dashboard/runs/", {"sort": "price"})
    assert bad.status_code == 200 and "Sort is one of start, cost, duration, calls." in bad.content.decode()


def test_metric_sort_without_a_period_sorts_the_last_seven_days(found, owner_client, project):
    body = owner_client.get("/dashboard/runs/", {"sort": "cost"}).content.decode()
    cut = dt.datetime.combine(day_start(6).date(), dt.time(), tzinfo=dt.UTC)
    recent = [r for r in Run.objects.filter(project=project) if r.started_at >= cut]
    assert ids(body) == [r.run_id for r in sorted(recent, key=lambda r: (-r.cost_usd, -r.id))]
    assert "in the last 7 days (set From/To for another period)" in body


def test_most_expensive_presets(found, owner_client, project):
    body = owner_client.get("/dashboard/runs/").content.decode()
    yesterday = day_start(1).date().isoformat()
    link = f"/dashboard/runs/?since={yesterday}&amp;until={yesterday}&amp;sort=cost"
    assert f'<a href="{link}" data-preset>yesterday</a>' in body
    body = owner_client.get(link.replace("&amp;", "&")).content.decode()
    assert ids(body) == ["run-unpriced"]


def test_sorted_pages_by_offset_and_time_pages_by_keyset(found, owner_client, project, monkeypatch):
    monkeypatch.setattr("dashboard.views.RUNS_PER_PAGE", 4)
    window = {"since": day_start(13).date().isoformat(), "sort": "cost"}
    seen: list[str] = []
    url = "/dashboard/runs/?" + "&".join(f"{k}={v}" for k, v in window.items())
    while url:
        body = owner_client.get(url.replace("&amp;", "&")).content.decode()
        seen += ids(body)
        m = re.search(r'class="older" href="([^"]+)"', body)
        url = m.group(1) if m else ""
    runs = Run.objects.filter(project=project)
    assert seen == [r.run_id for r in sorted(runs, key=lambda r: (-r.cost_usd, -r.id))]
    # Oldest first, keyset: every run once, in order.
    seen, url = [], "/dashboard/runs/?dir=asc"
    while url:
        body = owner_client.get(url.replace("&amp;", "&")).content.decode()
        seen += ids(body)
        m = re.search(r'class="older" href="([^"]+)"', body)
        url = m.group(1) if m else ""
    assert seen == [r.run_id for r in sorted(runs, key=lambda r: (r.started_at, r.id))]


def test_a_search_tests_a_bounded_number_of_runs_per_page(found, owner_client, monkeypatch):
    monkeypatch.setattr("events.selectors.SEARCH_SCAN_RUNS", 5)
    seen: list[str] = []
    url = "/dashboard/runs/?q=model:o3-mini"
    pages = 0
    while url:
        body = owner_client.get(url.replace("&amp;", "&")).content.decode()
        pages += 1
        seen += ids(body)
        m = re.search(r'<a href="([^"]+)">search older runs →</a>', body, re.I)
        url = m.group(1) if m else ""
    # 41 runs, five tested a page: nine pages; every o3-mini run found once, newest first.
    assert pages == 9
    assert seen == [f"run-old-{d}-2" for d in range(2, 14)]


@pytest.mark.parametrize(
    ("q", "expect"),
    [
        ("o3-mini", [f"run-old-{d}-2" for d in range(2, 14)]),  # a bare model, in the older windows only
        ("analyze", [f"run-old-{d}-1" for d in range(2, 14)]),  # a bare part of a section
        ("classify", ["run-u8", "run-u7"]),  # in the newest window only
        ("acme", ["run-u8"]),  # a bare attribute value
        ("model:mystery-model-1", ["run-unpriced"]),
        ("section:nothing-like-this", []),
    ],
)
def test_search_pages_find_each_match_once_newest_first(found, owner_client, monkeypatch, q, expect):
    """Five runs tested a page: a window whose rollups lack the model (or whose
    sections lack the text) is answered without probing its runs, and the
    pages still find every match once, with a bounded number of queries."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    monkeypatch.setattr("events.selectors.SEARCH_SCAN_RUNS", 5)
    seen: list[str] = []
    url = "/dashboard/runs/?" + urlencode({"q": q})
    pages = 0
    while url:
        with CaptureQueriesContext(connection) as captured:
            body = owner_client.get(url.replace("&amp;", "&")).content.decode()
        assert len(captured.captured_queries) <= 14
        pages += 1
        seen += ids(body)
        m = re.search(r'<a href="([^"]+)">search older runs →</a>', body, re.I)
        url = m.group(1) if m else ""
    assert pages == 9  # 41 runs, five a page
    assert seen == expect


def test_insight_drill_down_filters_window_section_and_model(found, owner_client):
    since, until = stamp(day_start(3) - dt.timedelta(hours=1)), stamp(day_start(2) + dt.timedelta(hours=1, minutes=30))
    body = owner_client.get(
        "/dashboard/runs/", {"section": "step:analyze_results", "model": "gpt-4o-mini", "since": since, "until": until}
    ).content.decode()
    assert ids(body) == ["run-old-2-1", "run-old-3-1"]
    assert 'id="window-chip"' in body
    body = owner_client.get("/dashboard/runs/", {"model": "gpt-4o", "since": since, "until": until}).content.decode()
    assert ids(body) == ["run-old-2-0", "run-old-3-0"]


def test_cost_distribution_is_hand_computed(project, api_key, owner_client):
    # Twenty runs of one gpt-4o-mini call, k million input tokens each: $0.15 × k.
    events = []
    for k in range(1, 21):
        events += run_events(
            f"dist-{k}",
            when=day_start(20) + dt.timedelta(minutes=k),
            root="classify",
            calls=[{"model": "gpt-4o-mini", "input_tokens": k * 1_000_000, "output_tokens": 0}],
        )
    ingest(api_key, events)
    day = day_start(20).date().isoformat()
    body = owner_client.get("/dashboard/runs/", {"since": day, "until": day}).content.decode()
    # Nearest rank: p50 is the 10th of 20 ($1.50), p95 the 19th ($2.85), max the 20th ($3.00).
    assert '<strong data-dist="runs">20</strong>' in body
    assert f'data-dist="p50">{usd(10 * 1e6 * MINI_IN)}<' in body and usd(10 * 1e6 * MINI_IN) == "$1.50"
    assert f'data-dist="p95">{usd(19 * 1e6 * MINI_IN)}<' in body and usd(19 * 1e6 * MINI_IN) == "$2.85"
    assert f'data-dist="max">{usd(20 * 1e6 * MINI_IN)}<' in body
    # For a section: the runs that have it (all twenty here); none in another one.
    body = owner_client.get("/dashboard/runs/", {"since": day, "until": day, "section": "nope"}).content.decode()
    assert '<span class="muted" data-dist="runs">no runs</span>' in body


def test_cost_distribution_of_the_project_default_period(seeded, owner_client, project):
    body = owner_client.get("/dashboard/runs/").content.decode()
    cut = dt.datetime.combine(day_start(6).date(), dt.time(), tzinfo=dt.UTC)
    costs = sorted(r.cost_usd for r in Run.objects.filter(project=project, started_at__gte=cut))
    n = len(costs)
    assert f'<strong data-dist="runs">{n}</strong>' in body
    assert f'data-dist="p50">{usd(costs[(50 * n + 99) // 100 - 1])}<' in body
    assert f'data-dist="p95">{usd(costs[(95 * n + 99) // 100 - 1])}<' in body
    assert f'data-dist="max">{usd(costs[-1])}<' in body
    assert "Cost per run · the last 7 days (UTC)" in body


def test_outsider_searches_only_their_project(found, outsider_client):
    body = outsider_client.get("/dashboard/runs/", {"q": "id:run"}).content.decode()
    assert ids(body) == []
    body = outsider_client.get("/dashboard/runs/", {"q": "globex"}).content.decode()
    assert ids(body) == ["globex-secret-run"]
    assert outsider_client.get("/dashboard/runs/run-u7/").status_code == 404


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"since": "2026-11-29T99:00:00Z"}, "From is a date like 2026-11-26"),
        ({"until": "9999-12-31T00:00:00Z"}, "To is a date like 2026-11-26"),
        ({"sort": "cost", "offset": "abc"}, "Sorted by cost"),
        ({"sort": "calls", "offset": "-5", "dir": "sideways"}, "Sorted by calls"),
        ({"q": 'a"b\\c:1'}, ""),  # an attribute key JSON paths must quote
        ({"q": "id:" + "\U0010ffff"}, ""),
        ({"q": "x" * 2000}, ""),
        ({"model": "m" * 500, "section": "s" * 500}, ""),
    ],
)
def test_odd_input_is_answered_not_a_500(found, owner_client, params, message):
    response = owner_client.get("/dashboard/runs/", params)
    assert response.status_code == 200
    assert message in response.content.decode()
