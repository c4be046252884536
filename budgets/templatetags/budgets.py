"""{% budgets_card project %}: the overview's budgets card (progress and projection)."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils import timezone

from budgets.selectors import budget_status_list

register = template.Library()


@register.inclusion_tag("budgets/_overview_card.html")
def budgets_card(project: Any) -> dict[str, Any]:
    statuses = budget_status_list(project=project, at=timezone.now()) if project is not None else []
    return {"project": project, "statuses": statuses}
