"""The beat task that stores OTLP spans whose parent never came."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from events.models import Event
from otlp.models import PendingSpan
from tests.otlp.conftest import Otlp, chat_attrs, export_request, make_span, span_id

pytestmark = pytest.mark.django_db


def test_the_task_is_registered_and_scheduled_by_beat():
    from llmobserve_site.celery import app

    app.loader.import_default_modules()
    assert "otlp.pending_flush" in app.tasks
    app.finalize()
    scheduled = {entry["task"]: entry["schedule"] for entry in app.conf.beat_schedule.values()}
    assert scheduled["otlp.pending_flush"] == 30.0


def test_the_task_stores_spans_waiting_longer_than_otlp_pending_seconds(otlp: Otlp, project, settings):
    from otlp.tasks import otlp_pending_flush_task

    settings.OTLP_PENDING_SECONDS = 0
    assert otlp.send(export_request([make_span(3, parent=2, attrs=chat_attrs())])).status_code == 200
    PendingSpan.objects.update(received_at=timezone.now() - dt.timedelta(seconds=1))
    assert otlp_pending_flush_task.apply().get() == 1
    assert Event.objects.get(project=project).span_id == span_id(3)
    assert not PendingSpan.objects.exists()
