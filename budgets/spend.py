"""Budget spend, kept at ingest: the hook `event_batch_ingest` calls, and the recount.

How spend is counted exactly once, with no query per batch:

* Each process caches a project's budget rules for BUDGETS_CACHE_SECONDS
  (5 s).  A project without budgets costs ingest one dict look-up and a clock
  read.  A version read per batch would be exact at once but costs a query on
  every batch of every project; a short TTL costs one query per project every
  few seconds, and the cut-over below makes the lag harmless.
* A budget (or a change of its scope or period, which starts a new
  *generation* of its spend rows) gets `counted_from` = now + TTL + a clock
  skew margin.  Ingest adds an event only when its batch was received at or
  after `counted_from`: by then every process's cache was loaded after the
  budget was saved, so no process can miss it.
* Events received before `counted_from` are found by a recount of stored
  events (`budget_recount`): one index-ranged query over the project's
  events started since `recount_from` (the period start, or 24 h back for
  the forecast's rate, whichever is earlier), received before `counted_from`.
  It writes its own columns (`recount_*`), replacing what a previous recount
  wrote, so it can run twice: once when the budget is saved (the page shows
  the spend at once) and once more, final, after BUDGETS_RECOUNT_GRACE_SECONDS
  past `counted_from`, when every batch received before it has committed
  (longer than a request may run: gunicorn's timeout is 60 s).

Scope semantics (every part set must hold):
  section    the call's section, or any label of its section_path;
  model      the call's model, exactly;
  service    the call's service, exactly;
  attribute  the call's attribute KEY (the SDK copies the run's attributes onto
             each call) equal to VALUE as a string: a JSON string as it is,
             a number or boolean as its JSON text (7, 1.5, true); objects,
             arrays and null never match.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from budgets.models import Budget, BudgetSpend
from budgets.periods import RATE_WINDOW, bucket_of, period_bounds

logger = logging.getLogger(__name__)


def cache_seconds() -> float:
    return float(getattr(settings, "BUDGETS_CACHE_SECONDS", 5))


def skew_seconds() -> float:
    return float(getattr(settings, "BUDGETS_CLOCK_SKEW_SECONDS", 5))


def recount_grace() -> dt.timedelta:
    return dt.timedelta(seconds=float(getattr(settings, "BUDGETS_RECOUNT_GRACE_SECONDS", 90)))


def attribute_text(value: Any) -> str | None:
    """An attribute value as the string a scope compares to (None: never matches)."""
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, dict | list):
        return None
    return msgspec.json.encode(value).decode()


def section_covers(label: str, section: str | None, section_path: str | None) -> bool:
    if section == label:
        return True
    return bool(section_path) and label in section_path.split("/")  # type: ignore[union-attr]


@dataclass(frozen=True, slots=True)
class Rule:
    """What ingest needs of one budget: its scope and where its counting starts."""

    budget_id: int
    generation: int
    counted_from: dt.datetime
    section: str | None
    model: str | None
    service: str | None
    attribute_key: str | None
    attribute_value: str | None

    @classmethod
    def of(cls, budget: Budget) -> Rule:
        return cls(
            budget.id,
            budget.generation,
            budget.counted_from,
            budget.scope_section or None,
            budget.scope_model or None,
            budget.scope_service or None,
            budget.scope_attribute_key or None,
            budget.scope_attribute_value if budget.scope_attribute_key else None,
        )

    def matches(
        self,
        section: str | None,
        section_path: str | None,
        model: str | None,
        service: str | None,
        attributes: Callable[[], dict[str, Any]],
    ) -> bool:
        if self.model is not None and model != self.model:
            return False
        if self.service is not None and service != self.service:
            return False
        if self.section is not None and not section_covers(self.section, section, section_path):
            return False
        if self.attribute_key is not None:
            return attribute_text(attributes().get(self.attribute_key)) == self.attribute_value
        return True


_RULE_FIELDS = (
    "id",
    "generation",
    "counted_from",
    "scope_section",
    "scope_model",
    "scope_service",
    "scope_attribute_key",
    "scope_attribute_value",
)
_CACHE: dict[int, tuple[float, tuple[Rule, ...]]] = {}


def rules_for_project(project_id: int) -> tuple[Rule, ...]:
    now = time.monotonic()
    hit = _CACHE.get(project_id)
    if hit is not None and hit[0] > now:
        return hit[1]
    rules = tuple(
        Rule(r[0], r[1], r[2], r[3] or None, r[4] or None, r[5] or None, r[6] or None, r[7] if r[6] else None)
        for r in Budget.objects.filter(project_id=project_id).order_by("id").values_list(*_RULE_FIELDS)
    )
    if len(_CACHE) > 10_000:
        _CACHE.clear()
    _CACHE[project_id] = (now + cache_seconds(), rules)
    return rules


def rules_cache_forget(project_id: int | None = None) -> None:
    """This process's cache (others expire theirs within the TTL)."""
    if project_id is None:
        _CACHE.clear()
    else:
        _CACHE.pop(project_id, None)


_decode_attributes = msgspec.json.Decoder(dict[str, Any])


def _attributes_of(raw: Any) -> Callable[[], dict[str, Any]]:
    """Decode an event's raw attributes once, and only if a scope asks."""
    box: list[dict[str, Any]] = []

    def get() -> dict[str, Any]:
        if not box:
            try:
                box.append(_decode_attributes.decode(raw) if isinstance(raw, msgspec.Raw | bytes | str) else raw or {})
            except msgspec.DecodeError:
                box.append({})
        return box[0]

    return get


def budget_spend_add(*, project_id: int, received_at: dt.datetime, calls: Iterable[tuple[Any, ...]]) -> None:
    """Ingest's hook: add the batch's newly stored calls to the project's budgets.

    `calls` yields (EventIn, cost_usd, ...) for the events just inserted;
    runs inside the ingest transaction, after the aggregates' upserts.
    """
    rules = _CACHE.get(project_id)
    if rules is not None and not rules[1] and rules[0] > time.monotonic():
        return  # the common case: no budgets
    live = [r for r in rules_for_project(project_id) if received_at >= r.counted_from]
    if not live:
        return
    # Keyed by (rule's index, quarter-hour as seconds since the epoch): the
    # datetime is built once per row written, not once per call.  Rule.matches
    # inlined (this runs per call and rule); a run's calls carry the same
    # attributes, so their JSON is decoded once per distinct text in the batch.
    per_bucket: dict[tuple[int, int], list[float]] = {}
    decoded: dict[bytes, dict[str, Any]] = {}
    for item in calls:
        ev, cost = item[0], item[1]
        if ev.span_type == "section":
            continue
        labels: list[str] | None = None
        attrs: dict[str, Any] | None = None
        quarter = -1
        for index, rule in enumerate(live):
            if rule.model is not None and ev.model != rule.model:
                continue
            if rule.service is not None and ev.service != rule.service:
                continue
            if rule.section is not None and ev.section != rule.section:
                if not ev.section_path:
                    continue
                if labels is None:
                    labels = ev.section_path.split("/")
                if rule.section not in labels:
                    continue
            if rule.attribute_key is not None:
                if attrs is None:
                    raw = bytes(ev.attributes)
                    attrs = decoded.get(raw)
                    if attrs is None:
                        attrs = decoded[raw] = _attributes_of(raw)()
                if attribute_text(attrs.get(rule.attribute_key)) != rule.attribute_value:
                    continue
            if quarter < 0:
                quarter = int(ev.started_at.timestamp()) // 900 * 900
            entry = per_bucket.get((index, quarter))
            if entry is None:
                per_bucket[(index, quarter)] = [cost, 1]
            else:
                entry[0] += cost
                entry[1] += 1
    sums = {
        (live[index].budget_id, live[index].generation, dt.datetime.fromtimestamp(quarter, dt.UTC)): entry
        for (index, quarter), entry in per_bucket.items()
    }
    if sums:
        _upsert(sums, recount=False)


def _upsert(sums: dict[tuple[int, int, dt.datetime], list[float]], *, recount: bool) -> None:
    table = BudgetSpend._meta.db_table
    adapt = connection.ops.adapt_datetimefield_value
    usd, calls = ("recount_usd", "recount_calls") if recount else ("spent_usd", "calls")
    if recount:
        update = f"{usd} = excluded.{usd}, {calls} = excluded.{calls}"
    else:
        update = f"{usd} = {table}.{usd} + excluded.{usd}, {calls} = {table}.{calls} + excluded.{calls}"
    # Key order: concurrent batches lock the rows in one order and cannot deadlock.
    values = [(b, g, adapt(bucket), s[0], int(s[1])) for (b, g, bucket), s in sorted(sums.items())]
    row_sql = "(%s, %s, %s, %s, %s, 0, 0)"  # the other pair of columns starts at 0
    other = ("recount_usd", "recount_calls") if not recount else ("spent_usd", "calls")
    columns = ("budget_id", "generation", "bucket", usd, calls, *other)
    with connection.cursor() as cursor:
        for start in range(0, len(values), 1000):
            chunk = values[start : start + 1000]
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([row_sql] * len(chunk))} "
                f"ON CONFLICT (budget_id, generation, bucket) DO UPDATE SET {update}",
                [v for row in chunk for v in row],
            )


def recount_window_start(*, period: str, tz_name: str, at: dt.datetime) -> dt.datetime:
    """Where a recount starts: the period's start, or 24 h back (the forecast's rate) if earlier."""
    start, _ = period_bounds(period, tz_name, at)
    return min(start, bucket_of(at - RATE_WINDOW))


def budget_recount(*, budget_id: int, final: bool, now: dt.datetime | None = None) -> int:
    """Count the stored events received before the budget's `counted_from`.

    Returns the number of calls found.  The final recount runs once (the
    budget row is locked while it runs, and `recounted_at` says it ran).
    """
    now = now or timezone.now()
    with transaction.atomic():
        budget = Budget.objects.select_for_update().filter(id=budget_id).first()
        if budget is None or (final and budget.recounted_at is not None):
            return 0
        from events.models import Event  # the events app imports this module's hook

        rule = Rule.of(budget)
        qs = Event.objects.filter(
            project_id=budget.project_id,
            started_at__gte=budget.recount_from,
            received_at__lt=budget.counted_from,
        ).exclude(span_type="section")
        if rule.model is not None:
            qs = qs.filter(model=rule.model)
        if rule.service is not None:
            qs = qs.filter(service=rule.service)
        if rule.section is not None:
            s = rule.section
            qs = qs.filter(
                Q(section=s)
                | Q(section_path=s)
                | Q(section_path__startswith=s + "/")
                | Q(section_path__endswith="/" + s)
                | Q(section_path__contains="/" + s + "/")
            )
        if rule.attribute_key is not None:
            qs = qs.filter(attributes__has_key=rule.attribute_key)
        sums: dict[tuple[int, int, dt.datetime], list[float]] = {}
        found = 0
        fields = ("started_at", "cost_usd", "section", "section_path", "model", "service", "attributes")
        for started_at, cost, section, section_path, model, service, attributes in qs.values_list(*fields).iterator(
            chunk_size=5000
        ):
            stored: dict[str, Any] = attributes if isinstance(attributes, dict) else {}
            if rule.matches(section, section_path, model, service, _constant(stored)):
                entry = sums.setdefault((budget.id, budget.generation, bucket_of(started_at)), [0.0, 0])
                entry[0] += cost
                entry[1] += 1
                found += 1
        BudgetSpend.objects.filter(budget_id=budget.id, generation=budget.generation).update(
            recount_usd=0, recount_calls=0
        )
        if sums:
            _upsert(sums, recount=True)
        if final:
            Budget.objects.filter(id=budget.id).update(recounted_at=now)
    logger.info("budgets: %s recount of budget %s found %d calls", "final" if final else "first", budget_id, found)
    return found


def _constant(value: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    return lambda: value


def budget_recounts_due(*, now: dt.datetime) -> int:
    """Run the final recount of every budget whose grace has passed."""
    due = list(
        Budget.objects.filter(recounted_at__isnull=True, counted_from__lte=now - recount_grace()).values_list(
            "id", flat=True
        )
    )
    for budget_id in due:
        budget_recount(budget_id=budget_id, final=True, now=now)
    return len(due)
