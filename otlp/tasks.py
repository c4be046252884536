"""Celery task of the OTLP ingest: a thin wrapper over otlp.services."""

from __future__ import annotations

from celery import shared_task

from otlp.services import otlp_pending_flush


@shared_task(name="otlp.pending_flush", acks_late=True, ignore_result=True)
def otlp_pending_flush_task() -> int:
    """Store the spans whose parent did not come within OTLP_PENDING_SECONDS.
    Idempotent: a span stored twice is a duplicate by its event_id."""
    return otlp_pending_flush()
