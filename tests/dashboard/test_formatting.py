from __future__ import annotations

import datetime as dt

import pytest
from django.template import Context, Template

from dashboard.charts import nice_ceiling, stacked_daily
from dashboard.formatting import change, duration, rate, tokens, usd


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (0, "$0.00"),
        (0.0, "$0.00"),
        (4.1, "$4.10"),
        (1, "$1.00"),
        (1234.5, "$1,234.50"),
        (12345678.912, "$12,345,678.91"),
        (0.5, "$0.50"),
        (0.1, "$0.10"),
        (0.123, "$0.12"),
        (0.105, "$0.11"),
        (0.0123, "$0.012"),
        (0.0032, "$0.0032"),
        (0.00321, "$0.0032"),
        (0.002, "$0.002"),
        (0.000012345, "$0.000012"),
        (0.999, "$1.00"),
        (1e-9, "<$0.000001"),
        (-1.2, "-$1.20"),
        (-0.0032, "-$0.0032"),
        (None, "—"),
    ],
)
def test_usd_rule(amount, text):
    assert usd(amount) == text


def test_usd_is_the_template_filter():
    rendered = Template("{% load dashboard %}{{ a|usd }} {{ b|usd }} {{ c|tokens }} {{ d|duration }}").render(
        Context({"a": 4.1, "b": 0.0032, "c": 1234567, "d": 1840})
    )
    assert rendered == "$4.10 $0.0032 1,234,567 1.84 s"


def test_rates_are_exact():
    assert [rate(v) for v in (2.5, 0.125, 0.0375, 0, 15, None)] == ["$2.50", "$0.125", "$0.0375", "$0", "$15.00", "—"]


def test_tokens_and_durations():
    assert tokens(0) == "0"
    assert tokens(1200) == "1,200"
    assert duration(850) == "850 ms"
    assert duration(1840) == "1.84 s"
    assert duration(185_000) == "3 min 5 s"
    assert duration(None) == "—"


def test_change_against_previous_period():
    assert change(0, 0) == {"text": "no change", "direction": "flat"}
    assert change(5, 0) == {"text": "new", "direction": "up"}
    assert change(12, 10) == {"text": "+20%", "direction": "up"}
    assert change(8, 10) == {"text": "−20%", "direction": "down"}
    assert change(10.01, 10) == {"text": "±0%", "direction": "flat"}


def test_nice_ceiling():
    assert nice_ceiling(0) == 1.0
    assert nice_ceiling(0.027) == pytest.approx(0.05)
    assert nice_ceiling(0.0068) == pytest.approx(0.01)
    assert nice_ceiling(3) == pytest.approx(5)
    assert nice_ceiling(20) == pytest.approx(20)


def test_stacked_chart_geometry():
    day = dt.date(2026, 11, 20)
    series = {f"s{i}": {day: float(i + 1)} for i in range(9)}
    series["s0"][day + dt.timedelta(days=2)] = 4.0
    chart = stacked_daily(series, start=day, end=day + dt.timedelta(days=2), top=7)
    # Seven named series and "other" for the two smallest.
    assert [item["label"] for item in chart.legend][-1] == "other"
    assert len(chart.legend) == 8
    assert chart.total == pytest.approx(sum(range(1, 10)) + 4.0)
    # Stacks never overflow the plot: the tallest day (45) fits under the top gridline.
    assert min(seg.y for seg in chart.segments) >= chart.plot_top - 0.01
    assert all(seg.height > 0 for seg in chart.segments)
    # Round gridline labels.
    assert [g["label"] for g in chart.gridlines] == ["$0.00", "$20.00", "$40.00", "$60.00", "$80.00"]
    assert stacked_daily({}, start=day, end=day).empty


def test_a_series_keeps_its_colour_across_charts_and_periods():
    import zlib

    from dashboard.charts import OTHER_COLOR, PALETTE, series_color

    day = dt.date(2026, 11, 1)
    alone = stacked_daily({"tool:web_search": {day: 1.0}}, start=day, end=day)
    crowded = stacked_daily(
        {f"s{i}": {day: float(10 + i)} for i in range(12)} | {"tool:web_search": {day: 50.0}},
        start=day,
        end=day - dt.timedelta(days=0),
    )
    colour = {item["label"]: item["color"] for item in alone.legend}["tool:web_search"]
    assert colour == {item["label"]: item["color"] for item in crowded.legend}["tool:web_search"]
    # By hand: CRC-32 of the name picks the palette entry.
    assert colour == PALETTE[zlib.crc32(b"tool:web_search") % 20] == series_color("tool:web_search")
    assert {item["label"]: item["color"] for item in crowded.legend}["other"] == OTHER_COLOR
