"""OTLP spans → llmobserve events (the table in README.md, "OpenTelemetry in").

Pure functions over one export request; the database look-ups the mapping
needs (which stored spans are parents, which stored spans are sections) are
passed in by `otlp.services`.

- A trace is a run: `run_id` is the trace id in hex, or a `llmobserve.run_id`
  / `session.id` attribute found on any span of the trace in the request
  (span attributes first, then the resource's).
- An LLM span (GenAI semantic conventions, OpenLLMetry, OpenInference) is a
  call; its `event_id` is `otlp-<trace id>-<span id>`, so a resent export
  is a duplicate, never a second cost.
- A span with calls below it becomes a section, named by its
  `llmobserve.section` attribute or its span name.  An LLM span with an LLM
  span below it (a framework's span around the provider's own) is a section
  too, so one request is never billed twice.
- Other spans (HTTP, database, a tool that made no LLM call) carry no cost
  and are not stored.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import msgspec
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from events.schema import (
    ATTRIBUTES_MAX_BYTES,
    MAX_LATENCY_MS,
    MAX_NUMBER,
    MAX_SECTION_DEPTH,
    MAX_TOKENS,
    EventIn,
)

MAX_PATH = 1024
# Rejected spans described in partial_success.error_message; the rest are counted.
DESCRIBED = 5

# --- Attribute names ----------------------------------------------------------------
# First present wins, in this order.
INPUT = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.usage.prompt_tokens",
    "llm.token_count.prompt",
)
OUTPUT = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.usage.completion_tokens",
    "llm.token_count.completion",
)
TOTAL = ("gen_ai.usage.total_tokens", "llm.usage.total_tokens", "llm.token_count.total")
CACHE_READ = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
)
CACHE_WRITE = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
)
REASONING = (
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "llm.usage.reasoning_tokens",
    "llm.token_count.completion_details.reasoning",
)
PROVIDER = ("gen_ai.provider.name", "llm.provider", "gen_ai.system", "llm.system")
MODEL = ("gen_ai.response.model", "llm.response.model", "llm.model_name", "gen_ai.request.model", "llm.request.model")
OPERATION = ("gen_ai.operation.name", "llm.request.type")
SERVICE_TIER = ("openai.response.service_tier", "gen_ai.openai.response.service_tier")
CLIENT_COST = ("gen_ai.usage.cost", "llm.cost.total")
API_BASE = ("gen_ai.openai.api_base", "llm.openai.api_base")
RUN_ID = ("llmobserve.run_id", "session.id")
SECTION = "llmobserve.section"
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
OPENINFERENCE_KIND = "openinference.span.kind"

# Operations that are a model call; agent and tool operations are not, even
# when they carry usage (an invoke_agent span may sum its calls' tokens).
LLM_OPERATIONS = frozenset(
    {"chat", "text_completion", "generate_content", "embeddings", "completion", "embedding", "rerank", "responses"}
)
NOT_CALLS = frozenset(
    {"invoke_agent", "create_agent", "execute_tool", "invoke_workflow", "workflow", "task", "agent", "tool"}
)
OPENINFERENCE_CALLS = frozenset({"LLM", "EMBEDDING"})

# User attributes: these keys, and any under these prefixes.
USER_KEYS = {"user.id": "user_id", "session.id": "session_id", "enduser.id": "user_id"}
USER_PREFIXES = ("tag.", "llmobserve.")
_NOT_ATTRIBUTES = frozenset({"llmobserve.run_id", SECTION})

WANTED = frozenset(
    {
        *INPUT,
        *OUTPUT,
        *TOTAL,
        *CACHE_READ,
        *CACHE_WRITE,
        *REASONING,
        *PROVIDER,
        *MODEL,
        *OPERATION,
        *SERVICE_TIER,
        *CLIENT_COST,
        *API_BASE,
        *USER_KEYS,
        SECTION,
        ERROR_TYPE,
        SERVER_ADDRESS,
        OPENINFERENCE_KIND,
    }
)
_USAGE = (*INPUT, *OUTPUT, *TOTAL)

# OTel provider names (gen_ai.provider.name, gen_ai.system, llm.provider) → the price source's.
PROVIDERS = {
    "azure.ai.openai": "azure",
    "az.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "az.ai.inference": "azure",
    "azure_openai": "azure",
    "azureopenai": "azure",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "vertex_ai": "google",
    "vertexai": "google",
    "gemini": "google",
    "aws.bedrock": "aws",
    "bedrock": "aws",
    "x_ai": "x-ai",
    "xai": "x-ai",
    "mistral_ai": "mistral",
    "mistralai": "mistral",
}

CALL = "call"
SECTION_KIND = "section"
UNDECIDED = "undecided"

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ERROR = Status.STATUS_CODE_ERROR
_encoder = msgspec.json.Encoder()


def event_id_for(trace_hex: str, span_hex: str) -> str:
    return f"otlp-{trace_hex}-{span_hex}"


class SpanProblem(ValueError):
    """This span cannot be stored (the others of its request are)."""


@dataclass(slots=True)
class SpanIn:
    """One span of the request, with what the mapping reads of it."""

    trace: str
    span: str
    parent: str | None
    pb: Span
    attrs: dict[str, AnyValue]
    resource: ResourceIn
    is_llm: bool
    kind: str = UNDECIDED
    run_id: str = ""
    folded: bool = False
    pending_id: int | None = None  # its PendingSpan row, when it waited for its parent


@dataclass(slots=True)
class ResourceIn:
    service: str | None
    user: dict[str, Any]  # user attributes set on the resource
    run_id: str | None
    kept: list[KeyValue]  # the attributes above as sent (what a waiting span keeps of its resource)


@dataclass(frozen=True, slots=True)
class Frame:
    """What a span's children inherit: the span id they hang under, the
    innermost section label and the section path (None outside any section)."""

    span_id: str | None
    label: str | None
    path: str | None
    depth: int
    # An ancestor is neither in the request nor stored: the label and path are not known yet.
    unknown: bool = False


ROOT = Frame(None, None, None, 0)


@dataclass(frozen=True, slots=True)
class StoredParent:
    span_type: str
    section: str | None
    section_path: str | None


@dataclass(slots=True)
class Rejections:
    count: int = 0
    messages: list[str] = field(default_factory=list)

    def add(self, span_hex: str, message: str) -> None:
        self.count += 1
        if len(self.messages) < DESCRIBED:
            self.messages.append(f"span {span_hex or '?'}: {message}")

    def error_message(self) -> str:
        if not self.count:
            return ""
        more = self.count - len(self.messages)
        tail = f"; {more} more" if more > 0 else ""
        return f"{self.count} span(s) rejected: " + "; ".join(self.messages) + tail


# --- AnyValue --------------------------------------------------------------------------


def value_of(value: AnyValue) -> Any:
    """A scalar (or a list of scalars) of an AnyValue; None for the rest."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "double_value":
        number = value.double_value
        return number if math.isfinite(number) else None
    if kind == "array_value":
        items = [value_of(item) for item in value.array_value.values[:64]]
        return [item for item in items if item is not None and not isinstance(item, list)]
    return None


def _first(attrs: dict[str, AnyValue], names: tuple[str, ...]) -> Any:
    for name in names:
        value = attrs.get(name)
        if value is not None:
            got = value_of(value)
            if got is not None and got != "":
                return got
    return None


def _count(attrs: dict[str, AnyValue], names: tuple[str, ...]) -> int | None:
    """A token count: None when absent; SpanProblem when not a count we can store."""
    for name in names:
        value = attrs.get(name)
        if value is None:
            continue
        raw = value_of(value)
        if raw is None or raw == "":
            continue
        number: int
        if isinstance(raw, bool):
            raise SpanProblem(f"{name} must be an integer")
        if isinstance(raw, int):
            number = raw
        elif isinstance(raw, float) and raw.is_integer():
            number = int(raw)
        elif isinstance(raw, str) and raw.strip().isdigit():
            number = int(raw.strip())
        else:
            raise SpanProblem(f"{name} must be an integer")
        if not 0 <= number <= MAX_TOKENS:
            raise SpanProblem(f"{name} must be between 0 and 2**40")
        return number
    return None


def _text(value: Any, limit: int) -> str | None:
    """A stored string: at most `limit` characters, no NUL (PostgreSQL text cannot hold one)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    text = text[:limit]
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text or None


def _label(span: SpanIn) -> str:
    """A section label: `llmobserve.section` or the span name.  A `/` would
    split the label in a section path, so it becomes U+2215 (∕) there."""
    chosen = _first(span.attrs, (SECTION,))
    label = _text(chosen if isinstance(chosen, str) else span.pb.name, 256) or "span"
    return label.replace("/", "\u2215")


# --- Collecting the request's spans ---------------------------------------------------------


def spans_collect(message: ExportTraceServiceRequest, rejections: Rejections) -> list[SpanIn]:
    """Every span of the request with valid ids, once (the first of a
    repeated trace+span id is kept); invalid ones are counted in rejections."""
    out: list[SpanIn] = []
    seen: set[tuple[str, str]] = set()
    wanted = WANTED
    for resource_spans in message.resource_spans:
        resource = resource_in(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for pb in scope_spans.spans:
                trace_id, span_id, parent_id = pb.trace_id, pb.span_id, pb.parent_span_id
                span_hex = span_id.hex()
                if len(trace_id) != 16 or not any(trace_id):
                    rejections.add(span_hex, "trace_id must be 16 bytes, not all zero")
                    continue
                if len(span_id) != 8 or not any(span_id):
                    rejections.add(span_hex, "span_id must be 8 bytes, not all zero")
                    continue
                if parent_id and len(parent_id) != 8:
                    rejections.add(span_hex, "parent_span_id must be empty or 8 bytes")
                    continue
                if not pb.start_time_unix_nano:
                    rejections.add(span_hex, "start_time_unix_nano is required")
                    continue
                key = (trace_id.hex(), span_hex)
                if key in seen:
                    continue
                seen.add(key)
                out.append(span_in(pb, resource, key[0], span_hex, wanted))
    return out


def span_in(pb: Span, resource: ResourceIn, trace_hex: str, span_hex: str, wanted: frozenset[str] = WANTED) -> SpanIn:
    attrs: dict[str, AnyValue] = {}
    for kv in pb.attributes:
        name = kv.key
        if name in wanted or name.startswith(USER_PREFIXES):
            attrs[name] = kv.value
    parent_id = pb.parent_span_id
    return SpanIn(
        trace=trace_hex,
        span=span_hex,
        parent=parent_id.hex() if parent_id and any(parent_id) else None,
        pb=pb,
        attrs=attrs,
        resource=resource,
        is_llm=_is_llm(attrs),
    )


def pending_span_in(span_bytes: bytes, resource_bytes: bytes, row_id: int) -> SpanIn:
    """A waiting span, as spans_collect made it when it first came."""
    pb = Span()
    pb.ParseFromString(span_bytes)
    resource = Resource()
    resource.ParseFromString(resource_bytes)
    span = span_in(pb, resource_in(resource.attributes), pb.trace_id.hex(), pb.span_id.hex())
    span.pending_id = row_id
    return span


def pending_bytes(span: SpanIn) -> tuple[bytes, bytes]:
    """(Span, Resource) serialized with only what the mapping reads: no
    prompts or completions wait in the database."""
    pb = span.pb
    out = Span(
        trace_id=pb.trace_id,
        span_id=pb.span_id,
        parent_span_id=pb.parent_span_id,
        name=pb.name,
        kind=pb.kind,
        start_time_unix_nano=pb.start_time_unix_nano,
        end_time_unix_nano=pb.end_time_unix_nano,
    )
    out.status.CopyFrom(pb.status)
    for name, value in span.attrs.items():
        out.attributes.add(key=name).value.CopyFrom(value)
    for event in pb.events:
        if event.name == "exception":
            kept = out.events.add(name="exception", time_unix_nano=event.time_unix_nano)
            kept.attributes.extend(kv for kv in event.attributes if kv.key == "exception.type")
    resource = Resource()
    resource.attributes.extend(span.resource.kept)
    return out.SerializeToString(), resource.SerializeToString()


def resource_in(attributes: Iterable[KeyValue]) -> ResourceIn:
    service: str | None = None
    user: dict[str, Any] = {}
    run_id: str | None = None
    kept: list[KeyValue] = []
    for kv in attributes:
        name = kv.key
        if name == "service.name":
            service = _text(value_of(kv.value), 128)
            kept.append(kv)
        elif name in USER_KEYS or name.startswith(USER_PREFIXES):
            value = value_of(kv.value)
            if name == "llmobserve.run_id" and isinstance(value, str):
                run_id = value
            _user_attribute(user, name, value)
            kept.append(kv)
    return ResourceIn(service=service, user=user, run_id=run_id, kept=kept)


def _user_attribute(out: dict[str, Any], name: str, value: Any) -> None:
    if value is None or name in _NOT_ATTRIBUTES:
        return
    if isinstance(value, str):
        value = _text(value, 1024)
        if value is None:
            return
    elif isinstance(value, list):
        value = [_text(v, 1024) if isinstance(v, str) else v for v in value]
    if name in USER_KEYS:
        out[USER_KEYS[name]] = value
    elif name.startswith("llmobserve."):
        out[name[len("llmobserve.") :]] = value
    else:
        out[name] = value


def _is_llm(attrs: dict[str, AnyValue]) -> bool:
    if not attrs:
        return False
    operation = _first(attrs, OPERATION)
    if isinstance(operation, str):
        operation = operation.lower()
        if operation in NOT_CALLS:
            return False
        if operation in LLM_OPERATIONS:
            return True
    kind = _first(attrs, (OPENINFERENCE_KIND,))
    if isinstance(kind, str):
        return kind.upper() in OPENINFERENCE_CALLS
    if any(name in attrs for name in _USAGE):
        return True
    return operation is not None and _first(attrs, MODEL) is not None


def runs_assign(spans: list[SpanIn]) -> None:
    """Each span's run_id: its trace's `llmobserve.run_id`, else its
    `session.id`, else the trace id (the same for every span of a trace)."""
    chosen: dict[str, str] = {}
    fallback: dict[str, str] = {}
    for span in spans:
        if span.trace in chosen:
            continue
        run: Any = _first(span.attrs, ("llmobserve.run_id",)) or span.resource.run_id
        if _usable_run_id(run):
            chosen[span.trace] = run
            continue
        session: Any = _first(span.attrs, ("session.id",)) or span.resource.user.get("session_id")
        if _usable_run_id(session) and span.trace not in fallback:
            fallback[span.trace] = session
    for span in spans:
        span.run_id = chosen.get(span.trace) or fallback.get(span.trace) or span.trace


def _usable_run_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 128 and "\x00" not in value


# --- The tree ------------------------------------------------------------------------------------


def kinds_plan(spans: list[SpanIn]) -> dict[tuple[str, str], SpanIn]:
    """Mark calls and the sections above them within the request; returns the index."""
    index = {(span.trace, span.span): span for span in spans}
    for span in spans:
        span.kind = CALL if span.is_llm else UNDECIDED
    for span in spans:
        if span.is_llm:
            mark_ancestors(span, index)
    return index


def mark_ancestors(span: SpanIn, index: dict[tuple[str, str], SpanIn]) -> None:
    """Every ancestor of `span` in the request becomes a section.  Stops at
    the first one already marked, so the whole request costs O(spans) and a
    cycle of parents ends after one lap."""
    parent = index.get((span.trace, span.parent)) if span.parent else None
    while parent is not None and parent.kind != SECTION_KIND:
        parent.kind = SECTION_KIND
        parent = index.get((parent.trace, parent.parent)) if parent.parent else None


def frames_resolve(
    spans: list[SpanIn], index: dict[tuple[str, str], SpanIn], stored: dict[str, StoredParent]
) -> dict[tuple[str, str], Frame]:
    """The frame each stored section gives its children (its own, or its
    parent's when it is folded: past MAX_SECTION_DEPTH levels or MAX_PATH
    characters it gets no level of its own, as in the SDK)."""
    frames: dict[tuple[str, str], Frame] = {}
    for span in spans:
        if span.kind != SECTION_KIND or (span.trace, span.span) in frames:
            continue
        # Walk up to a known frame (or the top), then down, without recursion.
        chain: list[SpanIn] = []
        on_chain: set[tuple[str, str]] = set()
        node: SpanIn | None = span
        while node is not None:
            key = (node.trace, node.span)
            if key in frames or key in on_chain:
                break
            chain.append(node)
            on_chain.add(key)
            parent = index.get((node.trace, node.parent)) if node.parent else None
            node = parent if parent is not None and parent.kind == SECTION_KIND else None
        # Top down: each parent's frame is known before its child's (in a
        # loop of parents, the top one has none and starts at the root).
        for node in reversed(chain):
            above = frames.get((node.trace, node.parent)) if node.parent else None
            frames[(node.trace, node.span)] = _extend(above or outside_frame(node, index, stored), node)
    return frames


def outside_frame(span: SpanIn, index: dict[tuple[str, str], SpanIn], stored: dict[str, StoredParent]) -> Frame:
    """The frame of a span whose parent is not a section of this request."""
    if not span.parent:
        return ROOT
    if (span.trace, span.parent) in index:
        # In this request but not a section of it: only a loop of parents gets here.
        return ROOT
    parent = stored.get(event_id_for(span.trace, span.parent))
    if parent is not None and parent.span_type == "section" and parent.section:
        depth = parent.section_path.count("/") + 1 if parent.section_path else 1
        return Frame(span.parent, parent.section, parent.section_path, depth)
    # Unknown yet (it may come in a later request): hang under its id, so
    # the run tree links it once its section arrives.
    return Frame(span.parent, None, None, 0, unknown=True)


def _extend(above: Frame, node: SpanIn) -> Frame:
    label = _label(node)
    path = f"{above.path}/{label}" if above.path else label
    if above.depth + 1 > MAX_SECTION_DEPTH or len(path) > MAX_PATH:
        node.folded = True
        return above
    return Frame(node.span, label, path, above.depth + 1, above.unknown)


def parent_frame(
    span: SpanIn,
    index: dict[tuple[str, str], SpanIn],
    frames: dict[tuple[str, str], Frame],
    stored: dict[str, StoredParent],
) -> Frame:
    if not span.parent:
        return ROOT
    key = (span.trace, span.parent)
    frame = frames.get(key)
    if frame is not None:
        return frame
    return outside_frame(span, index, stored)


# --- Events ---------------------------------------------------------------------------------------


def _moment(nanos: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=nanos // 1000)


def _status(span: SpanIn) -> tuple[str, str | None]:
    pb = span.pb
    if pb.status.code != _ERROR:
        return "ok", None
    error_type = _first(span.attrs, (ERROR_TYPE,))
    if error_type is None:
        for event in pb.events:
            if event.name == "exception":
                for kv in event.attributes:
                    if kv.key == "exception.type":
                        error_type = value_of(kv.value)
                        break
            if error_type is not None:
                break
    if error_type is None and pb.status.message:
        error_type = pb.status.message
    return "error", _text(error_type, 256)


def _attributes(span: SpanIn) -> msgspec.Raw:
    user = dict(span.resource.user) if span.resource.user else {}
    for name, value in span.attrs.items():
        if name in USER_KEYS or name.startswith(USER_PREFIXES):
            _user_attribute(user, name, value_of(value))
    if not user:
        return msgspec.Raw(b"")
    data = _encoder.encode(user)
    if len(data) > ATTRIBUTES_MAX_BYTES:
        # Too much to keep whole: the ids that group costs, without the rest.
        kept = {k: user[k] for k in ("user_id", "session_id") if k in user}
        data = _encoder.encode(kept) if kept else b""
    return msgspec.Raw(data)


def _provider(attrs: dict[str, AnyValue]) -> str | None:
    raw = _first(attrs, PROVIDER)
    if not isinstance(raw, str):
        return None
    name = raw.strip().lower()
    return _text(PROVIDERS.get(name, name), 64)


def _host(attrs: dict[str, AnyValue]) -> str | None:
    host = _first(attrs, (SERVER_ADDRESS,))
    if isinstance(host, str):
        return _text(host.strip().lower(), 255)
    base = _first(attrs, API_BASE)
    if isinstance(base, str):
        try:
            return _text((urlsplit(base).hostname or "").lower(), 255)
        except ValueError:
            return None
    return None


def event_for(span: SpanIn, frame: Frame) -> EventIn:
    """The event of a stored span (a call or a section); SpanProblem when it cannot be stored."""
    pb = span.pb
    start, end = pb.start_time_unix_nano, pb.end_time_unix_nano
    latency_ms = (end - start) / 1e6 if end > start else 0.0
    if latency_ms > MAX_LATENCY_MS:
        raise SpanProblem("end_time_unix_nano is more than 115 days after start_time_unix_nano")
    status, error_type = _status(span)
    name = _text(pb.name, 256) or ""
    common: dict[str, Any] = {
        "event_id": event_id_for(span.trace, span.span),
        "run_id": span.run_id,
        "span_id": span.span,
        "parent_span_id": frame.span_id,
        "name": name,
        "latency_ms": latency_ms,
        "started_at": _moment(start),
        "status": status,
        "error_type": error_type,
        "service": span.resource.service,
        "attributes": _attributes(span),
    }
    if span.kind == SECTION_KIND:
        label = _label(span)
        path = f"{frame.path}/{label}" if frame.path else label
        return EventIn(span_type="section", section=label, section_path=path, **common)
    return EventIn(span_type="llm", section=frame.label, section_path=frame.path, **_call_fields(span), **common)


def _call_fields(span: SpanIn) -> dict[str, Any]:
    attrs = span.attrs
    input_tokens = _count(attrs, INPUT)
    output_tokens = _count(attrs, OUTPUT)
    cached = _count(attrs, CACHE_READ) or 0
    cache_write = _count(attrs, CACHE_WRITE) or 0
    reasoning = _count(attrs, REASONING) or 0
    usage_known = input_tokens is not None or output_tokens is not None
    input_tokens = input_tokens or 0
    output_tokens = output_tokens or 0
    # The conventions count cached and cache-write tokens inside input tokens
    # (as OpenAI does, and as EventIn does); an instrumentation that sends
    # Anthropic's own figures (input without the cache) is recognised by
    # parts larger than the whole, and the parts are added back.
    if cached + cache_write > input_tokens:
        input_tokens += cached + cache_write
    if reasoning > output_tokens:
        output_tokens += reasoning
    if input_tokens > MAX_TOKENS or output_tokens > MAX_TOKENS:
        raise SpanProblem("token counts must be at most 2**40")
    fields: dict[str, Any] = {
        "provider": _provider(attrs),
        "model": _text(_first(attrs, MODEL), 128),
        "endpoint": _text(_first(attrs, OPERATION), 128),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cached_input_tokens": cached,
        "reasoning_tokens": reasoning,
        "usage_known": usage_known or span.pb.status.code == _ERROR,
        "provider_host": _host(attrs),
    }
    if cache_write:
        fields["usage_details"] = {"cache_write_tokens": float(cache_write)}
    tier = _first(attrs, SERVICE_TIER)
    if isinstance(tier, str):
        fields["price_context"] = {"service_tier": _text(tier, 128)}
    cost = _first(attrs, CLIENT_COST)
    if isinstance(cost, (int, float)) and not isinstance(cost, bool) and 0 <= cost <= MAX_NUMBER:
        fields["cost_usd"] = float(cost)
    return fields
