"""Writes of the budgets app: budgets and channels, the evaluator, deliveries.

Every notification is a `Delivery` row whose (channel, dedupe_key) is
unique: the evaluator may run in several workers at once and each alert is
inserted once; only the insert that won enqueues its send.  A send claims its
row with a conditional UPDATE (pending → sending), so a redelivered task
message never sends twice; a failure schedules a retry with exponential
backoff until BUDGETS_DELIVERY_MAX_ATTEMPTS, then the row is `failed` with
its last error.  A row whose task was lost (broker down at enqueue, a worker
killed mid-send) is picked up again by the sweep every evaluation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from budgets import spend
from budgets.inputs import BudgetInput, ChannelInput, InputError, target_hint
from budgets.models import Budget, BudgetSpend, Channel, Delivery
from budgets.periods import zone
from budgets.selectors import BudgetStatus, budget_status_get, iso
from budgets.senders import SendError, send
from projects.models import Project

logger = logging.getLogger(__name__)

SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2}
SWEEP_AFTER = dt.timedelta(minutes=2)
# Longer than any one send can take (HTTP 10 s, SMTP timeout): a `sending` row
# older than this belongs to a worker that died.
SEND_LEASE = dt.timedelta(minutes=5)
CLAIM_TOLERANCE = dt.timedelta(seconds=2)


def max_attempts() -> int:
    return int(getattr(settings, "BUDGETS_DELIVERY_MAX_ATTEMPTS", 5))


def backoff_seconds(attempts: int) -> float:
    """10 s, 20 s, 40 s, 80 s… after the 1st, 2nd, 3rd, 4th failed attempt."""
    base = float(getattr(settings, "BUDGETS_DELIVERY_BACKOFF_SECONDS", 10))
    return base * 2 ** max(0, attempts - 1)


def public_url() -> str:
    return str(getattr(settings, "PUBLIC_URL", "http://127.0.0.1:8000")).rstrip("/")


def dashboard_url(project: Project) -> str:
    return f"{public_url()}/dashboard/budgets/?{urlencode({'project': project.name})}"


# --- Budgets and channels ------------------------------------------------------


def _channels_of(project_id: int, ids: list[int]) -> list[Channel]:
    channels = list(Channel.objects.filter(project_id=project_id, id__in=ids))
    missing = sorted(set(ids) - {c.id for c in channels})
    if missing:
        raise InputError({"channels": [f"No such channel in this project: {', '.join(map(str, missing))}."]})
    return channels


def _name_free(project_id: int, name: str, exclude_id: int | None = None) -> None:
    qs = Budget.objects.filter(project_id=project_id, name=name)
    if exclude_id is not None:
        qs = qs.exclude(id=exclude_id)
    if qs.exists():
        raise InputError({"name": [f"A budget named {name!r} exists in this project."]})


def _start_counting(budget: Budget, tz_name: str, now: dt.datetime) -> None:
    """A fresh generation: ingest counts from a moment every process's cache
    will know it by; the recount covers what came before (budgets/spend.py)."""
    budget.counted_from = now + dt.timedelta(seconds=spend.cache_seconds() + spend.skew_seconds())
    budget.recount_from = spend.recount_window_start(period=budget.period, tz_name=tz_name, at=now)
    budget.recounted_at = None


def _apply(budget: Budget, data: BudgetInput) -> None:
    budget.name = data.name
    budget.amount_usd = data.amount_usd
    budget.period = data.period
    budget.scope_section = data.section
    budget.scope_model = data.model
    budget.scope_service = data.service
    budget.scope_attribute_key = data.attribute_key
    budget.scope_attribute_value = data.attribute_value
    budget.thresholds = list(data.thresholds)
    budget.mode = data.mode


def _saved(budget: Budget) -> None:
    project_id = budget.project_id
    transaction.on_commit(lambda: spend.rules_cache_forget(project_id))


def budget_create(*, project: Project, data: BudgetInput, user: Any = None, now: dt.datetime | None = None) -> Budget:
    now = now or timezone.now()
    try:
        with transaction.atomic():
            _name_free(project.id, data.name)
            channels = _channels_of(project.id, data.channel_ids)
            budget = Budget(project=project, created_by=user if getattr(user, "pk", None) else None)
            _apply(budget, data)
            _start_counting(budget, project.timezone, now)
            budget.save()
            budget.channels.set(channels)
            _saved(budget)
    except IntegrityError:
        raise InputError({"name": [f"A budget named {data.name!r} exists in this project."]}) from None
    spend.budget_recount(budget_id=budget.id, final=False, now=now)
    logger.info("budgets: created budget %s (%s) in project %s", budget.id, budget, project.id)
    return budget


def budget_update(*, budget: Budget, data: BudgetInput, now: dt.datetime | None = None) -> Budget:
    now = now or timezone.now()
    project = budget.project
    recount = (data.period, data.section, data.model, data.service, data.attribute_key, data.attribute_value) != (
        budget.period,
        budget.scope_section,
        budget.scope_model,
        budget.scope_service,
        budget.scope_attribute_key,
        budget.scope_attribute_value,
    )
    try:
        with transaction.atomic():
            _name_free(project.id, data.name, exclude_id=budget.id)
            channels = _channels_of(project.id, data.channel_ids)
            _apply(budget, data)
            if recount:
                budget.generation += 1
                _start_counting(budget, project.timezone, now)
            budget.save()
            budget.channels.set(channels)
            if recount:
                BudgetSpend.objects.filter(budget_id=budget.id, generation__lt=budget.generation).delete()
            _saved(budget)
    except IntegrityError:
        raise InputError({"name": [f"A budget named {data.name!r} exists in this project."]}) from None
    if recount:
        spend.budget_recount(budget_id=budget.id, final=False, now=now)
    return budget


def budget_delete(*, budget: Budget) -> None:
    with transaction.atomic():
        BudgetSpend.objects.filter(budget_id=budget.id).delete()
        budget.delete()
        _saved(budget)


def channel_create(*, project: Project, data: ChannelInput, user: Any = None) -> tuple[Channel, str | None]:
    """The new channel and, for a webhook, its signing secret: shown this once."""
    if Channel.objects.filter(project=project, name=data.name).exists():
        raise InputError({"name": [f"A channel named {data.name!r} exists in this project."]})
    secret = secrets.token_hex(32) if data.kind == Channel.WEBHOOK else None
    try:
        channel = Channel.objects.create(
            project=project,
            kind=data.kind,
            name=data.name,
            target=data.target,
            target_hint=target_hint(data.kind, data.target)[:120],
            signing_secret=secret or "",
            insight_min_severity=data.insight_min_severity,
            digest=data.digest,
            created_by=user if getattr(user, "pk", None) else None,
        )
    except IntegrityError:
        raise InputError({"name": [f"A channel named {data.name!r} exists in this project."]}) from None
    return channel, secret


def channel_delete(*, channel: Channel) -> None:
    channel.delete()


# --- Deliveries --------------------------------------------------------------


def _enqueue(delivery_id: int) -> None:
    from budgets.tasks import deliver

    try:
        deliver.delay(delivery_id)
    except Exception:  # the broker is down: the sweep sends it later
        logger.exception("budgets: could not enqueue delivery %s; the sweep will retry", delivery_id)


def delivery_create(
    *,
    channel: Channel,
    kind: str,
    dedupe_key: str,
    subject: str,
    text: str,
    payload: dict[str, Any],
    now: dt.datetime,
    budget: Budget | None = None,
    period_start: dt.datetime | None = None,
    threshold: int | None = None,
) -> Delivery | None:
    """Insert the notification unless its key exists (None then); the winner's send is enqueued on commit."""
    try:
        with transaction.atomic():
            delivery = Delivery.objects.create(
                project_id=channel.project_id,
                channel=channel,
                kind=kind,
                budget=budget,
                period_start=period_start,
                threshold=threshold,
                dedupe_key=dedupe_key[:200],
                subject=subject[:300],
                text=text,
                payload=payload,
                created_at=now,
                next_attempt_at=now,
                updated_at=now,
            )
    except IntegrityError:
        return None
    transaction.on_commit(lambda: _enqueue(delivery.id))
    logger.info("budgets: %s alert %s queued for channel %s", kind, dedupe_key, channel.id)
    return delivery


@dataclass(slots=True)
class Attempt:
    sent: bool = False
    retry_in: float | None = None
    error: str = ""


def delivery_attempt(*, delivery_id: int, now: dt.datetime | None = None) -> Attempt:
    """Send one delivery if this worker wins its claim."""
    now = now or timezone.now()
    claimed = (
        Delivery.objects.filter(
            id=delivery_id,
            status__in=[Delivery.PENDING, Delivery.RETRYING, Delivery.SENDING],
            next_attempt_at__lte=now + CLAIM_TOLERANCE,
        )
        # A `sending` row is claimable again only once its lease ran out (next_attempt_at).
        .update(
            status=Delivery.SENDING,
            claimed_at=now,
            next_attempt_at=now + SEND_LEASE,
            attempts=F("attempts") + 1,
            updated_at=now,
        )
    )
    if not claimed:
        return Attempt()
    delivery = Delivery.objects.select_related("channel").get(id=delivery_id)
    mine = Delivery.objects.filter(id=delivery_id, status=Delivery.SENDING, claimed_at=now)
    try:
        send(
            delivery.channel,
            subject=delivery.subject,
            text=delivery.text,
            payload=delivery.payload,
            delivery_id=delivery.id,
            kind=delivery.kind,
        )
    except SendError as exc:
        error = str(exc)
        done = timezone.now()
        if delivery.attempts >= max_attempts():
            mine.update(status=Delivery.FAILED, last_error=error, next_attempt_at=None, updated_at=done)
            logger.warning(
                "budgets: delivery %s to channel %s failed for good after %d attempts: %s",
                delivery.id,
                delivery.channel_id,
                delivery.attempts,
                error,
            )
            return Attempt(error=error)
        delay = backoff_seconds(delivery.attempts)
        mine.update(
            status=Delivery.RETRYING,
            last_error=error,
            next_attempt_at=done + dt.timedelta(seconds=delay),
            updated_at=done,
        )
        logger.info(
            "budgets: delivery %s attempt %d failed (%s); retry in %.0f s", delivery.id, delivery.attempts, error, delay
        )
        return Attempt(retry_in=delay, error=error)
    done = timezone.now()
    mine.update(status=Delivery.SENT, sent_at=done, next_attempt_at=None, updated_at=done)
    logger.info("budgets: delivery %s (%s) sent to channel %s", delivery.id, delivery.kind, delivery.channel_id)
    return Attempt(sent=True)


def deliveries_sweep(*, now: dt.datetime) -> list[int]:
    """Re-enqueue unsent deliveries whose task went missing."""
    ids = list(
        Delivery.objects.filter(
            status__in=[Delivery.PENDING, Delivery.RETRYING, Delivery.SENDING],
            next_attempt_at__lt=now - SWEEP_AFTER,
        )
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:500]
    )
    for delivery_id in ids:
        _enqueue(delivery_id)
    return ids


def channel_test_send(*, channel: Channel, now: dt.datetime | None = None) -> Delivery:
    now = now or timezone.now()
    project = channel.project
    payload = {
        "kind": "test",
        "threshold": None,
        "project": project.name,
        "budget": None,
        "budget_id": None,
        "scope": None,
        "period": None,
        "period_start": None,
        "period_end": None,
        "spent_usd": None,
        "amount_usd": None,
        "percent": None,
        "forecast_usd": None,
        "dashboard_url": dashboard_url(project),
        "message": f"A test from llmobserve: channel {channel.name!r} of project {project.name!r} works.",
        "sent_for": iso(now),
    }
    delivery = delivery_create(
        channel=channel,
        kind=Delivery.TEST,
        dedupe_key=f"test:{secrets.token_hex(16)}",
        subject=f"[llmobserve] Test of channel {channel.name}",
        text=f"{payload['message']}\n{payload['dashboard_url']}",
        payload=payload,
        now=now,
    )
    assert delivery is not None  # a random key never collides
    return delivery


# --- Evaluation ----------------------------------------------------------------


def _usd(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"


def budget_payload(status: BudgetStatus, *, kind: str, threshold: int | None, project: Project) -> dict[str, Any]:
    b, p = status.budget, status.projection
    return {
        "kind": kind,
        "threshold": threshold,
        "project": project.name,
        "budget": b.name,
        "budget_id": b.id,
        "mode": b.mode,
        "scope": b.scope,
        "period": b.period,
        "period_start": iso(status.period_start),
        "period_end": iso(status.period_end),
        "spent_usd": round(p.spent_usd, 6),
        "amount_usd": b.amount_usd,
        "percent": round(p.percent, 2),
        "forecast_usd": round(p.forecast_usd, 6),
        "exceeds_at": iso(p.exceeds_at) if p.exceeds_at else None,
        "dashboard_url": dashboard_url(project),
    }


@dataclass(slots=True)
class Evaluation:
    budgets: int = 0
    alerts: list[Delivery] = field(default_factory=list)
    recounts: int = 0
    swept: int = 0


def budget_alerts_fire(*, status: BudgetStatus, project: Project, now: dt.datetime) -> list[Delivery]:
    """Each threshold crossed, and the forecast, once per period per channel."""
    b, p = status.budget, status.projection
    channels = list(b.channels.all())
    if not channels:
        return []
    period_key = f"{b.id}:{b.generation}:{iso(status.period_start)}"
    wanted: list[tuple[str, str, int | None]] = [
        ("threshold", f"threshold:{period_key}:{t}", t) for t in sorted(b.thresholds) if p.percent >= t
    ]
    if p.exceeds_at is not None:
        wanted.append(("forecast", f"forecast:{period_key}", None))
    if not wanted:
        return []
    existing = set(
        Delivery.objects.filter(channel__in=channels, dedupe_key__in=[w[1] for w in wanted]).values_list(
            "channel_id", "dedupe_key"
        )
    )
    tz = zone(project.timezone)
    made: list[Delivery] = []
    for kind, key, threshold in wanted:
        payload = budget_payload(status, kind=kind, threshold=threshold, project=project)
        where = f"budget {b.name!r} ({b.scope_label}, project {project.name})"
        figures = f"{_usd(p.spent_usd)} of {_usd(b.amount_usd)} this {b.period} ({p.percent:.0f} %)"
        if kind == "threshold":
            subject = f"[llmobserve] {b.name}: {threshold} % of the {b.period}'s budget reached"
            text = f"{where} reached {threshold} %: {figures}; forecast {_usd(p.forecast_usd)}."
        else:
            when = p.exceeds_at.astimezone(tz) if p.exceeds_at else now
            subject = f"[llmobserve] {b.name}: projected to exceed on {when:%Y-%m-%d %H:%M} ({project.timezone})"
            text = (
                f"{where} is projected to exceed {_usd(b.amount_usd)} on {when:%Y-%m-%d %H:%M} {project.timezone} "
                f"at the last 24 h's rate ({_usd(p.rate_usd_per_day)}/day): {figures}; "
                f"forecast {_usd(p.forecast_usd)} by the period's end."
            )
        text += f"\n{payload['dashboard_url']}"
        for channel in channels:
            if (channel.id, key) in existing:
                continue
            delivery = delivery_create(
                channel=channel,
                kind=kind,
                dedupe_key=key,
                subject=subject,
                text=text,
                payload=payload,
                now=now,
                budget=b,
                period_start=status.period_start,
                threshold=threshold,
            )
            if delivery is not None:
                made.append(delivery)
    return made


def budgets_evaluate(*, at: dt.datetime | None = None) -> Evaluation:
    """The every-minute job: recounts due, every budget's thresholds and
    forecast, insight alerts, digests, and the sweep of lost deliveries."""
    at = at or timezone.now()
    result = Evaluation()
    result.recounts = spend.budget_recounts_due(now=at)
    projects = {p.id: p for p in Project.objects.filter(budgets__isnull=False).distinct()}
    for budget in Budget.objects.filter(project_id__in=list(projects)).order_by("id").prefetch_related("channels"):
        project = projects[budget.project_id]
        budget.project = project
        status = budget_status_get(budget=budget, tz_name=project.timezone, at=at)
        result.budgets += 1
        result.alerts += budget_alerts_fire(status=status, project=project, now=at)
    result.alerts += insight_alerts_fire(now=at)
    result.alerts += digests_fire(now=at)
    result.swept = len(deliveries_sweep(now=at))
    if result.alerts:
        logger.info("budgets: evaluated %d budgets, %d new alerts", result.budgets, len(result.alerts))
    return result


# --- Insight alerts and digests ------------------------------------------------------


def insight_alerts_fire(*, now: dt.datetime) -> list[Delivery]:
    """A finding of the project's latest insights at or above a channel's
    severity, once per finding and UTC day (the insight job recomputes the
    same finding every few minutes under a new row)."""
    from insights.selectors import insight_list_latest

    made: list[Delivery] = []
    channels = list(Channel.objects.exclude(insight_min_severity="").select_related("project").order_by("id"))
    by_project: dict[int, list[Any]] = {}
    for channel in channels:
        if channel.project_id not in by_project:
            by_project[channel.project_id] = insight_list_latest(project_id=channel.project_id)
        floor = SEVERITY_RANK[channel.insight_min_severity]
        for insight in by_project[channel.project_id]:
            if SEVERITY_RANK.get(insight.severity, 0) < floor or insight.generated_at < channel.created_at:
                continue
            day = insight.window_end.astimezone(dt.UTC).date().isoformat()
            identity = f"{insight.kind}|{insight.section}|{insight.model}|{insight.endpoint}|{day}"
            key = "insight:" + hashlib.sha256(identity.encode()).hexdigest()[:40]
            if Delivery.objects.filter(channel=channel, dedupe_key=key).exists():
                continue
            where = insight.section or "(no section)"
            saving = f" Estimated savings: {_usd(insight.est_savings_usd)}." if insight.est_savings_usd else ""
            payload = {
                "kind": "insight",
                "threshold": None,
                "project": channel.project.name,
                "budget": None,
                "scope": {"section": insight.section or None, "model": insight.model or None},
                "insight": {
                    "kind": insight.kind,
                    "severity": insight.severity,
                    "section": insight.section or None,
                    "model": insight.model or None,
                    "endpoint": insight.endpoint or None,
                    "message": insight.message,
                    "est_savings_usd": insight.est_savings_usd,
                },
                "dashboard_url": f"{public_url()}/dashboard/insights/?{urlencode({'project': channel.project.name})}",
            }
            delivery = delivery_create(
                channel=channel,
                kind=Delivery.INSIGHT,
                dedupe_key=key,
                subject=f"[llmobserve] {insight.severity} insight: {insight.kind} in {where}",
                text=f"{insight.message}{saving}\n{payload['dashboard_url']}",
                payload=payload,
                now=now,
            )
            if delivery is not None:
                made.append(delivery)
    return made


def _digest_period(kind: str, now: dt.datetime) -> tuple[dt.date, dt.date]:
    """The last complete UTC day, or ISO week (Monday to Sunday): [first, after)."""
    today = now.astimezone(dt.UTC).date()
    if kind == "daily":
        return today - dt.timedelta(days=1), today
    monday = today - dt.timedelta(days=today.weekday())
    return monday - dt.timedelta(days=7), monday


def digest_content(*, project: Project, first: dt.date, after: dt.date) -> dict[str, Any]:
    """Spend of the days [first, after) from the daily rollups (UTC days, as they are kept):
    total, top sections, models and attribute values, and the latest insights' savings."""
    from events.models import DailyRollup
    from insights.selectors import insight_list_latest

    rollups = DailyRollup.objects.filter(project_id=project.id, day__gte=first, day__lt=after)
    total = rollups.aggregate(c=Sum("cost_usd"))["c"] or 0.0

    def top(column: str) -> list[dict[str, Any]]:
        rows = rollups.values(column).annotate(cost=Sum("cost_usd"), n=Sum("calls")).order_by("-cost")[:5]
        return [{"key": r[column] or None, "cost_usd": round(r["cost"], 6), "calls": r["n"]} for r in rows]

    attributes: list[dict[str, Any]] = []
    try:
        from events.models import AttributeRollup  # type: ignore[attr-defined]

        rows = (
            AttributeRollup.objects.filter(project_id=project.id, day__gte=first, day__lt=after)
            .values("key", "value")
            .annotate(cost=Sum("cost_usd"), n=Sum("calls"))
            .order_by("-cost")[:5]
        )
        attributes = [
            {"key": r["key"], "value": r["value"], "cost_usd": round(r["cost"], 6), "calls": r["n"]} for r in rows
        ]
    except ImportError:
        pass
    insights = [
        {"kind": i.kind, "severity": i.severity, "section": i.section or None, "est_savings_usd": i.est_savings_usd}
        for i in insight_list_latest(project_id=project.id, limit=5)
    ]
    return {
        "from": first.isoformat(),
        "to": after.isoformat(),
        "total_usd": round(total, 6),
        "top_sections": top("section"),
        "top_models": top("model"),
        "top_attributes": attributes,
        "insights": insights,
        "est_savings_usd": round(sum(float(i["est_savings_usd"] or 0.0) for i in insights), 6),
    }


def digest_text(project: Project, digest: dict[str, Any]) -> str:
    total = _usd(digest["total_usd"])
    lines = [f"Spend of {project.name} from {digest['from']} to {digest['to']} (UTC, exclusive): {total}"]
    for title, rows, label in (
        ("Top sections", digest["top_sections"], lambda r: r["key"] or "(no section)"),
        ("Top models", digest["top_models"], lambda r: r["key"] or "(no model)"),
        ("Top attributes", digest["top_attributes"], lambda r: f"{r['key']}={r['value']}"),
    ):
        if rows:
            lines.append(f"{title}:")
            lines += [f"  {label(r)}: {_usd(r['cost_usd'])} in {r['calls']} calls" for r in rows]
    if digest["insights"]:
        lines.append(f"Insights (could save about {_usd(digest['est_savings_usd'])} a day):")
        lines += [
            f"  {i['severity']} {i['kind']} in {i['section'] or '(no section)'}"
            + (f", saves {_usd(i['est_savings_usd'])}" if i["est_savings_usd"] else "")
            for i in digest["insights"]
        ]
    return "\n".join(lines)


def digests_fire(*, now: dt.datetime) -> list[Delivery]:
    made: list[Delivery] = []
    for channel in Channel.objects.exclude(digest="").select_related("project").order_by("id"):
        first, after = _digest_period(channel.digest, now)
        if channel.created_at >= dt.datetime.combine(after, dt.time(), tzinfo=dt.UTC):
            continue  # created after that period ended: its first digest is the next one
        key = f"digest:{channel.digest}:{first.isoformat()}"
        if Delivery.objects.filter(channel=channel, dedupe_key=key).exists():
            continue
        project = channel.project
        digest = digest_content(project=project, first=first, after=after)
        payload = {
            "kind": "digest",
            "threshold": None,
            "project": project.name,
            "budget": None,
            "scope": None,
            "period": "day" if channel.digest == "daily" else "week",
            "period_start": first.isoformat(),
            "period_end": after.isoformat(),
            "spent_usd": digest["total_usd"],
            "digest": digest,
            "dashboard_url": f"{public_url()}/?{urlencode({'project': project.name})}",
        }
        delivery = delivery_create(
            channel=channel,
            kind=Delivery.DIGEST,
            dedupe_key=key,
            subject=f"[llmobserve] {channel.digest} digest of {project.name}: {_usd(digest['total_usd'])}",
            text=digest_text(project, digest) + f"\n{payload['dashboard_url']}",
            payload=payload,
            now=now,
        )
        if delivery is not None:
            made.append(delivery)
    return made
