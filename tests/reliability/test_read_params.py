"""Issue 14: every bad parameter of the read API is a 400 with a JSON message,
and of the dashboard's filters a clear message; never a 500 (SQLite and
PostgreSQL).  Bad calendar dates, offsets past ±23:59, dates at the end of
the calendar, NUL bytes (PostgreSQL text cannot hold them) and cursors that
were never ours once ended in a 500."""

from __future__ import annotations

import base64

import pytest
from django.test import Client

from tests.conftest import Api, make_event

pytestmark = pytest.mark.django_db


def forged_cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


BAD_DATETIMES = [
    "2026-02-30",
    "2026-02-30T00:00:00Z",
    "2026-13-01T00:00:00Z",
    "2026-11-26T25:00:00Z",
    "2026-11-26T09:00:00+99:00",
    "2026-11-26T09:00:00+24:00",
    "9999-12-31",
    "9999-12-31T23:59:59-05:00",
    "0001-01-01T00:00:00+05:00",
    "2026-11-26\x00",
    "yesterday",
]

BAD_PARAMS = [
    *[("since", v) for v in BAD_DATETIMES],
    *[("until", v) for v in BAD_DATETIMES],
    ("section", "agent\x00x"),
    ("service", "svc\x00"),
    ("status", "ok\x00"),
    ("limit", "\x00"),
    ("limit", "1e3"),
    ("limit", "9" * 5000),
    ("min_cost", "nan"),
    ("min_cost", "inf"),
    ("min_cost", "1e999"),
    ("min_cost", "-1"),
    ("min_cost", "\x00"),
    ("cursor", "\x00"),
    ("cursor", forged_cursor("2026-11-26T09:00:00+00:00|" + "9" * 30)),
    ("cursor", forged_cursor("2026-11-26T09:00:00+00:00|-" + "9" * 30)),
    ("cursor", forged_cursor("9999-12-31T23:59:59-05:00|5")),
    ("cursor", forged_cursor("0001-01-01T00:00:00+05:00|5")),
    ("cursor", forged_cursor("2026-11-26T09:00:00+00:00|5\x00")),
    ("project", "acme\x00"),
]


@pytest.fixture
def seeded(api: Api) -> Api:
    events = [make_event(run_id=f"run-{i}", section="s", section_path="s") for i in range(3)]
    assert api.post_events(events).status_code == 200
    return api


@pytest.mark.parametrize("name, value", BAD_PARAMS, ids=[f"{n}={v[:40]!r}" for n, v in BAD_PARAMS])
def test_runs_latest_bad_parameter_is_400_with_a_message(seeded: Api, name: str, value: str):
    response = seeded.get("/runs/latest", **{name: value})
    assert response.status_code == 400, (response.status_code, response.content[:300])
    body = response.json()
    assert body, body
    assert all(isinstance(v, (str, list)) for v in body.values())


@pytest.mark.parametrize("name, value", BAD_PARAMS, ids=[f"{n}={v[:40]!r}" for n, v in BAD_PARAMS])
def test_runs_latest_bad_parameter_for_a_session_user_is_400(seeded: Api, owner, name: str, value: str):
    client = Client()
    client.force_login(owner)
    response = client.get("/runs/latest", {name: value})
    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert response.json()


def test_the_last_valid_dates_are_accepted(seeded: Api):
    for since, until in [
        ("0001-01-01T00:00:00Z", "9998-12-31T23:59:59Z"),
        ("0001-01-01", "9998-12-31"),
        ("2026-11-26T10:00:00+14:00", "2026-11-27T00:00:00-12:00"),
    ]:
        response = seeded.get("/runs/latest", since=since, until=until)
        assert response.status_code == 200, (since, until, response.content)
        assert len(response.json()["runs"]) == 3


@pytest.mark.parametrize("run_id", ["run\x00x", "\x00"])
def test_run_detail_with_a_nul_is_not_a_500(seeded: Api, run_id: str):
    response = seeded.get(f"/runs/{run_id}")
    assert response.status_code in (400, 404), response.content[:300]
    assert response.json()


# --- Dashboard --------------------------------------------------------------------

DASHBOARD_BAD = [
    ("since", "2026-02-30"),
    ("until", "2026-02-30"),
    ("since", "9999-12-31"),
    ("until", "9999-12-31"),
    ("since", "0000-12-31"),
    ("since", "2026-11-26\x00"),
    ("service", "svc\x00"),
    ("section", "s\x00"),
    ("status", "\x00"),
    ("min_cost", "nan"),
    ("min_cost", "inf"),
    ("min_cost", "1e999"),
    ("cursor", "\x00"),
    ("cursor", forged_cursor("2026-11-26T09:00:00+00:00|" + "9" * 30)),
    ("cursor", forged_cursor("9999-12-31T23:59:59-05:00|5")),
]


@pytest.fixture
def dashboard(seeded: Api, owner) -> Client:
    client = Client()
    client.force_login(owner)
    return client


@pytest.mark.parametrize("name, value", DASHBOARD_BAD, ids=[f"{n}={v[:40]!r}" for n, v in DASHBOARD_BAD])
def test_dashboard_run_filters_say_what_is_wrong(dashboard: Client, name: str, value: str):
    response = dashboard.get("/dashboard/runs/", {name: value})
    assert response.status_code in (200, 400), (response.status_code, response.content[:300])
    text = response.content.decode()
    if response.status_code == 400:  # a NUL: refused before any view runs
        assert "\x00" in value and "NUL" in text
    elif name == "cursor":
        assert "page link has expired" in text
    else:
        assert 'class="alert error"' in text, text[:2000]


@pytest.mark.parametrize(
    "path",
    [
        "/?days=%00",
        "/?by=%00&days=7",
        "/?project=acme%00",
        "/dashboard/runs/run%00x/",
        "/dashboard/insights/?project=%00",
        "/dashboard/pricing/?provider=%00",
    ],
)
def test_dashboard_pages_with_a_nul_are_not_a_500(dashboard: Client, path: str):
    response = dashboard.get(path)
    assert response.status_code in (200, 400, 404), (response.status_code, response.content[:300])
