"""SPEC §4: health, run list with pagination and filters, run tree, isolation."""

from __future__ import annotations

import pytest

from tests.conftest import SPEC_EXAMPLE_TREE, Api, make_event

pytestmark = pytest.mark.django_db
EXACT = 1e-9


def test_health_needs_no_key(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "db": "ok", "broker": "embedded"}


def test_read_endpoints_need_a_key(client, project):
    assert client.get("/runs/latest").status_code == 401
    assert client.get("/runs/x").status_code == 401
    assert Api("lo_bogus").get("/runs/latest").status_code == 401


def _seed_runs(api: Api, n: int) -> None:
    events = []
    for i in range(n):
        started = f"2026-11-26T09:{i // 60:02d}:{i % 60:02d}Z"
        events.append(
            make_event(
                run_id=f"run-{i:03d}",
                started_at=started,
                service="a" if i % 2 else "b",
                section=f"sec-{i % 3}",
                section_path=f"root/sec-{i % 3}",
                status="error" if i % 5 == 0 else "ok",
            )
        )
    assert api.post_events(events).status_code == 200


def test_latest_runs_newest_first_with_cursor_pagination(api: Api):
    _seed_runs(api, 25)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 10}
        if cursor:
            params["cursor"] = cursor
        body = api.get("/runs/latest", **params).json()
        seen += [r["run_id"] for r in body["runs"]]
        cursor = body["next"]
        pages += 1
        if not cursor:
            break
    assert pages == 3
    assert seen == [f"run-{i:03d}" for i in range(24, -1, -1)]


def test_latest_run_fields(api: Api):
    api.post_events({"events": SPEC_EXAMPLE_TREE})
    (run,) = api.get("/runs/latest").json()["runs"]
    assert run == {
        "run_id": "run-42",
        "service": "support-bot",
        "started_at": "2026-11-26T09:00:00Z",
        "ended_at": "2026-11-26T09:00:01.840000Z",
        "duration_ms": 1840.0,
        "calls": 2,
        "input_tokens": 1500,
        "output_tokens": 170,
        "cost_usd": pytest.approx(0.00322 + 300 * 0.15 / 1e6 + 20 * 0.6 / 1e6, abs=EXACT),
        "status": "error",  # one call failed
        "root_sections": ["agent:researcher"],
        "unpriced_calls": 0,
        "usage_unknown_calls": 0,
    }


def test_filters(api: Api):
    _seed_runs(api, 12)
    by_service = api.get("/runs/latest", service="a").json()["runs"]
    assert {r["run_id"] for r in by_service} == {f"run-{i:03d}" for i in range(12) if i % 2}
    by_section = api.get("/runs/latest", section="sec-1").json()["runs"]
    assert {r["run_id"] for r in by_section} == {"run-001", "run-004", "run-007", "run-010"}
    by_root = api.get("/runs/latest", section="root").json()["runs"]
    assert len(by_root) == 12
    errors = api.get("/runs/latest", status="error").json()["runs"]
    assert {r["run_id"] for r in errors} == {"run-000", "run-005", "run-010"}
    assert all(r["status"] == "error" for r in errors)


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "abc"},
        {"limit": "201"},
        {"cursor": "garbage!"},
        {"status": "meh"},
        {"since": "not-a-date"},
        {"min_cost": "x"},
    ],
)
def test_bad_query_parameters_are_400(api: Api, params):
    _seed_runs(api, 2)
    assert api.get("/runs/latest", **params).status_code == 400


def test_run_tree_shape_and_roll_up(api: Api):
    api.post_events({"events": SPEC_EXAMPLE_TREE})
    body = api.get("/runs/run-42").json()
    assert body["run_id"] == "run-42" and body["calls"] == 2
    (agent,) = body["tree"]
    assert (agent["name"], agent["span_type"], agent["span_id"]) == ("agent:researcher", "section", "s-agent")
    tool_cost = 176 * 2.5 / 1e6 + 1024 * 1.25 / 1e6 + 150 * 10 / 1e6
    mini_cost = 300 * 0.15 / 1e6 + 20 * 0.6 / 1e6
    assert agent["cost_usd"] == pytest.approx(tool_cost + mini_cost, abs=EXACT)
    assert agent["self_cost_usd"] == pytest.approx(mini_cost, abs=EXACT)
    assert agent["calls"] == 2 and agent["input_tokens"] == 1500 and agent["output_tokens"] == 170
    assert [c["name"] for c in agent["children"]] == ["tool:web_search", "chat.completions.create"]
    tool, direct_call = agent["children"]
    assert tool["cost_usd"] == pytest.approx(tool_cost, abs=EXACT)
    assert tool["latency_ms"] == 900.0 and tool["status"] == "ok"
    (leaf,) = tool["children"]
    assert leaf["span_type"] == "llm" and leaf["model"] == "gpt-4o-2024-08-06" and leaf["children"] == []
    assert leaf["cached_input_tokens"] == 1024
    assert direct_call["model"] == "gpt-4o-mini" and direct_call["status"] == "error"


def test_call_outside_any_section_is_a_top_level_node(api: Api):
    api.post_events([make_event(run_id="solo", span_id="c1", input_tokens=10, output_tokens=0)])
    tree = api.get("/runs/solo").json()["tree"]
    assert [(n["span_id"], n["span_type"]) for n in tree] == [("c1", "llm")]


def test_call_whose_section_is_still_open_gets_a_stand_in_node(api: Api):
    api.post_events(
        [
            make_event(
                run_id="open",
                span_id="c1",
                parent_span_id="s-open",
                section="step:think",
                section_path="step:think",
                status="error",
            )
        ]
    )
    (node,) = api.get("/runs/open").json()["tree"]
    assert (node["span_id"], node["name"], node["span_type"], node["status"]) == (
        "s-open",
        "step:think",
        "section",
        "error",
    )
    assert [c["span_id"] for c in node["children"]] == ["c1"]
    # The section closes later: its real span replaces the stand-in.
    api.post_events(
        [
            make_event(
                run_id="open",
                span_id="s-open",
                span_type="section",
                name="step:think",
                section="step:think",
                section_path="step:think",
                provider=None,
                model=None,
                latency_ms=50.0,
                input_tokens=0,
                output_tokens=0,
            )
        ]
    )
    (node,) = api.get("/runs/open").json()["tree"]
    assert node["latency_ms"] == 50.0 and [c["span_id"] for c in node["children"]] == ["c1"]


def test_unknown_run_is_404(api: Api):
    assert api.get("/runs/nope").status_code == 404


def test_a_key_of_project_b_gets_404_for_project_a_run(api: Api, other_api: Api):
    api.post_events({"events": SPEC_EXAMPLE_TREE})
    assert api.get("/runs/run-42").status_code == 200
    assert other_api.get("/runs/run-42").status_code == 404
    assert other_api.get("/runs/latest").json()["runs"] == []


def test_session_users_see_their_projects_only(client, api: Api, owner, outsider, staff):
    api.post_events({"events": SPEC_EXAMPLE_TREE})
    client.force_login(owner)
    assert client.get("/runs/run-42").status_code == 200
    client.force_login(outsider)
    assert client.get("/runs/run-42").status_code == 404
    assert client.get("/runs/run-42", {"project": "acme"}).status_code == 404
    client.force_login(staff)
    assert client.get("/runs/run-42", {"project": "acme"}).status_code == 200


def test_openapi_schema(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    text = response.content.decode()
    assert "openapi: 3" in text or '"openapi": "3' in text
    for path in ("/runs/latest", "/runs/{run_id}", "/pricing"):
        assert path in text


def test_schema_documents_ingest_from_the_validation_types(client):
    import yaml

    schema = yaml.safe_load(client.get("/api/schema/").content)
    assert schema["openapi"].startswith("3.1")
    post = schema["paths"]["/events"]["post"]
    assert set(post["responses"]) == {"200", "207", "400", "401", "413"}
    event = schema["components"]["schemas"]["EventIn"]
    assert set(event["required"]) == {"event_id", "run_id", "span_id", "started_at"}
    assert event["properties"]["run_id"]["maxLength"] == 128


def test_costs_in_json_are_rounded_to_what_a_float_can_say(api: Api):
    """0.00006 + 0.00693 is 0.0069900000000000006 in floats; the API says 0.00699."""
    from events.models import Event, Run

    noisy = 0.00006 + 0.00693
    assert repr(noisy) == "0.0069900000000000006"
    assert api.post_events([make_event(run_id="run-noise", event_id="ev-noise")]).status_code == 200
    Run.objects.filter(run_id="run-noise").update(cost_usd=noisy)
    Event.objects.filter(event_id="ev-noise").update(cost_usd=noisy, cost_details={"input_tokens": noisy})
    latest = api.get("/runs/latest")
    assert b'"cost_usd":0.00699' in latest.content.replace(b" ", b"")
    assert b"0.0069900000000000006" not in latest.content
    tree = api.get("/runs/run-noise")
    assert b"0.0069900000000000006" not in tree.content
    (call,) = tree.json()["tree"]
    assert call["cost_usd"] == 0.00699 and call["cost_details"] == {"input_tokens": 0.00699}
    assert tree.json()["cost_usd"] == 0.00699


def test_float_round_keeps_twelve_significant_digits():
    from events.selectors import float_round

    assert float_round(0.1 + 0.2) == 0.3
    assert float_round(123456.789012345678) == 123456.789012
    assert float_round(0.0) == 0.0 and float_round(None) is None
    assert float_round(1e-12 / 3) == 3.33333333333e-13


def test_runs_latest_searches_and_filters_by_model(api: Api, other_api: Api):
    """The runs behind an insight through the API: window, section and model; and the search box's kinds."""
    events = [
        make_event(run_id="r-mini", model="gpt-4o-mini", section="step:classify", section_path="step:classify"),
        make_event(run_id="r-big", model="gpt-4o", section="step:classify", section_path="step:classify"),
        make_event(run_id="r-u7", model="gpt-4o", attributes={"user_id": "u-7"}),
    ]
    assert api.post_events(events).status_code == 200
    assert other_api.post_events([make_event(run_id="r-other", model="gpt-4o-mini")]).status_code == 200

    def run_ids(**params: str) -> list[str]:
        body = api.get("/runs/latest", **params).json()
        return sorted(r["run_id"] for r in body["runs"])

    assert run_ids(model="gpt-4o-mini", section="step:classify") == ["r-mini"]
    assert run_ids(q="model:gpt-4o") == ["r-big", "r-u7"]
    assert run_ids(q="section:CLASS") == ["r-big", "r-mini"]
    assert run_ids(q="user_id:u-7") == ["r-u7"]
    assert run_ids(q="u-7") == ["r-u7"]
    assert run_ids(q="id:r-") == ["r-big", "r-mini", "r-u7"]
    assert run_ids(q="id:r-o") == []  # another project's run stays there
