from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import OuterRef, Subquery
from django.utils import timezone

from pricing.models import Price


def price_list_current(*, at: dt.datetime | None = None) -> list[Price]:
    """One row per (provider, model): the version in effect at `at` (now)."""
    moment = at or timezone.now()
    latest = (
        Price.objects.filter(provider=OuterRef("provider"), model=OuterRef("model"), effective_from__lte=moment)
        .order_by("-effective_from")
        .values("id")[:1]
    )
    return list(Price.objects.filter(effective_from__lte=moment, id=Subquery(latest)).order_by("provider", "model"))


def price_as_dict(price: Price) -> dict[str, Any]:
    from events.selectors import iso

    return {
        "provider": price.provider,
        "model": price.model,
        "input_per_1m": price.input_per_1m,
        "cached_input_per_1m": price.cached_input_per_1m,
        "output_per_1m": price.output_per_1m,
        "per_1m_read_units": price.per_1m_read_units,
        "per_1m_write_units": price.per_1m_write_units,
        "per_request": price.per_request,
        "cheaper_alternative": price.cheaper_alternative or None,
        "effective_from": iso(price.effective_from),
    }
