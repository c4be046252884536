"""Evaluation against hand-computed spend: calendar periods in the project's
time zone (month end, DST changes), the forecast's arithmetic, and each
threshold and forecast alert inserted once per period and channel."""

from __future__ import annotations

import datetime as dt

import pytest

from budgets.inputs import budget_input_parse
from budgets.models import Budget, Channel, Delivery
from budgets.periods import bucket_of, period_bounds, project
from budgets.selectors import budget_status_get
from budgets.services import budget_create, budgets_evaluate
from tests.budgets.conftest import call, ingest

UTC = dt.UTC


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# --- Periods -------------------------------------------------------------------


def test_month_end_in_new_york():
    # 23:30 on Oct 31 in New York (EDT, UTC-4) is still October...
    assert period_bounds("month", "America/New_York", utc(2026, 11, 1, 3, 30)) == (
        utc(2026, 10, 1, 4),
        utc(2026, 11, 1, 4),
    )
    # ...and November ends at midnight EST (UTC-5): DST ended on Nov 1.
    assert period_bounds("month", "America/New_York", utc(2026, 11, 1, 4, 30)) == (
        utc(2026, 11, 1, 4),
        utc(2026, 12, 1, 5),
    )


def test_days_of_25_and_23_hours():
    # Paris leaves summer time on Sunday 2026-10-25: that day lasts 25 hours.
    start, end = period_bounds("day", "Europe/Paris", utc(2026, 10, 25, 12))
    assert (start, end) == (utc(2026, 10, 24, 22), utc(2026, 10, 25, 23))
    # New York enters summer time on Sunday 2026-03-08: 23 hours.
    start, end = period_bounds("day", "America/New_York", utc(2026, 3, 8, 12))
    assert (start, end) == (utc(2026, 3, 8, 5), utc(2026, 3, 9, 4))
    assert end - start == dt.timedelta(hours=23)


def test_weeks_start_on_monday_in_the_zone():
    # Monday 2026-11-30 00:30 in Tokyo is Sunday 15:30 UTC: already the new week.
    assert period_bounds("week", "Asia/Tokyo", utc(2026, 11, 29, 15, 30)) == (
        utc(2026, 11, 29, 15),
        utc(2026, 12, 6, 15),
    )
    # Kathmandu is UTC+5:45: its midnight is a quarter-hour boundary in UTC too.
    start, _ = period_bounds("day", "Asia/Kathmandu", utc(2026, 11, 30, 12))
    assert start == utc(2026, 11, 29, 18, 15) == bucket_of(start)


# --- Spend per period, from ingest ----------------------------------------------


def _budget(project_, name: str, period: str, amount: float = 10.0) -> Budget:
    return budget_create(
        project=project_, data=budget_input_parse({"name": name, "amount_usd": amount, "period": period})
    )


@pytest.mark.django_db
def test_month_budget_in_new_york_counts_only_its_month(project, instant_counting):
    project.timezone = "America/New_York"
    project.save()
    budget = _budget(project, "month", "month")
    ingest(
        project.id,
        [
            call(utc(2026, 11, 1, 3, 59)),  # Oct 31, 23:59 EDT: October
            call(utc(2026, 11, 1, 4, 0)),  # Nov 1, 00:00 EDT: November
            call(utc(2026, 12, 1, 4, 59)),  # Nov 30, 23:59 EST: November
            call(utc(2026, 12, 1, 5, 0)),  # Dec 1, 00:00 EST: December
        ],
    )
    status = budget_status_get(budget=budget, tz_name=project.timezone, at=utc(2026, 11, 15))
    assert status.projection.spent_usd == pytest.approx(2 * 0.35)
    october = budget_status_get(budget=budget, tz_name=project.timezone, at=utc(2026, 10, 20))
    assert october.projection.spent_usd == pytest.approx(0.35)


@pytest.mark.django_db
def test_day_budget_across_the_autumn_dst_change(project, instant_counting):
    project.timezone = "Europe/Paris"
    project.save()
    budget = _budget(project, "day", "day")
    ingest(
        project.id,
        [
            call(utc(2026, 10, 24, 21, 59)),  # Oct 24, 23:59 CEST
            call(utc(2026, 10, 24, 22, 0)),  # Oct 25, 00:00 CEST
            call(utc(2026, 10, 25, 0, 30)),  # Oct 25, 02:30 CEST (before the clocks go back)
            call(utc(2026, 10, 25, 1, 30)),  # Oct 25, 02:30 CET (the same wall time, an hour later)
            call(utc(2026, 10, 25, 22, 59)),  # Oct 25, 23:59 CET
            call(utc(2026, 10, 25, 23, 0)),  # Oct 26, 00:00 CET
        ],
    )
    status = budget_status_get(budget=budget, tz_name="Europe/Paris", at=utc(2026, 10, 25, 22, 59, 30))
    assert status.projection.spent_usd == pytest.approx(4 * 0.35)


# --- Forecast ----------------------------------------------------------------------


def test_forecast_arithmetic():
    # $2 spent by noon, $4.80 in the last 24 h: $0.20/h; 12 h left → 2 + 2.4 = $4.40.
    p = project(
        spent_usd=2.0,
        last_24h_usd=4.8,
        amount_usd=4.0,
        thresholds=[50, 80, 100],
        now=utc(2026, 11, 30, 12),
        period_end=utc(2026, 12, 1),
    )
    assert p.forecast_usd == pytest.approx(4.4)
    assert p.rate_usd_per_day == pytest.approx(4.8)
    assert p.percent == pytest.approx(50.0)
    # $2 more at $0.20/h: 10 h after noon.
    assert p.exceeds_at == utc(2026, 11, 30, 22)
    assert p.state == "warning"
    # At that rate the $5 is not reached by midnight: no date, and 40 % is below the first threshold.
    q = project(
        spent_usd=2.0,
        last_24h_usd=4.8,
        amount_usd=5.0,
        thresholds=[50, 80, 100],
        now=utc(2026, 11, 30, 12),
        period_end=utc(2026, 12, 1),
    )
    assert q.exceeds_at is None and q.state == "ok" and q.forecast_usd == pytest.approx(4.4)
    r = project(
        spent_usd=5.0,
        last_24h_usd=0.0,
        amount_usd=5.0,
        thresholds=[100],
        now=utc(2026, 11, 30),
        period_end=utc(2026, 12, 1),
    )
    assert (r.state, r.exceeds_at, r.percent) == ("exceeded", None, 100.0)


@pytest.mark.django_db
def test_forecast_from_ingested_spend(project, instant_counting):
    budget = _budget(project, "day", "day", amount=1.0)
    now = utc(2026, 11, 30, 12)
    ingest(project.id, [call(utc(2026, 11, 29, 18)), call(utc(2026, 11, 30, 6)), call(utc(2026, 11, 29, 11, 59))])
    p = budget_status_get(budget=budget, tz_name="UTC", at=now).projection
    # Today: one call, $0.35.  Last 24 h (after 11/29 12:00): two, $0.70 → $0.35 per 12 h left.
    assert p.spent_usd == pytest.approx(0.35)
    assert p.forecast_usd == pytest.approx(0.70)
    assert p.exceeds_at is None and p.state == "ok"


# --- Alerts --------------------------------------------------------------------


@pytest.mark.django_db
def test_each_threshold_and_the_forecast_fire_once_per_period_and_channel(project, instant_counting):
    email = Channel.objects.create(project=project, kind="email", name="e", target="ops@example.com", target_hint="o…")
    hook = Channel.objects.create(
        project=project, kind="webhook", name="w", target="http://127.0.0.1:9/x", target_hint=""
    )
    budget = budget_create(
        project=project,
        data=budget_input_parse(
            {
                "name": "acme",
                "amount_usd": 1,
                "period": "day",
                "scope": {"attribute": {"key": "customer", "value": "acme"}},
                "channels": [email.id, hook.id],
            }
        ),
    )
    noon = utc(2026, 11, 30, 12)
    ingest(project.id, [call(utc(2026, 11, 30, 9), attributes={"customer": "acme"})] * 1)
    ingest(project.id, [call(utc(2026, 11, 30, 10), attributes={"customer": "acme"})])
    # $0.70 of $1: 70 % → the 50 % threshold; forecast 0.70 + 0.70/24 × 12 = $1.05 → projected to exceed.
    budgets_evaluate(at=noon)
    keys = sorted(Delivery.objects.values_list("kind", "threshold", "channel__name"))
    assert keys == [("forecast", None, "e"), ("forecast", None, "w"), ("threshold", 50, "e"), ("threshold", 50, "w")]
    forecast = Delivery.objects.get(kind="forecast", channel=hook)
    assert forecast.payload["exceeds_at"] == "2026-11-30T22:17:08.571429Z"  # 12:00 + $0.30 / ($0.70 / 24 h)
    budgets_evaluate(at=noon + dt.timedelta(minutes=1))
    assert Delivery.objects.count() == 4  # nothing twice
    ingest(project.id, [call(utc(2026, 11, 30, 11), attributes={"customer": "acme"})])  # $1.05: 105 %
    budgets_evaluate(at=noon + dt.timedelta(minutes=2))
    assert sorted(Delivery.objects.filter(kind="threshold").values_list("threshold", flat=True)) == [
        50,
        50,
        80,
        80,
        100,
        100,
    ]
    payload = Delivery.objects.get(kind="threshold", threshold=100, channel=hook).payload
    assert payload["spent_usd"] == pytest.approx(1.05) and payload["percent"] == pytest.approx(105.0)
    assert payload["amount_usd"] == 1.0 and payload["budget"] == "acme" and payload["period"] == "day"
    assert payload["period_start"] == "2026-11-30T00:00:00Z"
    assert payload["scope"]["attribute"] == {"key": "customer", "value": "acme"}
    assert payload["dashboard_url"].endswith("/dashboard/budgets/?project=acme")
    # The next day is a new period: spend starts again at 0, no threshold; but the
    # last 24 h's $1.05 carried over 23.5 h is $1.028: projected to exceed again.
    budgets_evaluate(at=utc(2026, 12, 1, 0, 30))
    new = Delivery.objects.filter(period_start=utc(2026, 12, 1))
    assert sorted(new.values_list("kind", flat=True)) == ["forecast", "forecast"]
    assert new.first().payload["forecast_usd"] == pytest.approx(1.05 / 24 * 23.5)
    assert budget.deliveries.count() == 10
