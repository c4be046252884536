"""Retention (issue 17): too-old and late events at ingest, the expiry job on both
databases, aggregates and insights that outlive the raw events, expired runs.

PostgreSQL-only behaviour (partitions) is in test_partitions.py.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from events import retention
from events.models import DailyRollup, Event, Run, RunSection
from events.retention import events_expire
from insights.models import Insight
from insights.services import insights_compute
from projects.models import Project
from tests.conftest import Api, make_event

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def ago(days: float, hours: float = 0) -> str:
    return stamp(NOW - dt.timedelta(days=days, hours=hours))


def run_events(run_id: str, started: str, *, calls: int = 2, section: str = "tool:search") -> list[dict]:
    """A run: an agent section, a tool section inside it, `calls` gpt-4o calls in the tool."""
    agent = "agent:bot"
    path = f"{agent}/{section}"
    events = [
        make_event(
            event_id=f"{run_id}-a",
            run_id=run_id,
            span_id=f"{run_id}-a",
            span_type="section",
            name=agent,
            section=agent,
            section_path=agent,
            provider=None,
            model=None,
            endpoint=None,
            input_tokens=0,
            output_tokens=0,
            started_at=started,
        ),
        make_event(
            event_id=f"{run_id}-t",
            run_id=run_id,
            span_id=f"{run_id}-t",
            parent_span_id=f"{run_id}-a",
            span_type="section",
            name=section,
            section=section,
            section_path=path,
            provider=None,
            model=None,
            endpoint=None,
            input_tokens=0,
            output_tokens=0,
            started_at=started,
        ),
    ]
    for c in range(calls):
        events.append(
            make_event(
                event_id=f"{run_id}-c{c}",
                run_id=run_id,
                span_id=f"{run_id}-c{c}",
                parent_span_id=f"{run_id}-t",
                section=section,
                section_path=path,
                input_tokens=1000,
                output_tokens=100,
                started_at=started,
            )
        )
    return events


# gpt-4o (genai-prices): $2.50 per 1M input tokens, $10 per 1M output tokens.
CALL_USD = 1000 * 2.5 / 1e6 + 100 * 10.0 / 1e6  # 0.0035


def aggregates() -> dict[str, list[tuple]]:
    """Every aggregate row, as plain tuples (ids aside), to compare before and after expiry."""
    return {
        "runs": sorted(
            Run.objects.values_list("run_id", "calls", "events", "errors", "input_tokens", "output_tokens", "cost_usd")
        ),
        "sections": sorted(RunSection.objects.values_list("run_id", "section", "is_root", "calls", "cost_usd")),
        "rollups": sorted(
            DailyRollup.objects.values_list("day", "section", "model", "calls", "input_tokens", "cost_usd")
        ),
    }


# --- Settings -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["ninety", "-1", "40000"])
def test_a_bad_retention_setting_stops_start_up_loudly(value: str):
    env = {**os.environ, "EVENT_RETENTION_DAYS": value, "DJANGO_SETTINGS_MODULE": "llmobserve_site.settings"}
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "EVENT_RETENTION_DAYS" in done.stderr


def test_retention_days_project_override_and_forever(settings, project: Project):
    settings.EVENT_RETENTION_DAYS = 90
    assert retention.retention_days(None) == 90
    assert retention.retention_days(7) == 7
    assert retention.retention_days(0) == 0  # a project may keep forever under a site default
    assert retention.retention_cutoff(days=0, now=NOW) is None
    assert retention.retention_cutoff(days=10, now=NOW) == NOW - dt.timedelta(days=10)
    assert retention.retention_not_before(project_id=project.id, now=NOW) == (NOW - dt.timedelta(days=90), 90)


# --- Ingest: too old and late ----------------------------------------------------------------


def test_an_event_older_than_retention_is_rejected_by_name_in_a_207(settings, api: Api, project: Project):
    settings.EVENT_RETENTION_DAYS = 30
    fresh = make_event(event_id="fresh", started_at=ago(29, 23))
    old = make_event(event_id="old", started_at=ago(30, 1))
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    response = api.post_events({"events": [fresh, old]})
    after = dt.datetime.now(dt.UTC)
    assert response.status_code == 207
    body = response.json()
    assert body["accepted"] == 1
    assert body["duplicates"] == 0
    assert len(body["rejected"]) == 1
    rejected = body["rejected"][0]
    assert rejected["index"] == 1
    assert rejected["event_id"] == "old"
    message = rejected["errors"]["started_at"][0]
    assert "older than this project's retention of 30 days" in message
    # names the oldest accepted moment: 30 days before the request (not before NOW, the
    # module's import time, which a slow suite can leave on the other side of an hour)
    named = dt.datetime.fromisoformat(message.split("(started before ", 1)[1].split(")", 1)[0])
    assert before - dt.timedelta(days=30) <= named <= after - dt.timedelta(days=30)
    assert list(Event.objects.values_list("event_id", flat=True)) == ["fresh"]
    assert Run.objects.get().calls == 1  # the rejected event added nothing


def test_too_old_alone_is_a_400_and_the_slow_path_says_the_same(settings, api: Api):
    settings.EVENT_RETENTION_DAYS = 30
    old = make_event(event_id="old", started_at=ago(31))
    # A lone surrogate elsewhere in the batch sends every event through the per-event path.
    odd = make_event(event_id="odd", started_at=ago(45), name="\ud800")
    response = api.post_events({"events": [old, odd]})
    assert response.status_code == 400
    errors = {r["event_id"]: r["errors"] for r in response.json()["rejected"]}
    assert "retention of 30 days" in errors["old"]["started_at"][0]
    assert "name" in errors["odd"]  # its own problem named first
    assert Event.objects.count() == 0


def test_the_project_override_accepts_what_the_site_default_refuses(settings, api: Api, project: Project):
    settings.EVENT_RETENTION_DAYS = 30
    project.event_retention_days = 0  # this project keeps its events forever
    project.save()
    response = api.post_events({"events": [make_event(event_id="backfill", started_at=ago(400))]})
    assert response.status_code == 200
    assert response.json()["accepted"] == 1


def test_a_late_event_lands_in_its_own_day(settings, api: Api):
    settings.EVENT_RETENTION_DAYS = 90
    assert api.post_events({"events": run_events("today", ago(0, 1))}).status_code == 200
    late_start = NOW - dt.timedelta(days=5)
    response = api.post_events({"events": run_events("late", stamp(late_start))})
    assert response.status_code == 200
    assert response.json()["accepted"] == 4
    late_day = DailyRollup.objects.get(day=late_start.date(), section="tool:search")
    assert late_day.calls == 2
    assert late_day.cost_usd == pytest.approx(2 * CALL_USD)
    run = Run.objects.get(run_id="late")
    assert run.started_at == late_start
    assert run.cost_usd == pytest.approx(2 * CALL_USD)


def test_a_resend_is_not_double_counted(settings, api: Api):
    """The key is (project, event_id, started_at): a resend carries the same started_at."""
    settings.EVENT_RETENTION_DAYS = 90
    batch = run_events("r", ago(3))
    assert api.post_events({"events": batch}).json()["accepted"] == 4
    again = api.post_events({"events": batch})
    assert again.json() == {"accepted": 0, "duplicates": 4, "rejected": []}
    run = Run.objects.get(run_id="r")
    assert (run.calls, run.events) == (2, 4)
    assert run.cost_usd == pytest.approx(2 * CALL_USD)
    assert Event.objects.count() == 4


# --- The job -------------------------------------------------------------------------------------


@pytest.fixture
def history(settings, api: Api, project: Project) -> dict[str, list[tuple]]:
    """Runs 100, 60, 20 and 1 days old, stored with retention off; then retention 30."""
    settings.EVENT_RETENTION_DAYS = 0
    for days in (100, 60, 20, 1):
        assert api.post_events({"events": run_events(f"run-{days}d", ago(days))}).status_code == 200
    settings.EVENT_RETENTION_DAYS = 30
    return aggregates()


def remaining_runs() -> set[str]:
    return set(Event.objects.values_list("run_id", flat=True))


def test_expiry_removes_old_events_and_keeps_every_aggregate(history, project: Project):
    if connection.vendor == "postgresql":
        # Whole months only: events_expire drops a month once all of it is past 30 days.
        report = events_expire(now=NOW)
        cutoff = NOW - dt.timedelta(days=30)
        first_kept = dt.datetime(cutoff.year, cutoff.month, 1, tzinfo=dt.UTC)
        expected = {f"run-{d}d" for d in (100, 60, 20, 1) if NOW - dt.timedelta(days=d) >= first_kept}
        assert remaining_runs() == expected
        assert report.partitions_dropped
    else:
        report = events_expire(now=NOW)
        assert remaining_runs() == {"run-20d", "run-1d"}
        assert report.rows_deleted == 8
    assert aggregates() == history  # runs, sections, daily rollups: all their history
    assert Run.objects.count() == 4
    assert events_expire(now=NOW).rows_deleted == 0  # idempotent


def overview_figures(client, days: int) -> tuple:
    response = client.get(f"/?days={days}")
    assert response.status_code == 200
    ctx = response.context
    spend = [(s["item"].current, s["item"].previous) for s in ctx["spend"]]
    return spend, ctx["chart"].total, repr(ctx["top_sections"]), repr(ctx["top_models"])


def test_the_overview_reads_the_same_after_expiry(history, client, owner, project: Project):
    client.force_login(owner)
    before = {days: overview_figures(client, days) for days in (7, 30, 90)}
    # The chart's 30 days hold the runs of 20 and 1 days ago: 4 calls at $0.0035.
    assert before[30][1] == pytest.approx(4 * CALL_USD)
    events_expire(now=NOW)
    assert Event.objects.filter(run_id="run-60d").count() == (4 if connection.vendor == "postgresql" else 0)
    assert {days: overview_figures(client, days) for days in (7, 30, 90)} == before


def test_insights_are_kept_and_recomputed_alike_after_expiry(history, project: Project):
    first = insights_compute(project_id=project.id, at=NOW)
    stored = sorted(Insight.objects.values_list("kind", "section", "observed", "baseline"))
    events_expire(now=NOW)
    assert sorted(Insight.objects.values_list("kind", "section", "observed", "baseline")) == stored
    again = insights_compute(project_id=project.id, at=NOW)  # its window: the last 8 days, kept
    assert sorted((i.kind, i.section, i.observed) for i in again) == sorted(
        (i.kind, i.section, i.observed) for i in first
    )


def test_a_project_with_a_longer_retention_keeps_its_events(settings, api: Api, other_api: Api, project, other_project):
    settings.EVENT_RETENTION_DAYS = 0
    api.post_events({"events": run_events("mine", ago(200))})
    other_api.post_events({"events": run_events("theirs", ago(200))})
    settings.EVENT_RETENTION_DAYS = 30
    other_project.event_retention_days = 0  # forever
    other_project.save()
    report = events_expire(now=NOW)
    assert remaining_runs() == {"theirs"}
    assert report.rows_deleted == 4  # mine: a batched DELETE (PostgreSQL keeps the shared month)
    assert not report.partitions_dropped


def test_sqlite_deletes_in_small_batches_each_its_own_transaction(settings, api: Api, monkeypatch):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's batched deletes (PostgreSQL drops partitions: test_partitions.py)")
    settings.EVENT_RETENTION_DAYS = 0
    for r in range(10):
        api.post_events({"events": run_events(f"old-{r}", ago(50), calls=8)})  # 10 events a run
    api.post_events({"events": run_events("new", ago(2))})
    settings.EVENT_RETENTION_DAYS = 30
    monkeypatch.setattr(retention, "FIRST_BATCH", 30)
    monkeypatch.setattr(retention, "MAX_BATCH", 30)
    commits = []
    from django.db import transaction

    real_atomic = transaction.atomic

    def counting_atomic(*args, **kwargs):
        commits.append(1)
        return real_atomic(*args, **kwargs)

    monkeypatch.setattr(retention.transaction, "atomic", counting_atomic)
    report = events_expire(now=NOW)
    assert report.rows_deleted == 100
    assert report.batches == 4  # 30 + 30 + 30 + 10
    assert len(commits) == 4  # one transaction per batch (the last, short batch ends the loop)
    assert len(report.lock_ms) == 4
    assert remaining_runs() == {"new"}


# --- Expired runs ---------------------------------------------------------------------------------


def test_an_expired_run_opens_with_its_totals_and_sections(history, api: Api, client, owner):
    events_expire(now=NOW)
    body = api.get("/runs/run-100d").json()
    assert body["calls_expired"] is True
    assert body["calls"] == 2
    assert body["cost_usd"] == pytest.approx(2 * CALL_USD)
    assert body["root_sections"] == ["agent:bot"]
    (root,) = body["tree"]
    assert root["name"] == "agent:bot"
    assert root["calls"] == 2
    assert root["cost_usd"] == pytest.approx(2 * CALL_USD)
    assert [child["name"] for child in root["children"]] == ["tool:search"]
    assert root["children"][0]["self_cost_usd"] == pytest.approx(2 * CALL_USD)
    fresh = api.get("/runs/run-1d").json()
    assert fresh["calls_expired"] is False
    client.force_login(owner)
    page = client.get("/dashboard/runs/run-100d/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Call details expired" in html
    assert "tool:search" in html
    assert "calls-expired" not in client.get("/dashboard/runs/run-1d/").content.decode()
