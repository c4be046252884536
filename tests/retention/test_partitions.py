"""PostgreSQL's partitioned event table (issue 17): partitions made ahead and on
demand, dropped by the retention job, rows moved out of DEFAULT, two workers
creating one month at once, the ORM on the parent, and migration 0005
converting an unpartitioned table with rows in it.

Skipped on SQLite (which has no partitions: test_retention.py covers its
batched deletes); `make test-postgres` and CI's PostgreSQL pass run them.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection, connections
from django.db.migrations.executor import MigrationExecutor

from events import partitions
from events.models import DailyRollup, Event, Run
from events.partitions import DEFAULT, partition_for, partition_list
from events.retention import events_expire
from events.services import events_reprice
from tests.conftest import Api, make_event
from tests.retention.test_retention import CALL_USD, NOW, ago, run_events, stamp


@pytest.fixture(autouse=True)
def _postgres_only(db):
    if connection.vendor != "postgresql":
        pytest.skip("partitions are PostgreSQL's (make test-postgres)")


def where(event_id: str) -> str:
    """The partition an event's row is stored in."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM events_event WHERE event_id = %s", [event_id])
        return cursor.fetchone()[0]


def names() -> set[str]:
    return {p.name for p in partition_list()}


def test_the_table_is_partitioned_by_month_with_a_default():
    assert partitions.events_partitioned()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_partkeydef('events_event'::regclass), "
            "(SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'events_event'::regclass "
            "AND contype = 'p')"
        )
        key, pk = cursor.fetchone()
    assert key == "RANGE (started_at)"
    assert pk == "PRIMARY KEY (id, started_at)"
    assert partition_for(NOW).name in names()  # made by the migration: this month and the next two
    assert partitions.partition_bytes(DEFAULT) >= 0


def test_the_job_creates_partitions_ahead_and_is_idempotent():
    later = dt.datetime(2031, 5, 17, tzinfo=dt.UTC)
    made = partitions.partitions_ahead(now=later)
    assert made == ["events_event_p203105", "events_event_p203106", "events_event_p203107"]
    assert partitions.partitions_ahead(now=later) == []
    assert {"events_event_p203105", "events_event_p203106", "events_event_p203107"} <= names()


def test_a_late_event_gets_its_months_partition_on_demand(settings, api: Api):
    settings.EVENT_RETENTION_DAYS = 0
    late = NOW - dt.timedelta(days=200)
    part = partition_for(late)
    assert part.name not in names()
    response = api.post_events({"events": run_events("late", stamp(late))})
    assert response.json()["accepted"] == 4
    assert part.name in names()
    assert where("late-c0") == part.name
    assert Run.objects.get(run_id="late").cost_usd == pytest.approx(2 * CALL_USD)
    assert DailyRollup.objects.get(day=late.date(), section="tool:search").calls == 2


def test_a_far_off_timestamp_goes_to_default_and_moves_when_its_month_is_made(settings, api: Api):
    settings.EVENT_RETENTION_DAYS = 0
    far = dt.datetime(2040, 3, 9, 12, tzinfo=dt.UTC)  # past the on-demand window: no partition is made
    assert api.post_events({"events": [make_event(event_id="far", started_at=stamp(far))]}).json()["accepted"] == 1
    assert where("far") == DEFAULT
    assert "events_event_p204003" not in names()
    assert partitions.partition_create(partition=partition_for(far)) is True
    assert where("far") == "events_event_p204003"  # moved, not copied
    assert Event.objects.filter(event_id="far").count() == 1
    # Its resend is still a duplicate: the key holds in the new partition.
    again = api.post_events({"events": [make_event(event_id="far", started_at=stamp(far))]})
    assert again.json()["duplicates"] == 1


def test_expiry_drops_whole_months_and_keeps_one_someone_needs(settings, api: Api, other_api: Api, other_project):
    settings.EVENT_RETENTION_DAYS = 0
    old = NOW - dt.timedelta(days=200)
    older = NOW - dt.timedelta(days=300)
    api.post_events({"events": run_events("mine-200", stamp(old)) + run_events("mine-300", stamp(older))})
    other_api.post_events({"events": run_events("theirs-200", stamp(old))})
    settings.EVENT_RETENTION_DAYS = 90
    other_project.event_retention_days = 365
    other_project.save()
    runs_before = sorted(Run.objects.values_list("run_id", "calls", "cost_usd"))
    report = events_expire(now=NOW)
    # 300 days ago: only my rows, past my 90 days: the month is dropped.
    assert partition_for(older).name in report.partitions_dropped
    assert partition_for(older).name not in names()
    # 200 days ago: the other project keeps 365 days, so the month stays; my rows in it are deleted.
    assert partition_for(old).name in names()
    assert report.rows_deleted == 4
    assert set(Event.objects.values_list("run_id", flat=True)) == {"theirs-200"}
    assert sorted(Run.objects.values_list("run_id", "calls", "cost_usd")) == runs_before
    assert events_expire(now=NOW).partitions_dropped == []


def test_expiry_deletes_old_rows_from_default(settings, api: Api):
    settings.EVENT_RETENTION_DAYS = 0
    ancient = dt.datetime(2001, 1, 1, tzinfo=dt.UTC)  # before the on-demand window: DEFAULT
    api.post_events({"events": [make_event(event_id="ancient", started_at=stamp(ancient))]})
    assert where("ancient") == DEFAULT
    settings.EVENT_RETENTION_DAYS = 90
    assert events_expire(now=NOW).rows_deleted == 1
    assert not Event.objects.filter(event_id="ancient").exists()


def test_the_orm_works_on_the_parent(settings, api: Api, project):
    settings.EVENT_RETENTION_DAYS = 0
    api.post_events({"events": run_events("r", ago(3)) + run_events("old", ago(70))})
    # Reads, updates by id (reprice's bulk_update) and deletes go through the parent.
    assert Event.objects.filter(run_id="r").count() == 4
    event = Event.objects.get(event_id="r-c0")
    assert Event.objects.get(pk=event.pk).event_id == "r-c0"
    report = events_reprice(since=NOW - dt.timedelta(days=100), project_id=project.id)
    assert report.old_total_usd == pytest.approx(4 * CALL_USD)
    assert report.new_total_usd == pytest.approx(4 * CALL_USD)
    event.cost_usd = 0.5
    Event.objects.bulk_update([event], ["cost_usd"])  # UPDATE … WHERE id IN (…), as reprice does
    assert Event.objects.get(event_id="r-c0").cost_usd == 0.5
    tree = api.get("/runs/old").json()
    assert tree["calls_expired"] is False
    assert tree["tree"][0]["calls"] == 2
    Event.objects.filter(run_id="old").delete()
    assert Event.objects.count() == 4


@pytest.mark.django_db(transaction=True)
def test_two_workers_creating_one_month_at_once():
    part = partition_for(dt.datetime(2035, 8, 1, tzinfo=dt.UTC))
    barrier = threading.Barrier(2)
    results: list[object] = []

    def create() -> None:
        try:
            barrier.wait()
            results.append(partitions.partition_create(partition=part))
        except Exception as exc:  # noqa: BLE001 - the test reports what a worker met
            results.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=create) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert sorted(results, key=str) == [False, True]
        assert part.name in names()
    finally:
        partitions.partition_drop(partition=part)


@pytest.mark.django_db(transaction=True)
def test_migration_0005_converts_a_table_with_rows_in_it():
    """Back to 0004 (one plain table), rows in three months and a far-off one, forward again:
    every row kept, counts and sums equal, the id sequence going on after the highest id."""
    executor = MigrationExecutor(connection)
    before = [("events", "0004_attribute_rollup")]
    leaves = executor.loader.graph.leaf_nodes()
    executor.migrate(before)
    try:
        assert not partitions.events_partitioned()
        from projects.models import Project

        project = Project.objects.create(name="legacy")
        columns = (
            "project_id, event_id, run_id, span_id, span_type, name, input_tokens, output_tokens, cost_usd, "
            "started_at, ended_at, received_at, status, priced, read_units, write_units, cached_input_tokens, "
            "reasoning_tokens, latency_ms, attributes, cost_status, cost_details, price_source, usage_details, "
            "price_context, usage_known"
        )
        rows = []
        moments = [NOW - dt.timedelta(days=d) for d in (1, 40, 75)] + [dt.datetime(1999, 12, 31, tzinfo=dt.UTC)]
        for i in range(400):
            when = moments[i % 4] + dt.timedelta(minutes=i)
            rows.append(
                (project.id, f"e{i}", f"run{i % 7}", f"s{i}", "llm", "chat", 100 + i, 10, 0.001 * i)
                + (when, when, NOW, "ok", True, 0.0, 0.0, 0, 0, 5.0, "{}", "exact", "{}", "", "{}", "{}", True)
            )
        with connection.cursor() as cursor:
            cursor.executemany(f"INSERT INTO events_event ({columns}) VALUES ({', '.join(['%s'] * 26)})", rows)
            cursor.execute("SELECT COUNT(*), SUM(input_tokens), SUM(cost_usd), MAX(id) FROM events_event")
            count, tokens, cost, top = cursor.fetchone()
        assert count == 400
        executor.loader.build_graph()
        executor.migrate(leaves)
        assert partitions.events_partitioned()
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*), SUM(input_tokens), SUM(cost_usd), MAX(id) FROM events_event")
            assert cursor.fetchone() == (count, tokens, pytest.approx(cost), top)
            cursor.execute("SELECT COUNT(*) FROM events_event_pdefault")
            assert cursor.fetchone()[0] == 100  # 1999: outside the window, kept in DEFAULT
        for moment in moments[:3]:
            assert partition_for(moment).name in names()
        fresh = Event.objects.create(
            project=project, event_id="new", run_id="r", span_id="s", span_type="llm",
            started_at=NOW, ended_at=NOW, received_at=NOW,
        )  # fmt: skip
        assert fresh.id > top
        # The key now holds started_at; a duplicate of (project, event_id, started_at) is refused.
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO events_event (project_id, event_id, run_id, span_id, span_type, name, input_tokens, "
                "output_tokens, cached_input_tokens, reasoning_tokens, read_units, write_units, cost_usd, priced, "
                "latency_ms, started_at, ended_at, status, received_at, cost_status, cost_details, price_source, "
                "usage_known) SELECT project_id, event_id, run_id, span_id, span_type, name, input_tokens, "
                "output_tokens, cached_input_tokens, reasoning_tokens, read_units, write_units, cost_usd, priced, "
                "latency_ms, started_at, ended_at, status, received_at, cost_status, cost_details, price_source, "
                "usage_known FROM events_event WHERE event_id = 'e5' ON CONFLICT (project_id, event_id, started_at) "
                "DO NOTHING"
            )
            assert cursor.rowcount == 0
    finally:
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
        partitions.partitions_forget()
