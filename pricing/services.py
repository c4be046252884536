"""Writes to the pricing registry, and the in-process matcher ingest uses."""

from __future__ import annotations

import datetime as dt
import json
import threading
from bisect import bisect_right
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

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


class PricingError(ValueError):
    pass


def parse_moment(value: str | None, *, default: dt.datetime | None = None) -> dt.datetime:
    """An ISO date or date-time; a date means midnight UTC, a naive time is UTC."""
    if value is None or value == "":
        if default is None:
            raise PricingError("a date is required")
        return default
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
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
    alt = item.get("cheaper_alternative") or ""
    if not isinstance(alt, str) or len(alt) > 128:
        errors["cheaper_alternative"] = "a model name of at most 128 characters"
    else:
        row["cheaper_alternative"] = alt
    try:
        raw_from = item.get("effective_from")
        if raw_from is not None and not isinstance(raw_from, str):
            raise PricingError("an ISO date or date-time")
        row["effective_from"] = parse_moment(raw_from, default=default_from)
    except PricingError as exc:
        errors["effective_from"] = str(exc)
    if errors:
        raise PricingError(json.dumps(errors))
    return row


@transaction.atomic
def price_rows_upsert(*, items: list[Any], default_from: dt.datetime | None = None, using: str = "default") -> int:
    """Add (or correct) price versions.  A row with the same provider, model and
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
            provider=row.pop("provider"), model=row.pop("model"), effective_from=row.pop("effective_from"), defaults=row
        )
    return len(rows)


def price_registry_load(*, path: Path | str | None = None, using: str = "default") -> int:
    data = json.loads(Path(path or REGISTRY_PATH).read_text())
    items = data["prices"] if isinstance(data, dict) else data
    return price_rows_upsert(items=items, using=using)


# --- The matcher -------------------------------------------------------------

Rates = tuple[float, float | None, float, float, float, float]


class PriceTable:
    """All price versions in memory, for costing a batch without a query per event."""

    def __init__(self, rows: list[Price]) -> None:
        versions: dict[tuple[str, str], list[tuple[dt.datetime, int, Rates]]] = {}
        for p in rows:
            rates: Rates = (
                p.input_per_1m,
                p.cached_input_per_1m,
                p.output_per_1m,
                p.per_1m_read_units,
                p.per_1m_write_units,
                p.per_request,
            )
            versions.setdefault((p.provider.lower(), p.model.lower()), []).append((p.effective_from, p.id, rates))
        for v in versions.values():
            v.sort(key=lambda item: item[0])
        self._versions = versions
        self._starts = {k: [item[0] for item in v] for k, v in versions.items()}
        # Longest names first, so the first prefix that matches is the longest.
        self._models_by_provider: dict[str, list[str]] = {}
        for provider, model in sorted(versions, key=lambda k: -len(k[1])):
            self._models_by_provider.setdefault(provider, []).append(model)
        self._match_cache: dict[tuple[str, str], tuple[str, str] | None] = {}

    def _match(self, provider: str, model: str) -> tuple[str, str] | None:
        cache_key = (provider, model)
        if cache_key in self._match_cache:
            return self._match_cache[cache_key]
        found: tuple[str, str] | None = None
        providers = [provider] if provider else list(self._models_by_provider)
        # Exact name first (across the candidate providers), then the longest prefix.
        for p in providers:
            if (p, model) in self._versions and model:
                found = (p, model)
                break
        if found is None and model:
            best = -1
            for p in providers:
                for candidate in self._models_by_provider.get(p, []):
                    if candidate != PROVIDER_WIDE and model.startswith(candidate) and len(candidate) > best:
                        found, best = (p, candidate), len(candidate)
                        break
        if found is None and provider and (provider, PROVIDER_WIDE) in self._versions:
            found = (provider, PROVIDER_WIDE)
        self._match_cache[cache_key] = found
        return found

    def lookup(self, provider: str | None, model: str | None, at: dt.datetime) -> tuple[int, Rates] | None:
        """The (price id, rates) in effect at `at`, or None when unpriced."""
        key = self._match((provider or "").lower(), (model or "").lower())
        if key is None:
            return None
        index = bisect_right(self._starts[key], at) - 1
        if index < 0:
            return None
        _, price_id, rates = self._versions[key][index]
        return price_id, rates


_table_lock = threading.Lock()
_table: tuple[tuple[Any, ...], PriceTable] | None = None


def price_table_current(*, fresh: bool = False) -> PriceTable:
    """The matcher, rebuilt only when the registry changed.

    One cheap aggregate query per call tells whether any row was added or
    edited (here, in another process, or in the admin), so a batch is never
    costed with a stale price for longer than it takes to notice.
    """
    global _table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*), MAX(updated_at), MAX(id) FROM {Price._meta.db_table}")
        stamp = tuple(cursor.fetchone())
    cached = _table
    if cached is not None and cached[0] == stamp and not fresh:
        return cached[1]
    with _table_lock:
        table = PriceTable(list(Price.objects.all()))
        _table = (stamp, table)
        return table
