"""Attribution fixtures: a small project history sent through POST /events,
whose breakdowns the tests work out by hand.

Published prices (OpenAI's pricing page): gpt-4o $2.50 in / $10.00 out per
1M tokens, gpt-4o-mini $0.15 in / $0.60 out.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.conftest import Api, make_event

_n = itertools.count()
M = 1_000_000
GPT_4O = (2.50, 10.00)
GPT_4O_MINI = (0.15, 0.60)


def usd(price: tuple[float, float], input_tokens: int, output_tokens: int) -> float:
    return (input_tokens * price[0] + output_tokens * price[1]) / M


def call(**overrides: Any) -> dict[str, Any]:
    n = next(_n)
    return make_event(event_id=f"attr-{n}", span_id=f"attr-span-{n}", **overrides)


U1 = {"user_id": "u-1", "plan": "pro", "customer": "acme"}
U2 = {"user_id": "u-2", "plan": "free", "customer": "globex"}

# What HISTORY costs, by hand.
U1_4O = 2 * usd(GPT_4O, 1000, 100)  # 0.007
U1_MINI = usd(GPT_4O_MINI, 2000, 0)  # 0.0003
U2_MINI = usd(GPT_4O_MINI, 10_000, 1000)  # 0.0021
NONE_4O = usd(GPT_4O, 400, 0)  # 0.001


def history() -> list[dict[str, Any]]:
    return [
        # u-1: two gpt-4o calls on the 24th (one streamed: the SDK's own `stream` key is no attribute)
        call(
            run_id="r-1",
            model="gpt-4o",
            input_tokens=1000,
            output_tokens=100,
            started_at="2026-11-24T10:00:00Z",
            attributes=U1,
            section="classify",
            section_path="agent/classify",
        ),
        call(
            run_id="r-1",
            model="gpt-4o",
            input_tokens=1000,
            output_tokens=100,
            started_at="2026-11-24T10:01:00Z",
            attributes={**U1, "stream": True},
            section="agent",
            section_path="agent",
        ),
        # the run's section span: an event, not a call
        call(
            run_id="r-1",
            span_type="section",
            name="agent",
            model=None,
            provider=None,
            input_tokens=0,
            output_tokens=0,
            started_at="2026-11-24T09:59:59Z",
            attributes=U1,
            section="agent",
            section_path="agent",
        ),
        # u-1 again on the 25th, another run, gpt-4o-mini
        call(
            run_id="r-2",
            model="gpt-4o-mini",
            input_tokens=2000,
            output_tokens=0,
            started_at="2026-11-25T08:00:00Z",
            attributes=U1,
        ),
        # u-2 on the 25th, service billing, one failed call
        call(
            run_id="r-3",
            model="gpt-4o-mini",
            input_tokens=10_000,
            output_tokens=1000,
            started_at="2026-11-25T12:00:00Z",
            attributes=U2,
            service="billing",
            status="error",
            error_type="RateLimitError",
        ),
        # a call without attributes on the 25th
        call(run_id="r-4", model="gpt-4o", input_tokens=400, output_tokens=0, started_at="2026-11-25T13:00:00Z"),
    ]


@pytest.fixture
def seeded(api: Api) -> Api:
    response = api.post_events(history())
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 6
    return api
