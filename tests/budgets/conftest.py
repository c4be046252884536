"""Helpers for the budget tests: calls fed through the real ingest service,
costs written out by hand from the published prices (per 1M tokens)."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import msgspec
import pytest

from budgets import spend
from events.schema import EventIn
from events.services import event_batch_ingest

_ids = itertools.count()

# gpt-4o: $2.50 in, $10.00 out per 1M; gpt-4o-mini: $0.15 in, $0.60 out.
RATES = {"gpt-4o": (2.5, 10.0), "gpt-4o-mini": (0.15, 0.6)}


def cost(model: str, input_tokens: int, output_tokens: int) -> float:
    rate_in, rate_out = RATES[model]
    return (input_tokens * rate_in + output_tokens * rate_out) / 1e6


def stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def call(when: dt.datetime, **overrides: Any) -> dict[str, Any]:
    """A gpt-4o call of 100,000 input and 10,000 output tokens: $0.25 + $0.10 = $0.35."""
    n = next(_ids)
    event: dict[str, Any] = {
        "event_id": f"b-{n}",
        "run_id": f"r-{n}",
        "span_id": f"s-{n}",
        "span_type": "llm",
        "name": "chat.completions.create",
        "provider": "openai",
        "model": "gpt-4o",
        "endpoint": "chat.completions.create",
        "input_tokens": 100_000,
        "output_tokens": 10_000,
        "latency_ms": 100.0,
        "started_at": stamp(when),
        "status": "ok",
        "service": "svc",
    }
    event.update(overrides)
    return event


def ingest(project_id: int, events: list[dict[str, Any]]) -> int:
    batch = [msgspec.json.decode(msgspec.json.encode(e), type=EventIn) for e in events]
    return event_batch_ingest(project_id=project_id, events=batch).accepted


@pytest.fixture(autouse=True)
def _budget_cache():
    spend.rules_cache_forget()
    yield
    spend.rules_cache_forget()


@pytest.fixture
def instant_counting(settings):
    """No cache lag: a budget counts at ingest from the moment it is saved
    (the cut-over itself is tested with the real settings in test_spend.py)."""
    settings.BUDGETS_CACHE_SECONDS = 0
    settings.BUDGETS_CLOCK_SKEW_SECONDS = 0
