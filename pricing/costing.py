"""What one call costs: a rate card per model, day and price variant, applied per event.

A `RateCard` is resolved once per (project, provider, model, UTC day, service
tier, processing) and cached by the price table (`pricing.services`): asking
genai-prices costs ~70 µs a call, far too slow per event; applying a card is a
loop over the few units the call used.

Units are the wire's (SPEC §2): the §2 columns plus `usage_details`.  Token
units nest as the provider reports them: cached input, cache writes and input
audio are *part of* input tokens; reasoning and output audio are part of
output tokens.  A child unit the card prices is taken out of its parent and
billed at its own rate (genai-prices' "leaf" rule).  A child it does not price
either stays in its parent (cached input, cache writes and reasoning: billed at
the parent's rate, as providers without a separate rate bill them) or is
*unpriced* (audio: its rate is missing, never guessed from the text rate).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import NamedTuple

# Where a card's prices come from (SPEC §3, first match wins).
SOURCE_PROJECT = "project"
SOURCE_GLOBAL = "global"
SOURCE_REGISTRY = "registry"
SOURCE_GENAI = "genai-prices"

# cost_status values (SPEC §3).
EXACT = "exact"
UNPRICED = "unpriced"
USAGE_UNKNOWN = "usage_unknown"

# child unit -> the unit it is part of
PARENT = {
    "cached_input_tokens": "input_tokens",
    "cache_write_tokens": "input_tokens",
    "input_audio_tokens": "input_tokens",
    "reasoning_tokens": "output_tokens",
    "output_audio_tokens": "output_tokens",
}
# children billed at their parent's rate when the card has no rate of their own
INHERITS = frozenset({"cached_input_tokens", "cache_write_tokens", "reasoning_tokens"})
COLUMN_UNITS = ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens", "read_units", "write_units")
DETAIL_UNITS = (
    "cache_write_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "web_search_calls",
    "file_search_calls",
    "code_interpreter_sessions",
    "embed_tokens",
    "rerank_units",
)
KNOWN_UNITS = frozenset(COLUMN_UNITS + DETAIL_UNITS)
# units priced by another model than the call's own (Pinecone's integrated
# inference: a search's embedding and rerank models), named in price_context
UNIT_MODEL_KEY = {"embed_tokens": "embed_model", "rerank_units": "rerank_model"}
PER_REQUEST = "requests"


class UnitRate(NamedTuple):
    """USD per single unit, with genai-prices' long-context tiers: the rate of
    the highest tier whose start the call's input tokens exceed applies to all."""

    per_unit: float
    tiers: tuple[tuple[int, float], ...] = ()

    def at(self, input_tokens: int) -> float:
        for start, rate in reversed(self.tiers):
            if input_tokens > start:
                return rate
        return self.per_unit


@dataclass(slots=True, frozen=True)
class RateCard:
    """The prices one call is costed with."""

    source: str  # SOURCE_*
    provider: str  # the provider whose price list matched (azure falls back to openai's list)
    matched: str  # the price row's model id ("*": provider-wide)
    rates: dict[str, UnitRate]  # unit -> rate; "requests": per call
    effective_from: dt.datetime | None = None
    price_id: int | None = None  # the Price row, for database rows
    note: str = ""  # the source's own words: version, URL and date
    discount: float = 0.0  # a project's discount on list prices, 0..1
    cheaper_alternative: str = ""
    unit_sources: dict[str, str] = field(default_factory=dict)  # unit -> where a supplementing rate came from
    label: str = ""  # card_label(), computed once per card rather than per event

    def token_rates(self) -> tuple[float, float | None, float, float, float, float]:
        """(input, cached or None, output, read, write, per request) per 1M, for estimates."""

        def per_1m(unit: str) -> float:
            rate = self.rates.get(unit)
            return rate.per_unit * 1e6 if rate else 0.0

        cached = self.rates.get("cached_input_tokens")
        request = self.rates.get(PER_REQUEST)
        return (
            per_1m("input_tokens"),
            cached.per_unit * 1e6 if cached else None,
            per_1m("output_tokens"),
            per_1m("read_units"),
            per_1m("write_units"),
            request.per_unit if request else 0.0,
        )


@dataclass(slots=True)
class Cost:
    usd: float
    status: str
    details: dict[str, float | None]  # unit -> USD; None: a unit with no price
    price_id: int | None = None
    source: str = ""


def apply_card(
    card: RateCard, units: dict[str, float], *, unit_cards: dict[str, RateCard | None] | None = None
) -> Cost:
    """Cost `units` with `card`.  `unit_cards` prices a unit the card lacks
    (a supplementing registry rate, or another model named in price_context)."""
    details: dict[str, float | None] = {}
    rates = card.rates
    leaves = units
    # Take priced (or unpriceable) children out of their parents.
    for unit, value in units.items():
        parent = PARENT.get(unit)
        if parent is None:
            continue
        if leaves is units:
            leaves = dict(units)  # copied only when a child unit is present
        own = unit in rates or (unit_cards is not None and unit_cards.get(unit) is not None)
        if own or unit not in INHERITS:
            leaves[parent] = max(0.0, leaves.get(parent, 0) - value)
        else:
            del leaves[unit]  # billed inside its parent
    input_tokens = int(units.get("input_tokens", 0))
    total = 0.0
    unpriced = False
    for unit, value in leaves.items():
        rate = rates.get(unit)
        other = None
        if rate is None and unit_cards is not None:
            other = unit_cards.get(unit)
            if other is not None:
                rate = other.rates.get(unit)
        if rate is None:
            if unit in PARENT and unit in INHERITS:
                rate = rates.get(PARENT[unit])
            if rate is None:
                details[unit] = None
                unpriced = True
                continue
        # Most rates have no long-context tiers: skip the method call for them.
        usd = value * (rate.at(input_tokens) if rate.tiers else rate.per_unit)
        details[unit] = usd
        total += usd
    request = rates.get(PER_REQUEST)
    if request is not None and request.per_unit:
        details[PER_REQUEST] = request.per_unit
        total += request.per_unit
    if card.discount and total:
        # A project's discount on list prices (never set on its own rows).
        cut = -total * card.discount
        details["discount"] = cut
        total += cut
    return Cost(
        usd=total,
        status=UNPRICED if unpriced else EXACT,
        details=details,
        price_id=card.price_id,
        source=card.label or card_label(card),
    )


def card_label(card: RateCard) -> str:
    """Where a price came from, as stored on the event and shown to users."""
    label = f"{card.source}: {card.provider}/{card.matched}"
    if card.note and card.source == SOURCE_GENAI:
        label += f" ({card.note})"
    return label[:200]
