"""{% reconciliation_warning project %}: the overview's card when yesterday's bill is off by more than 2 %."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import template
from django.urls import reverse
from django.utils import timezone

from dashboard.formatting import usd
from reconciliation.selectors import reconciliation_day_warning

register = template.Library()


@register.inclusion_tag("reconciliation/_warning_card.html")
def reconciliation_warning(project: Any) -> dict[str, Any]:
    if project is None:
        return {"warning": None}
    day = timezone.now().astimezone(dt.UTC).date() - dt.timedelta(days=1)
    report = reconciliation_day_warning(project_id=project.id, day=day)
    if report is None:
        return {"warning": None}
    return {
        "warning": report,
        "day": day,
        "billed": usd(report.totals.billed_usd),
        "observed": usd(report.totals.observed_usd),
        "url": reverse("reconciliation:page") + f"?from={day.isoformat()}&to={day.isoformat()}",
    }
