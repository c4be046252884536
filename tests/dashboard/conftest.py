"""Dashboard fixtures: data seeded through the real ingest so the aggregates are right.

Timestamps are anchored on today's UTC midnight (plus a minute), so "today",
"yesterday" and "last 7 days" mean the same whenever the suite runs.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from tests.conftest import Api

_ids = itertools.count()


def day_start(offset_days: int = 0) -> dt.datetime:
    today = timezone.now().astimezone(dt.UTC).replace(hour=0, minute=1, second=0, microsecond=0)
    return today - dt.timedelta(days=offset_days)


def stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def run_events(
    run_id: str,
    *,
    when: dt.datetime,
    service: str = "support-bot",
    root: str = "agent:researcher",
    calls: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """A run as the SDK sends it: a root section, a `tool:web_search` section in it,
    and calls inside the tool section (or as given in `calls`)."""
    n = next(_ids)
    root_span, tool_span = f"{run_id}-root-{n}", f"{run_id}-tool-{n}"
    tool_path = f"{root}/tool:web_search"
    base = {"run_id": run_id, "service": service, "status": "ok"}
    events: list[dict[str, Any]] = [
        {
            **base,
            "event_id": f"{run_id}-e{n}-root",
            "span_id": root_span,
            "parent_span_id": None,
            "span_type": "section",
            "name": root,
            "section": root,
            "section_path": root,
            "latency_ms": 1840.0,
            "started_at": stamp(when),
        },
        {
            **base,
            "event_id": f"{run_id}-e{n}-tool",
            "span_id": tool_span,
            "parent_span_id": root_span,
            "span_type": "section",
            "name": "tool:web_search",
            "section": "tool:web_search",
            "section_path": tool_path,
            "latency_ms": 900.0,
            "started_at": stamp(when + dt.timedelta(milliseconds=100)),
        },
    ]
    for i, call in enumerate(
        calls
        or [
            {
                "model": "gpt-4o-2024-08-06",
                "input_tokens": 1200,
                "cached_input_tokens": 1024,
                "output_tokens": 150,
            }
        ]
    ):
        event = {
            **base,
            "event_id": f"{run_id}-e{n}-c{i}",
            "span_id": f"{run_id}-c{n}-{i}",
            "parent_span_id": tool_span,
            "span_type": "llm",
            "name": "chat.completions.create",
            "section": "tool:web_search",
            "section_path": tool_path,
            "provider": "openai",
            "endpoint": "chat.completions.create",
            "latency_ms": 850.0,
            "started_at": stamp(when + dt.timedelta(milliseconds=120 + i)),
        }
        event.update(call)
        events.append(event)
    return events


def ingest(key: str, events: list[dict[str, Any]]) -> None:
    response = Api(key).post_events({"events": events})
    assert response.status_code == 200, response.content


@pytest.fixture
def seeded(project, other_project, api_key, other_key) -> dict[str, Any]:
    """Runs in `project` over the last ten days, one failed call, one unpriced
    model, and a run in `other_project` nobody in `project` may see."""
    events: list[dict[str, Any]] = []
    events += run_events("run-42", when=day_start(0) + dt.timedelta(minutes=5))
    events += run_events(
        "run-err",
        when=day_start(0) + dt.timedelta(minutes=3),
        service="batch-jobs",
        root="agent:writer",
        calls=[
            {"model": "gpt-4o-mini", "input_tokens": 500, "output_tokens": 40},
            {"model": "gpt-4o-mini", "input_tokens": 0, "output_tokens": 0, "status": "error", "error_type": "RateLimitError"},
        ],
    )
    events += run_events(
        "run-unpriced",
        when=day_start(1),
        calls=[{"provider": "acme-ai", "model": "mystery-model-1", "input_tokens": 10, "output_tokens": 10}],
    )
    for day in range(2, 10):
        events += run_events(f"run-old-{day}", when=day_start(day))
    ingest(api_key, events)
    ingest(other_key, run_events("globex-secret-run", when=day_start(0)))
    return {"project": project, "other_project": other_project}


@pytest.fixture
def owner_client(owner) -> Client:
    client = Client()
    client.force_login(owner)
    return client


@pytest.fixture
def outsider_client(outsider) -> Client:
    client = Client()
    client.force_login(outsider)
    return client


@pytest.fixture
def staff_client(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client
