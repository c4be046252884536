"""The run page (issue 15): attributes, the timeline, the call panel (htmx fragment and plain link)."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape

import pytest

from events.models import Event
from tests.dashboard.conftest import day_start, ingest, run_events

pytestmark = pytest.mark.django_db


@pytest.fixture
def timed(project, api_key):
    """A run: root section (1,840 ms) > tool section (900 ms from +100 ms) > two calls:
    c0 at +120 ms for 850 ms (a stream with its first token at 212.5 ms), c1 at +1,000 ms for 600 ms, failed."""
    events = run_events(
        "run-t",
        when=day_start(0) + dt.timedelta(minutes=2),
        calls=[
            {
                "model": "gpt-4o-mini",
                "input_tokens": 1000,
                "cached_input_tokens": 200,
                "output_tokens": 50,
                "provider_host": "api.openai.com",
                "price_context": {"service_tier": "flex"},
                "attributes": {"stream": True, "ttft_ms": 212.5, "user_id": "u-7"},
            },
            {
                "model": "gpt-4o-mini",
                "input_tokens": 0,
                "output_tokens": 0,
                "status": "error",
                "error_type": "RateLimitError",
                "latency_ms": 600.0,
            },
        ],
    )
    events[3]["started_at"] = events[0]["started_at"].replace(":00Z", ":01Z")  # the run start + 1 s
    for e in events:
        e.setdefault("attributes", {"user_id": "u-7"})
        e["attributes"].setdefault("user_id", "u-7")
    ingest(api_key, events)
    return events


def test_attributes_are_listed_with_search_links(timed, owner_client):
    body = owner_client.get("/dashboard/runs/run-t/").content.decode()
    attrs = body[body.index('id="run-attributes"') :].split("</ul>")[0]
    assert '<span class="muted">user_id</span> <a href="/dashboard/runs/?q=user_id%3Au-7">u-7</a>' in attrs


def test_timeline_bars_by_start_and_latency(timed, owner_client):
    body = owner_client.get("/dashboard/runs/run-t/").content.decode()
    svg = body[body.index('<svg class="timeline"') : body.index("</svg>", body.index('<svg class="timeline"'))]
    rects = re.findall(r'<rect class="(\w+)(?: error)?" x="([\d.]+)" y="\d+" width="([\d.]+)"', svg)
    # Four rows in the tree's order: root, tool, c0, c1.  The axis spans the
    # latest end: c1 at +1,000 ms for 600 ms = 1,600 ms < root's 1,840 ms, so 1,840 ms.
    # Plot: 760 - 220 - 8 = 532 px from x = 220.
    total, plot = 1840.0, 532.0
    expect = [
        ("section", 220 + plot * 0 / total, plot * 1840 / total),
        ("section", 220 + plot * 100 / total, plot * 900 / total),
        ("call", 220 + plot * 120 / total, plot * 850 / total),
        ("call", 220 + plot * 1000 / total, plot * 600 / total),
    ]
    assert [(k, float(x), float(w)) for k, x, w in rects] == [(k, round(x, 1), round(w, 1)) for k, x, w in expect]
    assert 'class="call error"' in svg  # the failed call
    assert "+1.84 s" in svg  # the axis' last tick


def test_call_panel_as_fragment_and_as_page(timed, owner_client):
    span = timed[2]["span_id"]
    page = owner_client.get("/dashboard/runs/run-t/").content.decode()
    link = unescape(re.search(r'href="([^"]*\?call=[^"]+)" hx-get', page).group(1))
    assert link == f"/dashboard/runs/run-t/?call={span}"
    fragment = owner_client.get(link, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="call-panel").content.decode()
    assert fragment.lstrip().startswith('<section class="card call-panel" id="call-panel"')
    assert "<html" not in fragment
    field = dict(re.findall(r'<dd data-field="([\w-]+)"[^>]*>(.*?)</dd>', fragment, re.S))
    assert field["model"] == "gpt-4o-mini"
    assert field["provider"] == "openai · api.openai.com"
    assert field["service-tier"] == "flex"
    assert field["latency"] == "850 ms" and field["ttft"] == "212 ms"
    tokens = re.findall(r'<span class="chip">(\w+) ([\d,]+)</span>', field["tokens"])
    assert ("input_tokens", "1,000") in tokens and ("output_tokens", "50") in tokens
    event = Event.objects.get(span_id=span)
    assert event.price_source and event.price_source in field["price-source"]
    for unit in event.cost_details:
        assert unit in field["cost-details"]
    assert '<span class="badge ok">ok</span>' in field["status"]
    # The same link without htmx: the whole run page with the panel open.
    whole = owner_client.get(link).content.decode()
    assert "<html" in whole and 'id="call-panel"' in whole and 'data-field="model">gpt-4o-mini<' in whole
    failed = owner_client.get(f"/dashboard/runs/run-t/?call={timed[3]['span_id']}").content.decode()
    assert "✖ RateLimitError" in failed[failed.index('data-field="status"') :][:200]
    assert "not recorded" in failed[failed.index('data-field="ttft"') :][:100]
    missing = owner_client.get("/dashboard/runs/run-t/?call=nope").content.decode()
    assert "This run has no such call." in missing


def test_another_projects_call_is_not_shown(timed, outsider_client):
    span = timed[2]["span_id"]
    assert outsider_client.get(f"/dashboard/runs/run-t/?call={span}").status_code == 404
