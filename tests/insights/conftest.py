"""Helpers for the insight tests: history fed through the real ingest service.

`AT` is the end of the window the tests compute; it lies days before the
moment the tests run, so every event is history ingested "now" and judged by
its started_at.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import msgspec
import pytest

from events.schema import EventIn
from events.services import event_batch_ingest
from insights.detectors import Window

AT = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
WINDOW_AT = AT - dt.timedelta(hours=3)  # inside the window
BASELINE_AT = AT - dt.timedelta(days=3)  # inside the baseline

_ids = itertools.count()


def stamp(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class History:
    """Builds runs of sections and calls, then ingests them in ≤1000-event batches."""

    def __init__(self, project_id: int) -> None:
        self.project_id = project_id
        self.events: list[dict[str, Any]] = []

    def run(
        self,
        section: str,
        when: dt.datetime,
        calls: list[dict[str, Any]],
        *,
        run_id: str | None = None,
    ) -> str:
        """One run: a section span and its calls, one second apart."""
        n = next(_ids)
        run_id = run_id or f"run-{n}"
        span = f"s-{n}"
        self.events.append(
            {
                "event_id": f"ev-{n}-s",
                "run_id": run_id,
                "span_id": span,
                "span_type": "section",
                "name": section,
                "section": section,
                "section_path": section,
                "started_at": stamp(when),
                "latency_ms": 1000.0,
            }
        )
        for i, call in enumerate(calls):
            event = {
                "event_id": f"ev-{n}-{i}",
                "run_id": run_id,
                "span_id": f"c-{n}-{i}",
                "parent_span_id": span,
                "span_type": "llm",
                "name": "chat.completions.create",
                "section": section,
                "section_path": section,
                "provider": "openai",
                "model": "gpt-4o-mini",
                "endpoint": "chat.completions.create",
                "input_tokens": 1000,
                "output_tokens": 100,
                "latency_ms": 500.0,
                "started_at": stamp(when + dt.timedelta(seconds=i + 1)),
                "status": "ok",
            }
            event.update(call)
            self.events.append(event)
        return run_id

    def runs(self, section: str, count: int, start: dt.datetime, calls: list[dict[str, Any]]) -> None:
        """`count` runs of the same shape, a minute apart."""
        for i in range(count):
            self.run(section, start + dt.timedelta(minutes=i), calls)

    def ingest(self) -> None:
        batch = [msgspec.convert(e, EventIn) for e in self.events]
        for start in range(0, len(batch), 1000):
            event_batch_ingest(project_id=self.project_id, events=batch[start : start + 1000])
        self.events = []


@pytest.fixture
def history(project) -> History:
    return History(project.id)


@pytest.fixture
def window(project) -> Window:
    return Window.ending(project.id, AT)


def cost(model: str, input_tokens: int, output_tokens: int, cached: int = 0) -> float:
    """SPEC §3 at the shipped registry's prices (per 1M tokens), written out by hand."""
    rates = {
        "gpt-4o": (2.5, 1.25, 10.0),
        "gpt-4o-mini": (0.15, 0.075, 0.6),
    }[model]
    return ((input_tokens - cached) * rates[0] + cached * rates[1] + output_tokens * rates[2]) / 1e6
