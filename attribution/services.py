"""Writes of the attribution app: the AttributeWindows a breakdown reads.

A breakdown by a key over the last N days groups every value of the range
(the top N needs each value's sum, "other" their count).  With 20,000 values
active every day, 90 days are ~180,000 month, week and day rows, since each
tier holds every value once; a window holds them once for the whole range.
attribute_windows_refresh builds, per rolled-up key, the window of each
breakdown preset (7, 30, 90 days) from its first day up to yesterday, so the
preset ending today reads the window and only today's day rows.  Windows are
only ever read while fresh (events.models.AttributeWindow), so a late event
costs speed until the next refresh, never a wrong figure.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from attribution.params import PRESETS
from attribution.selectors import attribute_window_fresh, value_rows_sql
from events.models import AttributeKey, AttributeKeyDay, AttributeWindow, AttributeWindowValue

# A key whose range holds fewer value-days than this groups fast enough from
# the tiers (a few thousand rows): no window is built for it.
WINDOW_MIN_VALUE_DAYS = 5_000


@dataclass(frozen=True, slots=True)
class WindowsReport:
    built: int  # windows (re)built
    fresh: int  # windows kept: still fresh
    skipped: int  # (key, preset) pairs too small for a window
    deleted: int  # windows no preset reads any more, or stale ones replaced


def attribute_window_build(*, project_id: int, key: str, first_day: dt.date, last_day: dt.date) -> int | None:
    """(Re)build the window of `key` over [first_day, last_day]: one row per value
    with its cost and calls over those days, from the month, week and day rows.
    Returns the values written, or None when a concurrent build of the same
    window won (the unique range key refuses the second)."""
    adapt = connection.ops.adapt_datefield_value
    parts, params = value_rows_sql(project_id=project_id, key=key, first=first_day, last=last_day)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            # The stamp before the rows: a batch committed between the two
            # statements is then in the rows but not the stamp, which only makes
            # the window look stale (rebuilt next time); the other order could
            # stamp a batch the rows lack and read as fresh while missing it.
            cursor.execute(
                f"SELECT COALESCE(SUM(writes), 0) FROM {AttributeKeyDay._meta.db_table} "
                "WHERE project_id = %s AND key = %s AND day >= %s AND day <= %s",
                [project_id, key, adapt(first_day), adapt(last_day)],
            )
            writes = int(cursor.fetchone()[0])
            # The old window's values go with it (one DELETE ... WHERE window_id IN: nothing else refers to them).
            same = {"project_id": project_id, "key": key, "first_day": first_day, "last_day": last_day}
            AttributeWindow.objects.filter(**same).delete()
            window = AttributeWindow.objects.create(
                project_id=project_id,
                key=key,
                first_day=first_day,
                last_day=last_day,
                writes=writes,
                built_at=timezone.now(),
            )
            cursor.execute(
                f"INSERT INTO {AttributeWindowValue._meta.db_table} (window_id, value, cost_usd, calls) "
                f"SELECT %s, value, SUM(cost_usd), SUM(calls) FROM ({' UNION ALL '.join(parts)}) AS r GROUP BY value",
                [window.id, *params],
            )
            return int(cursor.rowcount)
    except IntegrityError:
        return None


def attribute_windows_refresh(*, project_id: int, today: dt.date) -> WindowsReport:
    """Make the project's windows those the breakdown presets ending `today`
    read: for each rolled-up key and preset of more than one day, [today -
    (days - 1), today - 1], built when missing or stale; every other window of
    the project is deleted (yesterday's presets).  Idempotent: a second run
    finds every window fresh."""
    wanted: set[tuple[str, dt.date, dt.date]] = set()
    built = fresh = skipped = 0
    keys = list(AttributeKey.objects.filter(project_id=project_id).order_by("key").values_list("key", flat=True))
    last_day = today - dt.timedelta(days=1)
    for key in keys:
        for days in PRESETS:
            first_day = today - dt.timedelta(days=days - 1)
            if first_day > last_day:
                continue
            value_days = _value_days(project_id=project_id, key=key, first_day=first_day, last_day=last_day)
            if value_days < WINDOW_MIN_VALUE_DAYS:
                skipped += 1
                continue
            wanted.add((key, first_day, last_day))
            found = attribute_window_fresh(project_id=project_id, key=key, first=first_day, last=last_day)
            if found is not None and found[1] == last_day:
                fresh += 1
                continue
            rows = attribute_window_build(project_id=project_id, key=key, first_day=first_day, last_day=last_day)
            if rows is not None:
                built += 1
    stale = [
        w.id
        for w in AttributeWindow.objects.filter(project_id=project_id).only("key", "first_day", "last_day")
        if (w.key, w.first_day, w.last_day) not in wanted
    ]
    deleted = AttributeWindow.objects.filter(id__in=stale).delete()[1].get(AttributeWindow._meta.label, 0)
    return WindowsReport(built=built, fresh=fresh, skipped=skipped, deleted=deleted)


def _value_days(*, project_id: int, key: str, first_day: dt.date, last_day: dt.date) -> int:
    """The key's value rows over the range at day grain (AttributeKeyDay's counts)."""
    adapt = connection.ops.adapt_datefield_value
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COALESCE(SUM(value_count), 0) FROM {AttributeKeyDay._meta.db_table} "
            "WHERE project_id = %s AND key = %s AND day >= %s AND day <= %s",
            [project_id, key, adapt(first_day), adapt(last_day)],
        )
        return int(cursor.fetchone()[0])
