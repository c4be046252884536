"""The wire format (SPEC §2) as msgspec types.

msgspec decodes and validates a batch in one pass in C, which keeps
validation a small share of the ingest path.  A batch that fails that fast
path is counted first (past the limit nothing more is done, however many
items it holds), then split into its events, and each is decoded on its own:
one bad event is rejected alone, naming its field, and never costs its
neighbours.

The bounds are what both databases store and what the aggregates can add up:
a token count fits 2**40 (a run's 64-bit sums hold 2**23 such events), a
latency added to `started_at` stays inside the calendar, `started_at` is kept
in UTC (PostgreSQL refuses offsets past 15:59), attribute numbers are 64-bit
floats (PostgreSQL's jsonb refuses some, Python's json others) and nesting is
bounded (a deep document is a RecursionError away from a 500).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from decimal import Decimal
from typing import Annotated, Any, Literal, NamedTuple, cast

import msgspec

MAX_TOKENS = 2**40  # per count; realistic calls use < 2**21, and 2**23 of these still fit a 64-bit sum
MAX_NUMBER = 1e15
MAX_LATENCY_MS = 1e10  # 115 days: started_at (at most 9998-12-31) plus this stays inside the calendar
MAX_SECTION_DEPTH = 64  # labels in a section_path (the SDK enforces the same maximum)
MAX_ATTRIBUTES_DEPTH = 64  # nested objects and arrays in attributes, the attributes object included
ATTRIBUTES_MAX_BYTES = 16 * 1024
MAX_DECIMALS = 999  # digits after the point an attribute number may have (PostgreSQL's numeric keeps 16383)
DETAILED_ERRORS = 100  # rejected events described one by one; the rest are counted
DEFAULT_MAX_EVENTS = 1000

Str128 = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
OptStr64 = Annotated[str, msgspec.Meta(max_length=64)] | None
OptStr128 = Annotated[str, msgspec.Meta(max_length=128)] | None
OptStr256 = Annotated[str, msgspec.Meta(max_length=256)] | None
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS)]
Amount = Annotated[float, msgspec.Meta(ge=0, le=MAX_NUMBER)]
Latency = Annotated[float, msgspec.Meta(ge=0, le=MAX_LATENCY_MS)]
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
    latency_ms: Latency = 0.0
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


class _RawBatch(msgspec.Struct):
    events: list[msgspec.Raw]


class _Item:
    """What the counting pass decodes each event into: one shared instance."""


_ITEM = _Item()


class _CountBatch(msgspec.Struct):
    events: list[_Item]


class _EventId(msgspec.Struct):
    event_id: Any = None


_batch_decoder = msgspec.json.Decoder(Batch)
_list_decoder = msgspec.json.Decoder(list[EventIn])
_event_decoder = msgspec.json.Decoder(EventIn)
_raw_batch_decoder = msgspec.json.Decoder(_RawBatch)
_raw_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_id_decoder = msgspec.json.Decoder(_EventId)
_any_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
_UTC = dt.UTC


class NotBefore(NamedTuple):
    """The oldest started_at a project's retention accepts (events/retention.py)."""

    moment: dt.datetime
    days: int


def too_old_message(not_before: NotBefore) -> str:
    oldest = not_before.moment.astimezone(_UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return (
        f"older than this project's retention of {not_before.days} days (started before {oldest}): not stored; "
        "raise the project's event_retention_days to backfill older events"
    )


class BodyError(ValueError):
    """The body as a whole is unusable: not JSON, or not a list of objects."""


class TooManyEvents(ValueError):
    """More events in one body than a request may carry (a 413)."""

    def __init__(self, limit: int, count: int | None = None) -> None:
        said = f"{count} events" if count is not None else f"more than {limit} events"
        super().__init__(f"{said} in one request; at most {limit} events a request")


Errors = dict[int, dict[str, list[str]]]

TEXT_MESSAGE = "must be UTF-8 text without NUL characters or unpaired surrogates"
STARTED_MESSAGE = "must be between 0001-01-01T00:00:00Z and 9998-12-31T23:59:59Z (in UTC)"
NOT_AN_OBJECT: dict[str, list[str]] = {"non_field_errors": ["an event must be a JSON object"]}
# Shared by every rejected event past the first DETAILED_ERRORS: no work is done to describe them.
OMITTED: dict[str, list[str]] = {"non_field_errors": [f"rejected (only the first {DETAILED_ERRORS} are described)"]}


def decode_batch(
    body: bytes, max_events: int = DEFAULT_MAX_EVENTS, not_before: NotBefore | None = None
) -> tuple[list[EventIn | None], Errors, dict[int, str | None]]:
    """Decode a request body.

    Returns (events, errors, ids): events[i] is None where event i was
    rejected, errors[i] says why (field → messages) and ids[i] is its
    event_id when it had a usable one.  Raises BodyError for a body that is
    not a list of events and TooManyEvents past `max_events`.  With
    `not_before` (the project's retention), an event that started before it
    is rejected: it would be expired at the retention job's next run.
    """
    is_list = body.lstrip()[:1] == b"["
    try:
        items: list[EventIn] = _list_decoder.decode(body) if is_list else _batch_decoder.decode(body).events
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return _decode_each(body, is_list, max_events, not_before)
    if len(items) > max_events:
        raise TooManyEvents(max_events, len(items))
    errors: Errors = {}
    ids: dict[int, str | None] = {}
    # An ASCII body without escapes cannot hold NUL, a lone surrogate or bad UTF-8.
    # (A 1-byte `in` is a memchr; `b"\\u" in body` alone costs 0.4 ms for 500 kB.)
    text_clean = (0x5C not in body or b"\\u" not in body) and body.isascii()
    checked = cast(list[EventIn | None], items)
    oldest = not_before.moment if not_before is not None else None
    for index, ev in enumerate(items):
        # What every event needs, inline (this loop is the hot path); an event
        # out of the ordinary goes through _event_problem, which says what is wrong.
        if text_clean:
            started = ev.started_at
            path = ev.section_path
            if (
                ev.cached_input_tokens <= ev.input_tokens
                and ev.reasoning_tokens <= ev.output_tokens
                and not ev.usage_details
                and started.tzinfo is _UTC
                and 1 <= started.year <= 9998
                and (oldest is None or started >= oldest)
                and (path is None or len(path) < MAX_SECTION_DEPTH)
                and (not len(ev.attributes) or _attributes_problem(ev.attributes, True) is None)
            ):
                continue
        problem = _event_problem(ev, text_clean, not_before)
        if problem is not None:
            checked[index] = None
            errors[index] = {problem[0]: [problem[1]]} if len(errors) < DETAILED_ERRORS else OMITTED
            ids[index] = ev.event_id if problem[0] != "event_id" else None
    return checked, errors, ids


# --- The slow path: count, split, decode one by one ---------------------------------


def _decode_each(
    body: bytes, is_list: bool, max_events: int, not_before: NotBefore | None = None
) -> tuple[list[EventIn | None], Errors, dict[int, str | None]]:
    out: list[EventIn | None] = []
    errors: Errors = {}
    ids: dict[int, str | None] = {}
    for index, item in enumerate(_split(body, is_list, max_events)):
        detailed = len(errors) < DETAILED_ERRORS
        ev, problem, event_id = _decode_one(item, detailed, not_before)
        out.append(ev)
        if problem is not None:
            errors[index] = problem if detailed else OMITTED
            ids[index] = event_id
    return out, errors, ids


def _split(body: bytes, is_list: bool, max_events: int) -> list[Any]:
    """The body's events, each as its own bytes (a Raw or a memoryview).

    The count comes first and stops at item max_events + 1, so a small body
    of a million empty objects costs no more than a thousand of them.  msgspec
    counts and splits in C; a body it cannot read whole (an event nested past
    the recursion limit, bytes that are not UTF-8, a number out of range) is
    split by a scanner that only follows strings and brackets.
    """
    try:
        if body.count(b",") >= max_events:  # fewer commas cannot separate more items
            _count(body, is_list, max_events)
        return _raw_list_decoder.decode(body) if is_list else _raw_batch_decoder.decode(body).events
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return _scan(body, max_events)


class _Stop(Exception):
    pass


def _count(body: bytes, is_list: bool, max_events: int) -> None:
    seen = 0

    def one_more(_type: type, _obj: Any) -> _Item:
        nonlocal seen
        seen += 1
        if seen > max_events:
            raise _Stop
        return _ITEM

    decoder = msgspec.json.Decoder(list[_Item] if is_list else _CountBatch, dec_hook=one_more)
    try:
        decoder.decode(body)
    except _Stop:
        raise TooManyEvents(max_events) from None


# Strings (escapes included), runs of opening or closing brackets.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.S)
_TOKEN = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[\[{]+|[\]}]+', re.S)
_SCALAR = re.compile(rb"[^\s,\]}]+")
_SPACE = re.compile(rb"[ \t\r\n]*")


def _skip(body: bytes, pos: int) -> int:
    """Past any JSON whitespace at `pos`."""
    match = _SPACE.match(body, pos)
    return match.end() if match else pos


def _scan(body: bytes, max_events: int) -> list[memoryview]:
    view = memoryview(body)
    pos = _skip(body, 0)
    first = body[pos : pos + 1]
    if first == b"{":
        pos = _events_value(body, pos, view)
    elif first != b"[":
        raise BodyError('body is not valid JSON: expected {"events": [...]} or a list of events')
    items: list[memoryview] = []
    pos = _skip(body, pos + 1)
    if body[pos : pos + 1] == b"]":
        return items
    while True:
        end = _end_of(body, view, pos, b",]")
        items.append(view[pos:end])
        if len(items) > max_events:
            raise TooManyEvents(max_events)
        pos = _skip(body, end)
        after = body[pos : pos + 1]
        if after == b"]":
            return items
        if after != b",":
            raise BodyError("body is not valid JSON: expected , or ] after an event")
        pos = _skip(body, pos + 1)


def _events_value(body: bytes, pos: int, view: memoryview) -> int:
    """Where the value of the envelope's "events" key starts (a `[`)."""
    pos = _skip(body, pos + 1)
    while True:
        key = _STRING.match(body, pos)
        if key is None:
            raise BodyError('body must be {"events": [...]} or a list of events')
        pos = _skip(body, key.end())
        if body[pos : pos + 1] != b":":
            raise BodyError("body is not valid JSON: expected : after a key")
        pos = _skip(body, pos + 1)
        if key.group() == b'"events"':
            if body[pos : pos + 1] != b"[":
                raise BodyError('"events" must be a list of event objects')
            return pos
        pos = _skip(body, _end_of(body, view, pos, b",}"))
        if body[pos : pos + 1] != b",":
            raise BodyError('body must be {"events": [...]} or a list of events')
        pos = _skip(body, pos + 1)


_raw_decoder = msgspec.json.Decoder(msgspec.Raw)
_TRAILING = re.compile(r"trailing characters \(byte (\d+)\)")


def _end_of(body: bytes, view: memoryview, pos: int, followers: bytes) -> int:
    """Where the value at `pos` ends: msgspec skips it in C (its error for
    what follows names the byte after it), the scanner below when it cannot
    (a value nested past the recursion limit, a bad escape)."""
    try:
        _raw_decoder.decode(view[pos:])
    except msgspec.DecodeError as exc:
        trailing = _TRAILING.search(str(exc))
        if trailing:
            end = pos + int(trailing.group(1)) - 1  # msgspec counts the first trailing byte from 1
            if 0 <= end < len(body) and body[end] in followers:
                return end
    except (RecursionError, UnicodeDecodeError):
        pass
    return _value_end(body, pos)


def _value_end(body: bytes, pos: int) -> int:
    """Where the JSON value starting at `pos` ends, without recursion."""
    first = body[pos : pos + 1]
    if first == b'"':
        match = _STRING.match(body, pos)
        if match is None:
            raise BodyError("body is not valid JSON: an unterminated string")
        return match.end()
    if first in (b"[", b"{"):
        depth = 0
        for token in _TOKEN.finditer(body, pos):
            start, end = token.span()
            char = body[start]
            if char == 0x22:  # a string
                continue
            if char in (0x5B, 0x7B):
                depth += end - start
            elif end - start >= depth:
                return start + depth
            else:
                depth -= end - start
        raise BodyError("body is not valid JSON: an unclosed [ or {")
    scalar = _SCALAR.match(body, pos)
    if scalar is None:
        raise BodyError("body is not valid JSON: expected a value")
    return scalar.end()


def _decode_one(
    item: Any, detailed: bool, not_before: NotBefore | None = None
) -> tuple[EventIn | None, dict[str, list[str]] | None, str | None]:
    """(event, None, None) or (None, errors, event_id) for one event's bytes."""
    try:
        ev = _event_decoder.decode(item)
    except msgspec.ValidationError as exc:
        if not detailed:
            return None, OMITTED, None
        if memoryview(item)[:1] != b"{":
            return None, NOT_AN_OBJECT, None
        message = str(exc)
        return None, {_field_of(message): [_message_of(message)]}, _event_id_of(item)
    except RecursionError:
        depth = f"nested too deeply (attributes: at most {MAX_ATTRIBUTES_DEPTH} levels)"
        return None, {"non_field_errors": [depth]}, None
    except (msgspec.DecodeError, UnicodeDecodeError):
        # msgspec refuses a lone surrogate escape ("\\ud800") and bytes that
        # are not UTF-8 anywhere in an event; the standard library reads both
        # (bad bytes as lone surrogates), so the text checks name the field.
        got = _decode_lenient(item)
        if not isinstance(got, EventIn):
            return None, got[0], got[1]
        ev = got
    problem = _event_problem(ev, text_clean=False, not_before=not_before)
    if problem is None:
        return ev, None, None
    return None, {problem[0]: [problem[1]]}, ev.event_id if problem[0] != "event_id" else None


def _event_id_of(item: Any) -> str | None:
    try:
        candidate = _id_decoder.decode(item).event_id
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    return candidate if isinstance(candidate, str) and len(candidate) <= 128 else None


class _OutOfRange(ValueError):
    pass


def _lenient_int(text: str) -> int:
    if len(text) > 300 and _number_problem(text):
        raise _OutOfRange
    return int(text)


def _lenient_float(text: str) -> float:
    if _number_problem(text):
        raise _OutOfRange
    return float(text)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _decode_lenient(item: Any) -> EventIn | tuple[dict[str, list[str]], str | None]:
    try:
        data = json.loads(
            bytes(item).decode("utf-8", "surrogateescape"),
            parse_constant=_no_constants,
            parse_int=_lenient_int,
            parse_float=_lenient_float,
        )
    except RecursionError:
        return {"non_field_errors": [f"nested too deeply (attributes: at most {MAX_ATTRIBUTES_DEPTH} levels)"]}, None
    except _OutOfRange:
        return {"non_field_errors": [NUMBER_MESSAGE]}, None
    except ValueError as exc:
        return {"non_field_errors": [f"not valid JSON: {exc}"]}, None
    if not isinstance(data, dict):
        return NOT_AN_OBJECT, None
    candidate = data.get("event_id")
    event_id = candidate if isinstance(candidate, str) and len(candidate) <= 128 else None
    attributes = data.pop("attributes", None)
    if attributes is not None and not isinstance(attributes, dict):
        return {"attributes": ["must be a JSON object"]}, event_id
    try:
        ev = msgspec.convert(data, EventIn)
    except msgspec.ValidationError as exc:
        message = str(exc)
        return {_field_of(message): [_message_of(message)]}, event_id
    except UnicodeEncodeError:
        # A lone surrogate where msgspec parses the text (a date-time, a literal).
        bad = (k for k, v in data.items() if isinstance(v, str) and _bad_text(v) and not _bad_text(k))
        field = next(bad, "non_field_errors")
        return {field: [TEXT_MESSAGE]}, event_id if field != "event_id" else None
    if attributes:
        try:
            ev.attributes = msgspec.Raw(_encoder.encode(attributes))
        except (UnicodeEncodeError, msgspec.EncodeError, RecursionError):
            ev.attributes = msgspec.Raw(b'{"\\u0000": 0}')  # rejected by the text check
    return ev


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


# --- Rules msgspec's types cannot say ----------------------------------------------


def _event_problem(ev: EventIn, text_clean: bool, not_before: NotBefore | None = None) -> tuple[str, str] | None:
    """(field, message) for a decoded event that must still be rejected.

    Normalises started_at to UTC on the way (PostgreSQL refuses offsets past
    15:59; in UTC every instant the calendar holds is stored alike)."""
    if not text_clean:
        field = _text_problem(ev)
        if field:
            return (field, TEXT_MESSAGE)
    if ev.cached_input_tokens > ev.input_tokens:
        return ("cached_input_tokens", "must not exceed input_tokens (input includes cached)")
    if ev.reasoning_tokens > ev.output_tokens:
        return ("reasoning_tokens", "must not exceed output_tokens (output includes reasoning)")
    if ev.usage_details:
        detail_problem = _details_problem(ev)
        if detail_problem:
            return ("usage_details", detail_problem)
    started = ev.started_at
    if started.tzinfo is not _UTC:
        try:
            started = ev.started_at = started.astimezone(_UTC)
        except OverflowError:
            return ("started_at", STARTED_MESSAGE)
    if not 1 <= started.year <= 9998:
        return ("started_at", STARTED_MESSAGE)
    if not_before is not None and started < not_before.moment:
        return ("started_at", too_old_message(not_before))
    if ev.section_path and ev.section_path.count("/") >= MAX_SECTION_DEPTH:
        return ("section_path", f"at most {MAX_SECTION_DEPTH} sections deep")
    if len(ev.attributes):
        return _attributes_problem(ev.attributes, text_clean)
    return None


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

# Only these can hide a number out of a 64-bit float's range: an exponent of
# 3 digits or more where a number ends (not "e123" inside a hex id), or (in a
# long text) a long run of digits.  Each pattern starts with a literal, which
# the regex engine finds as fast as bytes.find.
_EXPONENT_e = re.compile(rb"e[-+]?[0-9]{3,}[\s,\]}]").search
_EXPONENT_E = re.compile(rb"E[-+]?[0-9]{3,}[\s,\]}]").search
_DIGITS = b"0123456789"
NUMBER_MESSAGE = f"numbers must fit a 64-bit float (at most 1.8e308, at most {MAX_DECIMALS} decimal places)"


def _attributes_problem(raw: msgspec.Raw, text_clean: bool) -> tuple[str, str] | None:
    data = bytes(raw)
    size = len(data)
    if size > ATTRIBUTES_MAX_BYTES:
        return ("attributes", f"at most {ATTRIBUTES_MAX_BYTES} bytes of JSON")
    if data[0] != 0x7B:  # "{"
        return None if data == b"null" else ("attributes", "must be a JSON object")
    if not text_clean:
        if not data.isascii():
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                return ("attributes", TEXT_MESSAGE)
        if b"\\u" in data.lower():
            # Only an escape can smuggle in NUL or a lone surrogate: decode to be sure.
            try:
                text = _encoder.encode(_any_decoder.decode(data)).decode("utf-8")
            except msgspec.ValidationError:
                return ("attributes", NUMBER_MESSAGE)  # msgspec: "Number out of range"
            except (msgspec.DecodeError, msgspec.EncodeError, UnicodeError, RecursionError):
                return ("attributes", TEXT_MESSAGE)
            if "\\u0000" in text or "\x00" in text:
                return ("attributes", TEXT_MESSAGE)
    if size > 2 * MAX_ATTRIBUTES_DEPTH and data.count(b"{") + data.count(b"[") > MAX_ATTRIBUTES_DEPTH:
        if _too_deep(data, MAX_ATTRIBUTES_DEPTH):
            return ("attributes", f"at most {MAX_ATTRIBUTES_DEPTH} levels of nesting")
    if (
        _EXPONENT_e(data)
        or (0x45 in data and _EXPONENT_E(data))  # "E": a 1-byte `in` is a memchr
        or (size > 200 and size - len(data.translate(None, _DIGITS)) > 200)
    ) and _numbers_problem(data):
        return ("attributes", NUMBER_MESSAGE)
    return None


def _too_deep(data: bytes, limit: int) -> bool:
    depth = 0
    for token in _TOKEN.finditer(data):
        start, end = token.span()
        char = data[start]
        if char == 0x22:
            continue
        if char in (0x5B, 0x7B):
            depth += end - start
            if depth > limit:
                return True
        else:
            depth -= end - start
    return False


def _number_problem(text: str) -> bool:
    """A JSON number that is not a finite 64-bit float, or has more decimal
    places than MAX_DECIMALS (PostgreSQL's jsonb refuses some of these and
    Python's json reads others back as inf)."""
    try:
        if not math.isfinite(float(text)):
            return True
        exponent = Decimal(text).as_tuple().exponent
    except (ValueError, ArithmeticError):
        return True
    return isinstance(exponent, int) and exponent < -MAX_DECIMALS


def _numbers_problem(data: bytes) -> bool:
    try:
        json.loads(data, parse_int=_lenient_int, parse_float=_lenient_float, parse_constant=_no_constants)
    except _OutOfRange:
        return True
    except (ValueError, RecursionError):
        return False  # not ours to judge here: the other checks say what is wrong
    return False


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


def json_or_null(value: dict[str, Any] | None) -> str | None:
    """A small dict as stored JSON text, None (NULL: no bytes in the row) when absent or empty."""
    return _encoder.encode(value).decode("utf-8") if value else None


def attributes_text(raw: msgspec.Raw) -> str | None:
    """The stored JSON text of an event's attributes (None, stored NULL, when absent, null or {})."""
    data = bytes(raw)
    if not data or data == b"null" or data.strip() == b"{}":
        return None
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
