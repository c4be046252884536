"""Every dashboard page at a laptop's width (1440×900) and a phone's (390×844):
screenshots, and no horizontal scroll of the page itself (a wide table or
chart scrolls inside its card).

The pages are the fixed ones plus every link in the top navigation at the time
the test runs, so pages added later are covered without editing this file.
The data is made to be awkward: long run ids without spaces, long and deeply
nested section names, long attribute values, a long key name.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from projects.models import ApiKey
from tests.browser.conftest import login
from tests.dashboard.conftest import day_start, ingest, make_insight, stamp

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWPORTS = [(1440, 900), (390, 844)]
LONG_RUN = "92be3f2d8225c3e0ce0f7a41d6b3e9c2-0000000000000042-nightly-reindex-of-the-customer-knowledge-base"
LONG_SECTIONS = [
    "agent:customer_support_escalation_pipeline_for_enterprise_accounts",
    "step:classify_the_incoming_ticket_by_product_area_and_urgency_level",
    "tool:vector_search_over_the_knowledge_base_with_reranking_enabled",
    "step:summarise_the_retrieved_passages_into_a_draft_answer",
]
ATTRIBUTES = {
    "user_id": "user-7f3c2a9e-5b1d-4c8e-9a2f-000000000001",
    "customer": "Globally Distributed Widgets and Sprockets Incorporated (EMEA)",
    "plan": "enterprise-plus-annual-commitment",
}

# Elements whose right edge passes the viewport: named in the failure message.
OVERFLOWING_JS = """() => {
  const width = window.innerWidth;
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width && r.right > width + 1) {
      let scrolled = false;
      for (let p = el.parentElement; p; p = p.parentElement) {
        const s = getComputedStyle(p);
        if (['auto', 'scroll', 'hidden', 'clip'].includes(s.overflowX)) { scrolled = true; break; }
      }
      if (!scrolled) out.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
        (el.className && typeof el.className === 'string' ? '.' + el.className.trim().replace(/\\s+/g, '.') : '') +
        ' right=' + Math.round(r.right));
    }
  }
  return out.slice(0, 8);
}"""


def deep_run(run_id: str, *, when: dt.datetime) -> list[dict[str, Any]]:
    """One run with four nested sections of long names and calls at each depth."""
    events: list[dict[str, Any]] = []
    parent = None
    path: list[str] = []
    for depth, name in enumerate(LONG_SECTIONS):
        path.append(name)
        span = f"{run_id}-s{depth}"
        base = {"run_id": run_id, "service": "support-escalation-worker-eu-west-1", "status": "ok"}
        events.append(
            {
                **base,
                "event_id": f"{span}-section",
                "span_id": span,
                "parent_span_id": parent,
                "span_type": "section",
                "name": name,
                "section": name,
                "section_path": "/".join(path),
                "latency_ms": 4000.0 - depth * 500,
                "started_at": stamp(when + dt.timedelta(milliseconds=depth * 10)),
                "attributes": ATTRIBUTES,
            }
        )
        events.append(
            {
                **base,
                "event_id": f"{span}-call",
                "span_id": f"{span}-call",
                "parent_span_id": span,
                "span_type": "llm",
                "name": "chat.completions.create",
                "section": name,
                "section_path": "/".join(path),
                "provider": "openai",
                "model": "gpt-4o-mini-2024-07-18" if depth % 2 else "gpt-4o-2024-08-06",
                "endpoint": "chat.completions.create",
                "input_tokens": 123_456,
                "cached_input_tokens": 100_000,
                "output_tokens": 9_876,
                "latency_ms": 1234.5,
                "started_at": stamp(when + dt.timedelta(milliseconds=depth * 10 + 5)),
                "status": "error" if depth == 3 else "ok",
                "error_type": "RateLimitErrorWithAVeryLongExceptionClassName" if depth == 3 else None,
                "attributes": ATTRIBUTES,
            }
        )
        parent = span
    return events


@pytest.fixture
def awkward(seeded, project, api_key) -> dict[str, Any]:
    events: list[dict[str, Any]] = []
    events += deep_run(LONG_RUN, when=day_start(0) + dt.timedelta(minutes=20))
    for i in range(3):
        events += deep_run(f"{LONG_RUN}-retry-{i}", when=day_start(i + 1) + dt.timedelta(hours=2))
    ingest(api_key, events)
    ApiKey.generate(project=project, name="support-escalation-worker production key for eu-west-1 and us-east-2")
    make_insight(project, section=LONG_SECTIONS[2], message=f"{LONG_SECTIONS[2]} spends $0.42 a day on gpt-4o.")
    return seeded


def pages_to_visit(page: Any) -> list[str]:
    fixed = [
        "/",
        "/dashboard/runs/",
        f"/dashboard/runs/{LONG_RUN}/",
        "/dashboard/insights/",
        "/dashboard/pricing/",
        "/dashboard/settings/",
    ]
    response = page.goto("/")
    assert response is not None and response.status == 200, f"/: {response and response.status}"
    hrefs = page.locator("nav.mainnav a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    found = [urlsplit(h).path + (("?" + urlsplit(h).query) if urlsplit(h).query else "") for h in hrefs if h]
    # Our own pages only (not the admin, which is Django's).
    found = [h for h in found if h.startswith("/") and not h.startswith("/admin/")]
    assert "/dashboard/settings/" in found, f"no Settings link in the nav: {hrefs}"
    return list(dict.fromkeys(fixed + found))


def slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")[:60] or "overview"


def test_every_page_fits_a_laptop_and_a_phone(page, screenshot, awkward, owner):
    login(page, "olivia", "pw-olivia-123")
    paths = pages_to_visit(page)
    assert len(paths) >= 6
    for width, height in VIEWPORTS:
        page.set_viewport_size({"width": width, "height": height})
        for path in paths:
            response = page.goto(path)
            assert response is not None and response.status == 200, f"{path}: {response and response.status}"
            page.wait_for_load_state("load")
            screenshot(f"responsive-{width}-{slug(path)}")
            scroll_width, inner_width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
            assert scroll_width <= inner_width, (
                f"{path} at {width}px scrolls sideways ({scroll_width} > {inner_width}): "
                f"{page.evaluate(OVERFLOWING_JS)}"
            )


def test_phone_details(page, screenshot, awkward, owner):
    """What the narrow layout promises beyond "no sideways scroll"."""
    login(page, "olivia", "pw-olivia-123")
    page.set_viewport_size({"width": 390, "height": 844})

    # The nav wraps inside the top bar: every link is on screen.
    page.goto("/")
    boxes = page.locator("nav.mainnav a").evaluate_all("links => links.map(a => a.getBoundingClientRect().right)")
    assert boxes and max(boxes) <= 390

    # The chart's axis labels stay readable (at least 9 px tall on screen).
    label = page.locator("svg.chart text.axis").first
    label.wait_for()
    assert label.evaluate("t => t.getBoundingClientRect().height") >= 9

    # The run tree's indent shrinks, and the deepest name stays inside its card.
    page.goto(f"/dashboard/runs/{LONG_RUN}/")
    indent = page.locator("#run-tree ul").first.evaluate("u => parseFloat(getComputedStyle(u).marginLeft)")
    assert indent <= 6
    deepest = page.locator(f"li.section[data-name='{LONG_SECTIONS[-1]}'] > details > summary .name").first
    card = page.locator("#run-tree").locator("xpath=ancestor::*[contains(@class,'card')][1]")
    assert deepest.evaluate("n => n.getBoundingClientRect().right") <= card.evaluate(
        "c => c.getBoundingClientRect().right"
    )

    # A wide table scrolls inside its card, not the page.
    page.goto("/dashboard/pricing/")
    table_card = page.locator("table.prices").locator("xpath=ancestor::*[contains(@class,'card')][1]")
    assert table_card.evaluate("c => c.scrollWidth > c.clientWidth && getComputedStyle(c).overflowX === 'auto'")
    screenshot("responsive-390-pricing-scrolled-card")


def test_pricing_table_fits_its_card_on_a_laptop(page, awkward, owner):
    login(page, "olivia", "pw-olivia-123")
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto("/dashboard/pricing/")
    table = page.locator("table.prices")
    card = table.locator("xpath=ancestor::*[contains(@class,'card')][1]")
    assert table.evaluate("t => t.getBoundingClientRect().right") <= card.evaluate(
        "c => c.getBoundingClientRect().right"
    )
    assert card.evaluate("c => c.scrollWidth <= c.clientWidth")


def test_dark_mode_follows_the_system(page, screenshot, awkward, owner):
    login(page, "olivia", "pw-olivia-123")
    page.emulate_media(color_scheme="light")
    page.goto("/dashboard/settings/")
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.emulate_media(color_scheme="dark")
    dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert light == "rgb(246, 247, 249)"
    assert dark == "rgb(15, 17, 23)"
    card = page.locator(".card").first.evaluate("c => getComputedStyle(c).backgroundColor")
    assert card == "rgb(23, 26, 34)"
    screenshot("dark-settings")
    page.goto("/")
    screenshot("dark-overview")


def test_loading_bar_shows_while_htmx_works_not_while_it_polls(page, screenshot, awkward, owner):
    """htmx puts .htmx-request on the element whose request is in flight; the CSS
    draws a bar for it, except for the run list's background polling (data-live)."""
    login(page, "olivia", "pw-olivia-123")
    page.goto("/dashboard/runs/")
    bar = "() => getComputedStyle(document.body, '::before').animationName"
    assert page.evaluate(bar) == "none"
    page.locator("#run-table[data-live]").evaluate("el => el.classList.add('htmx-request')")
    assert page.evaluate(bar) == "none"
    page.locator("#run-table").evaluate("el => el.classList.remove('htmx-request')")
    page.locator("form.filters").evaluate("el => el.classList.add('htmx-request')")
    assert page.evaluate(bar) == "htmx-loading"
    assert page.evaluate("() => getComputedStyle(document.body, '::before').position") == "fixed"
