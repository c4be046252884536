"""POST /v1/traces: an OTLP export request into the event store.

The mapping (`otlp.mapping`) turns spans into the same `EventIn` events the
SDK sends, and `event_batch_ingest` stores and prices them: OTLP-fed runs are
costed, aggregated and idempotent exactly like SDK-fed ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from events.schema import EventIn
from events.services import event_batch_ingest
from otlp.mapping import (
    SECTION_KIND,
    UNDECIDED,
    Rejections,
    SpanProblem,
    event_for,
    event_id_for,
    frames_resolve,
    kinds_plan,
    mark_ancestors,
    parent_frame,
    runs_assign,
    spans_collect,
)
from otlp.selectors import spans_with_stored_children, stored_parents_get


class TooManySpans(ValueError):
    def __init__(self, limit: int, count: int) -> None:
        super().__init__(f"{count} spans in one request; at most {limit} spans a request")


@dataclass(slots=True)
class TracesResult:
    spans: int = 0  # in the request
    stored: int = 0  # calls and sections newly stored
    duplicates: int = 0  # already stored (a resend)
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
    runs_assign(spans)
    index = kinds_plan(spans)

    # A span whose children came in an earlier request (children usually end,
    # and so are exported, before their parent) is a section too.
    candidates = [span for span in spans if span.kind != SECTION_KIND]
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

    events: list[EventIn] = []
    for span in spans:
        if span.kind == UNDECIDED or span.folded:
            continue
        try:
            events.append(event_for(span, parent_frame(span, index, frames, stored)))
        except SpanProblem as exc:
            rejections.add(span.span, str(exc))
    ingested = event_batch_ingest(project_id=project_id, events=events)
    return TracesResult(
        spans=count,
        stored=ingested.accepted,
        duplicates=ingested.duplicates,
        rejected=rejections.count,
        error_message=rejections.error_message(),
    )
