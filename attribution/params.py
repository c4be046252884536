"""The query string of GET /costs and of the Breakdown page, as a CostQuery."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

from attribution.selectors import DIMENSIONS, LIMIT_DEFAULT, LIMIT_MAX, RANGE_DAYS_MAX, CostQuery, CostQueryError

DAYS_DEFAULT = 7  # "which customers cost most this week"; a month of 50,000 users is ~3x the work
PRESETS = (7, 30, 90)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TEXT_MAX = 256  # the longest section label the rollups keep


def _date(params: Mapping[str, str], name: str) -> dt.date | None:
    value = (params.get(name) or "").strip()
    if not value:
        return None
    if _DATE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise CostQueryError(name, f"{name} must be a date YYYY-MM-DD (UTC day), got {value[:40]!r}")


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if len(value) > _TEXT_MAX:
        raise CostQueryError(name, f"{name}: at most {_TEXT_MAX} characters")
    return value


def cost_query_parse(*, params: Mapping[str, str], today: dt.date) -> CostQuery:
    """Parse group_by, from/to (or days), the filters and limit; CostQueryError names a bad one.

    The range is whole UTC days, both ends included: `from`..`to`, or the
    `days` days up to `to` (default: today), or the last DAYS_DEFAULT days.
    """
    group = params.get("group_by") or "model"
    key = None
    if group.startswith("attribute:"):
        key = group.split(":", 1)[1]
        group = "attribute"
        if not key:
            raise CostQueryError("group_by", "attribute:<key> needs a key, e.g. attribute:user_id")
    elif group not in DIMENSIONS:
        raise CostQueryError("group_by", "one of attribute:<key>, service, model, section, provider")
    end = _date(params, "to") or today
    start = _date(params, "from")
    if start is None:
        days_raw = params.get("days") or ""
        days = DAYS_DEFAULT
        if days_raw:
            if not days_raw.isdigit() or not 1 <= int(days_raw) <= RANGE_DAYS_MAX:
                raise CostQueryError("days", f"days: an integer from 1 to {RANGE_DAYS_MAX}")
            days = int(days_raw)
        try:
            start = end - dt.timedelta(days=days - 1)
        except OverflowError:
            raise CostQueryError("to", "to is too early for that many days") from None
    limit_raw = params.get("limit") or ""
    limit = LIMIT_DEFAULT
    if limit_raw:
        if not limit_raw.isdigit() or not 1 <= int(limit_raw) <= LIMIT_MAX:
            raise CostQueryError("limit", f"limit: an integer from 1 to {LIMIT_MAX}")
        limit = int(limit_raw)
    attribute = None
    raw_attr = params.get("attribute")
    if raw_attr:
        name, sep, value = raw_attr.partition(":")
        if not sep or not name:
            raise CostQueryError("attribute", "attribute must be key:value, e.g. plan:pro")
        attribute = (name, value)
    return CostQuery(
        group_by=group,
        key=key,
        start=start,
        end=end,
        section=_text(params, "section"),
        model=_text(params, "model"),
        service=_text(params, "service"),
        provider=_text(params, "provider"),
        attribute=attribute,
        limit=limit,
    )
