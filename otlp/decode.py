"""OTLP/HTTP request bodies (binary protobuf and OTLP/JSON) into one message type.

Both forms become an `ExportTraceServiceRequest` from `opentelemetry-proto`:
the protobuf form is parsed by the protobuf runtime (upb, in C); the JSON
form is read by `google.protobuf.json_format`, which already takes
lowerCamelCase and snake_case names, int64 as strings or numbers and enum
names or numbers.  The one thing OTLP/JSON does differently from the
protobuf JSON mapping is ids: trace and span ids are hex strings, not
base64 (OTLP spec, "JSON Protobuf Encoding"); some exporters send base64
anyway, so both are read (a 32-character trace id or 16-character span id
made of hex digits is hex, anything else base64).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import msgspec
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

PROTOBUF = "protobuf"
JSON = "json"

CONTENT_TYPES = {
    "application/x-protobuf": PROTOBUF,
    "application/protobuf": PROTOBUF,
    "application/json": JSON,
}

_HEX = re.compile(r"[0-9a-fA-F]*")
# Lengths of the hex form: 16-byte trace ids, 8-byte span ids.
_HEX_LENGTH = {"traceId": 32, "trace_id": 32, "spanId": 16, "span_id": 16, "parentSpanId": 16, "parent_span_id": 16}
_json_decoder = msgspec.json.Decoder()


class OtlpBodyError(ValueError):
    """The body is not an ExportTraceServiceRequest in the form it claims (a 400)."""


def content_kind(content_type: str) -> str | None:
    """PROTOBUF, JSON or None (a 415) for a Content-Type header."""
    return CONTENT_TYPES.get(content_type.split(";", 1)[0].strip().lower())


def export_request_decode(body: bytes, kind: str) -> ExportTraceServiceRequest:
    message = ExportTraceServiceRequest()
    if kind == PROTOBUF:
        try:
            message.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise OtlpBodyError(f"body is not a valid ExportTraceServiceRequest (protobuf): {exc}") from None
        return message
    try:
        data = _json_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise OtlpBodyError(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise OtlpBodyError('body must be a JSON object: {"resourceSpans": [...]}')
    try:
        _ids_to_base64(data)
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    # ParseError for a wrong type or name; the rest for what the parser meets
    # below it (a lone surrogate, nesting past the recursion limit, ...).
    except (json_format.ParseError, RecursionError, ValueError, TypeError, AttributeError, KeyError) as exc:
        raise OtlpBodyError(f"body is not a valid ExportTraceServiceRequest (OTLP/JSON): {exc}") from None
    return message


def _ids_to_base64(data: dict[str, Any]) -> None:
    """Rewrite hex ids in place as the base64 the protobuf JSON mapping reads."""
    for resource_spans in _items(data, "resourceSpans", "resource_spans"):
        for scope_spans in _items(resource_spans, "scopeSpans", "scope_spans"):
            for span in _items(scope_spans, "spans"):
                _fix_ids(span)
                for link in _items(span, "links"):
                    _fix_ids(link)


def _items(parent: Any, *names: str) -> list[Any]:
    if not isinstance(parent, dict):
        return []
    for name in names:
        value = parent.get(name)
        if isinstance(value, list):
            return value
    return []


def _fix_ids(obj: Any) -> None:
    if not isinstance(obj, dict):
        return
    for key, hex_length in _HEX_LENGTH.items():
        value = obj.get(key)
        if isinstance(value, str) and value:
            obj[key] = _id_base64(value, hex_length)


def _id_base64(value: str, hex_length: int) -> str:
    if len(value) == hex_length and _HEX.fullmatch(value):
        return base64.b64encode(bytes.fromhex(value)).decode("ascii")
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        # Neither form: an empty id, which the mapping rejects for this span
        # alone (partial success) instead of failing the whole body.
        return ""
    return value
