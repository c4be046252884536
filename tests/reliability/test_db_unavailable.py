"""Issue 14: with the database unavailable every API path answers 503 JSON
`{"error": ...}` with Retry-After, and every dashboard path a plain 503 page;
never a 500 (a cold worker with the database down answered with Django's 500
HTML).

The database really is unreachable here: the connection's settings point at
a closed port (PostgreSQL) or a file that cannot be opened (SQLite) for the
requests inside `database_down()`, or the server ends the session under a
live connection (PostgreSQL); no code of ours is mocked.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from django.db import close_old_connections, connection
from django.test import Client

from tests.conftest import Api, make_event

pytestmark = pytest.mark.django_db(transaction=True)

API_PATHS = ["/runs/latest", "/runs/run-1", "/insights/daily", "/pricing", "/pricing/resolve?provider=openai&model=x"]
DASHBOARD_PATHS = ["/", "/dashboard/runs/", "/dashboard/runs/run-1/", "/dashboard/insights/", "/dashboard/pricing/"]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def database_down() -> Iterator[None]:
    """The default connection closed and pointed at a database that cannot
    be reached, as a worker finds it when the database goes away; restored after."""
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = "/nonexistent-llmobserve-dir/down.sqlite3"
    else:
        connection.settings_dict.update(HOST="127.0.0.1", PORT=str(closed_port()))
        connection.settings_dict.setdefault("OPTIONS", {})
        connection.settings_dict["OPTIONS"] = {**connection.settings_dict["OPTIONS"], "connect_timeout": 2}
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


def assert_api_503(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 503, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"]
    assert int(response["Retry-After"]) > 0


def assert_page_503(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 503, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("text/html")
    assert int(response["Retry-After"]) > 0
    assert b"unavailable" in response.content.lower()


def test_cold_worker_ingest_answers_503_json(api: Api):
    with database_down():
        response = api.post_events([make_event()])
    assert_api_503(response)
    # and once the database is back, the same batch goes in
    assert api.post_events([make_event(event_id="after")]).status_code == 200


def test_warm_worker_ingest_answers_503_json_with_retry_after(api: Api):
    """The key is cached (no query before the insert): the insert is what fails."""
    assert api.post_events([make_event(event_id="first")]).status_code == 200
    with database_down():
        response = api.post_events([make_event(event_id="second")])
    assert_api_503(response)


@pytest.mark.parametrize("path", API_PATHS)
def test_cold_worker_read_api_answers_503_json(api: Api, path: str):
    with database_down():
        response = api.client.get(path, headers=api._headers())
    assert_api_503(response)


@pytest.mark.parametrize("path", API_PATHS[:2])
def test_cold_worker_read_api_for_a_session_answers_503_json(owner, path: str):
    client = Client()
    client.force_login(owner)
    with database_down():
        response = client.get(path)
    assert_api_503(response)


def test_health_answers_503_json_with_retry_after(client):
    with database_down():
        response = client.get("/health")
    assert_api_503(response)
    assert response.json()["db"] == "unavailable"


@pytest.mark.parametrize("path", DASHBOARD_PATHS)
def test_cold_worker_dashboard_answers_a_plain_503_page(owner, path: str):
    client = Client()
    client.force_login(owner)
    with database_down():
        response = client.get(path)
    assert_page_503(response)


def test_login_page_post_answers_a_plain_503_page(owner):
    client = Client()
    with database_down():
        response = client.post("/accounts/login/", {"username": "olivia", "password": "pw-olivia-123"})
    assert_page_503(response)


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_server_ending_the_session_under_a_live_connection_is_503_then_recovers(api: Api):
    """PostgreSQL restarted (or the session killed) between two requests of a
    worker that keeps its connection: that request is a 503, the next works."""
    assert api.post_events([make_event(event_id="before")]).status_code == 200
    assert api.get("/runs/latest").status_code == 200
    pid = connection.connection.info.backend_pid
    params = connection.get_connection_params()
    with psycopg.connect(
        **{k: v for k, v in params.items() if k in ("host", "port", "user", "password", "dbname")}
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    assert_api_503(api.get("/runs/latest"))
    # What a real server does at each request's start (the test client skips it):
    # the connection that failed is found unusable and replaced.
    close_old_connections()
    assert api.get("/runs/latest").status_code == 200
