"""Writes to the pricing registry, and the in-process price table ingest uses."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import threading
from bisect import bisect_right
from collections.abc import Iterable
from decimal import Decimal
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any, NamedTuple

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from pricing.costing import (
    PER_REQUEST,
    SOURCE_GENAI,
    SOURCE_GLOBAL,
    SOURCE_PROJECT,
    SOURCE_REGISTRY,
    UNIT_MODEL_KEY,
    RateCard,
    UnitRate,
    card_label,
)
from pricing.models import PROVIDER_WIDE, Price

REGISTRY_PATH = Path(__file__).resolve().parent / "registry.json"
PRICE_FIELDS = (
    "input_per_1m",
    "cached_input_per_1m",
    "output_per_1m",
    "per_1m_read_units",
    "per_1m_write_units",
    "per_request",
)
GENAI_PRICES_VERSION = version("genai-prices")


class PricingError(ValueError):
    pass


def parse_moment(value: str | None, *, default: dt.datetime | None = None) -> dt.datetime:
    """An ISO date or date-time; a date means midnight UTC, a naive time is UTC."""
    if value is None or value == "":
        if default is None:
            raise PricingError("a date is required")
        return default
    try:
        moment = parse_datetime(value)
    except ValueError:
        moment = None
    if moment is None:
        try:
            day = parse_date(value)
        except ValueError:
            day = None
        if day is None:
            raise PricingError(f"{value!r} is not an ISO date or date-time")
        moment = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=dt.UTC)
    return moment


def _clean_row(item: Any, *, default_from: dt.datetime) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise PricingError("each price must be an object")
    errors: dict[str, str] = {}
    row: dict[str, Any] = {}
    for key in ("provider", "model"):
        value = item.get(key)
        if not isinstance(value, str) or not value.strip() or len(value) > 128:
            errors[key] = "required, a string of 1 to 128 characters"
        else:
            row[key] = value.strip()
    for key in PRICE_FIELDS:
        value = item.get(key, None if key == "cached_input_per_1m" else 0)
        if value is None and key == "cached_input_per_1m":
            row[key] = None
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value > 1e9:
            errors[key] = "a number from 0 to 1e9"
        else:
            row[key] = float(value)
    units = item.get("per_1m_units") or {}
    if not isinstance(units, dict) or any(
        not isinstance(k, str)
        or not k
        or len(k) > 64
        or isinstance(v, bool)
        or not isinstance(v, (int, float))
        or not 0 <= v <= 1e12
        for k, v in units.items()
    ):
        errors["per_1m_units"] = "an object of unit name -> USD per 1M units (a number from 0 to 1e12)"
    else:
        row["per_1m_units"] = {k: float(v) for k, v in units.items()}
    for key, limit in (("cheaper_alternative", 128), ("service_tier", 32), ("match_pattern", 200), ("note", 200)):
        value = item.get(key) or ""
        if not isinstance(value, str) or len(value) > limit:
            errors[key] = f"a string of at most {limit} characters"
        else:
            row[key] = value.strip()
    if row.get("match_pattern"):
        try:
            re.compile(row["match_pattern"])
        except re.error as exc:
            errors["match_pattern"] = f"not a regular expression: {exc}"
    for key, default in (("effective_from", default_from), ("effective_until", None)):
        try:
            raw = item.get(key)
            if raw is not None and not isinstance(raw, str):
                raise PricingError("an ISO date or date-time")
            row[key] = parse_moment(raw, default=default) if raw or default else None
        except PricingError as exc:
            errors[key] = str(exc)
    if errors:
        raise PricingError(json.dumps(errors))
    return row


class PriceVersionExists(PricingError):
    """A PUT names a version that is already stored: prices are never edited in place."""


@transaction.atomic
def price_rows_add(
    *,
    items: list[Any],
    default_from: dt.datetime | None = None,
    project_id: int | None = None,
    using: str = "default",
) -> int:
    """PUT /pricing: add new price versions, global or for one project.

    Never changes a stored version: one with the same provider, model, tier
    and effective_from is refused (a correction is a new version, or an edit
    in the admin, which logs who changed what).  The batch is all or nothing.
    """
    now = default_from or timezone.now()
    rows = []
    errors: dict[int, str] = {}
    for index, item in enumerate(items):
        try:
            rows.append(_clean_row(item, default_from=now))
        except PricingError as exc:
            errors[index] = str(exc)
    if errors:
        raise PricingError(json.dumps({"prices": errors}))
    existing = []
    for index, row in enumerate(rows):
        key = {k: row[k] for k in ("provider", "model", "service_tier", "effective_from")}
        owner = {"project__isnull": True} if project_id is None else {"project_id": project_id}
        if Price.objects.using(using).filter(**owner, **key).exists():
            existing.append(
                f"prices[{index}]: {row['provider']}/{row['model']} already has a version from "
                f"{row['effective_from'].isoformat()}; send a later effective_from (prices are never edited in place)"
            )
    if existing:
        raise PriceVersionExists("; ".join(existing))
    try:
        # The unique version keys decide a race between two PUTs of one version.
        with transaction.atomic(using=using):
            Price.objects.using(using).bulk_create(
                [Price(project_id=project_id, source=Price.USER, **row) for row in rows]
            )
    except IntegrityError:
        raise PriceVersionExists(
            "a price version in this request was stored meanwhile; send a later effective_from"
        ) from None
    return len(rows)


@transaction.atomic
def price_rows_upsert(
    *,
    items: list[Any],
    default_from: dt.datetime | None = None,
    project_id: int | None = None,
    source: str = Price.USER,
    using: str = "default",
) -> int:
    """`load_pricing`: add or correct price versions from a file an operator
    runs on purpose.  A row with the same provider, model, tier and
    effective_from is updated in place; any other is a new version."""
    now = default_from or timezone.now()
    rows = []
    errors = {}
    for index, item in enumerate(items):
        try:
            rows.append(_clean_row(item, default_from=now))
        except PricingError as exc:
            errors[index] = str(exc)
    if errors:
        raise PricingError(json.dumps({"prices": errors}))
    for row in rows:
        Price.objects.using(using).update_or_create(
            project_id=project_id,  # type: ignore[misc]  # None: a global row
            provider=row.pop("provider"),
            model=row.pop("model"),
            service_tier=row.pop("service_tier"),
            effective_from=row.pop("effective_from"),
            defaults={**row, "source": source},
        )
    return len(rows)


@cache
def registry_data(path: str = str(REGISTRY_PATH)) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    return data if isinstance(data, dict) else {"prices": data}


def price_registry_load(*, path: Path | str | None = None, using: str = "default") -> int:
    """`load_pricing`: upsert a registry file's rows (the shipped one's as registry rows)."""
    data = json.loads(Path(path or REGISTRY_PATH).read_text())
    items = data["prices"] if isinstance(data, dict) else data
    shipped = path is None or Path(path).resolve() == REGISTRY_PATH
    return price_rows_upsert(items=items, source=Price.REGISTRY if shipped else Price.USER, using=using)


def price_registry_sync(*, using: str = "default") -> int:
    """Add the shipped registry's rows that are not stored yet (on every migrate).

    Never changes a stored row: a price edited in the admin stays edited, and
    a shipped correction arrives as a new version (a new effective_from).
    """
    added = 0
    for item in registry_data()["prices"]:
        row = _clean_row(item, default_from=timezone.now())
        _, created = Price.objects.using(using).get_or_create(
            project=None,
            provider=row.pop("provider"),
            model=row.pop("model"),
            service_tier=row.pop("service_tier"),
            effective_from=row.pop("effective_from"),
            defaults={**row, "source": Price.REGISTRY},
        )
        added += created
    return added


# --- The price table ---------------------------------------------------------

# A snapshot suffix on a model id: -2024-08-06, -20240806, -0125.
_SNAPSHOT = re.compile(r"^(.+?)(?:-\d{4}-\d{2}-\d{2}|-\d{8}|-\d{4})$")
# genai-prices usage key for each of our units (ours are the wire's names).
_GENAI_UNITS = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cached_input_tokens": "cache_read_tokens",
    "cache_write_tokens": "cache_write_tokens",
    "input_audio_tokens": "input_audio_tokens",
    "output_audio_tokens": "output_audio_tokens",
    "reasoning_tokens": "output_reasoning_tokens",
    "web_search_calls": "web_searches",
    "file_search_calls": "storage_searches",
    "code_interpreter_sessions": "code_executions",
    PER_REQUEST: "requests",
}
_COLUMN_RATES = (
    ("input_per_1m", "input_tokens"),
    ("cached_input_per_1m", "cached_input_tokens"),
    ("output_per_1m", "output_tokens"),
    ("per_1m_read_units", "read_units"),
    ("per_1m_write_units", "write_units"),
)


class _Version(NamedTuple):
    start: dt.datetime
    until: dt.datetime | None
    card: RateCard


def _row_card(p: Price, source: str) -> RateCard:
    rates: dict[str, UnitRate] = {}
    for column, unit in _COLUMN_RATES:
        value = getattr(p, column)
        if value is not None:
            rates[unit] = UnitRate(value / 1e6)
    for unit, value in (p.per_1m_units or {}).items():
        rates[unit] = UnitRate(float(value) / 1e6)
    if p.per_request:
        rates[PER_REQUEST] = UnitRate(p.per_request)
    return RateCard(
        source=source,
        provider=p.provider.lower(),
        matched=p.model,
        rates=rates,
        effective_from=p.effective_from,
        price_id=p.id,
        note=p.note,
        cheaper_alternative=p.cheaper_alternative,
    )


class _Layer:
    """One layer's database rows: (provider, model) -> service tier -> versions by start."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, list[_Version]]] = {}
        self.patterns: list[tuple[str, re.Pattern[str], tuple[str, str]]] = []

    def add(self, p: Price, source: str) -> None:
        key = (p.provider.lower(), p.model.lower())
        self.rows.setdefault(key, {}).setdefault(p.service_tier, []).append(
            _Version(p.effective_from, p.effective_until, _row_card(p, source))
        )
        if p.match_pattern:
            self.patterns.append((key[0], re.compile(p.match_pattern, re.IGNORECASE), key))

    def seal(self) -> None:
        for tiers in self.rows.values():
            for versions in tiers.values():
                versions.sort(key=lambda v: v.start)
        self.patterns = list(dict.fromkeys(self.patterns))

    def find(self, provider: str, model: str, at: dt.datetime, tier: str, processing: str = "") -> RateCard | None:
        """Exact id, the id less a snapshot suffix, a declared pattern, then the provider-wide row."""
        providers = [provider] if provider else sorted({k[0] for k in self.rows})
        for p in providers:
            keys = [(p, model)]
            base = _SNAPSHOT.match(model)
            if base:
                keys.append((p, base.group(1)))
            keys += [key for prov, pattern, key in self.patterns if prov == p and pattern.fullmatch(model)]
            keys.append((p, PROVIDER_WIDE))
            for key in keys:
                card = self._version(key, at, tier, processing)
                if card is not None:
                    return card
        return None

    def _version(self, key: tuple[str, str], at: dt.datetime, tier: str, processing: str) -> RateCard | None:
        tiers = self.rows.get(key)
        if not tiers:
            return None
        # A row for the call's variant (a Batch API row is stored with tier "batch"), else the any-tier row.
        candidates = [c for c in ("batch" if processing == "batch" else "", tier) if c] + [""]
        for candidate in candidates:
            versions = tiers.get(candidate)
            if not versions:
                continue
            index = bisect_right([v.start for v in versions], at) - 1
            if index >= 0:
                until = versions[index].until
                if until is None or at < until:
                    return versions[index].card
        return None


class _Supplements:
    """registry.json's unit_rates: rates the maintained source lacks (audio on
    some models, code interpreter sessions), added to a card that has none."""

    def __init__(self, items: Iterable[dict[str, Any]]) -> None:
        self.rows: dict[tuple[str, str], list[tuple[dt.datetime, str, UnitRate, str]]] = {}
        for item in items:
            start = parse_moment(item.get("effective_from"), default=dt.datetime(1970, 1, 1, tzinfo=dt.UTC))
            key = (item["provider"].lower(), item["model"].lower())
            rate = UnitRate(float(item["per_1m"]) / 1e6)
            self.rows.setdefault(key, []).append((start, item["unit"], rate, item.get("source", "")))
        for rows in self.rows.values():
            rows.sort(key=lambda r: r[0])

    def for_model(self, providers: Iterable[str], model: str, at: dt.datetime) -> dict[str, tuple[UnitRate, str]]:
        """unit -> (rate, source) in effect at `at`: the model's own rows (exact id,
        then the id less a snapshot suffix) before provider-wide ones."""
        found: dict[str, tuple[UnitRate, str]] = {}
        base = _SNAPSHOT.match(model)
        for provider in providers:
            keys = [(provider, model)] + ([(provider, base.group(1))] if base else []) + [(provider, PROVIDER_WIDE)]
            for key in keys:
                latest: dict[str, tuple[UnitRate, str]] = {}
                for start, unit, rate, note in self.rows.get(key, ()):  # sorted by start: a later one wins
                    if start <= at:
                        latest[unit] = (rate, note)
                for unit, value in latest.items():
                    found.setdefault(unit, value)
        return found


def _genai_card(provider: str, model: str, host: str, at: dt.datetime, tier: str, processing: str) -> RateCard | None:
    from genai_prices.data_snapshot import get_snapshot

    snapshot = get_snapshot()
    try:
        if provider:
            prov, info = snapshot.find_provider_model(model, None, provider, None)
        elif host:
            prov, info = snapshot.find_provider_model(model, None, None, f"https://{host}/")
        else:
            prov, info = snapshot.find_provider_model(model, None, None, None)
    except LookupError:
        return None
    context = {k: v for k, v in (("service_tier", tier), ("processing", processing)) if v}
    # As genai-prices' calc_price: variants only for a model of the provider itself.
    if context and not any(info is m for m in prov.models):
        context = {}
    prices = info.get_prices(at, context or None)
    rates: dict[str, UnitRate] = {}
    from genai_prices.types import TieredPrices
    from genai_prices.units import _get_registry

    registry = _get_registry()
    for unit, usage_key in _GENAI_UNITS.items():
        spec = registry.units[usage_key]
        value = prices.__dict__.get(spec.price_key)
        if value is None:
            continue
        if isinstance(value, TieredPrices):
            rates[unit] = UnitRate(
                float(value.base) / spec.per, tuple((t.start, float(t.price) / spec.per) for t in value.tiers)
            )
        elif isinstance(value, Decimal):
            rates[unit] = UnitRate(float(value) / spec.per)
    owner = next((p.id for p in snapshot.providers if any(info is m for m in p.models)), prov.id)
    return RateCard(
        source=SOURCE_GENAI,
        provider=owner,
        matched=info.id,
        rates=rates,
        note=f"genai-prices {GENAI_PRICES_VERSION}",
    )


def _time_of_day_priced(provider: str, model: str) -> bool:
    """genai-prices prices a few models by time of day (off-peak): no per-day cache for them."""
    from genai_prices.data_snapshot import get_snapshot
    from genai_prices.types import TimeOfDateConstraint

    try:
        _, info = get_snapshot().find_provider_model(model, None, provider or None, None)
    except LookupError:
        return False
    prices = info.prices if isinstance(info.prices, list) else []
    return any(isinstance(p.constraint, TimeOfDateConstraint) for p in prices) or any(
        isinstance(v.constraint, TimeOfDateConstraint) for v in info.price_variants or ()
    )


class PriceTable:
    """Every price layer in memory, for costing a batch without a query per event.

    `card()` answers SPEC §3's question — which prices does this call get —
    and caches the answer per (project, provider, model, UTC day, tier,
    processing), so a batch of 1000 calls to a few models resolves a few cards.
    """

    def __init__(self, rows: list[Price], discounts: dict[int, float] | None = None) -> None:
        self.projects: dict[int, _Layer] = {}
        self.global_rows = _Layer()
        self.registry_rows = _Layer()
        for p in rows:
            if p.project_id is not None:
                self.projects.setdefault(p.project_id, _Layer()).add(p, SOURCE_PROJECT)
            elif p.source == Price.REGISTRY:
                self.registry_rows.add(p, SOURCE_REGISTRY)
            else:
                self.global_rows.add(p, SOURCE_GLOBAL)
        for layer in (self.global_rows, self.registry_rows, *self.projects.values()):
            layer.seal()
        self.discounts = discounts or {}
        data = registry_data()
        self.supplements = _Supplements(data.get("unit_rates", ()))
        self.alternatives: dict[str, dict[str, str]] = {
            k.lower(): {m.lower(): alt for m, alt in v.items()} for k, v in data.get("cheaper_alternatives", {}).items()
        }
        self._cards: dict[tuple[Any, ...], RateCard | None] = {}
        self._snapshot = _snapshot_id()

    def card(
        self,
        provider: str | None,
        model: str | None,
        at: dt.datetime,
        *,
        project_id: int | None = None,
        tier: str | None = None,
        processing: str | None = None,
        host: str | None = None,
    ) -> RateCard | None:
        """The prices a call with this model gets at `at`, or None when nothing matches."""
        # Keyed by the ids as sent (lower-cased only on a miss): this runs per event.
        day = at.date() if at.tzinfo is dt.UTC else at.astimezone(dt.UTC).date()
        key = (project_id, provider, model, day, tier, processing, None if provider else host)
        try:
            return self._cards[key]
        except KeyError:
            pass
        provider_l = (provider or "").lower()
        model_l = (model or "").lower()
        if self._snapshot != _snapshot_id():  # genai-prices' data was swapped (an update): forget its answers
            self._cards.clear()
            self._snapshot = _snapshot_id()
        card = self._resolve(provider_l, model_l, at, project_id, tier or "", processing or "", host or "")
        if model_l and _time_of_day_priced(provider_l, model_l):
            return card
        if len(self._cards) > 100_000:
            self._cards.clear()
        self._cards[key] = card
        return card

    def _resolve(
        self, provider: str, model: str, at: dt.datetime, project_id: int | None, tier: str, processing: str, host: str
    ) -> RateCard | None:
        if project_id is not None and project_id in self.projects:
            card = self.projects[project_id].find(provider, model, at, tier, processing)
            if card is not None:
                return card
        card = self.global_rows.find(provider, model, at, tier, processing)
        if card is None and model:
            card = self.registry_rows.find(provider, model, at, tier, processing)
            if card is not None and card.matched == PROVIDER_WIDE:
                card = _genai_card(provider, model, host, at, tier, processing) or card
            elif card is None:
                card = _genai_card(provider, model, host, at, tier, processing)
        if card is None:
            card = self.registry_rows.find(provider, model, at, tier, processing)
        if card is None:
            return None
        return self._finish(card, provider, model, at, project_id)

    def _finish(self, card: RateCard, provider: str, model: str, at: dt.datetime, project_id: int | None) -> RateCard:
        rates = dict(card.rates)
        sources: dict[str, str] = {}
        providers = dict.fromkeys(p for p in (provider, card.provider) if p)
        # The call's own id first, then the id the price matched (a fine-tune's base family).
        for name in dict.fromkeys((model, card.matched.lower())):
            for unit, (rate, note) in self.supplements.for_model(providers, name, at).items():
                if unit not in rates:
                    rates[unit] = rate
                    sources[unit] = note
        alternative = card.cheaper_alternative or self.alternatives.get(card.provider, {}).get(card.matched.lower(), "")
        discount = 0.0
        if card.source != SOURCE_PROJECT and project_id is not None:
            discount = self.discounts.get(project_id, 0.0) / 100.0
        finished = RateCard(
            source=card.source,
            provider=card.provider,
            matched=card.matched,
            rates=rates,
            effective_from=card.effective_from,
            price_id=card.price_id,
            note=card.note,
            discount=discount,
            cheaper_alternative=alternative,
            unit_sources=sources,
        )
        return dataclasses.replace(finished, label=card_label(finished))

    def unit_cards(
        self,
        card: RateCard,
        units: dict[str, float],
        context: dict[str, Any] | None,
        at: dt.datetime,
        project_id: int | None,
    ) -> dict[str, RateCard | None] | None:
        """Cards for units priced by another model named in price_context (Pinecone's
        integrated embedding and rerank), for the units `card` has no rate for."""
        if not context:
            return None
        out: dict[str, RateCard | None] = {}
        for unit, key in UNIT_MODEL_KEY.items():
            other = context.get(key)
            if unit in units and unit not in card.rates and isinstance(other, str) and other:
                found = self.card(card.provider, other, at, project_id=project_id)
                out[unit] = found if found is not None and unit in found.rates else None
        return out or None

    def lookup(self, provider: str | None, model: str | None, at: dt.datetime) -> RateCard | None:
        """The card a call without project, tier or host context gets (insights' estimates)."""
        return self.card(provider, model, at)


def _snapshot_id() -> int:
    from genai_prices.data_snapshot import get_snapshot

    return id(get_snapshot())


_table_lock = threading.Lock()
_table: tuple[tuple[Any, ...], PriceTable] | None = None


def price_table_current(*, fresh: bool = False) -> PriceTable:
    """The price table, rebuilt only when a price row or a project discount changed.

    One cheap query per call tells whether any row was added or edited (here,
    in another process, or in the admin), so a batch is never costed with a
    stale price for longer than it takes to notice.
    """
    global _table
    from projects.models import Project

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*), MAX(updated_at), MAX(id), "
            f"(SELECT COALESCE(SUM(id * price_discount_percent), 0) FROM {Project._meta.db_table} "
            f"WHERE price_discount_percent <> 0) FROM {Price._meta.db_table}"
        )
        stamp = tuple(cursor.fetchone())
    cached = _table
    if cached is not None and cached[0] == stamp and not fresh:
        return cached[1]
    with _table_lock:
        discounts = dict(Project.objects.exclude(price_discount_percent=0).values_list("id", "price_discount_percent"))
        table = PriceTable(list(Price.objects.all()), discounts)
        _table = (stamp, table)
        return table
