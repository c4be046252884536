"""POST /events: the ingest hot path, as a plain Django view.

It skips DRF's request machinery on purpose: the body is read once, gunzipped
with a cap, decoded and validated by msgspec, and written in one transaction.
"""

from __future__ import annotations

import logging
import zlib

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DataError, IntegrityError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from events.retention import retention_not_before
from events.schema import DETAILED_ERRORS, BodyError, TooManyEvents, decode_batch
from events.services import event_batch_ingest
from projects.auth import bearer_token, principal_for_key

log = logging.getLogger(__name__)


# Each member's leftover input is copied once; a body of thousands of empty
# members would make that quadratic.
GZIP_MAX_MEMBERS = 64


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
    # Decompress with a cap so a small gzip bomb cannot use unbounded memory;
    # every member of a multi-member body (RFC 1952: `cat a.gz b.gz`) is read.
    chunks: list[bytes] = []
    total = 0
    rest = raw
    for _ in range(GZIP_MAX_MEMBERS):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = inflater.decompress(rest, limit + 1 - total)
        except zlib.error:
            raise BodyError("body is not valid gzip") from None
        total += len(chunk)
        if total > limit or inflater.unconsumed_tail:
            raise TooLarge(f"decompressed body over {limit} bytes")
        if not inflater.eof:
            raise BodyError("gzip body is truncated")
        chunks.append(chunk)
        # What follows a member is another member, or zero padding (as gzip(1) allows).
        rest = inflater.unused_data
        if rest[:1] == b"\x00":
            rest = rest.lstrip(b"\x00")
        if not rest:
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    raise BodyError(f"more than {GZIP_MAX_MEMBERS} gzip members")


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
        # Counts (at most INGEST_MAX_EVENTS) before any per-event work.
        # An event older than the project's retention is rejected by name (a 207), not stored.
        not_before = retention_not_before(project_id=principal.project_id)
        events, errors, ids = decode_batch(body, settings.INGEST_MAX_EVENTS, not_before)
    except (TooLarge, TooManyEvents) as exc:
        return _error(413, str(exc))
    except BodyError as exc:
        return _error(400, str(exc))
    valid = [ev for ev in events if ev is not None]
    try:
        result = event_batch_ingest(project_id=principal.project_id, events=valid)
    except (DataError, IntegrityError) as exc:
        # Validation keeps every value inside what both databases store; this is a bug if it happens.
        log.error("batch refused by the database: %s", exc)
        return _error(400, "the database refused this batch; check field sizes and values")
    # A database that is down or unreachable (OperationalError, InterfaceError) is
    # answered by llmobserve_site.unavailable: 503 with Retry-After, as on every path.
    listed = sorted(errors)[:DETAILED_ERRORS]
    rejected = [{"index": i, "event_id": ids.get(i), "errors": errors[i]} for i in listed]
    payload: dict[str, object] = {"accepted": result.accepted, "duplicates": result.duplicates, "rejected": rejected}
    if len(errors) > len(listed):
        payload["rejected_omitted"] = len(errors) - len(listed)
    if not rejected:
        status = 200
    elif valid:
        status = 207
    else:
        status = 400
    return JsonResponse(payload, status=status)
