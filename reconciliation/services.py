"""Writes: the OpenAI bill import, a project's OpenAI project links, Pinecone CSV imports.

Which days the import fetches (README "Reconciliation"): every UTC day from
RECONCILE_BACKFILL_DAYS ago up to today that is not final yet.  A day is
final once it was fetched at least RECONCILE_SETTLE_DAYS full days after it
ended (OpenAI's figures for a day still move for a while after it); today
and the last few days are therefore fetched again on every run, and a day
never imported is fetched whatever its age within the window.  `since`
forces every day from that date on to be fetched again.

Everything is fetched first, then written in one transaction that deletes
the fetched days' rows and inserts the new ones: a failed fetch writes
nothing, and a re-run replaces a day, never doubles it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from projects.models import Project
from reconciliation.compare import line_item_parse, model_fold
from reconciliation.models import BilledCost, BilledUsage, ImportedDay, OpenAIProjectLink, PineconeUsage
from reconciliation.openai_admin import AdminApiError, AdminClient, AdminConfig, AdminKeyMissing, admin_config_from_env

log = logging.getLogger(__name__)


MAX_IMPORT_DAYS = 400


class ReconcileError(ValueError):
    pass


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def _bucket_day(bucket: dict[str, Any]) -> dt.date | None:
    start = bucket.get("start_time")
    if isinstance(start, bool) or not isinstance(start, (int, float)):
        return None
    try:
        return dt.datetime.fromtimestamp(start, tz=dt.UTC).date()
    except (OverflowError, OSError, ValueError):
        return None


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return max(0, min(int(value), 2**62))


def _text(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def days_to_fetch(*, today: dt.date, since: dt.date | None = None) -> list[dt.date]:
    """The days the import fetches (module docstring), oldest first."""
    first = since if since is not None else today - dt.timedelta(days=settings.RECONCILE_BACKFILL_DAYS)
    if first > today:
        raise ReconcileError(f"{first.isoformat()} is after today ({today.isoformat()}, UTC)")
    if (today - first).days >= MAX_IMPORT_DAYS:
        raise ReconcileError(f"at most {MAX_IMPORT_DAYS} days at once (asked from {first.isoformat()})")
    days = [first + dt.timedelta(days=i) for i in range((today - first).days + 1)]
    if since is not None:
        return days
    final = set(ImportedDay.objects.filter(day__gte=first, final=True).values_list("day", flat=True))
    return [d for d in days if d not in final]


@dataclass(slots=True)
class ImportResult:
    days: list[dt.date] = field(default_factory=list)
    cost_rows: int = 0
    usage_rows: int = 0
    requests: int = 0
    billed_usd: Decimal = Decimal(0)


def openai_bill_import(
    *,
    since: dt.date | None = None,
    today: dt.date | None = None,
    config: AdminConfig | None = None,
    sleep: Callable[[float], None] | None = None,
) -> ImportResult:
    """Fetch the Costs and Usage APIs for the days not final yet, and store them."""
    config = config or admin_config_from_env()
    if config is None:
        raise AdminKeyMissing("OPENAI_ADMIN_KEY is not set: the OpenAI bill cannot be imported")
    now = timezone.now()
    today = today or now.astimezone(dt.UTC).date()
    days = days_to_fetch(today=today, since=since)
    result = ImportResult(days=days)
    if not days:
        return result
    start, end = _day_start(days[0]), _day_start(days[-1] + dt.timedelta(days=1))
    wanted = set(days)
    costs: dict[tuple[dt.date, str, str], BilledCost] = {}
    usage: dict[tuple[dt.date, str, str, str], BilledUsage] = {}
    kwargs: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}
    with AdminClient(config, **kwargs) as client:
        for bucket in client.costs(start=start, end=end):
            day = _bucket_day(bucket)
            if day not in wanted or day is None:
                continue
            for item in bucket.get("results") or ():
                if not isinstance(item, dict):
                    continue
                amount = item.get("amount") or {}
                try:
                    value = Decimal(str(amount.get("value", 0)))
                except (InvalidOperation, ValueError, AttributeError):
                    raise AdminApiError(f"OpenAI admin API: a cost amount is not a number on {day}") from None
                if not value.is_finite():
                    raise AdminApiError(f"OpenAI admin API: a cost amount is not a finite number on {day}")
                currency = _text(amount.get("currency"), 8).lower() or "usd"
                line = _text(item.get("line_item"), 255)
                project = _text(item.get("project_id"), 64)
                parsed = line_item_parse(line)
                key = (day, project, line)
                if key in costs:  # the same line twice in one bucket: add, never drop
                    costs[key].amount_usd += value
                    continue
                costs[key] = BilledCost(
                    day=day,
                    openai_project_id=project,
                    line_item=line,
                    model=parsed.model[:255],
                    kind=parsed.kind,
                    tier=parsed.tier[:32],
                    amount_usd=value,
                    currency=currency,
                    imported_at=now,
                )
        for endpoint in BilledUsage.ENDPOINTS:
            for bucket in client.usage(endpoint, start=start, end=end):
                day = _bucket_day(bucket)
                if day not in wanted or day is None:
                    continue
                for item in bucket.get("results") or ():
                    if not isinstance(item, dict):
                        continue
                    model_id = _text(item.get("model"), 255)
                    project = _text(item.get("project_id"), 64)
                    ukey = (day, endpoint, project, model_id)
                    row = usage.get(ukey)
                    if row is None:
                        row = usage[ukey] = BilledUsage(
                            day=day,
                            endpoint=endpoint,
                            openai_project_id=project,
                            model_id=model_id,
                            model=model_fold(model_id),
                            imported_at=now,
                        )
                    row.input_tokens += _int(item.get("input_tokens"))
                    row.input_cached_tokens += _int(item.get("input_cached_tokens"))
                    row.output_tokens += _int(item.get("output_tokens"))
                    row.num_model_requests += _int(item.get("num_model_requests"))
        result.requests = client.requests
    settled_before = today - dt.timedelta(days=settings.RECONCILE_SETTLE_DAYS)
    with transaction.atomic():
        BilledCost.objects.filter(day__in=days).delete()
        BilledUsage.objects.filter(day__in=days).delete()
        BilledCost.objects.bulk_create(costs.values(), batch_size=500)
        BilledUsage.objects.bulk_create(usage.values(), batch_size=500)
        per_day_costs: dict[dt.date, int] = {}
        per_day_usage: dict[dt.date, int] = {}
        for c in costs.values():
            per_day_costs[c.day] = per_day_costs.get(c.day, 0) + 1
        for u in usage.values():
            per_day_usage[u.day] = per_day_usage.get(u.day, 0) + 1
        for day in days:
            ImportedDay.objects.update_or_create(
                day=day,
                defaults={
                    "fetched_at": now,
                    # Fetched SETTLE_DAYS full days after it ended: its figures no longer move.
                    "final": day < settled_before,
                    "cost_results": per_day_costs.get(day, 0),
                    "usage_results": per_day_usage.get(day, 0),
                },
            )
    result.cost_rows = len(costs)
    result.usage_rows = len(usage)
    result.billed_usd = sum((c.amount_usd for c in costs.values()), Decimal(0))
    log.info(
        "OpenAI bill imported: %d days (%s to %s), %d cost rows, %d usage rows, %d requests",
        len(days),
        days[0],
        days[-1],
        result.cost_rows,
        result.usage_rows,
        result.requests,
    )
    return result


# --- Project links -----------------------------------------------------------

_OPENAI_PROJECT_ID = re.compile(r"^proj_[A-Za-z0-9_-]{1,59}$")
MAX_LINKS = 50


def openai_project_ids_parse(raw: str) -> list[str]:
    """Ids separated by commas, spaces or lines; each like proj_abc123."""
    ids = [part for part in re.split(r"[\s,]+", raw or "") if part]
    bad = [i for i in ids if not _OPENAI_PROJECT_ID.match(i)]
    if bad:
        shown = ", ".join(repr(b[:70]) for b in bad[:3])
        raise ReconcileError(f"not an OpenAI project id (proj_ followed by letters and digits): {shown}")
    unique = list(dict.fromkeys(ids))
    if len(unique) > MAX_LINKS:
        raise ReconcileError(f"at most {MAX_LINKS} OpenAI project ids")
    return unique


@transaction.atomic
def openai_project_links_set(*, project: Project, openai_project_ids: Iterable[str]) -> list[str]:
    """Replace the project's links (none: the whole organization's bill)."""
    ids = list(dict.fromkeys(openai_project_ids))
    OpenAIProjectLink.objects.filter(project=project).exclude(openai_project_id__in=ids).delete()
    existing = set(
        OpenAIProjectLink.objects.filter(project=project, openai_project_id__in=ids).values_list(
            "openai_project_id", flat=True
        )
    )
    OpenAIProjectLink.objects.bulk_create(
        [OpenAIProjectLink(project=project, openai_project_id=i) for i in ids if i not in existing]
    )
    return ids


# --- Pinecone usage export ---------------------------------------------------

# Pinecone's console exports its usage report as CSV (Settings › Usage ›
# Download); its column names are not published as a schema, so each field
# is found under the names seen in such exports (case and spacing ignored).
PINECONE_COLUMNS: dict[str, tuple[str, ...]] = {
    "day": ("date", "day", "usage date", "usagedate", "chargeperiodstart", "start date", "period start"),
    "pinecone_project": ("project", "project name", "projectname", "project_name"),
    "resource": ("index", "index name", "resource", "resource name", "resourcename", "index_name"),
    "sku": ("sku", "sku name", "skuid", "description", "product", "service", "chargedescription"),
    "quantity": ("quantity", "usage", "usage quantity", "consumedquantity", "units"),
    "unit": ("unit", "usage unit", "consumedunit", "pricingunit"),
    "cost_usd": ("cost", "cost (usd)", "cost usd", "amount", "amount (usd)", "billedcost", "total cost"),
}
PINECONE_REQUIRED = ("day", "cost_usd")
PINECONE_MAX_ROWS = 200_000


def _header_key(name: str) -> str:
    return re.sub(r"\s+", " ", name.strip().lower().lstrip("\ufeff"))


def _csv_day(raw: str) -> dt.date:
    text = raw.strip()
    for candidate in (text[:10], text):
        try:
            return dt.date.fromisoformat(candidate)
        except ValueError:
            pass
    for fmt in ("%m/%d/%Y", "%Y/%m/%d"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            pass
    raise ReconcileError(f"{raw!r} is not a date (use 2026-11-26)")


def _csv_number(raw: str, what: str) -> Decimal:
    text = raw.strip().replace("$", "").replace(",", "")
    try:
        value = Decimal(text or "0")
    except InvalidOperation:
        raise ReconcileError(f"{what} {raw!r} is not a number") from None
    if not value.is_finite() or abs(value) > Decimal(10) ** 9:
        raise ReconcileError(f"{what} {raw!r} is out of range")
    return value


@dataclass(slots=True)
class PineconeImportResult:
    rows: int = 0
    days: list[dt.date] = field(default_factory=list)
    cost_usd: Decimal = Decimal(0)


def pinecone_usage_import(*, text: str) -> PineconeImportResult:
    """Store a Pinecone usage export; the days it covers are replaced whole.

    All or nothing: a bad row refuses the file with its line number."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise ReconcileError("the file is empty (no header row)")
    columns: dict[str, str] = {}
    by_key = {_header_key(name): name for name in reader.fieldnames if name}
    for field_name, aliases in PINECONE_COLUMNS.items():
        for alias in aliases:
            if alias in by_key:
                columns[field_name] = by_key[alias]
                break
    missing = [f for f in PINECONE_REQUIRED if f not in columns]
    if missing:
        wanted = "; ".join(f"{f}: one of {', '.join(PINECONE_COLUMNS[f])}" for f in missing)
        raise ReconcileError(f"missing columns ({wanted}); the header was {', '.join(reader.fieldnames)}")
    now = timezone.now()
    rows: dict[tuple[dt.date, str, str, str, str], PineconeUsage] = {}
    for line_no, record in enumerate(reader, start=2):
        if line_no > PINECONE_MAX_ROWS + 1:
            raise ReconcileError(f"more than {PINECONE_MAX_ROWS} rows")

        def get(name: str, record: dict[str, Any] = record) -> str:
            column = columns.get(name)
            value = record.get(column) if column else None
            return value if isinstance(value, str) else ""

        if not any((v or "").strip() for v in record.values() if isinstance(v, str)):
            continue  # a blank line
        try:
            day = _csv_day(get("day"))
            cost = _csv_number(get("cost_usd"), "cost")
            quantity = float(_csv_number(get("quantity"), "quantity")) if get("quantity").strip() else 0.0
        except ReconcileError as exc:
            raise ReconcileError(f"line {line_no}: {exc}") from None
        key = (day, get("pinecone_project")[:255], get("resource")[:255], get("sku")[:255], get("unit")[:64])
        row = rows.get(key)
        if row is None:
            rows[key] = PineconeUsage(
                day=day,
                pinecone_project=key[1],
                resource=key[2],
                sku=key[3],
                unit=key[4],
                quantity=quantity,
                cost_usd=cost,
                imported_at=now,
            )
        else:  # the same SKU twice on a day (another tag): add up
            row.quantity += quantity
            row.cost_usd += cost
    days = sorted({k[0] for k in rows})
    with transaction.atomic():
        PineconeUsage.objects.filter(day__in=days).delete()
        PineconeUsage.objects.bulk_create(rows.values(), batch_size=500)
    return PineconeImportResult(
        rows=len(rows), days=days, cost_usd=sum((r.cost_usd for r in rows.values()), Decimal(0))
    )
