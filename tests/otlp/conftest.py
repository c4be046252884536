"""Helpers for OTLP tests: export requests built with opentelemetry-proto's
own message classes (protobuf) and their OTLP/JSON form (hex ids)."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import pytest
from django.test import Client
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

# 2026-11-26T09:00:00Z in nanoseconds.
T0 = 1_795_683_600 * 10**9
TRACE = "5b8efff798038103d269b633813fc60c"
OTHER_TRACE = "0af7651916cd43dd8448eb211c80319c"


def span_id(n: int) -> str:
    return f"{n:016x}"


def _any(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, (list, tuple)):
        out = AnyValue()
        out.array_value.values.extend(_any(v) for v in value)
        return out
    return AnyValue(string_value=str(value))


def make_span(
    n: int,
    *,
    trace: str = TRACE,
    parent: int | None = None,
    name: str = "chat gpt-4o",
    start_ms: float = 0,
    duration_ms: float = 100,
    attrs: dict[str, Any] | None = None,
    error: bool = False,
    events: list[tuple[str, dict[str, Any]]] | None = None,
) -> Span:
    span = Span(
        trace_id=bytes.fromhex(trace),
        span_id=bytes.fromhex(span_id(n)),
        parent_span_id=bytes.fromhex(span_id(parent)) if parent is not None else b"",
        name=name,
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=T0 + int(start_ms * 1e6),
        end_time_unix_nano=T0 + int((start_ms + duration_ms) * 1e6),
    )
    for key, value in (attrs or {}).items():
        span.attributes.append(KeyValue(key=key, value=_any(value)))
    if error:
        span.status.code = Status.STATUS_CODE_ERROR
        span.status.message = "boom"
    for event_name, event_attrs in events or []:
        event = span.events.add(name=event_name, time_unix_nano=span.end_time_unix_nano)
        for key, value in event_attrs.items():
            event.attributes.append(KeyValue(key=key, value=_any(value)))
    return span


def chat_attrs(
    model: Any = "gpt-4o-2024-08-06", input_tokens: Any = 1200, output_tokens: Any = 150, **extra: Any
) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": model,
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
    }
    attrs.update(extra)
    return attrs


def export_request(spans: list[Span], service: str = "support-bot", **resource: Any) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(KeyValue(key="service.name", value=_any(service)))
    for key, value in resource.items():
        resource_spans.resource.attributes.append(KeyValue(key=key, value=_any(value)))
    scope = resource_spans.scope_spans.add()
    scope.scope.name = "tests"
    scope.spans.extend(spans)
    return request


def otlp_json(request: ExportTraceServiceRequest, ids: str = "hex") -> dict[str, Any]:
    """The OTLP/JSON form: lowerCamelCase, int64 as strings, hex ids (or the
    protobuf mapping's base64 with ids="base64")."""
    data = json_format.MessageToDict(request)
    if ids == "hex":
        for resource_spans in data.get("resourceSpans", []):
            for scope_spans in resource_spans.get("scopeSpans", []):
                for span in scope_spans.get("spans", []):
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if span.get(key):
                            span[key] = base64.b64decode(span[key]).hex()
    return data


class Otlp:
    """POST /v1/traces with a key."""

    def __init__(self, key: str | None) -> None:
        self.client = Client()
        self.key = key

    def post(
        self,
        body: bytes,
        content_type: str = "application/x-protobuf",
        *,
        gzip_body: bool = False,
        key: str | None = None,
    ) -> Any:
        headers: dict[str, str] = {}
        chosen = key if key is not None else self.key
        if chosen:
            headers["Authorization"] = f"Bearer {chosen}"
        if gzip_body:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        return self.client.post("/v1/traces", data=body, content_type=content_type, headers=headers)

    def send(self, request: ExportTraceServiceRequest, **kw: Any) -> Any:
        return self.post(request.SerializeToString(), **kw)

    def send_json(self, request: ExportTraceServiceRequest | dict[str, Any], ids: str = "hex", **kw: Any) -> Any:
        data = request if isinstance(request, dict) else otlp_json(request, ids)
        return self.post(json.dumps(data).encode(), "application/json", **kw)


def response_message(response: Any) -> ExportTraceServiceResponse:
    message = ExportTraceServiceResponse()
    if response["Content-Type"].startswith("application/json"):
        json_format.Parse(response.content or b"{}", message)
    else:
        message.ParseFromString(response.content)
    return message


@pytest.fixture
def otlp(api_key: str) -> Otlp:
    return Otlp(api_key)


@pytest.fixture
def other_otlp(other_key: str) -> Otlp:
    return Otlp(other_key)
