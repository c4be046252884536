"""The Breakdown page in Chromium: the group-by picker and the date range
(presets by htmx, a custom range by the form) change the table and the URL."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.utils import timezone

from tests.browser.conftest import login
from tests.conftest import Api, make_event

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _at(days_ago: int) -> str:
    moment = timezone.now().astimezone(dt.UTC).replace(hour=0, minute=5, second=0, microsecond=0)
    return (moment - dt.timedelta(days=days_ago)).isoformat().replace("+00:00", "Z")


def _call(n: int, days_ago: int, user: str, tokens: int) -> dict[str, Any]:
    # gpt-4o at $2.50 per 1M input tokens: 1000 tokens cost $0.0025
    return make_event(
        event_id=f"b-{n}",
        span_id=f"b-{n}",
        run_id=f"run-{user}-{days_ago}",
        model="gpt-4o",
        input_tokens=tokens,
        output_tokens=0,
        started_at=_at(days_ago),
        attributes={"user_id": user, "plan": "pro"},
    )


def rows(page: Any) -> list[str]:
    return page.eval_on_selector_all("#breakdown-rows tbody tr", "trs => trs.map(t => t.dataset.key)")


def test_group_by_and_date_range(page, screenshot, owner, api_key):  # type: ignore[no-untyped-def]
    events = [
        _call(1, 0, "u-today", 1000),  # $0.0025, today
        _call(2, 20, "u-old", 4000),  # $0.01, 20 days ago
        _call(3, 60, "u-older", 8000),  # $0.02, 60 days ago
    ]
    assert Api(api_key).post_events(events).status_code == 200
    login(page, "olivia", "pw-olivia-123", next_path="/dashboard/breakdown/?project=acme")
    page.wait_for_selector("#breakdown-rows")
    assert rows(page) == ["gpt-4o"]  # default: by model, last 7 days
    assert "$0.0025" in page.locator("#breakdown-rows tfoot tr.total").inner_text()

    # The group-by picker submits itself: by user_id, the URL says so.
    page.select_option("#group-by", "attribute:user_id")
    page.wait_for_url(re.compile(r"group_by=attribute%3Auser_id"))
    assert rows(page) == ["u-today"]

    # Presets swap the section by htmx and push the URL.
    page.click("#range-presets a:has-text('30 days')")
    page.wait_for_url(re.compile(r"days=30"))
    page.wait_for_function("() => document.querySelectorAll('#breakdown-rows tbody tr').length === 2")
    assert rows(page) == ["u-old", "u-today"]  # by cost; u-older is 60 days back
    assert "group_by=attribute%3Auser_id" in page.url
    screenshot("breakdown-user-id-30-days")
    page.click("#range-presets a:has-text('90 days')")
    page.wait_for_url(re.compile(r"days=90"))
    page.wait_for_function("() => document.querySelectorAll('#breakdown-rows tbody tr').length === 3")
    assert rows(page) == ["u-older", "u-old", "u-today"]
    assert page.locator("#range-presets a[aria-current=true]").inner_text() == "90 days"

    # A custom range: the form's from/to, one day 20 days ago.
    day = _at(20)[:10]
    page.fill("#range-from", day)
    page.fill("#range-to", day)
    page.click("#breakdown-filters button[type=submit]")
    page.wait_for_url(re.compile(rf"from={day}"))
    assert rows(page) == ["u-old"]
    assert f"{day} – {day}" in page.locator("#range-label").inner_text()
    assert page.locator("#range-presets a[aria-current=true]").count() == 0
    # The state survives a reload: it is all in the URL.
    page.reload()
    assert rows(page) == ["u-old"] and page.locator("#group-by").input_value() == "attribute:user_id"

    # At a phone's width the page does not scroll sideways (the table scrolls in its card).
    page.set_viewport_size({"width": 390, "height": 844})
    width, inner = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner
    screenshot("breakdown-390")
