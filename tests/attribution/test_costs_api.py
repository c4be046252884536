"""GET /costs against sums worked out by hand from events sent through POST /events."""

from __future__ import annotations

import csv
import io

import pytest

from tests.attribution.conftest import GPT_4O, NONE_4O, U1_4O, U1_MINI, U2_MINI, call, usd
from tests.conftest import Api

RANGE = {"from": "2026-11-24", "to": "2026-11-25"}
EXACT = 1e-12


def costs(api: Api, **params: str):  # type: ignore[no-untyped-def]
    return api.get("/costs", **{**RANGE, **params})


def by_key(body: dict) -> dict[str, dict]:
    return {row["key"]: row for row in body["rows"]}


def test_group_by_user_id_hand_sums(seeded: Api):
    response = costs(seeded, group_by="attribute:user_id")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["group_by"] == "attribute:user_id"
    assert (body["from"], body["to"]) == ("2026-11-24", "2026-11-25")
    assert [row["key"] for row in body["rows"]] == ["u-1", "u-2"]
    u1, u2 = body["rows"]
    assert (u1["calls"], u1["input_tokens"], u1["output_tokens"], u1["errors"]) == (3, 4000, 200, 0)
    assert u1["cost_usd"] == pytest.approx(U1_4O + U1_MINI, abs=EXACT)  # 0.0073
    assert (u2["calls"], u2["input_tokens"], u2["output_tokens"], u2["errors"]) == (1, 10_000, 1000, 1)
    assert u2["cost_usd"] == pytest.approx(U2_MINI, abs=EXACT)  # 0.0021
    total = U1_4O + U1_MINI + U2_MINI + NONE_4O  # 0.0104
    assert body["none"]["calls"] == 1 and body["none"]["input_tokens"] == 400
    assert body["none"]["cost_usd"] == pytest.approx(NONE_4O, abs=EXACT)
    assert body["totals"]["calls"] == 5
    assert (body["totals"]["input_tokens"], body["totals"]["output_tokens"]) == (14_400, 1200)
    assert body["totals"]["cost_usd"] == pytest.approx(total, abs=EXACT)
    assert u1["share"] == pytest.approx(0.0073 / 0.0104, abs=1e-6)
    assert body["other"]["calls"] == 0 and body["other"]["keys"] == 0
    # float noise is not sent: 0.0073 is 0.0073
    assert u1["cost_usd"] == 0.0073
    assert [d["day"] for d in body["daily"]] == ["2026-11-24", "2026-11-25"]
    day24, day25 = body["daily"]
    assert day24["cost_usd"] == pytest.approx(U1_4O, abs=EXACT) and day24["calls"] == 2
    assert day25["cost_usd"] == pytest.approx(U1_MINI + U2_MINI + NONE_4O, abs=EXACT) and day25["calls"] == 3
    assert day25["by_key"] == {"u-1": pytest.approx(U1_MINI, abs=EXACT), "u-2": pytest.approx(U2_MINI, abs=EXACT)}


def test_sdk_call_keys_are_not_attributes(seeded: Api):
    response = costs(seeded, group_by="attribute:stream")
    assert response.status_code == 400
    assert "not rolled up" in response.json()["error"]


def test_limit_folds_the_rest_into_other(seeded: Api):
    body = costs(seeded, group_by="attribute:user_id", limit="1").json()
    assert [row["key"] for row in body["rows"]] == ["u-1"]
    assert body["other"]["keys"] == 1 and body["other"]["calls"] == 1
    assert body["other"]["cost_usd"] == pytest.approx(U2_MINI, abs=EXACT)
    parts = body["rows"][0]["calls"] + body["other"]["calls"] + body["none"]["calls"]
    assert parts == body["totals"]["calls"] == 5


def test_model_filter_with_attribute_group(seeded: Api):
    body = costs(seeded, group_by="attribute:user_id", model="gpt-4o-mini").json()
    rows = by_key(body)
    assert rows["u-2"]["cost_usd"] == pytest.approx(U2_MINI, abs=EXACT)
    assert rows["u-1"]["cost_usd"] == pytest.approx(U1_MINI, abs=EXACT)
    assert [r["key"] for r in body["rows"]] == ["u-2", "u-1"]  # by cost
    assert body["none"]["calls"] == 0
    assert body["totals"]["cost_usd"] == pytest.approx(U1_MINI + U2_MINI, abs=EXACT)


def test_group_by_model_for_one_customer(seeded: Api):
    body = costs(seeded, group_by="model", attribute="customer:acme").json()
    rows = by_key(body)
    assert set(rows) == {"gpt-4o", "gpt-4o-mini"}
    assert rows["gpt-4o"]["calls"] == 2 and rows["gpt-4o"]["cost_usd"] == pytest.approx(U1_4O, abs=EXACT)
    assert rows["gpt-4o-mini"]["cost_usd"] == pytest.approx(U1_MINI, abs=EXACT)
    assert body["none"] is None
    assert body["totals"]["cost_usd"] == pytest.approx(U1_4O + U1_MINI, abs=EXACT)


def test_group_by_service_section_and_provider(seeded: Api):
    body = costs(seeded, group_by="service").json()
    rows = by_key(body)
    assert rows["billing"]["cost_usd"] == pytest.approx(U2_MINI, abs=EXACT)
    assert rows["svc"]["calls"] == 4
    assert rows["svc"]["cost_usd"] == pytest.approx(U1_4O + U1_MINI + NONE_4O, abs=EXACT)
    sections = by_key(costs(seeded, group_by="section").json())
    assert sections["classify"]["calls"] == 1 and sections["agent"]["calls"] == 1  # the section span is no call
    assert sections["classify"]["cost_usd"] == pytest.approx(usd(GPT_4O, 1000, 100), abs=EXACT)
    assert sections[""]["calls"] == 3  # calls outside any section
    providers = costs(seeded, group_by="provider").json()
    assert [r["key"] for r in providers["rows"]] == ["openai"] and providers["rows"][0]["calls"] == 5
    one_day = costs(seeded, group_by="model", section="classify").json()
    assert by_key(one_day)["gpt-4o"]["calls"] == 1


def test_range_is_whole_utc_days(seeded: Api):
    body = seeded.get("/costs", group_by="attribute:user_id", **{"from": "2026-11-25", "to": "2026-11-25"}).json()
    assert by_key(body)["u-1"]["calls"] == 1  # the 24th's two calls are outside
    assert body["totals"]["calls"] == 3


def test_csv_has_header_rows_and_totals_equal_to_json(seeded: Api):
    params = {"group_by": "attribute:user_id", "limit": "1"}
    body = costs(seeded, **params).json()
    response = costs(seeded, format="csv", **params)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(response.content.decode())))
    assert lines[0] == [
        "kind",
        "key",
        "calls",
        "errors",
        "unpriced_calls",
        "usage_unknown_calls",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "share",
    ]
    assert [line[0] for line in lines[1:]] == ["row", "other", "none", "total"]
    for line, row in zip(lines[1:], [*body["rows"], body["other"], body["none"], body["totals"]], strict=True):
        assert line[1] == row["key"]
        assert [int(x) for x in line[2:8]] == [
            row[c]
            for c in ("calls", "errors", "unpriced_calls", "usage_unknown_calls", "input_tokens", "output_tokens")
        ]
        assert float(line[8]) == row["cost_usd"]
        assert float(line[9]) == row["share"]


def test_csv_quotes_a_formula_looking_key(api: Api):
    assert (
        api.post_events([call(attributes={"customer": "=HYPERLINK(1)"}, started_at="2026-11-24T10:00:00Z")]).status_code
        == 200
    )
    text = costs(api, group_by="attribute:customer", format="csv").content.decode()
    assert "'=HYPERLINK(1)" in text


@pytest.mark.parametrize(
    ("params", "param", "words"),
    [
        ({"group_by": "colour"}, "group_by", "one of"),
        ({"group_by": "attribute:"}, "group_by", "needs a key"),
        ({"group_by": "attribute:nope"}, "group_by", "not rolled up"),
        ({"from": "2026-11-31"}, "from", "YYYY-MM-DD"),
        ({"from": "yesterday"}, "from", "YYYY-MM-DD"),
        ({"to": "2026-11-23"}, "from", "on or before"),
        ({"from": "2024-01-01"}, "to", "at most 366 days"),
        ({"limit": "0"}, "limit", "1 to 1000"),
        ({"limit": "x"}, "limit", "1 to 1000"),
        ({"format": "xml"}, "format", "json or csv"),
        ({"attribute": "plan"}, "attribute", "key:value"),
        ({"group_by": "attribute:user_id", "section": "classify"}, "section", "cannot be combined"),
        ({"group_by": "section", "attribute": "plan:pro"}, "section", "cannot be combined"),
        ({"group_by": "attribute:user_id", "attribute": "plan:pro"}, "attribute", "another key"),
        ({"from": "", "days": "0"}, "days", "1 to 366"),
        ({"model": "m" * 300}, "model", "at most 256"),
    ],
)
def test_bad_parameters_are_400_with_a_message(seeded: Api, params, param, words):
    response = costs(seeded, **params)
    assert response.status_code == 400, response.content
    body = response.json()
    assert words in body["error"]
    assert body[param] == [body["error"]]


def test_a_key_sees_only_its_project(seeded: Api, other_api: Api):
    body = costs(other_api, group_by="model").json()
    assert body["rows"] == [] and body["totals"]["calls"] == 0
    # its project has no user_id key: 400, not project A's figures
    assert costs(other_api, group_by="attribute:user_id").status_code == 400
    assert costs(Api(None), group_by="model").status_code in (401, 403)
    assert costs(Api("not-a-key"), group_by="model").status_code in (401, 403)


def test_session_users_pick_only_their_projects(seeded: Api, client, member, outsider):
    client.force_login(outsider)
    assert client.get("/costs", {**RANGE, "group_by": "model", "project": "acme"}).status_code == 404
    client.force_login(member)
    body = client.get("/costs", {**RANGE, "group_by": "model", "project": "acme"}).json()
    assert body["totals"]["calls"] == 5
