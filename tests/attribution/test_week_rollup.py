"""The per-value rollup summed by ISO week (AttributeValueWeek): kept at ingest
equal to its day rows, rebuilt whole by every rebuild, and read by a
breakdown for a range's whole weeks with the edge days from the day rows —
with the same answer as the day rows alone.

Prices (OpenAI's pricing page): gpt-4o $2.50 in / $10.00 out per 1M tokens,
gpt-4o-mini $0.15 / $0.60.  Days are relative to today (a Monday three weeks
back), so the events stay inside the 90-day retention whenever the suite runs.
"""

from __future__ import annotations

import datetime as dt
import importlib
import io
from types import SimpleNamespace
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

import attribution.selectors
import events.services
from attribution.selectors import CostQuery, cost_breakdown, range_spans, whole_months, whole_weeks
from events.models import AttributeValueMonth, AttributeValueRollup, AttributeValueWeek
from events.services import aggregates_rebuild, attribute_narrow_rebuild
from tests.attribution.conftest import GPT_4O, GPT_4O_MINI, call, usd
from tests.conftest import Api

SUMS = ("calls", "errors", "unpriced_calls", "usage_unknown_calls", "input_tokens", "output_tokens")
TODAY = dt.datetime.now(dt.UTC).date()
MONDAY = TODAY - dt.timedelta(days=TODAY.weekday() + 21)  # the Monday of the week three weeks back
NEXT = MONDAY + dt.timedelta(days=7)


def at(day: dt.date, hour: int = 10) -> str:
    return f"{day.isoformat()}T{hour:02d}:00:00Z"


def span_rows(model: Any, column: str, project_id: int) -> dict[tuple[str, dt.date, str], tuple[Any, ...]]:
    """A week or month table's rows: (key, first day, value) -> the sums."""
    return {
        (r[0], r[1], r[2]): (*r[3:-1], round(r[-1], 12))
        for r in model.objects.filter(project_id=project_id).values_list("key", column, "value", *SUMS, "cost_usd")
    }


def week_rows(project_id: int) -> dict[tuple[str, dt.date, str], tuple[Any, ...]]:
    return span_rows(AttributeValueWeek, "week", project_id)


def month_rows(project_id: int) -> dict[tuple[str, dt.date, str], tuple[Any, ...]]:
    return span_rows(AttributeValueMonth, "month", project_id)


def days_summed(project_id: int, span_of: Any) -> dict[tuple[str, dt.date, str], tuple[Any, ...]]:
    """AttributeValueRollup summed per (key, span_of(day), value) in Python."""
    out: dict[tuple[str, dt.date, str], list[Any]] = {}
    for key, day, value, *sums in AttributeValueRollup.objects.filter(project_id=project_id).values_list(
        "key", "day", "value", *SUMS, "cost_usd"
    ):
        acc = out.setdefault((key, span_of(day), value), [0] * len(SUMS) + [0.0])
        for i, v in enumerate(sums):
            acc[i] += v
    return {k: (*v[:-1], round(v[-1], 12)) for k, v in out.items()}


def days_summed_by_week(project_id: int) -> dict[tuple[str, dt.date, str], tuple[Any, ...]]:
    return days_summed(project_id, lambda day: day - dt.timedelta(days=day.weekday()))


def days_summed_by_month(project_id: int) -> dict[tuple[str, dt.date, str], tuple[Any, ...]]:
    return days_summed(project_id, lambda day: day.replace(day=1))


def traffic(api: Api) -> None:
    """u-1 on the Sunday before MONDAY's week, on MONDAY, Thursday and Sunday of
    its week and on the next Monday; u-2 on Thursday only (two batches)."""
    u1, u2 = {"user_id": "u-1", "plan": "pro"}, {"user_id": "u-2", "plan": "pro"}
    first = [
        call(
            run_id="w-0",
            model="gpt-4o",
            input_tokens=1000,
            output_tokens=100,
            started_at=at(MONDAY - dt.timedelta(days=1)),
            attributes=u1,
        ),
        call(run_id="w-1", model="gpt-4o", input_tokens=2000, output_tokens=200, started_at=at(MONDAY), attributes=u1),
        call(
            run_id="w-2",
            model="gpt-4o-mini",
            input_tokens=3000,
            output_tokens=300,
            started_at=at(MONDAY + dt.timedelta(days=3)),
            attributes=u1,
        ),
        call(
            run_id="w-3",
            model="gpt-4o-mini",
            input_tokens=4000,
            output_tokens=0,
            started_at=at(MONDAY + dt.timedelta(days=3)),
            attributes=u2,
        ),
    ]
    second = [
        call(
            run_id="w-4",
            model="gpt-4o",
            input_tokens=500,
            output_tokens=0,
            started_at=at(MONDAY + dt.timedelta(days=6), 23),
            attributes=u1,
            status="error",
            error_type="APIError",
        ),
        call(
            run_id="w-5",
            model="gpt-4o-mini",
            input_tokens=6000,
            output_tokens=600,
            started_at=at(NEXT, 0),
            attributes=u1,
        ),
    ]
    assert api.post_events(first).status_code == 200
    assert api.post_events(second).status_code == 200


def test_whole_weeks_of_a_range():
    mon = dt.date(2026, 11, 2)  # a Monday
    assert mon.weekday() == 0
    assert whole_weeks(mon, mon + dt.timedelta(days=27)) == (mon, mon + dt.timedelta(days=21))
    # Wednesday to the Tuesday two weeks on: only the week in between is whole
    assert whole_weeks(mon + dt.timedelta(days=2), mon + dt.timedelta(days=15)) == (
        mon + dt.timedelta(days=7),
        mon + dt.timedelta(days=7),
    )
    assert whole_weeks(mon, mon + dt.timedelta(days=6)) == (mon, mon)
    assert whole_weeks(mon, mon + dt.timedelta(days=5)) is None  # Monday to Saturday
    assert whole_weeks(mon + dt.timedelta(days=1), mon + dt.timedelta(days=7)) is None  # 7 days, no whole week


def test_week_rows_equal_hand_sums_and_their_day_rows(api: Api, project):
    traffic(api)
    rows = week_rows(project.id)
    before = MONDAY - dt.timedelta(days=7)
    u1_week = usd(GPT_4O, 2000, 200) + usd(GPT_4O_MINI, 3000, 300) + usd(GPT_4O, 500, 0)
    # u-1's three calls of the week (Monday, Thursday, the failed one late on Sunday) in one row
    assert rows[("user_id", MONDAY, "u-1")] == (3, 1, 0, 0, 5500, 500, round(u1_week, 12))
    assert rows[("user_id", before, "u-1")] == (1, 0, 0, 0, 1000, 100, round(usd(GPT_4O, 1000, 100), 12))
    assert rows[("user_id", NEXT, "u-1")] == (1, 0, 0, 0, 6000, 600, round(usd(GPT_4O_MINI, 6000, 600), 12))
    assert rows[("user_id", MONDAY, "u-2")] == (1, 0, 0, 0, 4000, 0, round(usd(GPT_4O_MINI, 4000, 0), 12))
    assert rows[("plan", MONDAY, "pro")][:1] == (4,)
    assert len(rows) == 7  # user_id: 3 weeks of u-1 + u-2; plan: 3 weeks
    assert rows == days_summed_by_week(project.id)


def test_value_cap_other_lands_in_the_week_as_in_the_days(api: Api, project, monkeypatch):
    monkeypatch.setattr(events.services, "ATTRIBUTE_VALUES_MAX", 2)
    thursday = MONDAY + dt.timedelta(days=3)
    for day, users in ((MONDAY, ("u-a", "u-b", "u-c")), (thursday, ("u-c", "u-d", "u-e"))):
        batch = [call(run_id=f"cap-{u}-{day}", attributes={"user_id": u}, started_at=at(day)) for u in users]
        assert api.post_events(batch).status_code == 200
    calls = {k[2]: r[0] for k, r in week_rows(project.id).items() if k[0] == "user_id"}
    # each day kept its first two values in sort order; the rest went to "(other)" that day
    assert calls == {"u-a": 1, "u-b": 1, "u-c": 1, "u-d": 1, "(other)": 2}
    assert week_rows(project.id) == days_summed_by_week(project.id)


def _breakdown(project_id: int, start: dt.date, end: dt.date, **extra: Any) -> tuple[Any, str]:
    query = CostQuery(group_by="attribute", key="user_id", start=start, end=end, **extra)
    with CaptureQueriesContext(connection) as queries:
        result = cost_breakdown(project_id=project_id, query=query)
    return result, " ".join(q["sql"] for q in queries.captured_queries)


def _answer(result: Any) -> tuple[Any, ...]:
    def sums(s: Any) -> tuple[Any, ...]:
        return (*(getattr(s, n) for n in SUMS), round(s.cost_usd, 12))

    return (
        [(r.key, sums(r.sums)) for r in result.rows],
        sums(result.other.sums),
        result.other_keys,
        sums(result.totals.sums),
        [(d.day, d.calls, round(d.cost_usd, 12), {k: round(v, 12) for k, v in d.by_key.items()}) for d in result.daily],
    )


@pytest.mark.parametrize("limit", [1, 50])
def test_breakdown_reads_whole_weeks_and_answers_as_the_days_do(api: Api, project, monkeypatch, limit):
    traffic(api)
    # Saturday before MONDAY to the Monday after: one whole week, edge days at both ends
    start, end = MONDAY - dt.timedelta(days=2), NEXT
    weekly, sql = _breakdown(project.id, start, end, limit=limit)
    assert "events_attributevalueweek" in sql
    u1 = usd(GPT_4O, 1000, 100) + usd(GPT_4O, 2000, 200) + usd(GPT_4O_MINI, 3000, 300)
    u1 += usd(GPT_4O, 500, 0) + usd(GPT_4O_MINI, 6000, 600)
    assert weekly.rows[0].key == "u-1"
    assert weekly.rows[0].sums.calls == 5 and weekly.rows[0].sums.cost_usd == pytest.approx(u1, abs=1e-12)
    assert weekly.other_keys == (0 if limit == 50 else 1)
    # the same question answered from the day rows alone
    monkeypatch.setattr(attribution.selectors, "whole_weeks", lambda start, end: None)
    daily, sql = _breakdown(project.id, start, end, limit=limit)
    assert "events_attributevalueweek" not in sql
    assert _answer(weekly) == _answer(daily)


def test_a_range_without_a_whole_week_reads_only_days(api: Api, project):
    traffic(api)
    result, sql = _breakdown(project.id, MONDAY + dt.timedelta(days=1), MONDAY + dt.timedelta(days=6))
    assert "events_attributevalueweek" not in sql
    # Tuesday to Sunday: u-1's Thursday call and the failed Sunday one; u-2's Thursday call
    assert {r.key: r.sums.calls for r in result.rows} == {"u-1": 2, "u-2": 1}


def test_a_value_filter_reads_its_weeks(api: Api, project):
    traffic(api)
    result, sql = _breakdown(project.id, MONDAY, NEXT + dt.timedelta(days=6), attribute=("user_id", "u-1"))
    assert "events_attributevalueweek" in sql
    assert [(r.key, r.sums.calls) for r in result.rows] == [("u-1", 4)]
    assert result.totals.sums.calls == 4


def test_every_rebuild_leaves_the_weeks_equal_to_their_days(api: Api, project):
    traffic(api)
    before = week_rows(project.id)
    assert before
    # the narrow rebuild from a Thursday: the week it falls in is rebuilt whole
    AttributeValueWeek.objects.all().delete()
    attribute_narrow_rebuild(project_id=project.id, since=MONDAY + dt.timedelta(days=3))
    assert set(week_rows(project.id)) == {k for k in before if k[1] >= MONDAY}
    assert week_rows(project.id) == {k: v for k, v in before.items() if k[1] >= MONDAY}
    attribute_narrow_rebuild(project_id=project.id)
    assert week_rows(project.id) == before
    # a day recounted from its events (repricing) does not add the day to its week twice
    aggregates_rebuild(days=[(project.id, MONDAY + dt.timedelta(days=3)), (project.id, NEXT)])
    assert week_rows(project.id) == before
    call_command("attribution_rebuild", "--since", MONDAY.isoformat(), stdout=io.StringIO())
    assert week_rows(project.id) == before
    # the migration's backfill, from the day rows
    AttributeValueWeek.objects.all().delete()
    migration = importlib.import_module("events.migrations.0010_attribute_value_week")
    migration.backfill(None, SimpleNamespace(connection=connection))
    assert week_rows(project.id) == before


# --- Months (AttributeValueMonth): the same contract one tier up ---------------------------------

FIRST = (TODAY.replace(day=1) - dt.timedelta(days=1)).replace(day=1)  # the first day of last month
LAST = TODAY.replace(day=1) - dt.timedelta(days=1)  # the last day of last month


def month_traffic(api: Api) -> None:
    """u-1 on the last day of the month before last, the 1st, 15th and last day
    of last month, and the 1st of this month; u-2 on the 15th."""
    u1, u2 = {"user_id": "u-1"}, {"user_id": "u-2"}
    days = [FIRST - dt.timedelta(days=1), FIRST, FIRST + dt.timedelta(days=14), LAST, LAST + dt.timedelta(days=1)]
    batch = [
        call(
            run_id=f"m-{i}",
            model="gpt-4o",
            input_tokens=1000 * (i + 1),
            output_tokens=100,
            started_at=at(d, 12),
            attributes=u1,
        )
        for i, d in enumerate(days)
    ]
    batch.append(
        call(
            run_id="m-u2",
            model="gpt-4o-mini",
            input_tokens=4000,
            output_tokens=400,
            started_at=at(days[2]),
            attributes=u2,
        )
    )
    assert api.post_events(batch).status_code == 200


def test_month_rows_equal_hand_sums_and_their_day_rows(api: Api, project):
    month_traffic(api)
    rows = month_rows(project.id)
    before = (FIRST - dt.timedelta(days=1)).replace(day=1)
    # u-1 last month: the 1st (2000 in), the 15th (3000 in), the last day (4000 in), all gpt-4o
    u1 = usd(GPT_4O, 2000, 100) + usd(GPT_4O, 3000, 100) + usd(GPT_4O, 4000, 100)
    assert rows[("user_id", FIRST, "u-1")] == (3, 0, 0, 0, 9000, 300, round(u1, 12))
    assert rows[("user_id", before, "u-1")][:1] == (1,)
    assert rows[("user_id", LAST + dt.timedelta(days=1), "u-1")][:1] == (1,)
    assert rows[("user_id", FIRST, "u-2")] == (1, 0, 0, 0, 4000, 400, round(usd(GPT_4O_MINI, 4000, 400), 12))
    assert rows == days_summed_by_month(project.id)


def test_breakdown_reads_whole_months_and_answers_as_the_days_do(api: Api, project, monkeypatch):
    month_traffic(api)
    start, end = FIRST - dt.timedelta(days=9), LAST + dt.timedelta(days=1)  # a whole month, edges at both ends
    tiered, sql = _breakdown(project.id, start, end)
    assert "events_attributevaluemonth" in sql
    assert {r.key: r.sums.calls for r in tiered.rows} == {"u-1": 5, "u-2": 1}
    monkeypatch.setattr(attribution.selectors, "whole_weeks", lambda start, end: None)
    monkeypatch.setattr(attribution.selectors, "whole_months", lambda start, end: None)
    daily, sql = _breakdown(project.id, start, end)
    assert "events_attributevaluemonth" not in sql and "events_attributevalueweek" not in sql
    assert _answer(tiered) == _answer(daily)


def test_whole_months_of_a_range():
    assert whole_months(dt.date(2026, 9, 2), dt.date(2026, 11, 30)) == (dt.date(2026, 10, 1), dt.date(2026, 11, 1))
    assert whole_months(dt.date(2026, 9, 1), dt.date(2026, 9, 30)) == (dt.date(2026, 9, 1), dt.date(2026, 9, 1))
    assert whole_months(dt.date(2026, 9, 2), dt.date(2026, 10, 30)) is None
    assert whole_months(dt.date(2026, 12, 1), dt.date(2027, 1, 31)) == (dt.date(2026, 12, 1), dt.date(2027, 1, 1))


def test_every_rebuild_leaves_the_months_equal_to_their_days(api: Api, project):
    month_traffic(api)
    before = month_rows(project.id)
    AttributeValueMonth.objects.all().delete()
    attribute_narrow_rebuild(project_id=project.id, since=FIRST + dt.timedelta(days=14))
    assert month_rows(project.id) == {k: v for k, v in before.items() if k[1] >= FIRST}
    attribute_narrow_rebuild(project_id=project.id)
    assert month_rows(project.id) == before
    aggregates_rebuild(days=[(project.id, FIRST + dt.timedelta(days=14)), (project.id, LAST)])
    assert month_rows(project.id) == before
    AttributeValueMonth.objects.all().delete()
    migration = importlib.import_module("events.migrations.0011_attribute_value_month")
    migration.backfill(None, SimpleNamespace(connection=connection))
    assert month_rows(project.id) == before


def test_range_spans_cover_every_day_once() -> None:
    d = dt.date
    assert range_spans(d(2026, 9, 2), d(2026, 11, 30)) == [
        ("month", d(2026, 10, 1), d(2026, 11, 1)),
        ("week", d(2026, 9, 7), d(2026, 9, 21)),
        ("day", d(2026, 9, 2), d(2026, 9, 6)),
        ("day", d(2026, 9, 28), d(2026, 9, 30)),
    ]
    assert range_spans(d(2026, 11, 4), d(2026, 11, 17)) == [
        ("week", d(2026, 11, 9), d(2026, 11, 9)),
        ("day", d(2026, 11, 4), d(2026, 11, 8)),
        ("day", d(2026, 11, 16), d(2026, 11, 17)),
    ]
    for start in (d(2026, 1, 1) + dt.timedelta(days=n) for n in range(0, 400, 7)):
        for length in (1, 6, 7, 13, 30, 31, 45, 90, 366):
            end = start + dt.timedelta(days=length - 1)
            covered: list[dt.date] = []
            for kind, first, last in range_spans(start, end):
                span = first
                while span <= last:
                    if kind == "day":
                        covered.append(span)
                        span += dt.timedelta(days=1)
                    elif kind == "week":
                        assert span.weekday() == 0
                        covered += [span + dt.timedelta(days=i) for i in range(7)]
                        span += dt.timedelta(days=7)
                    else:
                        assert span.day == 1
                        after = (span + dt.timedelta(days=32)).replace(day=1)
                        covered += [span + dt.timedelta(days=i) for i in range((after - span).days)]
                        span = after
            assert sorted(covered) == [start + dt.timedelta(days=i) for i in range(length)], (start, length)
