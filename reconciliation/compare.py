"""The comparison itself: model folding, line items, and the figures of one row.

Definitions (README "Reconciliation"):

- tokens = input tokens (cached ones included, as both OpenAI's Usage API and
  our events count them) + output tokens.
- coverage = observed tokens ÷ billed tokens.
- price agreement = observed USD ÷ the billed USD of the tokens we saw, where
  the billed USD of the tokens we saw scales each part of the bill by the
  share of its tokens we observed:
      billed_seen = input_usd × obs_in/billed_in + output_usd × obs_out/billed_out
                    + other_usd × obs_tokens/billed_tokens
  (input_usd holds the "input" and "cached input" line items).  So 10 % of
  calls never observed gives coverage 0.90 and price agreement 1.00, a model
  billed at flex's half price gives coverage 1.00 and price agreement 2.00.
- a sum of rows (a model over several days, all models): coverage = Σ observed
  tokens ÷ Σ billed tokens; price agreement = Σ observed USD ÷ Σ billed USD of
  the tokens seen, over the day × model rows where the latter is defined (so
  rows observed but never billed, and models priced differently, do not skew it).
- a gap is a coverage or a price agreement off 1 by more than 2 %.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import Decimal

from dashboard.formatting import usd

# The pricing engine's rule for a snapshot suffix (-2024-08-06, -20240806,
# -0125): observed and billed ids fold the same way the engine matches prices.
from pricing.services import _SNAPSHOT

TOLERANCE = 0.02
# "flex | gpt-4o-2024-08-06, input": a service-tier prefix before the model.
_TIER_PREFIX = re.compile(r"^\s*([a-z_]+)\s*\|\s*(.+)$", re.IGNORECASE)


def model_fold(model: str | None) -> str:
    """gpt-4o-2024-08-06 → gpt-4o; lower-cased; "" stays ""."""
    name = (model or "").strip().lower()
    match = _SNAPSHOT.match(name)
    return match.group(1) if match else name


@dataclass(frozen=True, slots=True)
class LineItem:
    model: str  # folded
    kind: str  # input | cached_input | output | other
    tier: str


def line_item_parse(text: str | None) -> LineItem:
    """'gpt-4o-2024-08-06, cached input' → (gpt-4o, cached_input, '').

    The model is the text before the first comma (its first word: "gpt-audio
    audio, input" bills gpt-audio); the kind is read from what follows.  An
    item that names no token kind ("web search tool calls") keeps its whole
    text as its "model" and kind "other"."""
    raw = (text or "").strip()
    tier = ""
    prefixed = _TIER_PREFIX.match(raw)
    if prefixed:
        tier, raw = prefixed.group(1).lower(), prefixed.group(2).strip()
    head, comma, rest = raw.partition(",")
    rest = rest.strip().lower()
    if not comma:
        return LineItem(model=raw.lower(), kind="other", tier=tier)
    if "cached" in rest and "input" in rest:
        kind = "cached_input"
    elif "input" in rest:
        kind = "input"
    elif "output" in rest:
        kind = "output"
    else:
        kind = "other"
    words = head.strip().split()
    return LineItem(model=model_fold(words[0] if words else ""), kind=kind, tier=tier)


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


@dataclass(slots=True)
class Figures:
    """Billed beside observed for one day × model (or a sum of them)."""

    model: str
    day: dt.date | None = None
    billed_input_usd: Decimal = Decimal(0)  # "input" + "cached input" line items
    billed_output_usd: Decimal = Decimal(0)
    billed_other_usd: Decimal = Decimal(0)
    billed_input_tokens: int = 0
    billed_cached_input_tokens: int = 0
    billed_output_tokens: int = 0
    billed_requests: int = 0
    observed_usd: float = 0.0
    observed_input_tokens: int = 0
    observed_output_tokens: int = 0
    observed_requests: int = 0
    tiers: set[str] = field(default_factory=set)
    # A sum of rows (a model over days, all models) keeps the sums of its rows'
    # billed-USD-of-the-tokens-seen and their observed USD: its price agreement
    # is their ratio, never one computed from tokens of models priced differently.
    aggregated: bool = False
    seen_billed_usd: float = 0.0
    seen_observed_usd: float = 0.0

    @property
    def billed_usd(self) -> Decimal:
        return self.billed_input_usd + self.billed_output_usd + self.billed_other_usd

    @property
    def billed_tokens(self) -> int:
        return self.billed_input_tokens + self.billed_output_tokens

    @property
    def observed_tokens(self) -> int:
        return self.observed_input_tokens + self.observed_output_tokens

    @property
    def billed(self) -> bool:
        return bool(self.billed_usd or self.billed_tokens or self.billed_requests)

    @property
    def observed(self) -> bool:
        return bool(self.observed_usd or self.observed_tokens or self.observed_requests)

    @property
    def coverage(self) -> float | None:
        return _ratio(self.observed_tokens, self.billed_tokens)

    @property
    def billed_seen_usd(self) -> float | None:
        """The billed USD of the tokens we saw (module docstring); None when not defined."""
        if self.aggregated:
            return self.seen_billed_usd or None
        overall = _ratio(self.observed_tokens, self.billed_tokens)
        total = 0.0
        for part_usd, observed, billed in (
            (self.billed_input_usd, self.observed_input_tokens, self.billed_input_tokens),
            (self.billed_output_usd, self.observed_output_tokens, self.billed_output_tokens),
            (self.billed_other_usd, self.observed_tokens, self.billed_tokens),
        ):
            if not part_usd:
                continue
            share = _ratio(observed, billed)
            if share is None:
                share = overall
            if share is None:
                return None
            total += float(part_usd) * share
        return total

    @property
    def price_agreement(self) -> float | None:
        seen = self.billed_seen_usd
        if self.aggregated:
            return _ratio(self.seen_observed_usd, seen) if seen else None
        return _ratio(self.observed_usd, seen) if seen else None

    def add(self, other: Figures) -> None:
        """Add a row (or a sum of rows) into this sum."""
        self.aggregated = True
        if other.aggregated:
            self.seen_billed_usd += other.seen_billed_usd
            self.seen_observed_usd += other.seen_observed_usd
        else:
            seen = other.billed_seen_usd
            if seen:
                self.seen_billed_usd += seen
                self.seen_observed_usd += other.observed_usd
        for name in (
            "billed_input_usd",
            "billed_output_usd",
            "billed_other_usd",
            "billed_input_tokens",
            "billed_cached_input_tokens",
            "billed_output_tokens",
            "billed_requests",
            "observed_usd",
            "observed_input_tokens",
            "observed_output_tokens",
            "observed_requests",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.tiers |= other.tiers

    @property
    def off(self) -> bool:
        """A gap worth a warning: never billed / never observed, or off by more than 2 %."""
        if self.billed != self.observed:
            return True
        return any(v is not None and abs(v - 1) > TOLERANCE for v in (self.coverage, self.price_agreement))

    def explanations(self) -> list[str]:
        """Each gap in words, the likeliest cause first."""
        name = self.model or "calls without a model"
        if self.billed and not self.observed:
            return [
                f"{name}: billed {usd(self.billed_usd)} but never observed — calls from an app or key "
                f"without the SDK, or an OpenAI project that is not this project's."
            ]
        if self.observed and not self.billed:
            return [
                f"{name}: observed {usd(self.observed_usd)} ({self.observed_requests:,} requests) but never billed "
                f"— calls through a proxy or another organization's key, or an OpenAI project not linked here."
            ]
        notes: list[str] = []
        coverage = self.coverage
        if coverage is not None and coverage < 1 - TOLERANCE:
            notes.append(f"{(1 - coverage) * 100:.0f} % of {name} tokens were never observed — uninstrumented calls?")
        elif coverage is not None and coverage > 1 + TOLERANCE:
            notes.append(
                f"{(coverage - 1) * 100:.0f} % more {name} tokens observed than billed — calls through a proxy "
                f"or another organization's key?"
            )
        agreement = self.price_agreement
        if agreement is not None and abs(agreement - 1) > TOLERANCE:
            matched = coverage is not None and abs(coverage - 1) <= TOLERANCE
            lead = "tokens match but" if matched else "on the tokens we saw,"
            tiers = ", ".join(sorted(t for t in self.tiers if t))
            if 1.8 <= agreement <= 2.2:
                tier_note = f" (the bill names the {tiers} tier)" if tiers else ""
                notes.append(
                    f"{name}: {lead} cost is {agreement:.1f}× the bill — a price or tier error{tier_note}: "
                    f"flex or batch calls priced at the standard rate?"
                )
            elif agreement > 1:
                bill_ratio = 1 / agreement
                notes.append(
                    f"{name}: {lead} the bill is {bill_ratio:.2f}× our cost (cost {agreement:.2f}× the bill) — "
                    f"a discount or credit? set a project discount of {(1 - bill_ratio) * 100:.0f} %."
                )
            else:
                notes.append(
                    f"{name}: {lead} cost is {agreement:.2f}× the bill — the bill is higher than our prices: a "
                    f"missing or stale price, a priority or long-context tier, or a project discount the provider "
                    f"does not give?"
                )
        return notes
