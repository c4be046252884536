"""The dashboard in a real browser: log in, read the chart, watch a run arrive,
open it, fold its tree, follow an insight.  Screenshots of each page go to
artifacts/screenshots/ (CI leaves that folder in the workspace)."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request

import pytest

from tests.browser.conftest import login
from tests.dashboard.conftest import day_start, make_insight, run_events

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def post_events(base_url: str, key: str, events: list[dict]) -> dict:
    request = urllib.request.Request(
        base_url + "/events",
        data=json.dumps({"events": events}).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


def test_login_then_overview_chart(page, screenshot, seeded, owner, project):
    make_insight(project)
    login(page, "olivia", "pw-olivia-123", next_path="/dashboard/runs/")
    assert page.url.endswith("/dashboard/runs/")
    page.goto("/")
    chart = page.locator("svg#cost-chart")
    chart.wait_for()
    assert chart.locator("rect.bar").count() >= 30
    assert "today" in page.locator(".stats").inner_text().lower()
    # The chart splits by model without a page load.
    page.evaluate("window.__stayed = true")
    page.click("#chart a[role=tab]:has-text('by model')")
    page.wait_for_selector("#chart a[aria-selected=true]:has-text('by model')")
    assert "gpt-4o-mini" in page.locator("#chart .legend").inner_text()
    assert page.evaluate("window.__stayed === true")
    page.click("#chart a[role=tab]:has-text('by section')")
    page.wait_for_selector("#chart a[aria-selected=true]:has-text('by section')")
    screenshot("overview")


def test_live_run_list_tree_and_pricing(page, screenshot, seeded, owner, api_key, live_server, settings):
    settings.DASHBOARD_POLL_SECONDS = 1
    login(page, "olivia", "pw-olivia-123")
    page.goto("/dashboard/runs/")
    page.wait_for_selector("tr[data-run-id='run-42']")
    page.evaluate("window.__stayed = true")
    assert page.locator("tr[data-run-id='run-live']").count() == 0

    # A run ingested while the page is open appears without a reload.
    events = run_events(
        "run-live",
        when=day_start(0) + dt.timedelta(minutes=30),
        calls=[
            {"model": "gpt-4o-mini", "input_tokens": 900, "output_tokens": 80},
            {"model": "gpt-4o", "input_tokens": 0, "output_tokens": 0, "status": "error", "error_type": "APITimeout"},
        ],
    )
    assert post_events(live_server.url, api_key, events)["accepted"] == len(events)
    row = page.locator("tr[data-run-id='run-live']")
    row.wait_for(timeout=10_000)
    assert page.evaluate("window.__stayed === true"), "the page reloaded"
    assert page.locator("tbody tr").first.get_attribute("data-run-id") == "run-live"
    assert "error" in row.inner_text()
    screenshot("runs")

    # Open it: the tree, with the failed call marked.
    row.locator("a").first.click()
    page.wait_for_url("**/dashboard/runs/run-live/")
    tree = page.locator("#run-tree")
    tree.wait_for()
    root = tree.locator("li.section[data-name='agent:researcher']")
    tool = root.locator("li.section[data-name='tool:web_search'] > details > summary")
    assert tool.is_visible()
    assert tree.locator("li.call.error").count() == 1
    assert "APITimeout" in tree.locator("li.call.error").inner_text()
    assert "gpt-4o-mini" in tree.inner_text()
    screenshot("run_detail")

    # Collapse and expand the root section, without a page load.
    page.evaluate("window.__stayed = true")
    root.locator("summary").first.click()
    page.wait_for_function("!document.querySelector('#run-tree > li.section > details').open")
    assert not tool.is_visible()
    screenshot("run_detail_collapsed")
    root.locator("summary").first.click()
    page.wait_for_function("document.querySelector('#run-tree > li.section > details').open")
    assert tool.is_visible()
    assert page.evaluate("window.__stayed === true")

    page.goto("/dashboard/pricing/")
    assert page.locator("table.prices tbody tr").count() > 0
    assert "mystery-model-1" in page.locator("#unpriced").inner_text()
    screenshot("pricing")


def test_follow_an_insight(page, screenshot, seeded, owner, project):
    insight = make_insight(project, model="gpt-4o-2024-08-06")  # the model run-42's calls name
    login(page, "olivia", "pw-olivia-123")
    link = page.locator("#latest-insights a").filter(has_text="gpt-4o-mini would do")
    assert "$3.25" in page.locator("#latest-insights").inner_text()
    link.click()
    page.wait_for_url(f"**/dashboard/insights/#insight-{insight.pk}")
    card = page.locator(f"#insight-{insight.pk}")
    assert card.is_visible()
    assert "model_inefficiency" in card.inner_text()
    screenshot("insights")
    card.locator("a.follow").click()
    # The drill-down keeps the insight's window, section and model (issue 15).
    page.wait_for_url("**/dashboard/runs/?since=*&section=tool%3Aweb_search&model=gpt-4o-2024-08-06")
    assert page.locator("tr[data-run-id='run-42']").count() == 1
    assert page.locator("tr[data-run-id='run-old-2-1']").count() == 0  # step:analyze_results only
    assert page.locator("input[name=section]").input_value() == "tool:web_search"


def test_from_todays_most_expensive_section_to_its_calls(page, screenshot, seeded, owner):
    """The issue's "done when": find the most expensive section of the last day,
    open one of its runs, see which model call cost what."""
    login(page, "olivia", "pw-olivia-123")
    page.click("#breakdown a:has-text('Today')")
    page.wait_for_selector("#top-sections h2:has-text('Today')")
    top = page.locator("#top-sections tbody tr").first
    section = top.locator("a").inner_text()
    assert section == "tool:web_search"
    top.locator("a").click()
    page.wait_for_url("**/dashboard/runs/?section=tool%3Aweb_search&since=*")
    rows = page.locator("tbody tr")
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.runId)")) == ["run-42", "run-err"]
    page.locator("tr[data-run-id='run-42'] a").click()
    page.wait_for_url("**/dashboard/runs/run-42/")
    call = page.locator(f"li.section[data-name='{section}'] li.call").first
    assert "gpt-4o-2024-08-06" in call.inner_text()
    assert "$0.0032" in call.locator(".cost").inner_text()
    assert "1,200 / 150" in call.inner_text()
    screenshot("run_detail_from_top_section")


def test_filters_and_pages_swap_in_place(page, seeded, owner, monkeypatch):
    from dashboard import views

    monkeypatch.setattr(views, "RUNS_PER_PAGE", 10)
    login(page, "olivia", "pw-olivia-123")
    page.goto("/dashboard/runs/")
    page.evaluate("window.__stayed = true")
    first_page = page.locator("tbody tr").evaluate_all("rs => rs.map(r => r.dataset.runId)")
    assert len(first_page) == 10
    page.click("a.older")
    page.wait_for_url("**/dashboard/runs/?cursor=*")
    page.wait_for_function(f"document.querySelector('tbody tr').dataset.runId !== {first_page[0]!r}")
    second_page = page.locator("tbody tr").evaluate_all("rs => rs.map(r => r.dataset.runId)")
    assert len(second_page) == 10 and not set(first_page) & set(second_page)
    assert page.locator("[data-live]").count() == 0  # older pages do not poll
    page.select_option("select[name=status]", "error")
    page.wait_for_url("**/dashboard/runs/?*status=error*")
    page.wait_for_function("document.querySelectorAll('tbody tr').length === 1")
    assert page.locator("tbody tr").first.get_attribute("data-run-id") == "run-err"
    assert page.evaluate("window.__stayed === true"), "the page reloaded"
    # Back in history shows the unfiltered older page again.
    page.go_back()
    page.wait_for_function("document.querySelectorAll('tbody tr').length === 10")
