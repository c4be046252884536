"""A database that cannot be reached: POST /v1/traces answers the site's 503
with Retry-After (which OTLP exporters retry), never a 500, and the retried
export goes in whole.  The connection really points at a closed port
(PostgreSQL) or a file that cannot be opened (SQLite); nothing is mocked."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection

from events.models import Run
from tests.otlp.conftest import TRACE, Otlp, chat_attrs, export_request, make_span

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def database_down() -> Iterator[None]:
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = "/nonexistent-llmobserve-dir/down.sqlite3"
    else:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        connection.settings_dict.update(HOST="127.0.0.1", PORT=str(port))
        connection.settings_dict["OPTIONS"] = {**connection.settings_dict.get("OPTIONS", {}), "connect_timeout": 2}
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


@pytest.mark.parametrize("warm", [False, True], ids=["cold key cache", "warm key cache"])
def test_database_down_is_503_with_retry_after_and_the_retry_goes_in(otlp: Otlp, project, warm: bool):
    request = export_request([make_span(1, attrs=chat_attrs())])
    if warm:  # the key is cached: the failure comes at the insert
        assert otlp.send(export_request([])).status_code == 200
    with database_down():
        response = otlp.send(request)
    assert response.status_code == 503, response.content[:300]
    assert int(response["Retry-After"]) > 0
    assert otlp.send(request).status_code == 200
    assert Run.objects.get(project=project, run_id=TRACE).calls == 1
