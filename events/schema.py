"""The wire format (SPEC §2) as msgspec types.

msgspec decodes and validates a batch in one pass in C, which keeps
validation a small share of the ingest path.  A batch that fails the fast
path is validated again event by event to name each bad index and field.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Annotated, Any, Literal

import msgspec

MAX_INT = 2**53  # larger token counts are not real and would overflow sums
MAX_NUMBER = 1e15
ATTRIBUTES_MAX_BYTES = 16 * 1024

Str128 = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
OptStr64 = Annotated[str, msgspec.Meta(max_length=64)] | None
OptStr128 = Annotated[str, msgspec.Meta(max_length=128)] | None
OptStr256 = Annotated[str, msgspec.Meta(max_length=256)] | None
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT)]
Amount = Annotated[float, msgspec.Meta(ge=0, le=MAX_NUMBER)]
Moment = Annotated[dt.datetime, msgspec.Meta(tz=True)]


EMPTY_RAW = msgspec.Raw(b"")
UnitName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
UnitCounts = Annotated[dict[UnitName, Amount], msgspec.Meta(max_length=32)]
Context = Annotated[dict[UnitName, Annotated[str, msgspec.Meta(max_length=128)]], msgspec.Meta(max_length=16)]


class EventIn(msgspec.Struct, forbid_unknown_fields=False):
    event_id: Str128
    run_id: Str128
    span_id: Str128
    started_at: Moment
    parent_span_id: OptStr128 = None
    span_type: Literal["llm", "vector_db", "api", "other", "section"] = "other"
    name: Annotated[str, msgspec.Meta(max_length=256)] = ""
    section: OptStr256 = None
    section_path: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    provider: OptStr64 = None
    model: OptStr128 = None
    endpoint: OptStr128 = None
    input_tokens: Count = 0
    output_tokens: Count = 0
    cached_input_tokens: Count = 0
    reasoning_tokens: Count = 0
    read_units: Amount = 0.0
    write_units: Amount = 0.0
    cost_usd: Amount | None = None
    latency_ms: Amount = 0.0
    status: Literal["ok", "error"] = "ok"
    error_type: OptStr256 = None
    service: OptStr128 = None
    # Kept as the raw JSON text: it is stored as it came, so it is never
    # decoded into Python objects and encoded again on the hot path.
    attributes: msgspec.Raw = msgspec.field(default_factory=lambda: EMPTY_RAW)
    # wire v1.1 (SPEC §2)
    usage_details: UnitCounts | None = None
    price_context: Context | None = None
    usage_known: bool = True
    provider_host: Annotated[str, msgspec.Meta(max_length=255)] | None = None


class Batch(msgspec.Struct):
    events: list[EventIn]


_batch_decoder = msgspec.json.Decoder(Batch)
_list_decoder = msgspec.json.Decoder(list[EventIn])
_any_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
_PATH = re.compile(r"at `\$(?:\.events)?\[(\d+)\]\.?([A-Za-z_]*)")


class BodyError(ValueError):
    """The body as a whole is unusable: not JSON, or not a list of objects."""


Errors = dict[int, dict[str, list[str]]]


def decode_batch(body: bytes) -> tuple[list[EventIn | None], Errors, dict[int, str | None]]:
    """Decode a request body.

    Returns (events, errors, ids): events[i] is None where event i was
    rejected, errors[i] says why (field → messages) and ids[i] is its
    event_id when it had a usable one.
    """
    stripped = body.lstrip()
    is_list = stripped[:1] == b"["
    try:
        items: list[EventIn] = _list_decoder.decode(body) if is_list else _batch_decoder.decode(body).events
        errors: Errors = {}
        ids: dict[int, str | None] = {}
        # An ASCII body without escapes cannot hold NUL or a lone surrogate.
        text_clean = b"\\u" not in body and body.isascii()
        checked = _semantic_checks(items, errors, ids, text_clean=text_clean)
        return checked, errors, ids
    except (msgspec.ValidationError, msgspec.DecodeError):
        pass
    # Slow path: find out which events (and which fields) are bad.
    data = _decode_any(body)
    if isinstance(data, dict):
        if "events" not in data:
            raise BodyError('body must be {"events": [...]} or a list of events')
        data = data["events"]
    if not isinstance(data, list):
        raise BodyError('"events" must be a list of event objects')
    out: list[EventIn | None] = []
    errors = {}
    ids = {}
    for index, item in enumerate(data):
        if isinstance(item, dict):
            candidate = item.get("event_id")
            ids[index] = candidate if isinstance(candidate, str) and len(candidate) <= 128 else None
        if not isinstance(item, dict):
            out.append(None)
            errors[index] = {"non_field_errors": ["an event must be a JSON object"]}
            continue
        try:
            attributes = item.pop("attributes", None)
            if attributes is not None and not isinstance(attributes, dict):
                raise msgspec.ValidationError(
                    "Expected `object`, got `" + type(attributes).__name__ + "` - at `$.attributes`"
                )
            ev = msgspec.convert(item, EventIn)
            if attributes:
                try:
                    ev.attributes = msgspec.Raw(_encoder.encode(attributes))
                except (UnicodeEncodeError, msgspec.EncodeError):
                    ev.attributes = msgspec.Raw(b'{"\\u0000": 0}')  # rejected by the text check below
            out.append(ev)
        except msgspec.ValidationError as exc:
            out.append(None)
            errors[index] = {_field_of(str(exc)): [_message_of(str(exc))]}
    checked = _semantic_checks(out, errors, ids)
    return checked, errors, {i: ids.get(i) for i in errors}


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _decode_any(body: bytes) -> Any:
    try:
        return _any_decoder.decode(body)
    except msgspec.DecodeError as exc:
        first_error = exc
    # msgspec refuses a lone surrogate escape ("\\ud800") anywhere in the body;
    # the standard library accepts it, so one bad string fails only its own
    # event (the text checks below reject it) instead of the whole batch.
    try:
        return json.loads(body, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise BodyError(f"body is not valid JSON: {first_error}") from None


def _field_of(message: str) -> str:
    match = re.search(r"at `\$\.?([A-Za-z_]*)", message)
    if match and match.group(1):
        return match.group(1)
    missing = re.search(r"missing required field `([A-Za-z_]+)`", message)
    if missing:
        return missing.group(1)
    return "non_field_errors"


def _message_of(message: str) -> str:
    return message.split(" - at `")[0]


def _semantic_checks(
    items: list[EventIn | None] | list[EventIn], errors: Errors, ids: dict[int, str | None], text_clean: bool = False
) -> list[EventIn | None]:
    """Rules msgspec's types cannot say; bad events become None with an error."""
    out: list[EventIn | None] = []
    for index, ev in enumerate(items):
        if ev is None:
            out.append(None)
            continue
        problem: tuple[str, str] | None = None
        text_problem = None if text_clean else _text_problem(ev)
        if text_problem:
            problem = (text_problem, "must not contain NUL characters or unpaired surrogates")
        elif ev.cached_input_tokens > ev.input_tokens:
            problem = ("cached_input_tokens", "must not exceed input_tokens (input includes cached)")
        elif ev.reasoning_tokens > ev.output_tokens:
            problem = ("reasoning_tokens", "must not exceed output_tokens (output includes reasoning)")
        elif ev.usage_details and (detail_problem := _details_problem(ev)):
            problem = ("usage_details", detail_problem)
        elif not (1 <= ev.started_at.year <= 9998):
            problem = ("started_at", "year out of range")
        elif len(ev.attributes):
            problem = _attributes_problem(ev.attributes, text_clean)
        if problem:
            errors[index] = {problem[0]: [problem[1]]}
            ids[index] = ev.event_id if problem[0] != "event_id" else None
            out.append(None)
        else:
            out.append(ev)
    return out


_TEXT_FIELDS = (
    "event_id",
    "run_id",
    "span_id",
    "parent_span_id",
    "name",
    "section",
    "section_path",
    "provider",
    "model",
    "endpoint",
    "error_type",
    "service",
    "provider_host",
)


def _attributes_problem(raw: msgspec.Raw, text_clean: bool) -> tuple[str, str] | None:
    data = bytes(raw)
    if len(data) > ATTRIBUTES_MAX_BYTES:
        return ("attributes", f"at most {ATTRIBUTES_MAX_BYTES} bytes of JSON")
    if data == b"null":
        return None
    if data[:1] != b"{":
        return ("attributes", "must be a JSON object")
    if not text_clean and b"\\u" in data.lower():
        # Only an escape can smuggle in NUL or a lone surrogate: decode to be sure.
        try:
            text = _encoder.encode(_any_decoder.decode(data)).decode("utf-8")
        except (msgspec.DecodeError, msgspec.EncodeError, UnicodeError):
            return ("attributes", "must not contain NUL characters or unpaired surrogates")
        if "\\u0000" in text or "\x00" in text:
            return ("attributes", "must not contain NUL characters or unpaired surrogates")
    return None


# usage_details units that are part of a column, as the provider reports them
_PART_OF = {
    "cache_write_tokens": "input_tokens",
    "input_audio_tokens": "input_tokens",
    "output_audio_tokens": "output_tokens",
}


def _details_problem(ev: EventIn) -> str | None:
    details = ev.usage_details or {}
    for unit, column in _PART_OF.items():
        if details.get(unit, 0) > getattr(ev, column):
            return f"{unit} must not exceed {column} ({column} includes it)"
    return None


def json_text(value: dict[str, Any] | None) -> str:
    """A small dict as stored JSON text ("{}" when absent)."""
    return _encoder.encode(value).decode("utf-8") if value else "{}"


def attributes_text(raw: msgspec.Raw) -> str:
    """The stored JSON text of an event's attributes ("{}" when absent or null)."""
    data = bytes(raw)
    if not data or data == b"null":
        return "{}"
    return data.decode("utf-8")


def _text_problem(ev: EventIn) -> str | None:
    # PostgreSQL text cannot hold NUL and UTF-8 cannot hold a lone surrogate;
    # either would fail the insert, so they are a field error here instead.
    for field in _TEXT_FIELDS:
        value = getattr(ev, field)
        if value and _bad_text(value):
            return field
    for value in (ev.price_context or {}).values():
        if _bad_text(value):
            return "price_context"
    return None


def _bad_text(value: str) -> bool:
    if "\x00" in value:
        return True
    if value.isascii():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
