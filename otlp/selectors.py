"""Reads the OTLP mapping needs from the event store (both by indexed keys)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from events.models import Event
from otlp.mapping import StoredParent
from otlp.models import PendingSpan

# Values bound in one IN (...): well under SQLite's 32,766 variables.
CHUNK = 900


def stored_parents_get(*, project_id: int, event_ids: Collection[str]) -> dict[str, StoredParent]:
    """Stored events by event_id (the unique (project, event_id) key)."""
    ids = sorted(event_ids)
    out: dict[str, StoredParent] = {}
    for start in range(0, len(ids), CHUNK):
        rows = Event.objects.filter(project_id=project_id, event_id__in=ids[start : start + CHUNK]).values_list(
            "event_id", "span_type", "section", "section_path"
        )
        for event_id, span_type, section, section_path in rows:
            out[event_id] = StoredParent(span_type=span_type, section=section, section_path=section_path)
    return out


def spans_with_stored_children(*, project_id: int, spans: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (run_id, span_id) pairs are the parent of an event already stored.

    Read through the (project, run_id) index: a run's own rows only."""
    pairs = sorted(spans)
    found: set[tuple[str, str]] = set()
    for start in range(0, len(pairs), CHUNK // 2):
        part = pairs[start : start + CHUNK // 2]
        rows = (
            Event.objects.filter(
                project_id=project_id,
                run_id__in={run for run, _ in part},
                parent_span_id__in={span for _, span in part},
            )
            .values_list("run_id", "parent_span_id")
            .distinct()
        )
        found.update((run, parent) for run, parent in rows if parent is not None)
    return found & set(pairs)


def pending_spans_for_traces(*, project_id: int, traces: Collection[str]) -> list[tuple[int, bytes, bytes]]:
    """(row id, span, resource) of the spans waiting in these traces (the unique key's prefix)."""
    ids = sorted(traces)
    out: list[tuple[int, bytes, bytes]] = []
    for start in range(0, len(ids), CHUNK):
        rows = PendingSpan.objects.filter(project_id=project_id, trace_id__in=ids[start : start + CHUNK])
        out.extend(
            (pk, bytes(span), bytes(resource)) for pk, span, resource in rows.values_list("id", "span", "resource")
        )
    return out


def pending_traces_older_than(*, cutoff: dt.datetime, limit: int) -> dict[int, set[str]]:
    """Project → traces with a span waiting since before `cutoff` (the oldest first, at most `limit` spans)."""
    rows = (
        PendingSpan.objects.filter(received_at__lt=cutoff)
        .order_by("received_at")
        .values_list("project_id", "trace_id")[:limit]
    )
    out: dict[int, set[str]] = {}
    for project_id, trace_id in rows:
        out.setdefault(project_id, set()).add(trace_id)
    return out
