"""The overview's budgets card (an inclusion tag in budgets/templatetags)."""

from __future__ import annotations

import pytest
from django.test import Client

from budgets.models import Budget

pytestmark = pytest.mark.django_db


def test_overview_shows_each_budget_with_its_bar(project, owner):
    Budget.objects.create(
        project=project,
        name="acme daily",
        amount_usd=5,
        period="day",
        counted_from=project.created_at,
        recount_from=project.created_at,
    )
    client = Client()
    client.force_login(owner)
    page = client.get("/?project=acme").content.decode()
    assert 'id="budgets-card"' in page and "acme daily" in page and 'class="budget-bar"' in page
