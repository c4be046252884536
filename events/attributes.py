"""Run attributes as the aggregates keep them: flat, bounded, strings.

An event's `attributes` is free-form JSON (SPEC §2); the SDK copies the run's
attributes (`run(user_id="u-7", plan="pro")`) onto every event of the run and
adds a few keys of its own to single calls (`stream`, `ttft_ms`, …).  The
aggregates keep the run's attributes (Run.attributes) and per-day totals per
attribute value (AttributeRollup); both read them through `attributes_flat`.
"""

from __future__ import annotations

from typing import Any

import msgspec

# Bounds (README "Attribution"): what a run keeps and what the rollup counts.
RUN_ATTRIBUTES_MAX = 32  # keys kept on a run; a merge that would pass it keeps the run's keys
ATTRIBUTE_KEY_MAX = 64  # characters of a key; longer keys are neither kept nor rolled up
ATTRIBUTE_VALUE_MAX = 200  # characters of a value as stored (longer values are cut)
ATTRIBUTE_KEYS_MAX = 20  # keys rolled up per project, first seen first kept
ATTRIBUTE_VALUES_MAX = 10_000  # distinct values per (project, key, UTC day); later ones go to OTHER
OTHER = "(other)"
NONE = "(none)"  # calls without the key (read side only: never stored)

# Keys the SDK sets on one call, not on the run: a call's detail, not an attribute
# anyone groups spend by (ttft_ms and records would also fill the value cap with numbers).
SDK_CALL_KEYS = frozenset(
    {
        "stream",
        "ttft_ms",
        "stream_incomplete",
        "usage_unavailable",
        "usage_out_of_range",
        "http_status",
        "records",
        "pages",
        "ended_early",
        "index_host",
        "index_name",
        "namespace",
        "matched_records",
        "dry_run",
        "embed_total_tokens",
        "units_estimated",
    }
)

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def attribute_value_text(value: Any) -> str | None:
    """A value as the aggregates store it: a string of at most ATTRIBUTE_VALUE_MAX
    characters (JSON for numbers, booleans and nested values); None for null."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    else:
        text = _encoder.encode(value).decode("utf-8")
    return text[:ATTRIBUTE_VALUE_MAX]


def attributes_flat(attributes: dict[str, Any] | None) -> dict[str, str]:
    """The run-level attributes of one event: SDK call keys, empty/over-long keys
    and null values left out, values as `attribute_value_text`."""
    out: dict[str, str] = {}
    if not attributes:
        return out
    for key, value in attributes.items():
        if not key or len(key) > ATTRIBUTE_KEY_MAX or key in SDK_CALL_KEYS:
            continue
        text = attribute_value_text(value)
        if text is not None:
            out[key] = text
    return out


class FlatCache:
    """attributes_flat of raw JSON, decoded once per distinct text: the events
    of a run carry the same attributes, so a batch decodes a handful."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[bytes, dict[str, str]] = {}

    def flat(self, raw: msgspec.Raw | bytes) -> dict[str, str]:
        data = bytes(raw)
        if not data or data in (b"{}", b"null"):
            return {}
        hit = self._seen.get(data)
        if hit is None:
            decoded = _decoder.decode(data)
            hit = self._seen[data] = attributes_flat(decoded if isinstance(decoded, dict) else None)
        return hit


def attributes_merge(kept: dict[str, str], incoming: dict[str, str]) -> None:
    """Add incoming's keys to kept in place: keys first seen win; the first
    attributes keep their first RUN_ATTRIBUTES_MAX keys, and a later merge that
    would pass RUN_ATTRIBUTES_MAX keys leaves kept as it is."""
    new = [k for k in incoming if k not in kept]
    if not kept:
        new = new[:RUN_ATTRIBUTES_MAX]  # the first event's first keys
    if new and len(kept) + len(new) <= RUN_ATTRIBUTES_MAX:
        for k in new:
            kept[k] = incoming[k]


def attributes_json(attributes: dict[str, str]) -> str:
    return _encoder.encode(attributes).decode("utf-8") if attributes else "{}"
