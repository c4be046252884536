"""POST /v1/traces: an OTLP export request into the event store.

The mapping (`otlp.mapping`) turns spans into the same `EventIn` events the
SDK sends, and `event_batch_ingest` stores and prices them: OTLP-fed runs are
costed, aggregated and idempotent exactly like SDK-fed ones.

A span whose parent is neither in its request nor stored waits (a
PendingSpan, see otlp/models.py) until a request of its trace brings the
parent, or until OTLP_PENDING_SECONDS pass (`otlp_pending_flush`, on beat).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from events.retention import retention_not_before
from events.schema import EventIn, too_old_message
from events.services import event_batch_ingest
from otlp.mapping import (
    SECTION_KIND,
    UNDECIDED,
    Rejections,
    SpanIn,
    SpanProblem,
    event_for,
    event_id_for,
    frames_resolve,
    kinds_plan,
    mark_ancestors,
    parent_frame,
    pending_bytes,
    pending_span_in,
    runs_assign,
    spans_collect,
)
from otlp.models import PendingSpan
from otlp.selectors import (
    pending_spans_for_traces,
    pending_traces_older_than,
    spans_with_stored_children,
    stored_parents_get,
)

DEFAULT_PENDING_SECONDS = 60
FLUSH_LIMIT = 5000  # waiting spans looked at per flush


def pending_seconds() -> int:
    return int(getattr(settings, "OTLP_PENDING_SECONDS", DEFAULT_PENDING_SECONDS))


class TooManySpans(ValueError):
    def __init__(self, limit: int, count: int) -> None:
        super().__init__(f"{count} spans in one request; at most {limit} spans a request")


@dataclass(slots=True)
class TracesResult:
    spans: int = 0  # in the request
    stored: int = 0  # calls and sections newly stored
    duplicates: int = 0  # already stored (a resend)
    waiting: int = 0  # spans now waiting for their parent
    rejected: int = 0
    error_message: str = ""


def span_count(request: ExportTraceServiceRequest) -> int:
    return sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)


def otlp_traces_ingest(*, project_id: int, request: ExportTraceServiceRequest, max_spans: int) -> TracesResult:
    """Store the request's calls and sections; TooManySpans past `max_spans` (nothing stored)."""
    count = span_count(request)
    if count > max_spans:
        raise TooManySpans(max_spans, count)
    rejections = Rejections()
    spans = spans_collect(request, rejections)
    result = _spans_ingest(project_id, spans, rejections, flush=False)
    result.spans = count
    return result


def otlp_pending_flush(*, now: dt.datetime | None = None, older_than_seconds: int | None = None) -> int:
    """Store the spans that waited longer than OTLP_PENDING_SECONDS for a
    parent, under their parent's id (the run tree links them if it ever
    comes); with them, every other waiting span of their traces.  Returns the
    spans stored or found already stored."""
    now = now or timezone.now()
    seconds = pending_seconds() if older_than_seconds is None else older_than_seconds
    done = 0
    for project_id, traces in pending_traces_older_than(
        cutoff=now - dt.timedelta(seconds=seconds), limit=FLUSH_LIMIT
    ).items():
        result = _spans_ingest(project_id, [], Rejections(), flush=True, traces=traces)
        done += result.stored + result.duplicates
    return done


def _spans_ingest(
    project_id: int, spans: list[SpanIn], rejections: Rejections, *, flush: bool, traces: set[str] | None = None
) -> TracesResult:
    # The spans of these traces that waited for a parent join the request.
    present = {(span.trace, span.span) for span in spans}
    waiting = pending_spans_for_traces(
        project_id=project_id, traces=traces if traces is not None else {span.trace for span in spans}
    )
    loaded: list[SpanIn] = []
    for row_id, span_bytes, resource_bytes in waiting:
        span = pending_span_in(span_bytes, resource_bytes, row_id)
        loaded.append(span)
        if (span.trace, span.span) not in present:
            spans.append(span)
    runs_assign(spans)
    index = kinds_plan(spans)

    # A span whose children were stored by an earlier request is a section too.
    # Only a span with no call below it here can be one (a call's waiting
    # children came in with it above, from PendingSpan): a look-up per request
    # for those alone, none for a request of calls and their sections.
    candidates = [span for span in spans if span.kind == UNDECIDED]
    if candidates:
        parents = spans_with_stored_children(
            project_id=project_id, spans={(span.run_id, span.span) for span in candidates}
        )
        if parents:
            for span in candidates:
                if (span.run_id, span.span) in parents:
                    span.kind = SECTION_KIND
                    mark_ancestors(span, index)

    # A parent stored by an earlier request gives its section label and path.
    missing = {
        event_id_for(span.trace, span.parent)
        for span in spans
        if span.kind != UNDECIDED and span.parent and (span.trace, span.parent) not in index
    }
    stored = stored_parents_get(project_id=project_id, event_ids=missing) if missing else {}
    frames = frames_resolve(spans, index, stored)

    # A span older than the project's retention is rejected by name, as POST /events does.
    not_before = retention_not_before(project_id=project_id)
    events: list[EventIn] = []
    wait: list[SpanIn] = []
    for span in spans:
        if span.kind == UNDECIDED or span.folded:
            continue
        frame = parent_frame(span, index, frames, stored)
        if frame.unknown and not flush:
            wait.append(span)
            continue
        try:
            event = event_for(span, frame)
        except SpanProblem as exc:
            rejections.add(span.span, str(exc))
            continue
        if not_before is not None and event.started_at < not_before.moment:
            rejections.add(span.span, too_old_message(not_before))
            continue
        events.append(event)
    still_waiting = {span.pending_id for span in wait if span.pending_id is not None}
    done_rows = [
        span.pending_id for span in loaded if span.pending_id is not None and span.pending_id not in still_waiting
    ]
    now = timezone.now()
    new_rows = []
    for span in wait:
        if span.pending_id is None:
            span_bytes, resource_bytes = pending_bytes(span)
            new_rows.append(
                PendingSpan(
                    project_id=project_id,
                    trace_id=span.trace,
                    span_id=span.span,
                    span=span_bytes,
                    resource=resource_bytes,
                    received_at=now,
                )
            )
    with transaction.atomic():
        ingested = event_batch_ingest(project_id=project_id, events=events)
        if done_rows:
            PendingSpan.objects.filter(id__in=done_rows).delete()
        if new_rows:
            # A resend of a waiting span is already there: the first arrival's time counts.
            PendingSpan.objects.bulk_create(new_rows, ignore_conflicts=True)
    return TracesResult(
        stored=ingested.accepted,
        duplicates=ingested.duplicates,
        waiting=len(wait),
        rejected=rejections.count,
        error_message=rejections.error_message(),
    )
