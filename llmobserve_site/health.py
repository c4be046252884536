from __future__ import annotations

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from llmobserve_site.unavailable import unavailable_response


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
def health(request: HttpRequest) -> HttpResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        # 503 with Retry-After and an "error", as every API path answers without its database.
        return unavailable_response(request, status="degraded", db="unavailable", broker=broker_status())
    return JsonResponse({"status": "ok", "db": "ok", "broker": broker_status()})
