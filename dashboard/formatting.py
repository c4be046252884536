"""How numbers look on the dashboard: one rule per kind of number, used by every page.

Costs (`usd`):
- $1 and over: two decimals with thousands separators (`$1,234.50`, `$4.10`);
- under $1: two significant figures, never fewer than two decimals
  (`$0.50`, `$0.12`, `$0.012`, `$0.0032`, `$0.002`);
- exactly zero: `$0.00`; a non-zero amount under a millionth of a dollar: `<$0.000001`;
- negative amounts (savings, changes) carry the sign in front: `-$1.20`.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

SMALLEST = Decimal("0.000001")


def usd(value: float | Decimal | int | None) -> str:
    if value is None or value == "":
        return "—"
    amount = Decimal(str(value))
    if amount.is_nan():
        return "—"
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if amount == 0:
        return "$0.00"
    if amount >= 1:
        return f"{sign}${amount.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,.2f}"
    if amount < SMALLEST:
        return f"{sign}<${SMALLEST:f}"
    # Two significant figures: the first significant digit is at 10**exponent.
    exponent = math.floor(math.log10(amount))
    places = max(2, 1 - exponent)
    rounded = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    if rounded >= 1:
        return f"{sign}${rounded:,.2f}"
    text = f"{rounded:f}"
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    frac = frac + "0" * (2 - len(frac)) if len(frac) < 2 else frac
    return f"{sign}${whole}.{frac}"


def rate(value: float | None) -> str:
    """A list price (dollars per million tokens or units), exact: `$2.50`, `$0.125`, `$0.0375`."""
    if value is None:
        return "—"
    amount = Decimal(str(value)).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)
    if amount == 0:
        return "$0"
    whole, _, frac = f"{abs(amount):f}".partition(".")
    frac = frac.rstrip("0").ljust(2, "0")
    return f"{'-' if amount < 0 else ''}${int(whole):,}.{frac}"


def tokens(value: int | float | None) -> str:
    """Token counts in full with thousands separators: `1,234,567`."""
    if value is None:
        return "—"
    return f"{int(value):,}"


def duration(ms: float | None) -> str:
    """Latency: `850 ms` under a second, `1.84 s` under a minute, `3 min 5 s` beyond."""
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs} s"


def change(current: float, previous: float) -> dict[str, str]:
    """The change of `current` against `previous`, as text and a direction."""
    if previous == 0:
        if current == 0:
            return {"text": "no change", "direction": "flat"}
        return {"text": "new", "direction": "up"}
    ratio = (current - previous) / previous * 100
    if abs(ratio) < 0.5:
        return {"text": "±0%", "direction": "flat"}
    return {"text": f"{'+' if ratio > 0 else '−'}{abs(ratio):.0f}%", "direction": "up" if ratio > 0 else "down"}


# How each billable unit reads on the run page; call units show their count.
_UNIT_LABELS = {
    "input_tokens": ("input", False),
    "cached_input_tokens": ("cached", False),
    "cache_write_tokens": ("cache writes", False),
    "input_audio_tokens": ("audio in", False),
    "output_tokens": ("output", False),
    "reasoning_tokens": ("reasoning", False),
    "output_audio_tokens": ("audio out", False),
    "web_search_calls": ("web searches", True),
    "file_search_calls": ("file searches", True),
    "code_interpreter_sessions": ("code interpreter sessions", True),
    "read_units": ("read units", True),
    "write_units": ("write units", True),
    "embed_tokens": ("embed tokens", False),
    "rerank_units": ("rerank units", True),
    "requests": ("per request", False),
    "discount": ("discount", False),
}
_UNIT_ORDER = {unit: i for i, unit in enumerate(_UNIT_LABELS)}


def cost_breakdown(call: dict[str, Any]) -> str:
    """A call's cost by unit: "input $0.012 · cached $0.0005 · output $0.02 · 2 web searches $0.02"."""
    details = call.get("cost_details") or {}
    counts = {**(call.get("usage_details") or {})}
    for column in ("read_units", "write_units"):
        if call.get(column):
            counts[column] = call[column]
    parts = []
    for unit in sorted(details, key=lambda u: (_UNIT_ORDER.get(u, 99), u)):
        label, counted = _UNIT_LABELS.get(unit, (unit.replace("_", " "), True))
        if counted and counts.get(unit):
            count = counts[unit]
            label = f"{int(count) if float(count).is_integer() else count} {label}"
        usd_value = details[unit]
        parts.append(f"{label} no price" if usd_value is None else f"{label} {usd(usd_value)}")
    return " · ".join(parts)


def unpriced_units(call: dict[str, Any]) -> str:
    details = call.get("cost_details") or {}
    return ", ".join(_UNIT_LABELS.get(u, (u, True))[0] for u, v in details.items() if v is None)


_CODE_SPAN = re.compile(r"`([^`]+)`")


def code_spans(text: str) -> SafeString:
    """Text with Markdown code spans (`tool:web_search`) as <code> elements,
    everything escaped: the detectors' messages read as prose on the page."""
    parts: list[str] = []
    last = 0
    for match in _CODE_SPAN.finditer(text):
        parts.append(escape(text[last : match.start()]))
        parts.append(f"<code>{escape(match.group(1))}</code>")
        last = match.end()
    parts.append(escape(text[last:]))
    return mark_safe("".join(parts))  # noqa: S308 - every piece is escaped above


def plain(text: str) -> str:
    """Text with Markdown code spans' backticks dropped (for titles and links)."""
    return _CODE_SPAN.sub(r"\1", text)


# What an insight's observed and baseline figures measure, per kind (insights/detectors.py).
INSIGHT_UNITS = {
    "section_spike": "USD per run",
    "model_inefficiency": "USD over the window",
    "token_bloat": "input tokens per call",
    "retry_loop": "calls per run (p95)",
}


def insight_figure(kind: str, value: float | None) -> str:
    """An insight's observed or baseline figure with its unit: `$0.42 per run`, `2,000 tokens per call`."""
    if value is None:
        return "—"
    if kind == "section_spike":
        return f"{usd(value)} per run"
    if kind == "model_inefficiency":
        return usd(value)
    if kind == "token_bloat":
        return f"{value:,.0f} tokens per call"
    if kind == "retry_loop":
        return f"{value:,.0f} calls per run"
    return f"{value:,.4g}"


def ratio_text(value: float | None) -> str:
    """A ratio as `2.4×` and its change in percent: `2.4× (+140 %)`."""
    if not value:
        return "—"
    return f"{value:,.1f}× ({(value - 1) * 100:+,.0f} %)"
