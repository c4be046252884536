"""Storing insights (reruns never duplicate), GET /insights/daily, the command and the tasks."""

from __future__ import annotations

import datetime as dt
import threading
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from insights.models import Insight, InsightComputation
from insights.selectors import insight_computation_latest, insight_list_latest
from insights.services import insights_compute
from tests.conftest import Api
from tests.insights.conftest import AT, History
from tests.insights.conftest import BASELINE_AT as _BASELINE_AT
from tests.insights.conftest import WINDOW_AT as _WINDOW_AT

BIG = {"model": "gpt-4o", "input_tokens": 40_000, "output_tokens": 1_000}


def all_four(history: History, at: dt.datetime = AT) -> None:
    """A week of history before `at` in which each of the four detectors fires once."""
    shift = at - AT
    BASELINE_AT, WINDOW_AT = _BASELINE_AT + shift, _WINDOW_AT + shift  # noqa: N806
    # section_spike: 1 → 3 calls a run (and simple gpt-4o calls, so model_inefficiency too).
    history.runs("summarize", 10, BASELINE_AT, [{**BIG, "output_tokens": 50}])
    history.runs("summarize", 10, WINDOW_AT, [{**BIG, "output_tokens": 50}] * 3)
    # token_bloat: 1,000 → 2,000 input tokens a call.
    history.runs("rag", 30, BASELINE_AT, [{"input_tokens": 1_000}])
    history.runs("rag", 30, WINDOW_AT, [{"input_tokens": 2_000}])
    # retry_loop: half the runs call the endpoint 6 times.
    history.runs("search", 10, WINDOW_AT, [{}])
    history.runs("search", 10, WINDOW_AT, [{}] * 6)
    history.ingest()


def latest(project) -> InsightComputation:
    computation = insight_computation_latest(project_id=project.id)
    assert computation is not None
    return computation


def keys(insights):
    return sorted((i.kind, i.section, i.model, i.endpoint) for i in insights)


EXPECTED = [
    ("model_inefficiency", "summarize", "gpt-4o", ""),
    ("retry_loop", "search", "", "chat.completions.create"),
    ("section_spike", "summarize", "", ""),
    ("token_bloat", "rag", "", ""),
]


@pytest.mark.django_db
def test_compute_stores_all_four_kinds(project, history: History):
    all_four(history)
    insights = insights_compute(project_id=project.id, at=AT)
    assert keys(insights) == EXPECTED
    computation = latest(project)
    assert (computation.window_start, computation.window_end) == (AT - dt.timedelta(hours=24), AT)
    assert computation.baseline_start == AT - dt.timedelta(days=8)
    stored = Insight.objects.get(kind="section_spike")
    assert (stored.window_start, stored.window_end, stored.generated_at) == (
        computation.window_start,
        computation.window_end,
        computation.generated_at,
    )


@pytest.mark.django_db
def test_a_moment_with_an_offset_is_the_same_window(project, history: History):
    all_four(history)
    paris = dt.timezone(dt.timedelta(hours=1))
    insights = insights_compute(project_id=project.id, at=AT.astimezone(paris))
    assert keys(insights) == EXPECTED
    assert latest(project).window_end == AT


@pytest.mark.django_db
def test_rerun_never_duplicates(project, history: History):
    all_four(history)
    insights_compute(project_id=project.id, at=AT)
    insights_compute(project_id=project.id, at=AT)
    assert keys(Insight.objects.all()) == EXPECTED
    assert InsightComputation.objects.count() == 1
    # Ten minutes later the sliding window moves: the new computation replaces the old one.
    later = AT + dt.timedelta(minutes=10)
    insights_compute(project_id=project.id, at=later)
    insights_compute(project_id=project.id, at=later)
    assert keys(Insight.objects.all()) == EXPECTED
    assert list(InsightComputation.objects.values_list("window_end", flat=True)) == [later]
    assert {i.window_end for i in insight_list_latest(project_id=project.id)} == {later}


@pytest.mark.django_db
def test_an_older_moment_does_not_replace_the_latest(project, history: History):
    all_four(history)
    insights_compute(project_id=project.id, at=AT)
    insights_compute(project_id=project.id, at=AT - dt.timedelta(days=5))  # a look at the past
    assert latest(project).window_end == AT
    assert keys(insight_list_latest(project_id=project.id)) == EXPECTED


@pytest.mark.django_db
def test_findings_that_stop_firing_disappear(project, history: History):
    all_four(history)
    insights_compute(project_id=project.id, at=AT)
    # Two days later nothing is in the window any more.
    insights_compute(project_id=project.id, at=AT + dt.timedelta(days=2))
    assert Insight.objects.count() == 0
    assert insight_list_latest(project_id=project.id) == []


@pytest.mark.django_db
def test_list_latest_orders_by_severity_then_saving(project, history: History):
    all_four(history)
    insights_compute(project_id=project.id, at=AT)
    ordered = insight_list_latest(project_id=project.id)
    ranks = {"high": 0, "medium": 1, "low": 2}
    pairs = [(ranks[i.severity], -(i.est_savings_usd or 0)) for i in ordered]
    assert pairs == sorted(pairs)
    assert [i.kind for i in insight_list_latest(project_id=project.id, limit=2)] == [i.kind for i in ordered[:2]]


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_runs_leave_one_insight_per_finding(project):
    history = History(project.id)
    all_four(history)
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def worker() -> None:
        try:
            barrier.wait()
            insights_compute(project_id=project.id, at=AT)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert keys(Insight.objects.all()) == EXPECTED
    assert InsightComputation.objects.count() == 1


# --- GET /insights/daily ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_daily_before_any_computation(api: Api):
    response = api.get("/insights/daily")
    assert response.status_code == 200
    assert response.json() == {"window_start": None, "window_end": None, "generated_at": None, "insights": []}


@pytest.mark.django_db
def test_daily_shape(api: Api, project, history: History):
    all_four(history)
    insights_compute(project_id=project.id, at=AT)
    body = api.get("/insights/daily").json()
    assert body["window_start"] == "2026-11-19T12:00:00Z"
    assert body["window_end"] == "2026-11-20T12:00:00Z"
    assert body["generated_at"].endswith("Z")
    assert sorted((i["kind"], i["section"], i["model"], i["endpoint"]) for i in body["insights"]) == [
        ("model_inefficiency", "summarize", "gpt-4o", None),
        ("retry_loop", "search", None, "chat.completions.create"),
        ("section_spike", "summarize", None, None),
        ("token_bloat", "rag", None, None),
    ]
    spike = next(i for i in body["insights"] if i["kind"] == "section_spike")
    assert set(spike) == {
        "id",
        "kind",
        "severity",
        "section",
        "model",
        "endpoint",
        "observed",
        "baseline",
        "ratio",
        "est_savings_usd",
        "message",
        "details",
    }
    assert spike["ratio"] == pytest.approx(3.0)
    assert spike["severity"] in {"high", "medium", "low"}
    assert spike["message"].startswith("Section `summarize` cost $")
    assert len(api.get("/insights/daily", limit=1).json()["insights"]) == 1
    assert api.get("/insights/daily", limit=0).status_code == 400
    assert api.get("/insights/daily", limit="x").status_code == 400


@pytest.mark.django_db
def test_daily_is_project_scoped(api: Api, other_api: Api, project, other_project, history: History):
    all_four(history)
    insights_compute(project_id=project.id, at=AT)
    insights_compute(project_id=other_project.id, at=AT)
    assert len(api.get("/insights/daily").json()["insights"]) == 4
    other = other_api.get("/insights/daily").json()
    assert other["insights"] == []
    assert other["window_end"] == "2026-11-20T12:00:00Z"


@pytest.mark.django_db
def test_daily_requires_a_key_or_session(project, owner, outsider, history: History):
    assert Api(None).get("/insights/daily").status_code == 401
    assert Api("lo_not-a-key").get("/insights/daily").status_code == 401
    all_four(history)
    insights_compute(project_id=project.id, at=AT)
    session = Api(None)
    session.client.force_login(owner)
    assert len(session.get("/insights/daily").json()["insights"]) == 4
    stranger = Api(None)
    stranger.client.force_login(outsider)
    assert stranger.get("/insights/daily").json()["insights"] == []
    assert stranger.get("/insights/daily", project="acme").status_code == 404


@pytest.mark.django_db
def test_daily_is_in_the_schema(api: Api):
    assert "/insights/daily" in api.get("/api/schema/", format="json").json()["paths"]


# --- the command and the tasks ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_command_computes_and_prints_a_summary(project, other_project, history: History):
    all_four(history)
    out = StringIO()
    call_command("compute_insights", "--project", "acme", "--at", "2026-11-20T12:00:00Z", stdout=out)
    text = out.getvalue()
    assert "acme: 4 insights (1 model_inefficiency, 1 retry_loop, 1 section_spike, 1 token_bloat)" in text
    assert "Computed 4 insights for the 24 h before 2026-11-20T12:00:00+00:00" in text
    assert "globex" not in text
    assert keys(Insight.objects.all()) == EXPECTED
    assert not InsightComputation.objects.filter(project=other_project).exists()
    # Every project by default; a rerun changes nothing.
    out = StringIO()
    call_command("compute_insights", "--at", "2026-11-20T12:00:00", stdout=out)
    assert "globex: 0 insights (none)" in out.getvalue()
    assert keys(Insight.objects.all()) == EXPECTED


@pytest.mark.django_db
def test_command_rejects_bad_input(project):
    with pytest.raises(CommandError, match="no project named 'nope'"):
        call_command("compute_insights", "--project", "nope")
    with pytest.raises(CommandError, match="--at"):
        call_command("compute_insights", "--at", "yesterday")


@pytest.mark.django_db
def test_tasks_run_eagerly(project, history: History, settings):
    from llmobserve_site.celery import app

    all_four(history)
    app.conf.task_always_eager = True
    try:
        from insights.tasks import compute_insights_all, compute_insights_for_project

        assert compute_insights_all.delay("2026-11-20T12:00:00Z").get() == 1
        assert keys(Insight.objects.all()) == EXPECTED
        assert compute_insights_for_project.delay(project.id, "2026-11-20T12:00:00+00:00").get() == 4
        assert compute_insights_for_project.delay(10_000_000, "2026-11-20T12:00:00+00:00").get() == 0
        assert keys(Insight.objects.all()) == EXPECTED
    finally:
        app.conf.task_always_eager = False


def test_beat_schedules_the_job_every_interval(settings):
    from llmobserve_site.celery import app

    app.finalize()
    entries = [e for e in app.conf.beat_schedule.values() if e["task"] == "insights.compute_insights_all"]
    assert len(entries) == 1
    assert entries[0]["schedule"] == float(settings.INSIGHTS_INTERVAL_SECONDS)
    assert app.tasks["insights.compute_insights_for_project"].acks_late is True
    assert app.tasks["insights.compute_insights_all"].acks_late is True
