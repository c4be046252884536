"""Run retention (RUN_RETENTION_DAYS): runs and their sections past it are deleted by the
retention job after the events; rollups, insights and budgets stay; a run never goes while
its events may be kept.  Both databases.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
from typing import Any

import pytest
from django.db import connection, models
from django.db.models import Sum

from events import retention
from events.models import (
    AttributeKeyDay,
    AttributeRollup,
    AttributeValueRollup,
    DailyRollup,
    Event,
    Run,
    RunSection,
)
from events.retention import events_expire
from projects.models import Project
from tests.attribution.test_breakdown_page import table_rows
from tests.conftest import Api
from tests.retention.test_retention import CALL_USD, NOW, ROOT, ago, overview_figures, run_events

AGES = (200, 100, 60, 20, 1)  # days since each run (all its events at that moment)


def post_runs(api: Api, prefix: str = "run") -> None:
    for days in AGES:
        events = run_events(f"{prefix}-{days}d", ago(days))
        for event in events:
            event["attributes"] = {"user_id": f"u-{days % 3}"}
        assert api.post_events({"events": events}).status_code == 200


def rollups() -> dict[str, list[Any]]:
    """Every rollup row (ids aside) and the daily sums: unchanged by run retention."""

    def rows(model: type[models.Model]) -> list[Any]:
        fields = [f.attname for f in model._meta.concrete_fields if f.attname != "id"]
        return sorted(model._default_manager.values_list(*fields), key=repr)

    return {
        "daily": rows(DailyRollup),
        "attribute": rows(AttributeRollup),
        "attribute_value": rows(AttributeValueRollup),
        "attribute_key_day": rows(AttributeKeyDay),
        "sums": [DailyRollup.objects.aggregate(calls=Sum("calls"), cost=Sum("cost_usd"))],
    }


def runs() -> set[str]:
    return set(Run.objects.values_list("run_id", flat=True))


def section_runs() -> set[str]:
    return set(RunSection.objects.values_list("run_id", flat=True))


@pytest.fixture
def history(settings, api: Api) -> dict[str, list[tuple]]:
    """Runs 200, 100, 60, 20 and 1 days old, and one that began 200 days ago and ended a day ago,
    stored with retention off; then events 30 days, runs 90."""
    settings.EVENT_RETENTION_DAYS = 0
    settings.RUN_RETENTION_DAYS = 0
    post_runs(api)
    long_run = run_events("long", ago(200)) + run_events("long-tail", ago(1))
    for event in long_run:
        event["run_id"] = "long"
        event["event_id"] = "long-" + event["event_id"]
    assert api.post_events({"events": long_run}).status_code == 200
    settings.EVENT_RETENTION_DAYS = 30
    settings.RUN_RETENTION_DAYS = 90
    return rollups()


ALL = {f"run-{d}d" for d in AGES} | {"long"}


def test_old_runs_and_their_sections_go_recent_ones_and_every_rollup_stay(history, api: Api, caplog):
    assert runs() == ALL
    assert section_runs() == ALL
    kept_before = sorted(
        Run.objects.exclude(run_id__in=["run-200d", "run-100d"]).values_list("run_id", "calls", "cost_usd")
    )
    with caplog.at_level(logging.INFO, logger="events.retention"):
        report = events_expire(now=NOW)
    # Ended before now - 90 days: the runs of 200 and 100 days ago; "long" began 200 days ago
    # but ended yesterday and stays.
    assert runs() == ALL - {"run-200d", "run-100d"}
    assert section_runs() == ALL - {"run-200d", "run-100d"}
    assert report.runs_deleted == 2
    assert report.run_sections_deleted == 4  # agent:bot and tool:search of each
    assert sorted(Run.objects.values_list("run_id", "calls", "cost_usd")) == kept_before
    assert Run.objects.get(run_id="run-60d").cost_usd == pytest.approx(2 * CALL_USD)
    assert rollups() == history
    assert "and 2 runs (4 sections)" in caplog.text
    assert api.get("/runs/run-100d").status_code == 404
    # A kept run opens; its events are gone (PostgreSQL: unless its month's partition is kept).
    expired = not Event.objects.filter(run_id="run-60d").exists()
    assert expired or connection.vendor == "postgresql"
    assert api.get("/runs/run-60d").json()["calls_expired"] is expired
    again = events_expire(now=NOW)  # idempotent
    assert (again.runs_deleted, again.run_sections_deleted) == (0, 0)


def test_the_overview_and_the_breakdown_read_the_same_after_run_expiry(history, client, owner):
    client.force_login(owner)
    before = {days: overview_figures(client, days) for days in (7, 30, 90)}
    url = "/dashboard/breakdown/"
    start, end = (NOW - dt.timedelta(days=210)).date(), NOW.date()
    params = {"from": start.isoformat(), "to": end.isoformat(), "group_by": "attribute:user_id"}
    breakdown = table_rows(client.get(url, params).content.decode())
    # u-1: the runs of 100 and 1 days ago (100 % 3 == 1 % 3 == 1), 2 calls each at $0.0035.
    assert breakdown["u-1"][1:4] == ["$0.014", "28.6%", "4"]
    assert events_expire(now=NOW).runs_deleted == 2
    assert {days: overview_figures(client, days) for days in (7, 30, 90)} == before
    assert table_rows(client.get(url, params).content.decode()) == breakdown


def test_a_run_is_never_deleted_while_its_events_are_kept(settings, history):
    """Run retention equal to the event retention: PostgreSQL keeps a month's partition up to a
    month past it, and the runs whose events are in it stay with them."""
    settings.RUN_RETENTION_DAYS = 30
    events_expire(now=NOW)
    with_events = set(Event.objects.values_list("run_id", flat=True))
    assert with_events <= runs()
    if connection.vendor == "sqlite":
        assert runs() == {"run-20d", "run-1d", "long"}
    else:
        cutoff = NOW - dt.timedelta(days=30)
        first_kept = dt.datetime(cutoff.year, cutoff.month, 1, tzinfo=dt.UTC)
        expected = {f"run-{d}d" for d in AGES if d <= 30 or NOW - dt.timedelta(days=d) >= first_kept}
        assert runs() == expected | {"long"}


def test_a_project_keeping_its_events_longer_keeps_its_runs(settings, api: Api, other_api: Api, other_project):
    settings.EVENT_RETENTION_DAYS = 0
    post_runs(api, "mine")
    post_runs(other_api, "theirs")
    settings.EVENT_RETENTION_DAYS = 30
    settings.RUN_RETENTION_DAYS = 90
    other_project.event_retention_days = 150  # its events 150 days: its runs as long
    other_project.save()
    report = events_expire(now=NOW)
    mine = {r for r in runs() if r.startswith("mine")}
    theirs = {r for r in runs() if r.startswith("theirs")}
    assert mine == {"mine-60d", "mine-20d", "mine-1d"}
    assert theirs == {"theirs-100d", "theirs-60d", "theirs-20d", "theirs-1d"}
    assert report.runs_deleted == 3
    other_project.event_retention_days = 0  # forever: all its runs, even past RUN_RETENTION_DAYS
    other_project.save()
    Project.objects.filter(id=other_project.id).update(event_retention_days=0)
    settings.RUN_RETENTION_DAYS = 40
    events_expire(now=NOW + dt.timedelta(days=365))
    assert {r for r in runs() if r.startswith("theirs")} == theirs
    assert not {r for r in runs() if r.startswith("mine")}


def test_zero_keeps_every_run(settings, history):
    settings.RUN_RETENTION_DAYS = 0
    report = events_expire(now=NOW + dt.timedelta(days=1000))
    assert not Event.objects.exists()  # the events went
    assert (report.runs_deleted, runs(), section_runs()) == (0, ALL, ALL)


def test_sqlite_deletes_runs_in_small_batches_through_the_index(settings, api: Api, monkeypatch):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's adaptive batches (PostgreSQL: PG_BATCH rows a statement)")
    settings.EVENT_RETENTION_DAYS = 0
    for r in range(10):
        assert api.post_events({"events": run_events(f"old-{r}", ago(120))}).status_code == 200
    assert api.post_events({"events": run_events("new", ago(2))}).status_code == 200
    settings.EVENT_RETENTION_DAYS = 30
    assert events_expire(now=NOW).rows_deleted == 40  # the events first (runs kept: RUN_RETENTION_DAYS 0)
    settings.RUN_RETENTION_DAYS = 90
    monkeypatch.setattr(retention, "FIRST_BATCH", 3)
    monkeypatch.setattr(retention, "MAX_BATCH", 3)
    monkeypatch.setattr(retention, "MIN_BATCH", 3)
    commits = []
    real_atomic = retention.transaction.atomic

    def counting_atomic(*args, **kwargs):
        commits.append(1)
        return real_atomic(*args, **kwargs)

    monkeypatch.setattr(retention.transaction, "atomic", counting_atomic)
    report = events_expire(now=NOW)
    assert report.runs_deleted == 10
    assert report.run_sections_deleted == 20
    assert report.batches == 4  # 3 + 3 + 3 + 1 runs
    assert len(commits) == 1 + 4  # one transaction per batch (the first: the events' batch, none left)
    assert runs() == section_runs() == {"new"}


def test_sqlite_run_batches_read_an_index_range_not_the_table(db):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's plan")
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + retention.runs_delete_sql(), [1, "2026-01-01", "2026-01-01", 10, "x"])
        plan = " | ".join(str(row[-1]) for row in cursor.fetchall())
    assert "USING COVERING INDEX run_project_sort (project_id=? AND started_at<?)" in plan, plan
    assert "SCAN events_run" not in plan, plan


# --- Settings -----------------------------------------------------------------------------


def start_up(**env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, "DJANGO_SETTINGS_MODULE": "llmobserve_site.settings"}
    full.pop("DATABASE_URL", None)
    for name in ("EVENT_RETENTION_DAYS", "RUN_RETENTION_DAYS"):
        if name not in env:
            full.pop(name, None)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], env=full, cwd=ROOT, capture_output=True, text=True
    )


@pytest.mark.parametrize("value", ["ninety", "-1", "40000", "2.5"])
def test_a_bad_run_retention_stops_start_up_loudly(value: str):
    done = start_up(RUN_RETENTION_DAYS=value)
    assert done.returncode != 0
    assert f"RUN_RETENTION_DAYS={value!r}" in done.stderr or f"RUN_RETENTION_DAYS={value}" in done.stderr


def test_a_run_retention_shorter_than_the_events_is_refused():
    done = start_up(RUN_RETENTION_DAYS="10", EVENT_RETENTION_DAYS="30")
    assert done.returncode != 0
    assert "RUN_RETENTION_DAYS=10 is shorter than EVENT_RETENTION_DAYS=30" in done.stderr
    # The default event retention (90) counts too.
    assert "shorter than EVENT_RETENTION_DAYS=90" in start_up(RUN_RETENTION_DAYS="60").stderr


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"RUN_RETENTION_DAYS": "0"},
        {"RUN_RETENTION_DAYS": "90"},
        {"RUN_RETENTION_DAYS": "7", "EVENT_RETENTION_DAYS": "0"},
    ],
)
def test_good_run_retentions_start(env: dict[str, str]):
    done = start_up(**env)
    assert done.returncode == 0, done.stderr


def test_the_default_keeps_runs_forever():
    from django.conf import settings

    if "RUN_RETENTION_DAYS" not in os.environ:
        assert settings.RUN_RETENTION_DAYS == 0


def test_a_late_event_of_an_expired_run_is_refused_and_never_remakes_it(history, api: Api):
    """Run retention is never below event retention, so an event of a run it deleted is
    older than the events kept: refused per event, the run not re-created with its sums."""
    events_expire(now=NOW)
    assert "run-100d" not in runs()
    old_day = (NOW - dt.timedelta(days=100)).date()
    day_calls = DailyRollup.objects.filter(day=old_day).aggregate(n=Sum("calls"))["n"]
    assert day_calls == 2
    late = run_events("run-100d", ago(100))[2]  # one of its calls, arriving now
    late["event_id"] = "run-100d-late"
    fresh = run_events("run-now", ago(0, 1))
    response = api.post_events({"events": [late, *fresh]})
    assert response.status_code == 207
    body = response.json()
    assert body["accepted"] == len(fresh)
    assert [r["event_id"] for r in body["rejected"]] == ["run-100d-late"]
    assert "older than this project's retention of 30 days" in body["rejected"][0]["errors"]["started_at"][0]
    assert "run-100d" not in runs()
    assert DailyRollup.objects.filter(day=old_day).aggregate(n=Sum("calls"))["n"] == day_calls  # nothing added
    assert Run.objects.get(run_id="run-now").calls == 2
    assert not Event.objects.filter(event_id="run-100d-late").exists()
