"""Finding runs in a real browser (issue 15): search, sort, the run's timeline and its call panel."""

from __future__ import annotations

import datetime as dt

import pytest

from events.models import Run
from tests.browser.conftest import login
from tests.dashboard.conftest import day_start, ingest, run_events

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def labelled(seeded, api_key):
    events = []
    for run_id, attrs, minute in (("run-u7", {"user_id": "u-7"}, 7), ("run-u8", {"user_id": "u-8"}, 8)):
        for e in run_events(
            run_id,
            when=day_start(0) + dt.timedelta(minutes=minute),
            tool="step:classify_ticket",
            calls=[
                {"model": "gpt-4o-mini", "input_tokens": 900, "output_tokens": 80, "provider_host": "api.openai.com"},
                {
                    "model": "gpt-4o-mini",
                    "input_tokens": 0,
                    "output_tokens": 0,
                    "status": "error",
                    "error_type": "APITimeout",
                },
            ],
        ):
            e["attributes"] = attrs
            events.append(e)
    ingest(api_key, events)
    return seeded


def test_search_and_sort(page, screenshot, labelled, owner, project):
    from playwright.sync_api import expect

    login(page, "olivia", "pw-olivia-123", next_path="/dashboard/runs/")
    page.wait_for_selector("tr[data-run-id='run-42']")
    page.evaluate("window.__stayed = true")
    # A part of a section's name, typed and submitted: the table is swapped in place, the URL keeps the search.
    page.fill("input[name=q]", "classify")
    page.press("input[name=q]", "Enter")
    expect(page.locator("#run-table tbody tr")).to_have_count(2)
    assert sorted(r.get_attribute("data-run-id") for r in page.locator("#run-table tbody tr").all()) == [
        "run-u7",
        "run-u8",
    ]
    assert "q=classify" in page.url and page.evaluate("window.__stayed === true")
    assert "u-7" in page.locator("tr[data-run-id='run-u7']").inner_text()
    screenshot("runs_search")
    # An attribute badge searches for its value.
    page.locator("tr[data-run-id='run-u8'] a.chip.attr").click()
    expect(page.locator("#run-table tbody tr")).to_have_count(1)
    assert page.locator("#run-table tbody tr").get_attribute("data-run-id") == "run-u8"
    # Sort by cost, highest first, then lowest first.
    page.goto("/dashboard/runs/?since=" + day_start(13).date().isoformat())
    page.click("a.sort[data-sort=cost]")
    page.wait_for_selector("a.sort[data-sort=cost][aria-sort=descending]")
    runs = sorted(Run.objects.filter(project=project), key=lambda r: (-r.cost_usd, -r.id))
    assert page.locator("#run-table tbody tr").first.get_attribute("data-run-id") == runs[0].run_id
    page.click("a.sort[data-sort=cost]")
    page.wait_for_selector("a.sort[data-sort=cost][aria-sort=ascending]")
    assert page.locator("#run-table tbody tr").first.get_attribute("data-run-id") == runs[-1].run_id
    assert "sort=cost" in page.url and "dir=asc" in page.url
    screenshot("runs_sorted")


def test_timeline_and_call_panel(page, screenshot, labelled, owner):
    from playwright.sync_api import expect

    login(page, "olivia", "pw-olivia-123", next_path="/dashboard/runs/run-u7/")
    timeline = page.locator("svg#timeline")
    timeline.wait_for()
    assert timeline.locator("rect.call").count() == 2 and timeline.locator("rect.section").count() == 2
    assert timeline.locator("rect.call.error").count() == 1
    page.evaluate("window.__stayed = true")
    # A call in the tree opens its panel in place (htmx).
    page.locator("#run-tree li.call.error a[data-call-link]").click()
    panel = page.locator("#call-panel dl")
    panel.wait_for()
    assert "APITimeout" in panel.inner_text() and "gpt-4o-mini" in panel.inner_text()
    assert page.evaluate("window.__stayed === true")
    screenshot("run_call_panel")
    # A bar of the timeline opens the other call's panel (as a link, or in place).
    timeline.locator("a[data-call-link] rect.call:not(.error)").click()
    expect(page.locator("#call-panel dl")).to_contain_text("api.openai.com")
    assert "850 ms" in page.locator("#call-panel").inner_text()
    screenshot("run_timeline")
