"""Spans waiting for their parent.

Exporters send a span when it ends, so a call usually reaches the collector
before the span around it (in an earlier request when the parent ends after
the exporter's delay, or always with a SimpleSpanProcessor).  Its section
label and path depend on that parent, and what ingest stores it never
relabels (the label feeds the per-section aggregates).  So a span whose parent
is neither in its request nor stored waits here, trimmed to what the mapping
reads, until a request of the same trace brings the parent, or until
OTLP_PENDING_SECONDS pass (a parent that never comes: a service that does
not export to us), when it is stored as it is.
"""

from __future__ import annotations

from django.db import models

from projects.models import Project


class PendingSpan(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, db_index=False)
    trace_id = models.CharField(max_length=32)  # hex
    span_id = models.CharField(max_length=16)  # hex
    # Serialized opentelemetry.proto Span and Resource, without what the mapping does not read.
    span = models.BinaryField()
    resource = models.BinaryField()
    received_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "trace_id", "span_id"], name="otlp_pending_span_unique"),
        ]
        indexes = [
            # A request's traces: their waiting spans (the unique key's prefix serves it too).
            # The sweep: the oldest first, across projects.
            models.Index(fields=["received_at"], name="otlp_pending_received"),
        ]
