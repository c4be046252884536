"""Reads the OTLP mapping needs from the event store (both by indexed keys)."""

from __future__ import annotations

from collections.abc import Collection

from events.models import Event
from otlp.mapping import StoredParent

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
