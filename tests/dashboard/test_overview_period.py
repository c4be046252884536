"""The overview's period (presets and a custom range, in the URL) and the user's time zone (issue 15)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db.models import Sum

from dashboard.formatting import usd
from events.models import DailyRollup
from projects.models import UserSettings
from tests.dashboard.conftest import day_start

pytestmark = pytest.mark.django_db


def section_cost(project, section: str, first: dt.date, last: dt.date) -> float:
    rows = DailyRollup.objects.filter(project=project, section=section, day__gte=first, day__lte=last)
    return rows.aggregate(c=Sum("cost_usd"))["c"] or 0.0


def top(body: str) -> str:
    return body[body.index('id="top-sections"') : body.index('id="top-models"')]


@pytest.mark.parametrize(
    ("key", "label", "days"),
    [("today", "Today", 1), ("7d", "7 days", 7), ("30d", "30 days", 30), ("90d", "90 days", 90)],
)
def test_period_presets(seeded, owner_client, project, key, label, days):
    today = day_start(0).date()
    body = owner_client.get("/", {"range": key}).content.decode()
    assert f"Top sections · {label}" in top(body)
    assert f'href="?range={key}" aria-current="true"' in body
    cost = section_cost(project, "retrieval", today - dt.timedelta(days=days - 1), today)
    if cost:
        assert usd(cost) in top(body)
    else:
        assert "retrieval" not in top(body)
    assert "Days are UTC days (the rollups' granularity)" in body


def test_custom_range_and_its_errors(seeded, owner_client, project):
    first, last = day_start(5).date(), day_start(3).date()
    body = owner_client.get("/", {"from": first.isoformat(), "to": last.isoformat(), "by": "model"}).content.decode()
    assert f"Top sections · {first:%Y-%m-%d} → {last:%Y-%m-%d}" in top(body)
    assert usd(section_cost(project, "retrieval", first, last)) in top(body)
    assert "tool:web_search" in top(body)
    # The chart ends on the range's last day (two weeks at least) and keeps the split and the range in its tabs.
    assert f"Cost per day, {last - dt.timedelta(days=13):%Y-%m-%d} → {last:%Y-%m-%d}" in body
    assert f'href="?from={first}&amp;to={last}&amp;by=section"' in body
    # Runs behind a section: the period's days.
    assert f"section=retrieval&amp;since={first}&amp;until={last}" in body
    for params, message in (
        ({"from": "2026-13-01"}, "From and To are dates like 2026-11-26."),
        ({"from": last.isoformat(), "to": first.isoformat()}, "To is before From."),
        ({"from": "2020-01-01", "to": "2026-01-01"}, "A period is at most 366 days."),
    ):
        response = owner_client.get("/", params)
        assert response.status_code == 200 and message in response.content.decode()
        assert "Top sections · 7 days" in top(response.content.decode())


def test_timezone_setting(seeded, owner, owner_client):
    response = owner_client.post("/dashboard/timezone/", {"timezone": "Asia/Tokyo", "next": "/?range=30d"})
    assert response.status_code == 302 and response["Location"] == "/?range=30d"
    assert UserSettings.objects.get(user=owner).timezone == "Asia/Tokyo"
    body = owner_client.get("/").content.decode()
    assert 'name="timezone" value="Asia/Tokyo"' in body
    # The run list shows start times in Tokyo (UTC+9): run-42 started at 00:06 UTC today.
    runs = owner_client.get("/dashboard/runs/").content.decode()
    started = (day_start(0) + dt.timedelta(minutes=5, hours=9)).strftime("%Y-%m-%d %H:%M:%S")
    row = runs[runs.index('data-run-id="run-42"') :].split("</tr>")[0]
    assert f'<td class="nowrap">{started}</td>' in row and "(Asia/Tokyo)" in runs
    # Another request of the same thread is back in UTC (the zone is per request).
    assert "09:06:00" not in owner_client.get("/dashboard/pricing/").content.decode()
    for bad in ("Mars/Olympus", "", "x" * 65):
        response = owner_client.post("/dashboard/timezone/", {"timezone": bad})
        assert response.status_code == 400
    assert UserSettings.objects.get(user=owner).timezone == "Asia/Tokyo"
    # An outside `next` goes to the overview instead.
    response = owner_client.post("/dashboard/timezone/", {"timezone": "UTC", "next": "https://evil.example/"})
    assert response["Location"] == "/"
    assert owner_client.get("/dashboard/timezone/").status_code == 405
