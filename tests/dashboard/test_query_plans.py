"""SQLite's planner has no statistics in a fresh deployment and is easily led
onto a (project, started_at, …) index by an ORDER BY, reading every event or
section of the project instead of one run's.  Guard the dashboard's reads."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

WHOLE_PROJECT = re.compile(
    r"(SCAN|SEARCH) (events_event|events_runsection)\b(?! USING (COVERING )?INDEX \S+ \(project_id=\? AND)"
)


def plans(sql: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + sql)
        return [row[-1] for row in cursor.fetchall()]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/runs/",
        "/dashboard/runs/?section=retrieval",
        "/dashboard/runs/run-42/",
        "/",
        # Issue 15: searches, sorts, the call panel (the search's probes go through (project, run_id)).
        "/dashboard/runs/?q=model:o3-mini",
        "/dashboard/runs/?q=section:analyze",
        "/dashboard/runs/?q=tool",
        "/dashboard/runs/?sort=cost",
        "/dashboard/runs/run-42/?call=nope",
    ],
)
def test_pages_never_read_a_whole_project_of_events_or_sections(seeded, owner_client, path):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's planner only")
    with CaptureQueriesContext(connection) as captured:
        assert owner_client.get(path).status_code == 200
    checked = 0
    for query in captured.captured_queries:
        sql = query["sql"]
        if not sql.lstrip().upper().startswith(("SELECT", "WITH")) or not re.search(r"events_(event|runsection)", sql):
            continue
        checked += 1
        for line in plans(sql):
            assert not WHOLE_PROJECT.search(line), f"{line}\n  for {sql}"
    assert checked or path == "/"


@pytest.mark.django_db
def test_run_id_prefix_search_reads_an_index_range(seeded, owner_client, project):
    """`id:PREFIX` is an index range on both databases, not a walk over the project's runs."""
    from events.selectors import RunFilters, RunSearch, _run_base, _search_predicates

    f = RunFilters(search=RunSearch(kind="id", value="run-unp"))
    indexed, tested = _search_predicates(project.id, f)
    assert tested == []
    # The matching runs (what the page then orders; the planner picks the
    # pattern index over the time index when few runs match, by its statistics).
    qs = _run_base(project.id, f).filter(*indexed).order_by().values("id")
    sql, params = qs.query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
            plan = " ".join(row[-1] for row in cursor.fetchall())
            assert "run_id>? AND run_id<?" in plan.replace("=", "")
            assert params[-2:] == ("run-unp", "run-unq")
        else:
            cursor.execute("ANALYZE events_run")
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + sql, params)
            plan = " ".join(row[0] for row in cursor.fetchall())
            assert "run_project_run_id_pattern" in plan
    body = owner_client.get("/dashboard/runs/", {"q": "id:run-ol"}).content.decode()
    assert len(re.findall(r'data-run-id="run-old-', body)) == 36
