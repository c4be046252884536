"""Reads of the pricing registry: what is in effect, and what a call would get."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q
from django.utils import timezone

from pricing.costing import PER_REQUEST, RateCard, card_label
from pricing.models import Price
from pricing.services import GENAI_PRICES_VERSION, PriceTable, price_table_current

# genai-prices' catalogue holds ~2,300 models of ~50 providers; a listing
# shows these providers' (and those a project has used) unless asked for more.
DEFAULT_PROVIDERS = ("openai", "azure", "pinecone")
_COLUMN_UNITS = {
    "input_tokens": "input_per_1m",
    "cached_input_tokens": "cached_input_per_1m",
    "output_tokens": "output_per_1m",
    "read_units": "per_1m_read_units",
    "write_units": "per_1m_write_units",
}


@dataclass(slots=True)
class PriceRow:
    """One model's price in effect now, with where it comes from."""

    provider: str
    model: str
    source: str  # project | global | registry | genai-prices
    input_per_1m: float = 0.0
    cached_input_per_1m: float | None = None
    output_per_1m: float = 0.0
    per_1m_read_units: float = 0.0
    per_1m_write_units: float = 0.0
    per_request: float = 0.0
    per_1m_units: dict[str, float] = field(default_factory=dict)
    cheaper_alternative: str = ""
    effective_from: dt.datetime | None = None
    service_tier: str = ""
    note: str = ""
    project: str | None = None
    long_context_tiers: bool = False
    variants: list[str] = field(default_factory=list)
    pk: int | None = None  # the database row, for the admin's edit link


def _row_of_price(p: Price) -> PriceRow:
    source = "project" if p.project_id else ("registry" if p.source == Price.REGISTRY else "global")
    return PriceRow(
        provider=p.provider,
        model=p.model,
        source=source,
        input_per_1m=p.input_per_1m,
        cached_input_per_1m=p.cached_input_per_1m,
        output_per_1m=p.output_per_1m,
        per_1m_read_units=p.per_1m_read_units,
        per_1m_write_units=p.per_1m_write_units,
        per_request=p.per_request,
        per_1m_units=dict(p.per_1m_units or {}),
        cheaper_alternative=p.cheaper_alternative,
        effective_from=p.effective_from,
        service_tier=p.service_tier,
        note=p.note,
        project=p.project.name if p.project is not None else None,
        pk=p.id,
    )


def _card_columns(row: PriceRow, card: RateCard) -> None:
    for unit, rate in card.rates.items():
        column = _COLUMN_UNITS.get(unit)
        if column is not None:
            setattr(row, column, rate.per_unit * 1e6)
        elif unit == PER_REQUEST:
            row.per_request = rate.per_unit
        else:
            row.per_1m_units[unit] = rate.per_unit * 1e6
        if rate.tiers:
            row.long_context_tiers = True


def price_list_current(
    *, at: dt.datetime | None = None, project_id: int | None = None, providers: set[str] | None = None
) -> list[PriceRow]:
    """One row per (provider, model, tier, owner) in effect at `at` (now).

    Database rows (the project's own, global ones and the shipped registry's)
    first; then the maintained source's models of `providers` (default: the
    usual ones) that no database row shadows.  `providers={"*"}`: all of them.
    """
    moment = at or timezone.now()
    owner = Q(project__isnull=True) if project_id is None else Q(project__isnull=True) | Q(project_id=project_id)
    latest: dict[tuple[Any, ...], Price] = {}
    for p in (
        Price.objects.filter(owner, effective_from__lte=moment)
        .select_related("project")
        .order_by("effective_from", "id")
    ):
        latest[(p.project_id, p.provider.lower(), p.model.lower(), p.service_tier)] = p
    rows = [_row_of_price(p) for p in latest.values() if p.effective_until is None or moment < p.effective_until]
    shadowed = {(r.provider.lower(), r.model.lower()) for r in rows}
    wanted = set(providers or DEFAULT_PROVIDERS)
    rows += [r for r in _source_rows(moment, wanted) if (r.provider, r.model.lower()) not in shadowed]
    rows.sort(key=lambda r: (r.provider, r.model, r.service_tier, r.project or ""))
    return rows


def _source_rows(moment: dt.datetime, providers: set[str]) -> list[PriceRow]:
    from genai_prices.data_snapshot import get_snapshot
    from genai_prices.types import StartDateConstraint

    table = price_table_current()
    out = []
    for prov in get_snapshot().providers:
        if "*" not in providers and prov.id not in providers:
            continue
        for info in prov.models:
            card = table.card(prov.id, info.id, moment)
            if card is None or card.source != "genai-prices" or card.matched != info.id:
                continue
            row = PriceRow(provider=prov.id, model=info.id, source="genai-prices", note=card.note)
            _card_columns(row, card)
            row.cheaper_alternative = card.cheaper_alternative
            if isinstance(info.prices, list):
                starts = [
                    c.constraint.start_date
                    for c in info.prices
                    if isinstance(c.constraint, StartDateConstraint) and c.constraint.active(moment)
                ]
                if starts:
                    row.effective_from = dt.datetime.combine(max(starts), dt.time(), tzinfo=dt.UTC)
            row.variants = sorted(
                {
                    f"{k}={v}"
                    for variant in info.price_variants or ()
                    if variant.prices.__dict__ and (variant.constraint is None or variant.constraint.active(moment))
                    for k, v in variant.when.items()
                }
            )
            out.append(row)
    return out


def price_as_dict(price: PriceRow | Price) -> dict[str, Any]:
    from events.selectors import iso

    row = price if isinstance(price, PriceRow) else _row_of_price(price)
    return {
        "provider": row.provider,
        "model": row.model,
        "input_per_1m": row.input_per_1m,
        "cached_input_per_1m": row.cached_input_per_1m,
        "output_per_1m": row.output_per_1m,
        "per_1m_read_units": row.per_1m_read_units,
        "per_1m_write_units": row.per_1m_write_units,
        "per_request": row.per_request,
        "cheaper_alternative": row.cheaper_alternative or None,
        "effective_from": iso(row.effective_from) if row.effective_from else None,
        # v2: where the row comes from and what else it prices
        "source": row.source,
        "note": row.note or None,
        "project": row.project,
        "service_tier": row.service_tier or None,
        "per_1m_units": row.per_1m_units,
        "long_context_tiers": row.long_context_tiers,
        "variants": row.variants,
    }


def price_resolve(
    *,
    provider: str | None,
    model: str,
    project_id: int | None,
    service_tier: str | None = None,
    processing: str | None = None,
    host: str | None = None,
    at: dt.datetime | None = None,
    table: PriceTable | None = None,
) -> dict[str, Any]:
    """GET /pricing/resolve: the prices a call with this model would get, and why."""
    from events.selectors import iso

    moment = at or timezone.now()
    table = table or price_table_current()
    card = table.card(
        provider, model, moment, project_id=project_id, tier=service_tier, processing=processing, host=host
    )
    asked = {
        "provider": provider,
        "model": model,
        "service_tier": service_tier,
        "processing": processing,
        "at": iso(moment),
    }
    if card is None:
        return {**asked, "matched": None}
    rates: dict[str, Any] = {}
    for unit, rate in sorted(card.rates.items()):
        entry: dict[str, Any] = {"usd_per_1m": rate.per_unit * 1e6}
        if unit == PER_REQUEST:
            entry = {"usd_per_call": rate.per_unit}
        if rate.tiers:
            entry["tiers"] = [{"above_input_tokens": start, "usd_per_1m": r * 1e6} for start, r in rate.tiers]
        if unit in card.unit_sources:
            entry["source"] = card.unit_sources[unit]
        rates[unit] = entry
    return {
        **asked,
        "matched": {
            "provider": card.provider,
            "model": card.matched,
            "source": card.source,
            "label": card_label(card),
            "note": card.note or None,
            "effective_from": iso(card.effective_from) if card.effective_from else None,
            "discount_percent": card.discount * 100,
            "cheaper_alternative": card.cheaper_alternative or None,
            "rates": rates,
        },
        "source_version": f"genai-prices {GENAI_PRICES_VERSION}",
    }
