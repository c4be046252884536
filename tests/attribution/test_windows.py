"""AttributeWindow: a key's values summed over a breakdown preset's past days,
built by the refresh job, read by the breakdown only while fresh, and
dropped by the rollup rebuilds.

Prices (OpenAI's pricing page): gpt-4o $2.50 in / $10.00 out per 1M tokens,
gpt-4o-mini $0.15 / $0.60.  Days are relative to today, inside the 90-day
retention whenever the suite runs.
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import pytest
from celery.schedules import crontab
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

import attribution.selectors
import attribution.services
from attribution.selectors import CostQuery, cost_breakdown
from attribution.services import attribute_window_build, attribute_windows_refresh
from events.models import AttributeKeyDay, AttributeWindow, AttributeWindowValue
from events.services import aggregates_rebuild
from tests.attribution.conftest import GPT_4O, GPT_4O_MINI, call, usd
from tests.attribution.test_week_rollup import _answer as answer
from tests.conftest import Api

TODAY = dt.datetime.now(dt.UTC).date()
WINDOW_VALUES = "events_attributewindowvalue"


def day(n: int) -> dt.date:
    return TODAY - dt.timedelta(days=n)


def at(d: dt.date, hour: int = 10) -> str:
    return f"{d.isoformat()}T{hour:02d}:00:00Z"


# (days back, user, model, input tokens, output tokens)
CALLS = [
    (80, "u-1", "gpt-4o", 1000, 100),
    (40, "u-2", "gpt-4o-mini", 10_000, 1000),
    (20, "u-1", "gpt-4o-mini", 2000, 200),
    (3, "u-1", "gpt-4o", 3000, 0),
    (1, "u-2", "gpt-4o", 100, 10),
    (0, "u-1", "gpt-4o", 500, 50),
]
PRICE = {"gpt-4o": GPT_4O, "gpt-4o-mini": GPT_4O_MINI}


def hand(user: str, first: int, last: int = 0) -> tuple[int, float]:
    """Calls and cost of `user` from `first` days back to `last` days back, by hand."""
    picked = [c for c in CALLS if c[1] == user and last <= c[0] <= first]
    return len(picked), sum(usd(PRICE[c[2]], c[3], c[4]) for c in picked)


@pytest.fixture
def traffic(api: Api) -> None:
    batch = [
        call(
            run_id=f"win-{i}",
            model=model,
            input_tokens=tin,
            output_tokens=tout,
            started_at=at(day(back)),
            attributes={"user_id": user, "plan": "pro"},
        )
        for i, (back, user, model, tin, tout) in enumerate(CALLS)
    ]
    assert api.post_events(batch).status_code == 200


@pytest.fixture
def small_keys_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fixtures' keys hold a handful of values: build their windows anyway.
    monkeypatch.setattr(attribution.services, "WINDOW_MIN_VALUE_DAYS", 0)


def windows(project_id: int) -> dict[tuple[str, dt.date, dt.date], dict[str, tuple[int, float]]]:
    out: dict[tuple[str, dt.date, dt.date], dict[str, tuple[int, float]]] = {}
    for w in AttributeWindow.objects.filter(project_id=project_id):
        values = AttributeWindowValue.objects.filter(window=w).values_list("value", "calls", "cost_usd")
        out[(w.key, w.first_day, w.last_day)] = {v: (n, round(c, 12)) for v, n, c in values}
    return out


def breakdown(project_id: int, days: int, **extra: Any) -> tuple[Any, str]:
    query = CostQuery(group_by="attribute", key="user_id", start=day(days - 1), end=TODAY, **extra)
    with CaptureQueriesContext(connection) as queries:
        result = cost_breakdown(project_id=project_id, query=query)
    return result, " ".join(q["sql"] for q in queries.captured_queries)


def test_ingest_counts_each_batch_that_adds_to_a_key_day(api: Api, project):
    first = [call(run_id="c-1", started_at=at(day(2)), attributes={"user_id": "u-1"})]
    second = [
        call(run_id="c-2", started_at=at(day(2), 11), attributes={"user_id": "u-2"}),
        call(run_id="c-3", started_at=at(day(1)), attributes={"user_id": "u-1"}),
    ]
    assert api.post_events(first).status_code == 200
    assert api.post_events(second).status_code == 200
    writes = dict(AttributeKeyDay.objects.filter(project=project, key="user_id").values_list("day", "writes"))
    assert writes == {day(2): 2, day(1): 1}
    # the same batch again: its events are duplicates, nothing is added, nothing counted
    assert api.post_events(second).status_code == 200
    writes = dict(AttributeKeyDay.objects.filter(project=project, key="user_id").values_list("day", "writes"))
    assert writes == {day(2): 2, day(1): 1}


def test_refresh_builds_each_presets_window_up_to_yesterday(traffic, project, small_keys_too):
    report = attribute_windows_refresh(project_id=project.id, today=TODAY)
    assert (report.built, report.fresh, report.skipped, report.deleted) == (6, 0, 0, 0)  # 2 keys x 3 presets
    got = windows(project.id)
    rounded = {u: (n, round(c, 12)) for u, (n, c) in {"u-1": hand("u-1", 89, 1), "u-2": hand("u-2", 89, 1)}.items()}
    assert got[("user_id", day(89), day(1))] == rounded
    # u-1: the gpt-4o calls 80 and 3 days back and the gpt-4o-mini one 20 days back; today's is not in it
    assert rounded["u-1"] == (3, round(usd(GPT_4O, 1000, 100) + usd(GPT_4O_MINI, 2000, 200) + usd(GPT_4O, 3000, 0), 12))
    assert got[("user_id", day(29), day(1))] == {
        "u-1": (2, round(usd(GPT_4O_MINI, 2000, 200) + usd(GPT_4O, 3000, 0), 12)),
        "u-2": (1, round(usd(GPT_4O, 100, 10), 12)),
    }
    assert got[("user_id", day(6), day(1))] == {
        "u-1": (1, round(usd(GPT_4O, 3000, 0), 12)),
        "u-2": (1, round(usd(GPT_4O, 100, 10), 12)),
    }
    assert got[("plan", day(89), day(1))]["pro"][0] == 5
    # a second run finds them fresh
    again = attribute_windows_refresh(project_id=project.id, today=TODAY)
    assert (again.built, again.fresh, again.deleted) == (0, 6, 0)
    assert windows(project.id) == got


@pytest.mark.parametrize("days", [7, 30, 90])
def test_breakdown_reads_the_window_and_answers_as_the_rollups_do(traffic, project, small_keys_too, monkeypatch, days):
    attribute_windows_refresh(project_id=project.id, today=TODAY)
    windowed, sql = breakdown(project.id, days)
    assert WINDOW_VALUES in sql
    for row in windowed.rows:  # the window's days and today's calls, by hand
        calls, cost = hand(row.key, days - 1)
        assert row.sums.calls == calls and row.sums.cost_usd == pytest.approx(cost, abs=1e-12)
    assert windowed.rows[0].key == "u-1"
    monkeypatch.setattr(attribution.selectors, "attribute_window_fresh", lambda **kw: None)
    tiered, sql = breakdown(project.id, days)
    assert WINDOW_VALUES not in sql
    assert answer(windowed) == answer(tiered)


def test_a_top_one_counts_the_other_values_through_the_window(traffic, project, small_keys_too):
    attribute_windows_refresh(project_id=project.id, today=TODAY)
    result, sql = breakdown(project.id, 90, limit=1)
    assert WINDOW_VALUES in sql
    assert [r.key for r in result.rows] == ["u-1"]
    assert result.other_keys == 1
    assert result.other.sums.calls == 2 and result.other.sums.cost_usd == pytest.approx(hand("u-2", 89)[1], abs=1e-12)


def test_a_late_event_is_counted_at_once_and_the_window_rebuilt_next_refresh(
    api: Api, traffic, project, small_keys_too
):
    attribute_windows_refresh(project_id=project.id, today=TODAY)
    late = call(
        run_id="win-late",
        model="gpt-4o",
        input_tokens=20_000,
        output_tokens=2000,
        started_at=at(day(10)),
        attributes={"user_id": "u-2"},
    )
    assert api.post_events([late]).status_code == 200
    # the 30- and 90-day windows hold day 10: stale, not read; the answer has the late call
    result, sql = breakdown(project.id, 30)
    assert WINDOW_VALUES not in sql
    u2 = {r.key: r.sums for r in result.rows}["u-2"]
    assert u2.calls == 2
    assert u2.cost_usd == pytest.approx(usd(GPT_4O, 100, 10) + usd(GPT_4O, 20_000, 2000), abs=1e-12)
    assert WINDOW_VALUES in breakdown(project.id, 7)[1]  # the 7-day window does not hold day 10
    report = attribute_windows_refresh(project_id=project.id, today=TODAY)
    assert (report.built, report.fresh) == (2, 4)  # user_id's 30 and 90 days
    rebuilt, sql = breakdown(project.id, 30)
    assert WINDOW_VALUES in sql
    assert answer(rebuilt) == answer(result)


def test_the_next_day_replaces_yesterdays_windows(traffic, project, small_keys_too):
    attribute_windows_refresh(project_id=project.id, today=TODAY)
    tomorrow = TODAY + dt.timedelta(days=1)
    report = attribute_windows_refresh(project_id=project.id, today=tomorrow)
    assert (report.built, report.deleted) == (6, 6)
    assert {k[1:] for k in windows(project.id)} == {(tomorrow - dt.timedelta(days=n - 1), TODAY) for n in (7, 30, 90)}
    # today's breakdown starts a day earlier than tomorrow's windows: read from the tiers, same figures
    result, sql = breakdown(project.id, 90)
    assert WINDOW_VALUES not in sql
    assert result.rows[0].sums.calls == hand("u-1", 89)[0]


def test_small_keys_get_no_window(traffic, project):
    report = attribute_windows_refresh(project_id=project.id, today=TODAY)
    assert (report.built, report.skipped) == (0, 6)
    assert not AttributeWindow.objects.filter(project=project).exists()


def test_rebuilds_delete_the_windows_they_overlap(traffic, project, small_keys_too):
    attribute_windows_refresh(project_id=project.id, today=TODAY)
    # repricing day 10 rewrites its key-day rows (writes restart): the windows holding it go
    aggregates_rebuild(days=[(project.id, day(10))])
    assert {(k[0], (k[2] - k[1]).days + 1) for k in windows(project.id)} == {("user_id", 6), ("plan", 6)}
    call_command("attribution_rebuild", "--since", day(5).isoformat(), stdout=io.StringIO())
    assert not AttributeWindow.objects.exists()
    assert not AttributeWindowValue.objects.exists()


def test_a_rebuilt_window_replaces_its_rows(traffic, project):
    first, last = day(29), day(1)
    assert attribute_window_build(project_id=project.id, key="user_id", first_day=first, last_day=last) == 2
    assert attribute_window_build(project_id=project.id, key="user_id", first_day=first, last_day=last) == 2
    assert AttributeWindow.objects.count() == 1
    assert AttributeWindowValue.objects.count() == 2


def test_deleting_the_project_deletes_its_windows(traffic, project, small_keys_too):
    attribute_windows_refresh(project_id=project.id, today=TODAY)
    assert AttributeWindowValue.objects.exists()
    project.delete()
    assert not AttributeWindow.objects.exists() and not AttributeWindowValue.objects.exists()


def test_tasks_refresh_every_project_with_keys(traffic, project, small_keys_too):
    from attribution.tasks import windows_refresh_all, windows_refresh_for_project
    from llmobserve_site.celery import app

    app.conf.task_always_eager = True
    try:
        assert windows_refresh_all.delay(TODAY.isoformat()).get() == 1
        assert len(windows(project.id)) == 6
        assert windows_refresh_for_project.delay(project.id, TODAY.isoformat()).get() == 0  # all fresh
        assert windows_refresh_for_project.delay(10_000_000, TODAY.isoformat()).get() == 0
    finally:
        app.conf.task_always_eager = False


def test_beat_schedules_the_refresh(settings):
    from llmobserve_site.celery import app

    app.finalize()
    entries = [e["schedule"] for e in app.conf.beat_schedule.values() if e["task"] == "attribution.windows_refresh"]
    assert float(settings.ATTRIBUTE_WINDOWS_INTERVAL_SECONDS) in entries
    # and a minute past each UTC midnight, when every preset's range moves a day
    nightly = [s for s in entries if isinstance(s, crontab)]
    assert len(entries) == 2 and len(nightly) == 1
    assert nightly[0].hour == {0} and nightly[0].minute == {1}
    assert app.tasks["attribution.windows_refresh_for_project"].acks_late is True
