"""A database that cannot be reached is a 503 with Retry-After, never a 500.

Whatever meets it (ingest, the read API, the dashboard, the admin, the login
page): a cold worker whose first connection fails, a connection the server
ended under a live worker, a lock or statement that timed out.  API paths
answer JSON `{"error": ...}`, the dashboard's a plain page (rendered without
templates or context processors, which would ask the database again).

The same middleware refuses a NUL byte in the path or the query string with
a 400: PostgreSQL text cannot hold one, so any filter or id carrying it would
otherwise fail inside the query.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
# Paths a browser reads; everything else is the JSON API (ingest included).
HTML_PREFIXES = ("/dashboard/", "/admin/", "/accounts/")

UNAVAILABLE: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, sqlite3.OperationalError)
try:  # errors from a raw psycopg cursor that Django did not wrap
    import psycopg

    UNAVAILABLE += (psycopg.OperationalError, psycopg.InterfaceError)
except ImportError:  # pragma: no cover - SQLite-only installs
    pass

UNAVAILABLE_MESSAGE = "the database is unavailable; retry later"
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1><p>{text}</p></body></html>
"""


def wants_html(request: HttpRequest) -> bool:
    path = request.path_info
    return path == "/" or path.startswith(HTML_PREFIXES)


def unavailable_response(request: HttpRequest, **extra: str) -> HttpResponse:
    """503 with Retry-After: JSON on API paths, a plain page on the dashboard's."""
    response: HttpResponse
    if wants_html(request):
        text = "The database is unavailable right now. Try again in a few seconds."
        response = HttpResponse(
            _PAGE.format(title="Service unavailable", text=text), status=503, content_type="text/html; charset=utf-8"
        )
    else:
        response = JsonResponse({"error": UNAVAILABLE_MESSAGE, **extra}, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _bad_request(request: HttpRequest, message: str) -> HttpResponse:
    if wants_html(request):
        return HttpResponse(
            _PAGE.format(title="Bad request", text=message), status=400, content_type="text/html; charset=utf-8"
        )
    return JsonResponse({"error": message}, status=400)


def _has_nul(request: HttpRequest) -> bool:
    if "\x00" in request.path_info:
        return True
    if not request.META.get("QUERY_STRING"):
        return False
    return any("\x00" in key or any("\x00" in v for v in values) for key, values in request.GET.lists())


class DatabaseUnavailableMiddleware:
    """503 + Retry-After for an unreachable database; 400 for a NUL in the URL."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _has_nul(request):
            return _bad_request(request, "the path and query parameters must not contain NUL characters")
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, UNAVAILABLE):
            return None
        log.error("database unavailable (%s %s): %s", request.method, request.path, exception)
        return unavailable_response(request)
