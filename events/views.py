"""POST /events: the ingest hot path, as a plain Django view.

It skips DRF's request machinery on purpose: the body is read once, gunzipped
with a cap, decoded and validated by msgspec, and written in one transaction.
"""

from __future__ import annotations

import logging
import zlib

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, DataError, IntegrityError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from events.schema import BodyError, decode_batch
from events.services import event_batch_ingest
from projects.auth import bearer_token, principal_for_key

log = logging.getLogger(__name__)


class TooLarge(Exception):
    pass


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _body(request: HttpRequest) -> bytes:
    limit = settings.INGEST_MAX_BYTES
    try:
        raw = request.body
    except RequestDataTooBig:
        raise TooLarge(f"body over {limit} bytes") from None
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        if len(raw) > limit:
            raise TooLarge(f"body over {limit} bytes")
        return raw
    if encoding != "gzip":
        raise BodyError(f"unsupported Content-Encoding {encoding!r} (use gzip)")
    # Decompress with a cap so a small gzip bomb cannot use unbounded memory.
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(raw, limit + 1)
    except zlib.error:
        raise BodyError("body is not valid gzip") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise TooLarge(f"decompressed body over {limit} bytes")
    if not inflater.eof:
        raise BodyError("gzip body is truncated")
    return out


@csrf_exempt
@require_POST
def events_ingest(request: HttpRequest) -> JsonResponse:
    token = bearer_token(request)
    principal = principal_for_key(token) if token else None
    if principal is None:
        response = _error(401, "a valid API key is required: Authorization: Bearer <key>")
        response["WWW-Authenticate"] = 'Bearer realm="llmobserve"'
        return response
    try:
        body = _body(request)
        events, errors, ids = decode_batch(body)
    except TooLarge as exc:
        return _error(413, str(exc))
    except BodyError as exc:
        return _error(400, str(exc))
    if len(events) > settings.INGEST_MAX_EVENTS:
        return _error(413, f"{len(events)} events in one request; at most {settings.INGEST_MAX_EVENTS}")
    valid = [ev for ev in events if ev is not None]
    try:
        result = event_batch_ingest(project_id=principal.project_id, events=valid)
    except (DataError, IntegrityError) as exc:
        log.warning("batch refused by the database: %s", exc)
        return _error(400, "the database refused this batch; check field sizes and values")
    except DatabaseError as exc:
        log.error("database unavailable during ingest: %s", exc)
        return _error(503, "the event store is unavailable; retry later")
    rejected = [{"index": i, "event_id": ids.get(i), "errors": errors[i]} for i in sorted(errors)]
    payload = {"accepted": result.accepted, "duplicates": result.duplicates, "rejected": rejected}
    if not rejected:
        status = 200
    elif valid:
        status = 207
    else:
        status = 400
    return JsonResponse(payload, status=status)
