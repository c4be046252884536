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
    ["/dashboard/runs/", "/dashboard/runs/?section=retrieval", "/dashboard/runs/run-42/", "/"],
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
