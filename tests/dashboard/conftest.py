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
    tool: str = "tool:web_search",
    calls: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """A run as the SDK sends it: a root section, a `tool` section in it
    (`tool:web_search`), and calls inside the tool section (as given in `calls`)."""
    n = next(_ids)
    root_span, tool_span = f"{run_id}-root-{n}", f"{run_id}-tool-{n}"
    tool_path = f"{root}/{tool}"
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
            "name": tool,
            "section": tool,
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
            "section": tool,
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
            {
                "model": "gpt-4o-mini",
                "input_tokens": 0,
                "output_tokens": 0,
                "status": "error",
                "error_type": "RateLimitError",
            },
        ],
    )
    events += run_events(
        "run-unpriced",
        when=day_start(1),
        calls=[{"provider": "acme-ai", "model": "mystery-model-1", "input_tokens": 10, "output_tokens": 10}],
    )
    # Older history: three kinds of run a day, so the chart has something to stack.
    tools = [("tool:web_search", "gpt-4o"), ("step:analyze_results", "gpt-4o-mini"), ("retrieval", "o3-mini")]
    for day in range(2, 14):
        for i, (tool, model) in enumerate(tools):
            tokens = 2000 + 400 * ((day * 7 + i * 3) % 9)
            events += run_events(
                f"run-old-{day}-{i}",
                when=day_start(day) + dt.timedelta(hours=i),
                tool=tool,
                calls=[{"model": model, "input_tokens": tokens, "output_tokens": tokens // 8}],
            )
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


def make_insight(project, **overrides: Any):  # type: ignore[no-untyped-def]
    """One stored insight of the project's latest computation, made if there
    is none (skips when the insights app is absent).  Insights made one after
    the other belong to one computation even when a second ticks over between
    them (keyed by the second, the second insight once landed in a newer
    computation and hid the first)."""
    from django.apps import apps

    if not apps.is_installed("insights"):
        pytest.skip("the insights app is not installed")
    from insights.models import Insight, InsightComputation

    now = timezone.now()
    computation = InsightComputation.objects.filter(project=project).order_by("-window_end").first()
    if computation is None:
        computation = InsightComputation.objects.create(
            project=project,
            window_end=now.replace(microsecond=0),
            window_start=now - dt.timedelta(days=1),
            baseline_start=now - dt.timedelta(days=8),
            generated_at=now,
        )
    fields: dict[str, Any] = {
        "kind": "model_inefficiency",
        "severity": "high",
        "section": "tool:web_search",
        "model": "gpt-4o",
        "endpoint": "chat.completions.create",
        "observed": 0.42,
        "baseline": 0.0,
        "ratio": 16.7,
        "est_savings_usd": 3.25,
        "message": "tool:web_search spends $0.42 a day on gpt-4o for short answers; gpt-4o-mini would do.",
    }
    fields.update(overrides)
    return Insight.objects.create(
        project=project,
        computation=computation,
        window_start=computation.window_start,
        window_end=computation.window_end,
        generated_at=now,
        **fields,
    )
