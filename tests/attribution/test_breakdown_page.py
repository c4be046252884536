"""The Breakdown page: group-by, date range, filters, the CSV export equal to the page, access."""

from __future__ import annotations

import csv
import io
import re

import pytest

from tests.attribution.conftest import NONE_4O, U1_4O, U1_MINI, U2_MINI
from tests.conftest import Api

URL = "/dashboard/breakdown/"
RANGE = {"from": "2026-11-24", "to": "2026-11-25"}


def table_rows(html: str) -> dict[str, list[str]]:
    """data-key -> the row's cell texts."""
    rows = {}
    for key, body in re.findall(r'<tr[^>]*data-key="([^"]*)"[^>]*>(.*?)</tr>', html, re.S):
        cells = [re.sub(r"<[^>]+>", " ", c) for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", body, re.S)]
        rows[key] = [" ".join(c.split()) for c in cells]
    return rows


@pytest.fixture
def owner_client(client, owner, seeded: Api):  # type: ignore[no-untyped-def]
    client.force_login(owner)
    return client


def test_group_by_user_id(owner_client):
    response = owner_client.get(URL, {**RANGE, "group_by": "attribute:user_id"})
    assert response.status_code == 200
    html = response.content.decode()
    rows = table_rows(html)
    assert list(rows) == ["u-1", "u-2", "(none)", "(total)"]
    assert rows["u-1"][1] == "$0.0073" and rows["u-1"][3] == "3" and rows["u-1"][4] == "4,000 / 200"
    assert rows["u-2"][1] == "$0.0021" and rows["u-2"][3].startswith("1 ") and "1 failed" in rows["u-2"][3]
    assert rows["(none)"][1] == "$0.001" and rows["(total)"][3] == "5"
    assert rows["u-1"][2].endswith("70.2%")  # 0.0073 / 0.0104
    # the group-by picker lists the project's attribute keys, the current one selected
    assert '<option value="attribute:user_id" selected>' in html
    assert '<option value="attribute:customer"' in html and '<option value="attribute:stream"' not in html
    # the daily chart: one bar segment per key and day with cost
    assert html.count('<rect class="bar"') == 4  # 24th: u-1; 25th: u-1, u-2, other (the call without user_id)
    assert "2026-11-24 – 2026-11-25" in html


def test_group_by_model_and_section(owner_client):
    rows = table_rows(owner_client.get(URL, {**RANGE, "group_by": "model"}).content.decode())
    assert list(rows)[:2] == ["gpt-4o", "gpt-4o-mini"]
    assert rows["gpt-4o"][3] == "3" and rows["gpt-4o-mini"][1] == "$0.0024"
    rows = table_rows(owner_client.get(URL, {**RANGE, "group_by": "section"}).content.decode())
    assert rows["classify"][3] == "1" and rows[""][3] == "3 1 failed"  # u-2's failed call is outside sections


def test_date_range_presets_and_custom(owner_client, monkeypatch):
    import datetime as dt

    import attribution.views

    monkeypatch.setattr(attribution.views, "today_utc", lambda: dt.date(2026, 11, 25))
    # a 1-day custom range: only the 25th's calls
    rows = table_rows(
        owner_client.get(
            URL, {"from": "2026-11-25", "to": "2026-11-25", "group_by": "attribute:user_id"}
        ).content.decode()
    )
    assert rows["u-1"][3] == "1" and rows["(total)"][3] == "3"
    # preset 7 days up to "today" (the 25th) holds both days; its link is marked current
    html = owner_client.get(URL, {"days": "7", "group_by": "attribute:user_id"}).content.decode()
    assert table_rows(html)["(total)"][3] == "5"
    assert "2026-11-19 – 2026-11-25" in html
    assert re.search(r'href="\?group_by=attribute%3Auser_id&amp;days=7"[^>]*\s+aria-current="true"', html)
    # the default range is the last 7 days, its preset marked
    html = owner_client.get(URL).content.decode()
    assert "2026-11-19 – 2026-11-25" in html
    assert re.search(r'href="\?days=7"[^>]*\s+aria-current="true"', html)


def test_filters(owner_client):
    rows = table_rows(
        owner_client.get(URL, {**RANGE, "group_by": "model", "attribute": "customer:acme"}).content.decode()
    )
    assert set(rows) == {"gpt-4o", "gpt-4o-mini", "(total)"}
    assert rows["(total)"][1] == "$0.0073"
    rows = table_rows(
        owner_client.get(URL, {**RANGE, "group_by": "attribute:user_id", "service": "billing"}).content.decode()
    )
    assert list(rows) == ["u-2", "(total)"]
    rows = table_rows(
        owner_client.get(URL, {**RANGE, "group_by": "attribute:plan", "model": "gpt-4o"}).content.decode()
    )
    assert rows["pro"][1] == "$0.007" and rows["(none)"][1] == "$0.001"


def test_htmx_asks_for_the_table_only(owner_client):
    response = owner_client.get(
        URL,
        {**RANGE, "group_by": "attribute:user_id", "limit": "1"},
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="breakdown-table",
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<section class="card" id="breakdown-table">')
    assert "<html" not in html and "breakdown-filters" not in html
    rows = table_rows(html)
    assert list(rows) == ["u-1", "(other)", "(none)", "(total)"]
    assert rows["(other)"][0] == "Other 1 value"


def test_csv_export_equals_the_page(owner_client):
    params = {**RANGE, "group_by": "attribute:user_id", "limit": "1"}
    page = table_rows(owner_client.get(URL, params).content.decode())
    assert 'id="breakdown-csv"' in owner_client.get(URL, params).content.decode()
    response = owner_client.get(URL, {**params, "format": "csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(response.content.decode())))
    assert lines[0][:3] == ["kind", "key", "calls"]
    kinds = {line[1] if line[0] == "row" else f"({line[0]})": line for line in lines[1:]}
    assert list(kinds) == ["u-1", "(other)", "(none)", "(total)"] == list(page)
    for key, line in kinds.items():
        assert line[2] == page[key][3].split()[0]  # calls
        assert f"{int(line[6]):,} / {int(line[7]):,}" == page[key][4]  # tokens
    assert float(kinds["u-1"][8]) == pytest.approx(U1_4O + U1_MINI, abs=1e-12)
    assert float(kinds["(other)"][8]) == pytest.approx(U2_MINI, abs=1e-12)
    assert float(kinds["(none)"][8]) == pytest.approx(NONE_4O, abs=1e-12)
    assert float(kinds["(total)"][8]) == pytest.approx(U1_4O + U1_MINI + U2_MINI + NONE_4O, abs=1e-12)


def test_bad_parameters_show_a_message_with_400(owner_client):
    response = owner_client.get(URL, {"from": "2026-11-26", "to": "2026-11-24"})
    assert response.status_code == 400
    assert "from must be on or before to" in response.content.decode()
    response = owner_client.get(URL, {**RANGE, "group_by": "attribute:user_id", "section": "classify"})
    assert response.status_code == 400 and "cannot be combined" in response.content.decode()


def test_login_required_and_projects_kept_apart(client, seeded, member, outsider):
    response = client.get(URL)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    client.force_login(outsider)
    assert client.get(URL, {"project": "acme"}).status_code == 404
    assert client.get(URL, {"project": "acme", "format": "csv"}).status_code == 404
    # the outsider's own project shows nothing of acme's
    html = client.get(URL, {**RANGE, "group_by": "model"}).content.decode()
    assert "globex" in html and "gpt-4o" not in table_rows(html)
    client.force_login(member)
    rows = table_rows(client.get(URL, {**RANGE, "group_by": "model", "project": "acme"}).content.decode())
    assert rows["(total)"][3] == "5"


def test_nav_links_the_page(owner_client):
    html = owner_client.get("/").content.decode()
    assert f'href="{URL}"' in html
    assert re.search(r'href="/dashboard/breakdown/"\s+aria-current="page"', owner_client.get(URL).content.decode())
