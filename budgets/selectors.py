"""Reads of the budgets app: spend and projection per budget, channels, alert history."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db.models import F, Sum
from django.utils import timezone

from budgets.models import Budget, BudgetSpend, Channel, Delivery
from budgets.periods import RATE_WINDOW, Projection, period_bounds, project
from projects.auth import KeyPrincipal
from projects.models import Membership, Project


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    budget: Budget
    period_start: dt.datetime
    period_end: dt.datetime
    projection: Projection

    @property
    def bar_percent(self) -> str:
        """The filled part of the progress bar, 0-100, for SVG's width."""
        return f"{min(100.0, max(0.0, self.projection.percent)):.2f}"

    @property
    def forecast_percent(self) -> str:
        amount = self.budget.amount_usd
        share = self.projection.forecast_usd / amount * 100.0 if amount > 0 else 0.0
        return f"{min(99.5, max(0.5, share)):.2f}"


def _spend(budget: Budget, **bucket_range: dt.datetime) -> float:
    total = BudgetSpend.objects.filter(budget_id=budget.id, generation=budget.generation, **bucket_range).aggregate(
        usd=Sum(F("spent_usd") + F("recount_usd"))
    )["usd"]
    return float(total or 0.0)


def budget_status_get(*, budget: Budget, tz_name: str, at: dt.datetime) -> BudgetStatus:
    """Spend in the period containing `at` (project time zone), the trailing
    24 h for the rate, and the projection (budgets.periods.project)."""
    start, end = period_bounds(budget.period, tz_name, at)
    spent = _spend(budget, bucket__gte=start, bucket__lt=end)
    # The quarter-hours that started within the 24 h before `at`.
    last_24h = _spend(budget, bucket__gt=at - RATE_WINDOW, bucket__lte=at)
    projection = project(
        spent_usd=spent,
        last_24h_usd=last_24h,
        amount_usd=budget.amount_usd,
        thresholds=list(budget.thresholds),
        now=at,
        period_end=end,
    )
    return BudgetStatus(budget=budget, period_start=start, period_end=end, projection=projection)


def budget_list(*, project_id: int) -> list[Budget]:
    return list(Budget.objects.filter(project_id=project_id).order_by("name", "id").prefetch_related("channels"))


def budget_status_list(*, project: Project, at: dt.datetime | None = None) -> list[BudgetStatus]:
    at = at or timezone.now()
    return [budget_status_get(budget=b, tz_name=project.timezone, at=at) for b in budget_list(project_id=project.id)]


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def budget_as_dict(budget: Budget) -> dict[str, Any]:
    return {
        "id": budget.id,
        "name": budget.name,
        "amount_usd": budget.amount_usd,
        "period": budget.period,
        "scope": budget.scope,
        "thresholds": list(budget.thresholds),
        "mode": budget.mode,
        "hard": budget.mode == Budget.HARD,
        "channels": sorted(c.id for c in budget.channels.all()),
        "created_at": iso(budget.created_at),
        "updated_at": iso(budget.updated_at),
    }


def status_as_dict(status: BudgetStatus) -> dict[str, Any]:
    """One entry of GET /budgets/status (the SDK guard reads this shape)."""
    b, p = status.budget, status.projection
    return {
        "id": b.id,
        "name": b.name,
        "mode": b.mode,
        # SPEC §4 names a boolean `hard`: the same as mode == "hard".
        "hard": b.mode == Budget.HARD,
        "period": b.period,
        "period_start": iso(status.period_start),
        "period_end": iso(status.period_end),
        "scope": b.scope,
        "amount_usd": float(b.amount_usd),
        "spent_usd": round(p.spent_usd, 6),
        "percent": round(p.percent, 4),
        "forecast_usd": round(p.forecast_usd, 6),
        "state": p.state,
    }


def channel_list(*, project_id: int) -> list[Channel]:
    return list(Channel.objects.filter(project_id=project_id).order_by("name", "id"))


def delivery_list(*, project_id: int, limit: int = 50) -> list[Delivery]:
    return list(
        Delivery.objects.filter(project_id=project_id)
        .select_related("channel", "budget")
        .order_by("-created_at", "-id")[:limit]
    )


def may_edit_budgets(*, user: object, project_id: int) -> bool:
    """Dashboard and API: a project's owners (and superusers) change budgets and
    channels; an admin API key of the project does too; members and plain keys read."""
    if isinstance(user, KeyPrincipal):
        return user.is_admin and user.project_id == project_id
    if not getattr(user, "is_authenticated", False):
        return False
    if getattr(user, "is_superuser", False):
        return True
    return Membership.objects.filter(project_id=project_id, user_id=user.pk, role=Membership.OWNER).exists()  # type: ignore[attr-defined]


def scope_options(*, project_id: int, since: dt.date) -> dict[str, list[str]]:
    """What the scope picker suggests: sections, models and services seen lately, attribute keys."""
    from events.models import DailyRollup, RunSection

    rollups = DailyRollup.objects.filter(project_id=project_id, day__gte=since)
    models = sorted({m for m in rollups.values_list("model", flat=True).distinct()[:200] if m})
    sections = sorted(
        {
            s
            for s in RunSection.objects.filter(
                project_id=project_id, started_at__gte=dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC)
            )
            .values_list("section", flat=True)
            .distinct()[:200]
        }
    )
    field_names = {f.name for f in DailyRollup._meta.get_fields()}
    services = (
        sorted({s for s in rollups.values_list("service", flat=True).distinct()[:200] if s})
        if "service" in field_names
        else []
    )
    keys: list[str] = []
    try:
        from events.models import AttributeKey  # type: ignore[attr-defined]

        keys = sorted(AttributeKey.objects.filter(project_id=project_id).values_list("key", flat=True)[:200])
    except ImportError:
        pass
    return {"sections": sections, "models": models, "services": services, "attribute_keys": keys}
