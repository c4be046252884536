"""Issue 14, "the run tree is quadratic": GET /runs/{id} and the run page stay
linear in the run's size, bounded by a cap, and never recurse.

Reproductions: n calls in one run whose parent sections never arrive (distinct
`parent_span_id`s, `section_path: "root/sN"`) made the stand-in parent search
scan every node per stand-in (0.14 s at 2k, 2.9 s at 10k, > 30 s at 35k); ~60
nested sections broke the run page (template recursion) and ~500 broke
GET /runs/{id} (Python recursion).  The figures live in bench/run_tree.py;
these tests assert counts and totals, never times.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from events.models import Run
from events.selectors import TREE_MAX_CALLS, TREE_MAX_DEPTH
from tests.browser.conftest import browser, login, page  # noqa: F401  (Playwright fixtures)
from tests.conftest import Api, make_event

pytestmark = pytest.mark.django_db

BASE = dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.UTC)
EXACT = 1e-9


def stamp(offset_ms: float) -> str:
    return (BASE + dt.timedelta(milliseconds=offset_ms)).isoformat().replace("+00:00", "Z")


def post_all(api: Api, events: list[dict[str, Any]]) -> None:
    for start in range(0, len(events), 1000):
        response = api.post_events({"events": events[start : start + 1000]})
        assert response.status_code == 200, response.content[:500]
        assert response.json()["accepted"] == len(events[start : start + 1000])


def orphan_calls(run_id: str, n: int) -> list[dict[str, Any]]:
    """n calls, each in a section `root/sN` whose span never arrives."""
    return [
        make_event(
            run_id=run_id,
            span_id=f"c{i}",
            parent_span_id=f"gone-{i}",
            section=f"s{i}",
            section_path=f"root/s{i}",
            input_tokens=100 + i % 7,
            output_tokens=10 + i % 3,
            status="error" if i % 1000 == 999 else "ok",
            started_at=stamp(i),
        )
        for i in range(n)
    ]


def walk(nodes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    stack = list(reversed(nodes))
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node["children"]))


def nesting(nodes: list[dict[str, Any]]) -> int:
    """How many section levels deep the tree goes."""
    deepest = 0
    stack = [(node, 1) for node in nodes]
    while stack:
        node, depth = stack.pop()
        if node["span_type"] == "section":
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in node["children"])
    return deepest


def section_chain(run_id: str, depth: int) -> list[dict[str, Any]]:
    """`depth` sections, each inside the one before, with one call in the innermost."""
    events = [
        make_event(
            run_id=run_id,
            span_id=f"d{i}",
            parent_span_id=f"d{i - 1}" if i else None,
            span_type="section",
            name=f"s{i}",
            section=f"s{i}",
            # A short path: the chain comes from parent_span_id, as OTLP or an
            # older SDK can send it; the 64-level path limit does not bound it.
            section_path=f"deep/s{i}",
            provider=None,
            model=None,
            endpoint=None,
            input_tokens=0,
            output_tokens=0,
            latency_ms=float(depth - i),
            started_at=stamp(i),
        )
        for i in range(depth)
    ]
    events.append(
        make_event(
            run_id=run_id,
            span_id="leaf-call",
            parent_span_id=f"d{depth - 1}",
            section=f"s{depth - 1}",
            section_path=f"deep/s{depth - 1}",
            input_tokens=1000,
            output_tokens=100,
            started_at=stamp(depth),
        )
    )
    return events


def test_cap_applies_to_35k_calls_with_distinct_missing_parents(api: Api):
    n = 35_000
    post_all(api, orphan_calls("wide", n))
    run = Run.objects.get(run_id="wide")
    assert run.calls == n

    with CaptureQueriesContext(connection) as captured:
        response = api.get("/runs/wide")
    assert response.status_code == 200
    body = response.json()
    # The run's totals come from the Run row, whole.
    assert body["calls"] == n
    assert body["cost_usd"] == pytest.approx(run.cost_usd, rel=1e-12)
    assert body["input_tokens"] == run.input_tokens and body["output_tokens"] == run.output_tokens

    # The tree holds the first TREE_MAX_CALLS calls stored; the rest are one summary node.
    assert body["truncated"] is True
    assert body["tree_calls"] == TREE_MAX_CALLS
    assert body["omitted_calls"] == n - TREE_MAX_CALLS
    calls = [node for node in walk(body["tree"]) if node["span_type"] not in ("section", "omitted")]
    assert len(calls) == TREE_MAX_CALLS
    assert {c["span_id"] for c in calls} == {f"c{i}" for i in range(TREE_MAX_CALLS)}
    (summary,) = [node for node in body["tree"] if node["span_type"] == "omitted"]
    assert body["tree"][-1] is summary
    assert summary["calls"] == n - TREE_MAX_CALLS
    shown_cost = sum(c["cost_usd"] for c in calls)
    assert summary["cost_usd"] == pytest.approx(run.cost_usd - shown_cost, rel=1e-9)
    assert summary["input_tokens"] == run.input_tokens - sum(c["input_tokens"] for c in calls)
    assert summary["output_tokens"] == run.output_tokens - sum(c["output_tokens"] for c in calls)
    assert summary["status"] == "error"  # failed calls are among those not shown
    # The root nodes still add up to the run.
    assert sum(node["cost_usd"] for node in body["tree"]) == pytest.approx(run.cost_usd, rel=1e-9)
    assert sum(node["calls"] for node in body["tree"]) == n
    # Each call hangs under the stand-in for its missing section.
    stand_ins = [node for node in body["tree"] if node["span_type"] == "section"]
    assert len(stand_ins) == TREE_MAX_CALLS
    assert stand_ins[0]["span_id"] == "gone-0" and stand_ins[0]["section_path"] == "root/s0"
    assert [c["span_id"] for c in stand_ins[0]["children"]] == ["c0"]

    # At most cap + 1 calls were read from the database.
    limits = [
        int(m.group(1))
        for q in captured.captured_queries
        if "events_event" in q["sql"] and (m := re.search(r"LIMIT (\d+)", q["sql"]))
    ]
    assert limits and max(limits) <= TREE_MAX_CALLS + 1


def test_2k_calls_with_distinct_missing_parents_all_shown_and_rolled_up(api: Api):
    n = 2_000
    root = make_event(
        run_id="wide2k",
        span_id="root-span",
        span_type="section",
        name="root",
        section="root",
        section_path="root",
        provider=None,
        model=None,
        endpoint=None,
        input_tokens=0,
        output_tokens=0,
        started_at=stamp(-1),
    )
    post_all(api, [root, *orphan_calls("wide2k", n)])
    run = Run.objects.get(run_id="wide2k")
    body = api.get("/runs/wide2k").json()
    assert body["truncated"] is False
    assert body["tree_calls"] == n and body["omitted_calls"] == 0
    # Every stand-in `root/sN` found the `root` section by its path.
    (top,) = body["tree"]
    assert top["span_id"] == "root-span" and len(top["children"]) == n
    assert top["calls"] == n
    assert top["cost_usd"] == pytest.approx(run.cost_usd, rel=1e-9)
    assert top["self_cost_usd"] == 0.0
    assert top["input_tokens"] == run.input_tokens and top["output_tokens"] == run.output_tokens
    assert top["status"] == "ok"
    for i, stand_in in enumerate(top["children"]):
        (call,) = stand_in["children"]
        assert (stand_in["span_id"], call["span_id"]) == (f"gone-{i}", f"c{i}")
        assert stand_in["cost_usd"] == stand_in["self_cost_usd"] == call["cost_usd"] > 0
        assert stand_in["calls"] == 1 and stand_in["input_tokens"] == call["input_tokens"]
        assert stand_in["status"] == call["status"]
    assert sum(s["cost_usd"] for s in top["children"]) == pytest.approx(run.cost_usd, rel=1e-9)


@pytest.mark.parametrize("depth", [100, 600])
def test_deeply_nested_sections_are_served_and_rendered(api: Api, owner, depth):
    run_id = f"deep-{depth}"
    post_all(api, section_chain(run_id, depth))
    run = Run.objects.get(run_id=run_id)

    response = api.get(f"/runs/{run_id}")
    assert response.status_code == 200
    body = response.json()
    assert body["truncated"] is False
    nodes = {node["span_id"]: node for node in walk(body["tree"])}
    assert len(nodes) == depth + 1
    deepest = nodes[f"d{depth - 1}"]
    assert deepest["name"] == f"s{depth - 1}"
    assert [c["span_id"] for c in deepest["children"]] == ["leaf-call"]
    (top,) = body["tree"]
    assert top["span_id"] == "d0" and top["calls"] == 1
    assert top["cost_usd"] == pytest.approx(run.cost_usd, abs=EXACT) and run.cost_usd > 0
    # Every section rolls the call up, however deep it is shown.
    assert all(node["calls"] == 1 for node in nodes.values())
    # Past TREE_MAX_DEPTH the sections are shown at that depth, marked folded.
    assert nesting(body["tree"]) == TREE_MAX_DEPTH
    assert nodes[f"d{TREE_MAX_DEPTH - 1}"].get("folded") is None
    assert nodes[f"d{TREE_MAX_DEPTH}"]["folded"] is True

    client = Client()
    client.force_login(owner)
    response = client.get(f"/dashboard/runs/{run_id}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f'data-name="s{depth - 1}"' in html
    assert html.count('class="node call') == 1
    # The page's <details> nest no deeper than the tree does (Chromium flattens
    # DOM trees past 512 levels).
    open_now = deepest_open = 0
    for tag in re.findall(r"</?details\b", html):
        open_now += 1 if tag == "<details" else -1
        deepest_open = max(deepest_open, open_now)
    assert open_now == 0 and deepest_open == TREE_MAX_DEPTH


def test_sections_at_the_maximum_depth_are_nested_as_sent(api: Api, owner):
    post_all(api, section_chain("deep-max", TREE_MAX_DEPTH))
    body = api.get("/runs/deep-max").json()
    assert nesting(body["tree"]) == TREE_MAX_DEPTH
    assert not any("folded" in node for node in walk(body["tree"]))
    node = body["tree"][0]
    for i in range(1, TREE_MAX_DEPTH):
        (node,) = node["children"]
        assert node["span_id"] == f"d{i}"
    assert [c["span_id"] for c in node["children"]] == ["leaf-call"]


def test_sections_that_are_each_others_parents_are_served(api: Api, owner):
    def section(span_id: str, parent: str, offset: int) -> dict[str, Any]:
        return make_event(
            run_id="loop",
            span_id=span_id,
            parent_span_id=parent,
            span_type="section",
            name=span_id,
            section=span_id,
            section_path=span_id,
            provider=None,
            model=None,
            endpoint=None,
            input_tokens=0,
            output_tokens=0,
            started_at=stamp(offset),
        )

    events = [
        section("a", "b", 0),
        section("b", "a", 1),
        section("self", "self", 2),
        make_event(
            run_id="loop", span_id="call-a", parent_span_id="a", section="a", section_path="a", started_at=stamp(3)
        ),
        make_event(
            run_id="loop",
            span_id="call-s",
            parent_span_id="self",
            section="self",
            section_path="self",
            started_at=stamp(4),
        ),
    ]
    post_all(api, events)
    run = Run.objects.get(run_id="loop")
    response = api.get("/runs/loop")
    assert response.status_code == 200
    tree = response.json()["tree"]
    assert sorted(node["span_id"] for node in walk(tree)) == ["a", "b", "call-a", "call-s", "self"]
    assert sum(node["cost_usd"] for node in tree) == pytest.approx(run.cost_usd, abs=EXACT)
    assert sum(node["calls"] for node in tree) == 2

    client = Client()
    client.force_login(owner)
    response = client.get("/dashboard/runs/loop/")
    assert response.status_code == 200
    assert response.content.decode().count('class="node call') == 2


def test_run_page_shows_the_cap_and_the_omitted_calls(api: Api, owner, monkeypatch):
    import dashboard.views
    import events.selectors

    n = 30
    post_all(api, orphan_calls("capped", n))
    monkeypatch.setattr(events.selectors, "TREE_MAX_CALLS", 20)
    monkeypatch.setattr(dashboard.views, "RUN_PAGE_MAX_CALLS", 10)
    body = api.get("/runs/capped").json()
    assert body["truncated"] is True and body["tree_calls"] == 20 and body["omitted_calls"] == 10
    client = Client()
    client.force_login(owner)
    html = client.get("/dashboard/runs/capped/").content.decode()
    assert html.count('class="node call') == 10
    assert 'class="node omitted"' in html
    assert "20 more calls not shown" in html
    assert 'id="tree-truncated"' in html and "the first 10 of its 30 calls" in html


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_600_deep_tree_in_chromium_folds_and_unfolds(page, api_key, owner):  # noqa: F811
    post_all(Api(api_key), section_chain("deep-browser", 600))
    login(page, "olivia", "pw-olivia-123", next_path="/dashboard/runs/deep-browser/")
    page.goto("/dashboard/runs/deep-browser/")
    deepest = page.locator("li.section[data-name='s599'] > details > summary")
    assert deepest.is_visible()
    assert page.locator("#run-tree li.call").count() == 1
    # The browser nested the sections as sent, down to the folded ones.
    depth = page.evaluate(
        """() => {
            let n = 0, el = document.querySelector("li.section[data-name='s599']");
            while ((el = el.parentElement.closest('details')) !== null) n++;
            return n;
        }"""
    )
    assert depth == TREE_MAX_DEPTH - 1
    # Fold the root: everything below it hides; unfold: it shows again.
    page.locator("#run-tree > li.section > details > summary").click()
    page.wait_for_function("!document.querySelector('#run-tree > li.section > details').open")
    assert not deepest.is_visible()
    page.locator("#run-tree > li.section > details > summary").click()
    page.wait_for_function("document.querySelector('#run-tree > li.section > details').open")
    assert deepest.is_visible()
