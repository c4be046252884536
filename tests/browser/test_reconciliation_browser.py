"""The Reconciliation page in Chromium: its chart, its gaps, the date filter, and the overview's card."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from reconciliation.fake_admin import FakeAdminAPI, Traffic
from tests.browser.conftest import login
from tests.conftest import Api, make_event
from tests.reconciliation.conftest import RATES, run_import

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def billed(api_key, project, owner):
    """Three days up to yesterday: gpt-4o agrees; gpt-4o-mini observed 9 calls of the 10 billed."""
    api = Api(api_key)
    yesterday = timezone.now().astimezone(dt.UTC).date() - dt.timedelta(days=1)
    days = [yesterday - dt.timedelta(days=i) for i in range(3)]
    events = []
    traffic = []
    for day in days:
        events += [
            make_event(model="gpt-4o", input_tokens=10_000, output_tokens=1_000, started_at=f"{day}T09:00:{i:02d}Z")
            for i in range(10)
        ]
        events += [
            make_event(
                model="gpt-4o-mini", input_tokens=100_000, output_tokens=10_000, started_at=f"{day}T10:00:{i:02d}Z"
            )
            for i in range(9)
        ]
        traffic += [
            Traffic(day, "gpt-4o-2024-08-06", 100_000, 10_000, 10),
            Traffic(day, "gpt-4o-mini-2024-07-18", 1_000_000, 100_000, 10),
        ]
    assert api.post_events(events).status_code in (200, 202)
    fake = FakeAdminAPI(traffic=traffic, rates=RATES).start()
    try:
        run_import(fake, since=days[-1], today=yesterday + dt.timedelta(days=1))
    finally:
        fake.close()
    return days


def test_page_chart_gaps_and_overview_card(page, screenshot, billed):
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    login(page, "olivia", "pw-olivia-123")
    card = page.locator("#reconciliation-warning")
    card.wait_for()
    assert "10 % of gpt-4o-mini tokens were never observed" in card.inner_text()
    screenshot("overview-reconciliation-card")
    card.locator("a:has-text('Reconciliation')").click()
    page.wait_for_selector("svg#reconciliation-chart")
    assert page.locator("nav.mainnav a[aria-current=page]").inner_text() == "Reconciliation"
    # One day (yesterday) from the card's link: one billed and one observed bar.
    assert page.locator("svg#reconciliation-chart rect.bar.billed").count() == 1
    assert page.locator("svg#reconciliation-chart rect.bar.observed").count() == 1
    # Billed is the grey bar, observed the accent: colours from CSS classes, not inline styles.
    fill = page.locator("svg#reconciliation-chart rect.bar.billed").evaluate("e => getComputedStyle(e).fill")
    assert fill == "rgb(100, 116, 139)"

    # The date filter swaps the body in place and keeps the range in the URL.
    start, end = billed[-1].isoformat(), billed[0].isoformat()
    page.evaluate("window.__stayed = true")
    page.fill("input[name=from]", start)
    page.fill("input[name=to]", end)
    page.click("form.filters button[type=submit]")
    # (no wait_for_function: it evaluates a string, which the Content-Security-Policy refuses)
    page.locator("svg#reconciliation-chart rect.bar.billed").nth(2).wait_for()
    assert page.evaluate("window.__stayed === true")
    assert f"from={start}" in page.url and f"to={end}" in page.url
    assert page.locator("svg#reconciliation-chart rect.bar.observed").count() == 3
    rows = page.locator("#reconciliation-models tbody tr")
    assert rows.count() == 2
    mini = page.locator("#reconciliation-models tbody tr:has-text('gpt-4o-mini')")
    assert "90.0 %" in mini.inner_text() and "100.0 %" in mini.inner_text()
    assert "warn" in (mini.get_attribute("class") or "")
    assert "uninstrumented calls?" in page.locator("#gaps").inner_text()
    title = page.locator("svg#reconciliation-chart rect.bar.observed title").first.text_content()
    assert "observed" in (title or "")
    href = page.locator("a:has-text('CSV export')").get_attribute("href") or ""
    assert href.startswith("/dashboard/reconciliation/export.csv") and f"from={start}" in href
    screenshot("reconciliation")
    assert not violations, violations
