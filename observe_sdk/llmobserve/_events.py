"""Turn the small tuples queued on the hot path into SPEC §2 event dicts.

Runs on the exporter thread only: ids, timestamps and token extraction are
deliberately done here, not in the instrumented call."""

from __future__ import annotations

import json
import math
import time
from typing import Any

from . import _state
from .context import new_event_id, new_run_id, new_span_id

# payload kinds for KIND_CALL records
P_NONE = 0
# payload: the raw body of an OpenAI response, as the caller read it
# (with_raw_response; with_streaming_response once read): JSON, or an SSE
# stream's text
P_OPENAI_RAW = 2
P_PINECONE = 3  # payload: (op, result, est_n, est_bytes, host, namespace, extra, req): see pinecone_event
# payload: openai_usage() of an OpenAI result, already extracted, or None
# when the result carried no usage (e.g. a background response, still queued)
P_TOKENS = 4
# payload: (usage, head, ttft_s, incomplete, ctx) of an OpenAI stream. usage:
# the SSE line of the chunk that carried it as bytes (byte scan), a usage
# object or dict (parsed chunks), or None; head: the start of the body's
# first bytes (its "model", its "service_tier"), or None; ctx: (service_tier,
# usage_details) read from parsed events (Responses), or None. Decoded here,
# off the caller's thread: at the end of a stream the caller's code is cold
# in the CPU's caches, so every step moved here is worth several times its
# instruction count there.
P_OPENAI_STREAM = 5

# What the collector stores (events/schema.py): token counts up to 2**40 (its
# MAX_TOKENS: sums of them cannot overflow), amounts and units up to 1e15, a
# latency up to 1e10 ms (115 days: a section open longer is sent as that).
MAX_COUNT = 2**40
MAX_AMOUNT = 1e15
MAX_LATENCY_MS = 1e10
_COUNTS = ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens")

_ts_sec = -1
_ts_str = ""
# ".000Z" … ".999Z": a table look-up instead of a format spec per event
_MS_SUFFIX = tuple(f".{i:03d}Z" for i in range(1000))


def format_ts(t: float) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-11-26T09:00:00.120Z``."""
    global _ts_sec, _ts_str
    sec = int(t)
    if sec != _ts_sec:
        _ts_str = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _ts_sec = sec
    return _ts_str + _MS_SUFFIX[int((t - sec) * 1000.0)]


def _get(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


def _int(v: Any) -> int:
    if type(v) is int:
        return v if v > 0 else 0
    try:
        return max(0, int(v or 0))
    except (TypeError, ValueError):
        return 0


def _fields(obj: Any) -> dict | None:
    """A usage (sub)object's fields as a dict: a dict as it is; openai's
    pydantic models, their fields plus any the server sent beyond the
    declared ones (``__pydantic_extra__``: a proxy's ``cache_creation_input_tokens``,
    a newer API's field on an older openai). Read from the dicts, never by a
    getattr that may miss: a miss costs ~2 µs on pydantic, and non-streamed
    results are read on the caller's thread."""
    if obj is None or type(obj) is dict:
        return obj
    try:
        d = obj.__dict__
        ex = obj.__pydantic_extra__
    except AttributeError:  # a dict's subclass, pydantic v1 (extras in __dict__), another object
        return obj if isinstance(obj, dict) else getattr(obj, "__dict__", None)
    return {**d, **ex} if ex else d


def _unit(details: dict | None, unit: str, v: Any) -> dict | None:
    """``details`` with ``unit`` added when ``v`` is a positive count (only
    non-zero units are sent)."""
    n = _int(v)
    if n:
        if details is None:
            return {unit: n}
        details[unit] = n
    return details


def openai_tools(output: Any, details: dict | None = None) -> dict | None:
    """``details`` plus the billed tool calls among a Responses ``output``'s
    items (objects or dicts): ``web_search_calls``, ``file_search_calls``
    (one per item), ``code_interpreter_sessions`` (one per distinct container)."""
    web = files = 0
    containers: set | None = None
    try:
        for item in output:
            t = _get(item, "type")
            if t == "web_search_call":
                web += 1
            elif t == "file_search_call":
                files += 1
            elif t == "code_interpreter_call":
                if containers is None:
                    containers = set()
                containers.add(_get(item, "container_id"))
    except TypeError:  # not a list of items
        return details
    details = _unit(details, "web_search_calls", web)
    details = _unit(details, "file_search_calls", files)
    return _unit(details, "code_interpreter_sessions", len(containers) if containers else 0)


def openai_usage(usage: Any, tier: Any = None, output: Any = None) -> tuple | None:
    """(input, output, cached_input, reasoning, usage_details, service_tier) of
    a chat / responses / embeddings / completions ``usage`` (pydantic object
    or dict), or None when there is no usage (unknown, never zero).

    usage_details (SPEC §2 wire v1.1, non-zero units only, or None):
    ``input_audio_tokens`` / ``output_audio_tokens`` (the details'
    ``audio_tokens``), ``cache_write_tokens`` (the details'
    ``cache_write_tokens`` / ``cache_creation_tokens``, or the usage's
    ``cache_creation_input_tokens`` as Anthropic-shaped proxies report it) —
    each included in input/output as the provider reports them, so those
    stay as they are — and the tool calls of a Responses ``output``.
    ``tier``: the response's ``service_tier`` (a str), passed through."""
    u = _fields(usage)
    if u is None:
        return None
    g = u.get
    inp = g("prompt_tokens")
    if inp is None:
        inp = g("input_tokens")
    out = g("completion_tokens")
    if out is None:
        out = g("output_tokens")
    d_in = _fields(g("prompt_tokens_details") or g("input_tokens_details"))
    d_out = _fields(g("completion_tokens_details") or g("output_tokens_details"))
    cached = reasoning = 0
    details = None
    write = g("cache_creation_input_tokens")
    if d_in:  # (the common zeros and Nones cost no call)
        cached = _int(d_in.get("cached_tokens"))
        v = d_in.get("audio_tokens")
        if v:
            details = _unit(details, "input_audio_tokens", v)
        v = d_in.get("cache_write_tokens") or d_in.get("cache_creation_tokens")
        if v:
            write = v
    if d_out:
        reasoning = _int(d_out.get("reasoning_tokens"))
        v = d_out.get("audio_tokens")
        if v:
            details = _unit(details, "output_audio_tokens", v)
    if write:
        details = _unit(details, "cache_write_tokens", write)
    if output:
        details = openai_tools(output, details)
    return _int(inp), _int(out), cached, reasoning, details, tier if isinstance(tier, str) else None


def openai_fields(u: tuple | None, tier: Any, host: str | None) -> dict[str, Any]:
    """The wire v1.1 fields of an OpenAI call from its :func:`openai_usage`
    (None: ``usage_known`` false, with the ``service_tier`` the call
    reported all the same, if any) and its client's host."""
    f: dict[str, Any] = {"provider_host": host} if host else {}
    if u is None:
        f["usage_known"] = False
    else:
        if u[4]:
            f["usage_details"] = u[4]
        tier = u[5]
    if tier and isinstance(tier, str):
        f["price_context"] = {"service_tier": tier}
    return f


# ------------------------------------------------------------------ pinecone
# Estimates used when a Pinecone response carries no ``usage`` (documented in
# the README). Based on Pinecone's serverless unit rules:
#   query/search: 1 RU per 1 GB of namespace, minimum 0.25 RU   -> we record the minimum
#   fetch:        1 RU per 10 records fetched (rounded up), minimum 1 RU
#   upsert:       1 WU per 1 KB of request, minimum 5 WU (size estimated from
#                 vector dimension x 4 bytes + ~100 bytes of id/metadata per record)
#   update:       1 WU per 1 KB of old+new record, minimum 5 WU  -> the minimum
#   delete:       1 WU per 1 KB of deleted records, minimum 5 WU -> the minimum
UNIT_ESTIMATES = {
    "query_min_ru": 0.25,
    "fetch_records_per_ru": 10,
    "write_min_wu": 5.0,
    "bytes_per_wu": 1024.0,
    "record_overhead_bytes": 100,
}


def model_of(data: bytes) -> str | None:
    """The first ``"model"`` string in ``data`` (an OpenAI chunk's top-level
    model comes before any content), without decoding the JSON."""
    i = data.find(b'"model":')
    if i < 0:
        return None
    i = data.find(b'"', i + 8)
    j = data.find(b'"', i + 1)
    try:
        return data[i + 1 : j].decode() if 0 < i < j else None
    except UnicodeDecodeError:
        return None


def tier_of(data: bytes) -> str | None:
    """The first ``"service_tier"`` string in ``data`` (every chat chunk
    carries it, before its choices), without decoding the JSON."""
    i = data.find(b'"service_tier":')
    if i < 0:
        return None
    i += 15
    while data[i : i + 1] == b" ":
        i += 1
    j = data.find(b'"', i + 1)
    if data[i : i + 1] != b'"' or j < 0:
        return None  # null, or cut off
    try:
        return data[i + 1 : j].decode()
    except UnicodeDecodeError:
        return None


def openai_stream(payload: tuple, model: Any, attrs: dict[str, Any]) -> tuple[Any, tuple | None, Any]:
    """(model, openai_usage or None, service_tier) of a finished stream; fills
    its stream attributes. The usage is the last one the stream carried: on
    the usage-only chunk, or on a content chunk (OpenAI-compatible servers);
    the tier, the usage chunk's, else the first chunk's (a stream left early)."""
    usage, head, ttft, incomplete, ctx = payload
    attrs["stream"] = True
    if ttft is not None:
        attrs["ttft_ms"] = round(ttft * 1000.0, 3)
    if incomplete:
        attrs["stream_incomplete"] = True
    if head is not None:
        model = model_of(head) or model
    tier = tools = None
    if ctx is not None:
        tier, tools = ctx
    if isinstance(usage, bytes):
        try:
            data = json.loads(usage[usage.index(b"{") :])
        except Exception:
            data = None
        usage = None
        if isinstance(data, dict):
            model = data.get("model") or model
            usage = data.get("usage")
            tier = data.get("service_tier") or tier
    if tier is None and head is not None:
        tier = tier_of(head)
    u = openai_usage(usage, tier)
    if u is not None and tools:
        u = u[:4] + ({**u[4], **tools} if u[4] else tools, u[5])
    return model, u, tier


def _sse_usage_event(body: bytes) -> Any:
    """The last event of an SSE body that reports a usage object, decoded."""
    for line in reversed(body.splitlines()):
        if line.startswith(b"data:") and (b'"usage":{' in line or b'"usage": {' in line):
            try:
                return json.loads(line[5:])
            except Exception:
                continue
    return None


def openai_raw(body: Any, model: Any) -> tuple[Any, tuple | None, Any]:
    """(model, openai_usage or None, service_tier) of a response body the caller read:
    JSON, or an SSE stream's text (its last event with usage; a Responses
    stream's ``response.completed`` carries it in ``response``)."""
    try:
        data = json.loads(body)
    except Exception:
        data = _sse_usage_event(body) if isinstance(body, bytes) else None
    if not isinstance(data, dict):
        return model, None, None
    r = data.get("response")
    if isinstance(r, dict) and "usage" in r:
        data = r
    tier = data.get("service_tier")
    return data.get("model") or model, openai_usage(data.get("usage"), tier, data.get("output")), tier


def _index_name_from_host(host: str | None) -> str | None:
    if not host:
        return None
    h = host.split("://", 1)[-1].split("/", 1)[0]
    if ".pinecone.io" not in h:
        return None
    first = h.split(".", 1)[0]
    return first.rsplit("-", 1)[0] if "-" in first else first


def _model_id(v: Any) -> str | None:
    """A model as its id: pinecone's ``EmbedModel``/``RerankModel`` members
    are str-mixin enums whose ``str()`` is not the id."""
    v = getattr(v, "value", v)
    return v if v is None or isinstance(v, str) else str(v)


def _pinecone_inference(op: str, result: Any, model: Any) -> tuple:
    model = _model_id(_get(result, "model") or model)  # the model that served it
    if result is None:  # the call failed
        return model, 0.0, 0.0, None
    usage = _get(result, "usage")
    if op == "embed":
        unit, n = "embed_tokens", _get(usage, "total_tokens")
    else:
        unit, n = "rerank_units", _get(usage, "rerank_units")
    if n is None:
        return model, 0.0, 0.0, {"usage_known": False}
    return model, 0.0, 0.0, {"usage_details": {unit: _int(n)}}


def _pinecone_pages(op: str, result: Any, req: Any, attrs: dict[str, Any]) -> tuple[float, dict | None]:
    """list_paginated / fetch_by_metadata (one page) and list() (a walk of
    pages): the read units the pages report, or usage_known false."""
    pages = getattr(result, "pages", None) if op == "list" else (result,)
    if pages is None or (op != "list" and result is None):
        return 0.0, None  # the call failed
    ru = 0.0
    known = True
    records = 0
    for page in pages:
        n = _get(_get(page, "usage"), "read_units")
        if n is None:
            known = False
        else:
            ru += float(n)
        try:
            records += len(_get(page, "vectors") or ())
        except TypeError:
            pass
    attrs["records"] = records
    if op == "list":
        attrs["pages"] = len(pages)
        if req:
            attrs["ended_early"] = True  # closed before its last page
    return ru, (None if known else {"usage_known": False})


def pinecone_event(payload: Any, model: Any, attrs: dict[str, Any]) -> tuple:
    """(model, read_units, write_units, fields) of a Pinecone call; fills its
    attributes. ``fields``: the wire v1.1 fields the call adds
    (``usage_details``, ``price_context``, ``usage_known``), or None.

    payload: (op, result, est_n, est_bytes, host, namespace, extra, req) —
    result: the response (a ``_Pages`` for list(); None when the call
    failed); est_n/est_bytes: the caller-side estimate inputs; req: the
    search's ``rerank`` argument, ``"filter"``/``"dry_run"`` for an update by
    metadata filter, True for a list() walk closed before its last page."""
    op, result, est_n, est_bytes, host, namespace, extra, req = payload
    if op in ("embed", "rerank"):
        return _pinecone_inference(op, result, model)
    if host:
        attrs["index_host"] = host
        name = _index_name_from_host(host)
        if name:
            attrs["index_name"] = name
    if namespace is not None:
        attrs["namespace"] = namespace
    if extra:
        attrs.update(extra)
    if op in ("list", "list_paginated", "fetch_by_metadata"):
        page_ru, page_fields = _pinecone_pages(op, result, req, attrs)
        return model, page_ru, 0.0, page_fields
    usage = _get(result, "usage")
    ru = _get(usage, "read_units")
    wu = _get(usage, "write_units")
    fields: dict[str, Any] | None = None
    if op == "update" and req is not None and result is not None:
        # update by metadata filter: the response reports the records the filter
        # matched (billed per record written), never units
        matched = _get(result, "matched_records")
        if matched is not None:
            attrs["matched_records"] = _int(matched)
        if wu is not None:
            return model, float(ru or 0), float(wu), None
        if req == "dry_run":
            attrs["dry_run"] = True
            return model, 0.0, 0.0, {"usage_known": False}
        if matched is None:
            return model, 0.0, 0.0, {"usage_known": False}
        return model, 0.0, 0.0, {"usage_details": {"matched_records": _int(matched)}}
    embed = _get(usage, "embed_total_tokens")
    if embed:
        attrs["embed_total_tokens"] = _int(embed)
    if op in ("search", "search_records"):
        details = {}
        if embed:
            details["embed_tokens"] = _int(embed)
        rerank = _get(usage, "rerank_units")
        if rerank:
            details["rerank_units"] = _int(rerank)
        rerank_model = _model_id(_get(req, "model")) if req is not None else None
        if details or rerank_model:
            fields = {}
            if details:
                fields["usage_details"] = details
            if rerank_model:
                fields["price_context"] = {"rerank_model": rerank_model}
    if ru is not None or wu is not None:
        return model, float(ru or 0), float(wu or 0), fields
    attrs["units_estimated"] = True
    E = UNIT_ESTIMATES
    if op in ("query", "search", "search_records"):
        return model, E["query_min_ru"], 0.0, fields
    if op == "fetch":
        return model, float(max(1, math.ceil((est_n or 0) / E["fetch_records_per_ru"]))), 0.0, None
    if op in ("upsert", "upsert_records"):
        kb = (est_bytes or 0) / E["bytes_per_wu"]
        return model, 0.0, float(max(E["write_min_wu"], math.ceil(kb))), None
    if op in ("update", "delete"):
        return model, 0.0, E["write_min_wu"], None
    return model, 0.0, 0.0, None


# ----------------------------------------------------------------------- build
def build_event(item: tuple) -> dict[str, Any]:
    kind = item[0]
    if kind == _state.KIND_SECTION:
        _, frame, wall, latency, error_type = item
        parent = frame.parent
        return {
            "event_id": new_event_id(),
            "run_id": frame.run_id,
            "span_id": frame.span_id,
            "parent_span_id": parent.span_id if parent is not None else None,
            "span_type": "section",
            "name": frame.label,
            "section": frame.label,
            "section_path": frame.path,
            "provider": None,
            "model": None,
            "endpoint": None,
            "input_tokens": 0,
            "output_tokens": 0,
            "cached_input_tokens": 0,
            "reasoning_tokens": 0,
            "read_units": 0,
            "write_units": 0,
            "latency_ms": min(round(latency * 1000.0, 3), MAX_LATENCY_MS),
            "started_at": format_ts(wall),
            "status": "ok" if error_type is None else "error",
            "error_type": error_type,
            "service": _state.service,
            "attributes": dict(frame.attrs) if frame.attrs else {},
        }

    (_, frame, span_type, name, provider, model, wall, latency, error_type, pkind, payload, attrs) = item
    # the call's own attrs dict is ours (built for this record): reuse it
    attributes: dict[str, Any] = attrs if attrs is not None else {}
    if frame is not None and frame.attrs:
        attributes = {**frame.attrs, **attributes}
    inp = out = cached = reasoning = 0
    ru = wu = 0.0
    extra_fields: dict[str, Any] | None = None  # further wire fields of the call
    host = None
    if type(provider) is tuple:  # an OpenAI call: (provider, the API host its client talked to)
        provider, host = provider
    if pkind == P_TOKENS:
        if payload is not None:
            inp, out, cached, reasoning = payload[:4]
        extra_fields = openai_fields(payload, None, host)
    elif pkind == P_OPENAI_RAW or pkind == P_OPENAI_STREAM:
        if pkind == P_OPENAI_RAW:
            model, u, tier = openai_raw(payload, model)
        else:
            model, u, tier = openai_stream(payload, model, attributes)
        if u is not None:
            inp, out, cached, reasoning = u[:4]
        extra_fields = openai_fields(u, tier, host)
    elif pkind == P_PINECONE:
        model, ru, wu, extra_fields = pinecone_event(payload, model, attributes)
    elif host:  # an OpenAI call that failed: no usage
        extra_fields = {"provider_host": host}
    if frame is None:
        run_id = new_run_id()
        parent_span_id = section = path = None
    else:
        run_id = frame.run_id
        parent_span_id = frame.span_id
        section = frame.label
        path = frame.path
    event = {
        "event_id": new_event_id(),
        "run_id": run_id,
        "span_id": new_span_id(),
        "parent_span_id": parent_span_id,
        "span_type": span_type,
        "name": name,
        "section": section,
        "section_path": path,
        "provider": provider,
        "model": model if (model is None or isinstance(model, str)) else str(model),
        "endpoint": name,
        "input_tokens": inp,
        "output_tokens": out,
        "cached_input_tokens": cached,
        "reasoning_tokens": reasoning,
        "read_units": ru,
        "write_units": wu,
        "latency_ms": min(round(latency * 1000.0, 3), MAX_LATENCY_MS),
        "started_at": format_ts(wall),
        "status": "ok" if error_type is None else "error",
        "error_type": error_type,
        "service": _state.service,
        "attributes": attributes,
        **(extra_fields or {}),
    }
    if (
        inp > MAX_COUNT
        or out > MAX_COUNT
        or cached > MAX_COUNT
        or reasoning > MAX_COUNT
        or not (0.0 <= ru <= MAX_AMOUNT and 0.0 <= wu <= MAX_AMOUNT)
        or (extra_fields is not None and "usage_details" in extra_fields)
    ):
        _check_usage(event)
    return event


def _check_usage(event: dict[str, Any]) -> None:
    """A usage the collector cannot store (a count beyond MAX_COUNT, units
    beyond MAX_AMOUNT, NaN, infinite or negative) is not sent: each such
    field is zeroed (a unit of ``usage_details`` left out), ``usage_known``
    is false (the collector flags the call instead of costing it) and
    ``attributes.usage_out_of_range`` names them. Rare: a broken proxy."""
    bad = []
    for f in _COUNTS:
        if not 0 <= event[f] <= MAX_COUNT:
            bad.append(f)
            event[f] = 0
    for f in ("read_units", "write_units"):
        if not 0.0 <= event[f] <= MAX_AMOUNT:
            bad.append(f)
            event[f] = 0.0
    details = event.get("usage_details")
    if isinstance(details, dict):
        kept = {}
        for unit, v in details.items():
            if isinstance(v, int | float) and 0 <= v <= MAX_AMOUNT:
                kept[unit] = v
            else:
                bad.append(f"usage_details.{unit}")
        if kept:
            event["usage_details"] = kept
        else:
            del event["usage_details"]
    if bad:
        event["usage_known"] = False
        event["attributes"] = {**event["attributes"], "usage_out_of_range": bad}
