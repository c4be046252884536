from __future__ import annotations

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET


def broker_status() -> str:
    if settings.CELERY_EMBEDDED_BROKER:
        return "embedded"
    try:
        from kombu import Connection

        with Connection(settings.CELERY_BROKER_URL, connect_timeout=1) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=1)
        return "ok"
    except Exception:  # any failure to reach the broker means "unavailable"
        return "unavailable"


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        db = "ok"
    except DatabaseError:
        db = "unavailable"
    body = {"status": "ok" if db == "ok" else "degraded", "db": db, "broker": broker_status()}
    return JsonResponse(body, status=200 if db == "ok" else 503)
