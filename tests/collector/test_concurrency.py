"""Idempotency under concurrency: it is the database's unique key, not luck.

Runs on SQLite in `make test` and on the real PostgreSQL in CI's second pass
(DATABASE_URL=postgres://…), where the two transactions really overlap.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from events.models import DailyRollup, Event, Run, RunSection
from tests.conftest import Api, make_event

pytestmark = pytest.mark.django_db(transaction=True)


def _concurrently(n: int, fn):  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = fn(i)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return results


def _batch(n: int) -> list[dict]:
    events = []
    for i in range(n):
        run = f"run-{i % 7}"
        events.append(
            make_event(
                event_id=f"c-{i}",
                run_id=run,
                section=f"sec-{i % 3}",
                section_path=f"agent:a/sec-{i % 3}",
                input_tokens=100 + i,
                output_tokens=10,
                cached_input_tokens=0,
                started_at=f"2026-11-26T09:{i % 60:02d}:00Z",
            )
        )
    return events


@pytest.mark.parametrize("senders", [2, 4])
def test_concurrent_resends_store_and_cost_each_event_once(api_key, project, senders):
    batch = _batch(300)
    responses = _concurrently(senders, lambda i: Api(api_key).post_events({"events": batch}).json())
    assert sum(r["accepted"] for r in responses) == 300, responses
    assert sum(r["duplicates"] for r in responses) == 300 * (senders - 1)
    assert Event.objects.filter(project=project).count() == 300
    total_input = sum(e["input_tokens"] for e in batch)
    runs = Run.objects.filter(project=project)
    assert runs.count() == 7
    assert sum(r.calls for r in runs) == 300
    assert sum(r.input_tokens for r in runs) == total_input
    expected_cost = sum(e["input_tokens"] * 2.5 / 1e6 + 10 * 10 / 1e6 for e in batch)
    assert sum(r.cost_usd for r in runs) == pytest.approx(expected_cost, abs=1e-9)
    assert sum(DailyRollup.objects.filter(project=project).values_list("calls", flat=True)) == 300
    assert sum(RunSection.objects.filter(project=project, is_root=False).values_list("calls", flat=True)) == 300


def test_overlapping_batches_with_shared_runs_add_up(api_key, project):
    batch = _batch(400)
    halves = [batch[:250], batch[150:]]  # 100 events in both
    responses = _concurrently(2, lambda i: Api(api_key).post_events(halves[i]).json())
    assert sum(r["accepted"] for r in responses) == 400
    assert sum(r["duplicates"] for r in responses) == 100
    assert sum(Run.objects.filter(project=project).values_list("calls", flat=True)) == 400
    assert Event.objects.count() == 400


def test_reports_which_database_it_ran_on():
    # A visible record in the test log of which engine the pass used.
    assert connection.vendor in ("sqlite", "postgresql")
