"""GET /reconciliation, the page, its CSV, the links form, the overview card, Pinecone's CSV import."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from reconciliation.fake_admin import FAKE_KEY, Traffic
from reconciliation.models import OpenAIProjectLink, PineconeUsage
from tests.conftest import make_event
from tests.reconciliation.conftest import D1, run_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def reconciled(api, project, fake_admin):
    """On D1: gpt-4o observed 10 calls, billed 10 (agrees, $0.35); gpt-4o-mini observed 9 of 10 billed calls."""
    events = [
        make_event(model="gpt-4o", input_tokens=10_000, output_tokens=1_000, started_at=f"{D1}T09:00:{i:02d}Z")
        for i in range(10)
    ]
    events += [
        make_event(model="gpt-4o-mini", input_tokens=100_000, output_tokens=10_000, started_at=f"{D1}T10:00:{i:02d}Z")
        for i in range(9)
    ]
    assert api.post_events(events).status_code in (200, 202)
    bill = [
        Traffic(D1, "gpt-4o-2024-08-06", 100_000, 10_000, 10),
        Traffic(D1, "gpt-4o-mini-2024-07-18", 1_000_000, 100_000, 10),
    ]
    run_import(fake_admin(bill), since=D1)
    return project


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_api_shape_and_figures(api, reconciled):
    response = api.get("/reconciliation", **{"from": "2026-11-25", "to": "2026-11-25"})
    assert response.status_code == 200
    body = response.json()
    assert [r["model"] for r in body["rows"]] == ["gpt-4o", "gpt-4o-mini"]
    four_o, mini = body["rows"]
    assert four_o == {
        "date": "2026-11-25",
        "model": "gpt-4o",
        "billed_usd": 0.35,
        "observed_usd": 0.35,
        "billed_input_tokens": 100_000,
        "billed_cached_input_tokens": 0,
        "observed_input_tokens": 100_000,
        "billed_output_tokens": 10_000,
        "observed_output_tokens": 10_000,
        "billed_requests": 10,
        "observed_requests": 10,
        "coverage": 1.0,
        "price_agreement": 1.0,
        "explanation": "",
    }
    assert mini["coverage"] == 0.9 and mini["price_agreement"] == 1.0
    assert mini["billed_usd"] == 0.21 and mini["observed_usd"] == 0.189
    assert "10 % of gpt-4o-mini tokens were never observed" in mini["explanation"]
    totals = body["totals"]
    # 0.35 + 0.21 billed; 0.35 + 0.189 observed; tokens 110k + 990k observed of 110k + 1.1M billed.
    assert totals["billed_usd"] == 0.56 and totals["observed_usd"] == 0.539
    assert totals["coverage"] == round(1_100_000 / 1_210_000, 4)
    assert totals["billed_requests"] == 20 and totals["observed_requests"] == 19
    # Each model's observed USD ÷ the billed USD of the tokens seen: (0.35 + 0.189) ÷ (0.35 + 0.21 × 0.9).
    assert totals["price_agreement"] == 1.0


def test_api_sees_only_its_own_project(other_api, reconciled):
    body = other_api.get("/reconciliation", **{"from": "2026-11-25", "to": "2026-11-25"}).json()
    # globex observed nothing; unlinked, it sees the organization's bill, never acme's observations.
    assert all(r["observed_usd"] == 0 for r in body["rows"])
    assert {r["model"] for r in body["rows"]} == {"gpt-4o", "gpt-4o-mini"}


def test_api_needs_a_key(db):
    assert Client().get("/reconciliation").status_code in (401, 403)
    bad = Client().get("/reconciliation", headers={"Authorization": "Bearer lo_nope"})
    assert bad.status_code == 401


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2026-13-01"},
        {"to": "yesterday"},
        {"from": "2026-11-26", "to": "2026-11-25"},
        {"from": "2020-01-01", "to": "2026-11-25"},
        {"from": "2026-11-25\x00"},
        {"to": "0001-01-05"},
        {"from": "9999-12-31", "to": "0001-01-01"},
    ],
)
def test_api_bad_dates_are_400(api, params):
    response = api.get("/reconciliation", **params)
    assert response.status_code == 400
    assert "detail" in response.json() or response.json()


def test_page_table_chart_and_csv(owner, reconciled):
    client = login(owner)
    page = client.get("/dashboard/reconciliation/", {"from": "2026-11-25", "to": "2026-11-25"})
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="reconciliation-chart"' in html and 'class="bar billed"' in html and 'class="bar observed"' in html
    assert "10 % of gpt-4o-mini tokens were never observed — uninstrumented calls?" in html
    assert "90.0 %" in html  # gpt-4o-mini's coverage
    assert FAKE_KEY not in html
    assert 'style="' not in html  # the Content-Security-Policy allows no inline style
    export = client.get("/dashboard/reconciliation/export.csv", {"from": "2026-11-25", "to": "2026-11-25"})
    assert export.status_code == 200 and export["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.content.decode())))
    assert [(r["model"], r["billed_usd"], r["observed_usd"], r["coverage"]) for r in rows] == [
        ("gpt-4o", "0.35", "0.35", "1.0"),
        ("gpt-4o-mini", "0.21", "0.189", "0.9"),
    ]
    assert client.get("/dashboard/reconciliation/export.csv", {"from": "nope"}).status_code == 400
    assert client.get("/dashboard/reconciliation/", {"from": "nope"}).status_code == 400


def test_page_needs_login_and_membership(outsider, member, reconciled):
    assert Client().get("/dashboard/reconciliation/").status_code == 302
    assert login(outsider).get("/dashboard/reconciliation/", {"project": "acme"}).status_code == 404
    assert login(member).get("/dashboard/reconciliation/").status_code == 200


def test_only_owners_link_openai_projects(owner, member, project):
    url = "/dashboard/reconciliation/links/?project=acme"
    denied = login(member).post(url, {"openai_project_ids": "proj_abc"})
    assert denied.status_code == 403 and not OpenAIProjectLink.objects.exists()
    client = login(owner)
    saved = client.post(url, {"openai_project_ids": "proj_abc, proj_def proj_abc"})
    assert saved.status_code == 302
    assert sorted(OpenAIProjectLink.objects.values_list("openai_project_id", flat=True)) == ["proj_abc", "proj_def"]
    bad = client.post(url, {"openai_project_ids": "proj_ok, not-a-project"})
    assert bad.status_code == 400 and "not an OpenAI project id" in bad.content.decode()
    # Nothing changed by the refused form.
    assert sorted(OpenAIProjectLink.objects.values_list("openai_project_id", flat=True)) == ["proj_abc", "proj_def"]
    assert client.post(url, {"openai_project_ids": ""}).status_code == 302
    assert not OpenAIProjectLink.objects.exists()


def test_overview_warning_card_for_yesterday(owner, api, project, fake_admin, monkeypatch):
    from django.utils import timezone

    yesterday = timezone.now().astimezone(dt.UTC).date() - dt.timedelta(days=1)
    api.post_events(
        [make_event(model="gpt-4o", input_tokens=10_000, output_tokens=1_000, started_at=f"{yesterday}T09:00:00Z")]
    )
    client = login(owner)
    assert 'id="reconciliation-warning"' not in client.get("/").content.decode()  # no bill imported: no card
    run_import(
        fake_admin([Traffic(yesterday, "gpt-4o-2024-08-06", 20_000, 2_000, 2)]),
        since=yesterday,
        today=yesterday + dt.timedelta(days=1),
    )
    html = client.get("/").content.decode()
    assert 'id="reconciliation-warning"' in html
    assert "50 % of gpt-4o tokens were never observed — uninstrumented calls?" in html


PINECONE_CSV = """Date,Project,Index,SKU,Quantity,Unit,Cost
2026-11-25,prod,kb,Serverless Read Units (us-east-1),120000,read units,1.92
2026-11-25,prod,kb,Serverless Storage (us-east-1),3.5,GB-months,0.01
2026-11-26,prod,kb,Serverless Read Units (us-east-1),60000,read units,0.96
"""


def test_pinecone_csv_import_replaces_its_days(tmp_path: Path, owner, project):
    path = tmp_path / "usage.csv"
    path.write_text(PINECONE_CSV)
    call_command("import_pinecone_usage", str(path))
    call_command("import_pinecone_usage", str(path))  # again: replaced, not doubled
    assert PineconeUsage.objects.count() == 3
    assert sum(r.cost_usd for r in PineconeUsage.objects.filter(day=D1)) == Decimal("1.93")
    html = login(owner).get("/dashboard/reconciliation/", {"from": "2026-11-25", "to": "2026-11-26"}).content.decode()
    assert 'id="pinecone"' in html and "$1.93" in html and "$0.96" in html
    path.write_text("Date,Project,Cost\n2026-11-25,prod,1.00\n2026-11-2x,prod,1.00\n")
    with pytest.raises(CommandError, match="line 3"):
        call_command("import_pinecone_usage", str(path))
    assert PineconeUsage.objects.count() == 3  # the refused file changed nothing
    path.write_text("When,Amount due\n")
    with pytest.raises(CommandError, match="missing columns"):
        call_command("import_pinecone_usage", str(path))


def test_the_page_reads_rollups_and_the_bill_never_events(owner, reconciled):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = login(owner)
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/dashboard/reconciliation/", {"from": "2026-01-01", "to": "2026-11-30"}).status_code == 200
    sqls = [q["sql"] for q in captured.captured_queries]
    assert not [s for s in sqls if "events_event" in s and "dailyrollup" not in s.lower()]
    assert len(sqls) <= 16
    with CaptureQueriesContext(connection) as overview:
        assert client.get("/").status_code == 200
    # The overview's card: one query (is yesterday's bill imported?) when it is not.
    assert len([q for q in overview.captured_queries if "reconciliation_" in q["sql"]]) == 1
