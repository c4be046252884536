"""POST /v1/traces (OTLP/HTTP), authenticated and bounded like POST /events.

The response is in the request's content type (OTLP spec, "OTLP/HTTP
Response"): an ExportTraceServiceResponse, with partial_success when spans
were rejected (clients do not retry those); failures carry a google.rpc
Status.  401 without a valid key, 413 over the limits, 415 for a content
type other than protobuf or JSON, 400 for a body that cannot be read (not
retried by clients); a database that cannot be reached is the site's 503
with Retry-After (llmobserve_site.unavailable), which clients retry.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import DataError, IntegrityError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from events.schema import BodyError
from events.views import TooLarge
from events.views import _body as ingest_body  # the same size limits and gzip handling as POST /events
from otlp.decode import JSON, PROTOBUF, OtlpBodyError, content_kind, export_request_decode
from otlp.services import TooManySpans, otlp_traces_ingest
from projects.auth import bearer_token, principal_for_key

log = logging.getLogger(__name__)

CONTENT_TYPE = {PROTOBUF: "application/x-protobuf", JSON: "application/json"}
# google.rpc.Code values for the Status of a failure.
_CODES = {400: 3, 401: 16, 413: 8, 415: 3}


def _status(kind: str, http_status: int, message: str) -> HttpResponse:
    status = Status(code=_CODES.get(http_status, 2), message=message)
    if kind == PROTOBUF:
        body = status.SerializeToString()
    else:
        body = json_format.MessageToJson(status, indent=None).encode()
    return HttpResponse(body, status=http_status, content_type=CONTENT_TYPE[kind])


def _success(kind: str, rejected: int, message: str) -> HttpResponse:
    if kind == PROTOBUF:
        response = ExportTraceServiceResponse()
        if rejected:
            response.partial_success.rejected_spans = rejected
            response.partial_success.error_message = message
        return HttpResponse(response.SerializeToString(), content_type=CONTENT_TYPE[kind])
    body = b"{}"
    if rejected:
        response = ExportTraceServiceResponse()
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
        body = json_format.MessageToJson(response, indent=None).encode()
    return HttpResponse(body, content_type=CONTENT_TYPE[kind])


@csrf_exempt
@require_POST
def traces_export(request: HttpRequest) -> HttpResponse:
    kind = content_kind(request.META.get("CONTENT_TYPE", ""))
    if kind is None:
        return _status(JSON, 415, "Content-Type must be application/x-protobuf or application/json")
    token = bearer_token(request)
    principal = principal_for_key(token) if token else None
    if principal is None:
        response = _status(kind, 401, "a valid API key is required: Authorization: Bearer <key>")
        response["WWW-Authenticate"] = 'Bearer realm="llmobserve"'
        return response
    try:
        body = ingest_body(request)
        message = export_request_decode(body, kind)
        result = otlp_traces_ingest(
            project_id=principal.project_id, request=message, max_spans=settings.INGEST_MAX_EVENTS
        )
    except (TooLarge, TooManySpans) as exc:
        return _status(kind, 413, str(exc))
    except (BodyError, OtlpBodyError) as exc:
        return _status(kind, 400, str(exc))
    except (DataError, IntegrityError) as exc:
        # The mapping keeps every value inside what both databases store; this is a bug if it happens.
        log.error("OTLP export refused by the database: %s", exc)
        return _status(kind, 400, "the database refused this export; check attribute sizes and values")
    return _success(kind, result.rejected, result.error_message)
