"""Calendar periods in a project's time zone, quarter-hour buckets, and the forecast.

Pure functions on aware datetimes: the evaluator, the status API and the
tests all use these, so the arithmetic is written once.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from functools import lru_cache

BUCKET = dt.timedelta(minutes=15)
RATE_WINDOW = dt.timedelta(hours=24)


@lru_cache(maxsize=256)
def zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def bucket_of(moment: dt.datetime) -> dt.datetime:
    """The UTC quarter-hour `moment` falls in."""
    moment = moment.astimezone(dt.UTC)
    return moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)


def _local_midnight(day: dt.date, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    # A midnight that does not exist (a DST jump at 00:00) resolves, with
    # fold=0, to the first instant of that local day; converted to UTC.
    return dt.datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(dt.UTC)


def period_bounds(period: str, tz_name: str, at: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) in UTC of the calendar day, ISO week (Monday first) or month
    containing `at`, in the zone `tz_name`.  A day is 23 or 25 hours long on a
    DST change: its ends are local midnights."""
    tz = zone(tz_name)
    local = at.astimezone(tz).date()
    if period == "day":
        first, after = local, local + dt.timedelta(days=1)
    elif period == "week":
        first = local - dt.timedelta(days=local.weekday())
        after = first + dt.timedelta(days=7)
    elif period == "month":
        first = local.replace(day=1)
        after = (first + dt.timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown period {period!r}")
    return _local_midnight(first, tz), _local_midnight(after, tz)


@dataclass(frozen=True, slots=True)
class Projection:
    """A budget's position in its period.

    forecast_usd = spent_usd + rate × (period_end − now), where rate is the
    spend in the quarter-hours that started within the last 24 h divided by
    24 h: the recent daily rate, carried to the end of the period.
    `exceeds_at` is when, at that rate, the spend reaches the amount (None
    when it does not within the period, or already has).
    """

    spent_usd: float
    amount_usd: float
    percent: float
    rate_usd_per_day: float
    forecast_usd: float
    exceeds_at: dt.datetime | None
    state: str


def project(
    *,
    spent_usd: float,
    last_24h_usd: float,
    amount_usd: float,
    thresholds: list[int],
    now: dt.datetime,
    period_end: dt.datetime,
) -> Projection:
    rate_per_s = last_24h_usd / RATE_WINDOW.total_seconds()
    remaining_s = max(0.0, (period_end - now).total_seconds())
    forecast = spent_usd + rate_per_s * remaining_s
    percent = spent_usd / amount_usd * 100.0 if amount_usd > 0 else 0.0
    exceeds_at = None
    if spent_usd < amount_usd and rate_per_s > 0:
        moment = now + dt.timedelta(seconds=(amount_usd - spent_usd) / rate_per_s)
        exceeds_at = moment if moment < period_end else None
    warn_at = min((t for t in thresholds if t < 100), default=None)
    if percent >= 100:
        state = "exceeded"
    elif exceeds_at is not None or (warn_at is not None and percent >= warn_at):
        state = "warning"
    else:
        state = "ok"
    return Projection(
        spent_usd=spent_usd,
        amount_usd=amount_usd,
        percent=percent,
        rate_usd_per_day=rate_per_s * 86400.0,
        forecast_usd=forecast,
        exceeds_at=exceeds_at,
        state=state,
    )
