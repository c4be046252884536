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
P_OPENAI_RAW = 2  # payload: raw JSON bytes of an OpenAI response (with_raw_response)
P_PINECONE = 3  # payload: (op, result, est_n, est_bytes, host, namespace, extra, req): see pinecone_event
P_TOKENS = 4  # payload: (input, output, cached_input, reasoning) already extracted
# payload: (usage, head, ttft_s, incomplete) of an OpenAI stream. usage: the
# usage-only chunk's SSE line as bytes (byte scan), a usage object or dict
# (parsed chunks), or None; head: the start of the body's first bytes (its
# "model"), or None. Decoded here, off the caller's thread: at the end of a
# stream the caller's code is cold in the CPU's caches, so every step moved
# here is worth several times its instruction count there.
P_OPENAI_STREAM = 5

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


def openai_tokens(usage: Any) -> tuple:
    """(input, output, cached_input, reasoning) from a chat / responses /
    embeddings / completions ``usage`` (pydantic object or dict)."""
    if usage is None:
        return 0, 0, 0, 0
    if isinstance(usage, dict):
        g = usage.get
        inp = g("prompt_tokens")
        if inp is None:
            inp = g("input_tokens")
        out = g("completion_tokens")
        if out is None:
            out = g("output_tokens")
        d_in = g("prompt_tokens_details") or g("input_tokens_details")
        d_out = g("completion_tokens_details") or g("output_tokens_details")
        cached = _get(d_in, "cached_tokens")
        reasoning = _get(d_out, "reasoning_tokens")
    else:
        inp = getattr(usage, "prompt_tokens", None)
        if inp is None:
            inp = getattr(usage, "input_tokens", None)
        out = getattr(usage, "completion_tokens", None)
        if out is None:
            out = getattr(usage, "output_tokens", None)
        d_in = getattr(usage, "prompt_tokens_details", None) or getattr(usage, "input_tokens_details", None)
        d_out = getattr(usage, "completion_tokens_details", None) or getattr(usage, "output_tokens_details", None)
        cached = None if d_in is None else _get(d_in, "cached_tokens")
        reasoning = None if d_out is None else _get(d_out, "reasoning_tokens")
    return _int(inp), _int(out), _int(cached), _int(reasoning)


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


def openai_stream(payload: tuple, model: Any, attrs: dict[str, Any]) -> tuple[Any, tuple]:
    """(model, tokens) of a finished stream; fills its stream attributes."""
    usage, head, ttft, incomplete = payload
    attrs["stream"] = True
    if ttft is not None:
        attrs["ttft_ms"] = round(ttft * 1000.0, 3)
    if incomplete:
        attrs["stream_incomplete"] = True
    if head is not None:
        model = model_of(head) or model
    if isinstance(usage, bytes):
        try:
            data = json.loads(usage[usage.index(b"{") :])
        except Exception:
            data = None
        if not isinstance(data, dict):
            return model, (0, 0, 0, 0)
        model = data.get("model") or model
        usage = data.get("usage")
    return model, openai_tokens(usage)


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
            "latency_ms": round(latency * 1000.0, 3),
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
    if pkind == P_TOKENS:
        if payload is not None:
            inp, out, cached, reasoning = payload
    elif pkind == P_OPENAI_RAW:
        try:
            data = json.loads(payload)
        except Exception:
            data = None
        if isinstance(data, dict):
            model = data.get("model") or model
            inp, out, cached, reasoning = openai_tokens(data.get("usage"))
    elif pkind == P_OPENAI_STREAM:
        model, (inp, out, cached, reasoning) = openai_stream(payload, model, attributes)
    elif pkind == P_PINECONE:
        model, ru, wu, extra_fields = pinecone_event(payload, model, attributes)
    if frame is None:
        run_id = new_run_id()
        parent_span_id = section = path = None
    else:
        run_id = frame.run_id
        parent_span_id = frame.span_id
        section = frame.label
        path = frame.path
    return {
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
        "latency_ms": round(latency * 1000.0, 3),
        "started_at": format_ts(wall),
        "status": "ok" if error_type is None else "error",
        "error_type": error_type,
        "service": _state.service,
        "attributes": attributes,
        **(extra_fields or {}),
    }
