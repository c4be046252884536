"""Cost v2 on the dashboard: each call's bill by unit, and spend we cannot price."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.conftest import Api, make_event

pytestmark = pytest.mark.django_db

# OpenAI's published prices (openai.com/api/pricing), USD per 1M tokens.
GPT_5_IN, GPT_5_OUT = 1.25, 10.0
WEB_SEARCH_PER_CALL = 10.0 / 1000  # $10 per 1k web search calls


def _now() -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_run_page_shows_each_calls_bill_by_unit(api: Api, owner_client):
    api.post_events(
        [
            make_event(
                event_id="web",
                run_id="run-web",
                model="gpt-5",
                endpoint="responses.create",
                input_tokens=10_000,
                cached_input_tokens=4_000,
                output_tokens=2_000,
                usage_details={"web_search_calls": 2},
                price_context={"service_tier": "priority"},
                started_at="2026-11-26T09:00:00Z",
            )
        ]
    )
    body = owner_client.get("/dashboard/runs/run-web/").content.decode()
    # gpt-5 on the priority tier is $2.50 / $0.25 cached / $20 per 1M (openai.com/api/pricing).
    uncached, cached, out = 6_000 * 2.5 / 1e6, 4_000 * 0.25 / 1e6, 2_000 * 20.0 / 1e6
    assert (uncached, cached, out) == (0.015, 0.001, 0.04)
    assert 2 * WEB_SEARCH_PER_CALL == 0.02
    assert "input $0.015 · cached $0.001 · output $0.04 · 2 web searches $0.02" in body
    assert ">priority<" in body  # the service tier the call ran on


def test_run_page_marks_unpriced_and_usage_unknown_calls(api: Api, owner_client):
    api.post_events(
        [
            make_event(
                event_id="gone", run_id="run-x", model="gpt-5", input_tokens=0, output_tokens=0, usage_known=False
            ),
            make_event(
                event_id="odd",
                run_id="run-x",
                model="gpt-5",
                input_tokens=1000,
                output_tokens=100,
                usage_details={"hologram_minutes": 3},
            ),
        ]
    )
    body = owner_client.get("/dashboard/runs/run-x/").content.decode()
    assert "usage unknown" in body and 'id="usage-unknown-calls"' in body
    assert "1 call used a model or unit without a price" in body
    # The priced part of the odd call is shown beside the unit that has no price.
    assert 1000 * GPT_5_IN / 1e6 == 0.00125  # shown to two significant figures
    assert "input $0.0013 · output $0.001 · 3 hologram minutes no price" in body


def test_overview_lists_spend_we_cannot_price(api: Api, owner_client):
    now = _now()
    api.post_events(
        [
            make_event(event_id="m1", run_id="r1", provider="acme", model="house-model", started_at=now),
            make_event(
                event_id="u1",
                run_id="r2",
                model="gpt-5",
                usage_details={"hologram_minutes": 2},
                started_at=now,
            ),
            make_event(event_id="k1", run_id="r3", model="gpt-4o", usage_known=False, started_at=now),
            make_event(event_id="k2", run_id="r4", model="gpt-4o", usage_known=False, started_at=now),
            make_event(event_id="ok", run_id="r5", model="gpt-4o", started_at=now),
        ]
    )
    body = owner_client.get("/").content.decode()
    section = body[body.index('id="unpriced"') :]
    assert "Spend we cannot price" in section
    assert "house-model" in section
    units = section[section.index('id="unpriced-units"') :]
    assert "hologram_minutes" in units
    unknown = section[section.index('id="usage-unknown"') :]
    assert "gpt-4o" in unknown and ">2<" in unknown


def test_overview_says_when_everything_was_priced(api: Api, owner_client):
    api.post_events([make_event(event_id="ok", model="gpt-4o", started_at=_now())])
    body = owner_client.get("/").content.decode()
    assert "Every call in the last 30 days was costed as its provider bills it." in body
