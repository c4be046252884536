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
from decimal import ROUND_HALF_UP, Decimal

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
