from __future__ import annotations

import datetime as dt
import re
from urllib.parse import quote

import pytest
from django.db.models import Sum
from django.test import Client

from dashboard import views
from dashboard.formatting import usd
from events.models import DailyRollup, Run
from events.selectors import iso
from pricing.selectors import price_list_current
from projects.models import Membership
from tests.dashboard.conftest import day_start, ingest, make_insight, run_events

PAGES = ["/", "/dashboard/runs/", "/dashboard/runs/run-42/", "/dashboard/insights/", "/dashboard/pricing/"]
HTMX = {"HTTP_HX_REQUEST": "true"}


def run_ids(html: str) -> list[str]:
    return re.findall(r'data-run-id="([^"]+)"', html)


# --- access -------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_pages_require_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.django_db
def test_login_page_and_login_flow(client, owner):
    page = client.get("/accounts/login/?next=/dashboard/runs/")
    assert page.status_code == 200
    assert b'name="username"' in page.content and b"csrfmiddlewaretoken" in page.content
    bad = client.post("/accounts/login/", {"username": "olivia", "password": "nope", "next": "/dashboard/runs/"})
    assert b"did not match" in bad.content
    ok = client.post(
        "/accounts/login/", {"username": "olivia", "password": "pw-olivia-123", "next": "/dashboard/runs/"}
    )
    assert ok.status_code == 302 and ok["Location"] == "/dashboard/runs/"
    assert client.get("/").status_code == 200


@pytest.mark.django_db
def test_logout_is_a_post_with_csrf(owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    page = client.get("/").content.decode()
    assert re.search(r'<form method="post" action="/accounts/logout/"', page)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert client.post("/accounts/logout/").status_code == 403  # no token
    response = client.post("/accounts/logout/", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert client.get("/").status_code == 302


@pytest.mark.django_db
def test_outsider_gets_404_for_runs_of_another_project(seeded, outsider_client, owner_client):
    assert outsider_client.get("/dashboard/runs/run-42/").status_code == 404
    assert outsider_client.get("/dashboard/runs/globex-secret-run/").status_code == 200
    assert owner_client.get("/dashboard/runs/globex-secret-run/").status_code == 404
    assert owner_client.get("/dashboard/runs/no-such-run/").status_code == 404
    # Nor does the outsider's run list or overview show anything of acme's.
    listing = outsider_client.get("/dashboard/runs/").content.decode()
    assert run_ids(listing) == ["globex-secret-run"]
    assert "mystery-model-1" not in outsider_client.get("/").content.decode()


@pytest.mark.django_db
def test_outsider_cannot_pick_another_project(seeded, outsider_client):
    assert outsider_client.get("/dashboard/runs/?project=acme").status_code == 404
    assert outsider_client.get("/?project=acme").status_code == 404


@pytest.mark.django_db
def test_user_without_project_is_told_what_to_do(client, django_user_model):
    user = django_user_model.objects.create_user("nina", password="pw-nina-123")
    client.force_login(user)
    for path in ("/", "/dashboard/runs/", "/dashboard/insights/"):
        body = client.get(path).content.decode()
        assert "You are not in a project yet" in body
        assert "create_api_key --project" in body
    assert client.get("/dashboard/pricing/").status_code == 200
    assert client.get("/dashboard/runs/anything/").status_code == 404


# --- overview -----------------------------------------------------------------


@pytest.mark.django_db
def test_overview_spend_chart_tops_and_unpriced(seeded, owner_client, project):
    body = owner_client.get("/").content.decode()
    today = day_start(0).date()

    def spent(first: dt.date, last: dt.date) -> float:
        return (
            DailyRollup.objects.filter(project=project, day__gte=first, day__lte=last).aggregate(c=Sum("cost_usd"))["c"]
            or 0.0
        )

    assert f'class="stat-value cost">{usd(spent(today, today))}<' in body
    week = spent(today - dt.timedelta(days=6), today)
    assert f'class="stat-value cost">{usd(week)}<' in body
    assert f'class="stat-value cost">{usd(spent(today - dt.timedelta(days=29), today))}<' in body
    previous_week = spent(today - dt.timedelta(days=13), today - dt.timedelta(days=7))
    assert f"{(week - previous_week) / previous_week * 100:+.0f}%".replace("-", "−") in body
    # The chart: an SVG with a bar segment per section and day, and a legend.
    assert '<svg class="chart" id="cost-chart"' in body
    assert "Cost per day, last 14 days" in body  # from the first day with cost, not 30 empty days
    assert body.count('<rect class="bar"') >= 30
    assert "tool:web_search" in body and "step:analyze_results" in body and "retrieval" in body
    # Top sections link to their runs; top models are listed with their cost.
    assert "/dashboard/runs/?section=tool%3Aweb_search&amp;since=" in body
    assert "gpt-4o-mini" in body and "o3-mini" in body
    # Models used without a price.
    unpriced = body[body.index('id="unpriced"') :]
    assert "mystery-model-1" in unpriced and "acme-ai" in unpriced
    # Insights: the empty state until the job has found something.
    assert "No insights for the last 24 hours" in body


@pytest.mark.django_db
def test_overview_top_sections_today_find_the_most_expensive(seeded, owner_client):
    body = owner_client.get("/?days=1").content.decode()
    top = body[body.index('id="top-sections"') : body.index('id="top-models"')]
    assert "Top sections · Today" in top
    # Today's calls are all in tool:web_search; older sections are not listed.
    assert "tool:web_search" in top and "retrieval" not in top
    assert "1 failed" in top


@pytest.mark.django_db
def test_overview_latest_insights(seeded, owner_client, project):
    insight = make_insight(project)
    body = owner_client.get("/").content.decode()
    latest = body[body.index('id="latest-insights"') :]
    assert insight.message in latest
    assert "save ~$3.25/day" in latest
    assert f'/dashboard/insights/#insight-{insight.pk}"' in latest


@pytest.mark.django_db
def test_overview_fragments_for_htmx(seeded, owner_client):
    chart = owner_client.get("/?by=model", HTTP_HX_TARGET="chart", **HTMX)
    html = chart.content.decode()
    assert chart.status_code == 200
    assert "<html" not in html and html.lstrip().startswith('<section class="card" id="chart">')
    assert "gpt-4o-mini" in html and 'aria-selected="true">by model' in html
    assert "HX-Request" in chart["Vary"]
    breakdown = owner_client.get("/?days=30", HTTP_HX_TARGET="breakdown", **HTMX).content.decode()
    assert breakdown.lstrip().startswith('<div id="breakdown"')
    assert "Top sections · 30 days" in breakdown and "<svg" not in breakdown
    # Every hx-get is also a plain link.
    full = owner_client.get("/").content.decode()
    for url in re.findall(r'hx-get="([^"]+)"', full):
        assert f'href="{url}"' in full


@pytest.mark.django_db
def test_overview_empty_state_has_the_snippet(owner_client, project):
    body = owner_client.get("/").content.decode()
    assert "Send your first events" in body
    assert "python manage.py create_api_key --project acme" in body
    assert 'observe(collector_url="http://testserver"' in body
    assert "No cost in the last 14 days" in body  # the default period (7 days) charts two weeks


# --- runs ---------------------------------------------------------------------


@pytest.mark.django_db
def test_run_list_newest_first_with_costs(seeded, owner_client, project):
    body = owner_client.get("/dashboard/runs/").content.decode()
    ids = run_ids(body)
    expected = list(
        Run.objects.filter(project=project).order_by("-started_at", "-id").values_list("run_id", flat=True)[:50]
    )
    assert ids == expected
    assert ids[:3] == ["run-42", "run-err", "run-unpriced"]
    assert "globex-secret-run" not in ids
    run = Run.objects.get(project=project, run_id="run-42")
    row = body[body.index('data-run-id="run-42"') :]
    row = row[: row.index("</tr>")]
    assert 'href="/dashboard/runs/run-42/"' in row
    assert f'<td class="num cost">{usd(run.cost_usd)}</td>' in row
    assert "agent:researcher" in row and "support-bot" in row
    err_row = body[body.index('data-run-id="run-err"') :]
    assert "error · 1" in err_row[: err_row.index("</tr>")]
    # Live: the table polls its own fragment.
    assert 'hx-trigger="every 5s"' in body and 'hx-get="/dashboard/runs/?"' in body
    # Costs look the same in the list and in the run's page.
    assert usd(run.cost_usd) in owner_client.get("/dashboard/runs/run-42/").content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "expect_in", "expect_out"),
    [
        ("service=batch-jobs", ["run-err"], ["run-42", "run-old-2-0"]),
        ("section=retrieval", ["run-old-2-2", "run-old-13-2"], ["run-42", "run-old-2-0", "run-old-2-1"]),
        ("section=agent%3Awriter", ["run-err"], ["run-42"]),
        ("status=error", ["run-err"], ["run-42", "run-unpriced"]),
        ("status=ok", ["run-42", "run-unpriced"], ["run-err"]),
        ("min_cost=0.01", ["run-old-2-0"], ["run-42", "run-old-2-1", "run-unpriced"]),
    ],
)
def test_run_list_filters(seeded, owner_client, query, expect_in, expect_out):
    ids = run_ids(owner_client.get(f"/dashboard/runs/?{query}").content.decode())
    for run_id in expect_in:
        assert run_id in ids
    for run_id in expect_out:
        assert run_id not in ids


@pytest.mark.django_db
def test_run_list_date_range_is_inclusive(seeded, owner_client):
    day = day_start(2).date().isoformat()
    ids = run_ids(owner_client.get(f"/dashboard/runs/?since={day}&until={day}").content.decode())
    assert sorted(ids) == ["run-old-2-0", "run-old-2-1", "run-old-2-2"]
    since_today = run_ids(owner_client.get(f"/dashboard/runs/?since={day_start(0).date()}").content.decode())
    assert sorted(since_today) == ["run-42", "run-err"]


@pytest.mark.django_db
def test_run_list_bad_filters_are_explained(seeded, owner_client):
    response = owner_client.get("/dashboard/runs/?since=yesterday&min_cost=lots&status=maybe&cursor=zzz")
    body = response.content.decode()
    assert response.status_code == 200
    assert "From is a date" in body and "Min cost is a number" in body and "Status is ok or error" in body
    assert "That page link has expired" in body
    assert run_ids(body)[0] == "run-42"


@pytest.mark.django_db
def test_run_list_keyset_pagination(seeded, owner_client, monkeypatch, project):
    monkeypatch.setattr(views, "RUNS_PER_PAGE", 5)
    everything = list(
        Run.objects.filter(project=project).order_by("-started_at", "-id").values_list("run_id", flat=True)
    )
    seen: list[str] = []
    url = "/dashboard/runs/"
    pages = 0
    while url:
        body = owner_client.get(url).content.decode()
        ids = run_ids(body)
        assert 0 < len(ids) <= 5
        seen += ids
        pages += 1
        if pages > 1:
            assert "data-live" not in body  # only the newest page polls
            assert "← Newest" in body
        older = re.search(r'class="older" href="([^"]+)"', body)
        url = older.group(1).replace("&amp;", "&") if older else ""
        if url:
            assert "cursor=" in url
    assert seen == everything
    assert pages == -(-len(everything) // 5)


@pytest.mark.django_db
def test_run_list_pagination_keeps_filters(seeded, owner_client, monkeypatch):
    monkeypatch.setattr(views, "RUNS_PER_PAGE", 2)
    body = owner_client.get("/dashboard/runs/?section=retrieval").content.decode()
    older = re.search(r'class="older" href="([^"]+)"', body).group(1).replace("&amp;", "&")
    assert "section=retrieval" in older
    second = run_ids(owner_client.get(older).content.decode())
    assert second and all(r.endswith("-2") for r in second)


@pytest.mark.django_db
def test_run_list_fragment_for_htmx(seeded, owner_client, api_key):
    first = owner_client.get("/dashboard/runs/", HTTP_HX_TARGET="run-table", **HTMX).content.decode()
    assert first.lstrip().startswith('<div id="run-table"') and "<html" not in first
    assert "run-new" not in run_ids(first)
    ingest(api_key, run_events("run-new", when=day_start(0) + dt.timedelta(hours=1)))
    # The next poll shows the new run on top.
    again = owner_client.get("/dashboard/runs/?", HTTP_HX_TARGET="run-table", **HTMX).content.decode()
    assert run_ids(again)[0] == "run-new"
    # A filter form submitted by htmx gets the same fragment.
    filtered = owner_client.get("/dashboard/runs/?status=error", **HTMX).content.decode()
    assert filtered.lstrip().startswith('<div id="run-table"') and run_ids(filtered) == ["run-err"]


@pytest.mark.django_db
def test_run_list_empty_state(owner_client, project):
    body = owner_client.get("/dashboard/runs/").content.decode()
    assert "Send your first events" in body
    assert "create_api_key --project acme" in body
    assert 'id="run-table"' in body and "hx-trigger" in body  # keeps polling for the first run


@pytest.mark.django_db
def test_run_list_filters_with_no_match(seeded, owner_client):
    body = owner_client.get("/dashboard/runs/?service=nobody").content.decode()
    assert "No runs match these filters" in body


# --- run detail ---------------------------------------------------------------


@pytest.mark.django_db
def test_run_detail_tree(seeded, owner_client, project):
    body = owner_client.get("/dashboard/runs/run-42/").content.decode()
    run = Run.objects.get(project=project, run_id="run-42")
    assert "agent:researcher" in body and "tool:web_search" in body
    # The root is expandable and contains the tool section, which contains the call.
    root = body[body.index('data-name="agent:researcher"') :]
    assert root.index("<details open>") < root.index('data-name="tool:web_search"') < root.index('class="node call')
    assert "<summary>" in root
    assert f'<span class="cost" title="rolled up; $0.00 directly in this section">{usd(run.cost_usd)}</span>' in body
    assert "gpt-4o-2024-08-06" in body
    assert "1,200 / 150" in body  # tokens in / out
    assert "1,024 cached" in body
    assert "850 ms" in body and "1.84 s" in body
    assert 'class="badge ok">ok' in body
    assert "Cost by model in this run" in body


@pytest.mark.django_db
def test_run_detail_marks_errors(seeded, owner_client):
    body = owner_client.get("/dashboard/runs/run-err/").content.decode()
    assert "1 call failed" in body
    assert body.count('class="node call error"') == 1
    assert "✖ RateLimitError" in body
    assert 'class="badge error" title="failed calls inside this section">1 failed' in body


@pytest.mark.django_db
def test_run_detail_marks_unpriced_calls(seeded, owner_client):
    body = owner_client.get("/dashboard/runs/run-unpriced/").content.decode()
    assert "mystery-model-1" in body and "no price" in body


@pytest.mark.django_db
def test_run_ids_with_slashes_and_spaces(owner_client, api_key):
    ingest(api_key, run_events("team/a run#1", when=day_start(0)))
    listing = owner_client.get("/dashboard/runs/").content.decode()
    href = re.search(r'href="(/dashboard/runs/team[^"]+)"', listing).group(1)
    assert owner_client.get(href).status_code == 200


# --- project switcher -----------------------------------------------------------


@pytest.mark.django_db
def test_project_switcher(seeded, staff_client):
    body = staff_client.get("/dashboard/runs/").content.decode()
    assert '<select id="project-switch" name="project"' in body
    assert '<option value="acme" selected>' in body and '<option value="globex"' in body
    switched = staff_client.get("/dashboard/runs/?project=globex").content.decode()
    assert run_ids(switched) == ["globex-secret-run"]
    # The choice is remembered.
    assert run_ids(staff_client.get("/dashboard/runs/").content.decode()) == ["globex-secret-run"]
    assert 'Overview <span class="muted">· globex' in staff_client.get("/").content.decode()
    # Staff see every project's runs.
    assert staff_client.get("/dashboard/runs/run-42/").status_code == 200
    assert staff_client.get("/dashboard/runs/?project=nope").status_code == 404


@pytest.mark.django_db
def test_member_of_two_projects_switches(seeded, member, other_project):
    Membership.objects.create(project=other_project, user=member)
    client = Client()
    client.force_login(member)
    assert 'id="project-switch"' in client.get("/").content.decode()
    assert run_ids(client.get("/dashboard/runs/?project=globex").content.decode()) == ["globex-secret-run"]
    # A project the member left is no longer offered, and the stored choice falls back.
    Membership.objects.filter(project=other_project, user=member).delete()
    body = client.get("/dashboard/runs/").content.decode()
    assert "run-42" in run_ids(body) and 'id="project-switch"' not in body


@pytest.mark.django_db
def test_single_project_user_sees_no_switcher(seeded, owner_client):
    body = owner_client.get("/").content.decode()
    assert 'id="project-switch"' not in body and '<span class="project-name" title="Project">acme</span>' in body


# --- insights and pricing -------------------------------------------------------


@pytest.mark.django_db
def test_insights_page(seeded, owner_client, outsider_client, project):
    empty = owner_client.get("/dashboard/insights/").content.decode()
    assert "No insights for the last 24 hours" in empty
    first = insight = make_insight(project)
    retry = insight = make_insight(
        project,
        kind="retry_loop",
        severity="medium",
        section="retrieval",
        model="",
        est_savings_usd=None,
        message="retrieval calls the same endpoint 6 times a run.",
    )
    body = owner_client.get("/dashboard/insights/").content.decode()
    assert f'id="insight-{insight.pk}"' in body
    assert insight.message in body and "retrieval calls the same endpoint" in body
    assert "model_inefficiency" in body and "retry_loop" in body
    assert "$3.25" in body and "could save about" in body
    assert "16.7×" in body
    # Drill-downs keep the insight's window, section and model.
    for one, rest in ((first, "&amp;section=tool%3Aweb_search&amp;model=gpt-4o"), (retry, "&amp;section=retrieval")):
        window = f"since={quote(iso(one.window_start))}&amp;until={quote(iso(one.window_end))}"
        assert f'/dashboard/runs/?{window}{rest}"' in body
    # Another project's insights stay there.
    assert insight.message not in outsider_client.get("/dashboard/insights/").content.decode()


@pytest.mark.django_db
def test_pricing_page(seeded, owner_client, staff_client, price_editor):
    prices = price_list_current()
    assert prices
    body = owner_client.get("/dashboard/pricing/").content.decode()
    for price in prices[:5]:
        assert price.model in body
    gpt4o = next(p for p in prices if p.model == "gpt-4o")
    assert gpt4o.source == "genai-prices"
    assert "$2.50" in body and "$1.25" in body
    assert "genai-prices" in body  # where each row comes from
    assert "/change/" not in body  # only staff may edit
    assert "mystery-model-1" in body[body.index('id="unpriced"') :]
    # Edit links for those who may change prices, not for staff alone.
    assert "/change/" not in staff_client.get("/dashboard/pricing/").content.decode()
    editor = Client()
    editor.force_login(price_editor)
    editor_body = editor.get("/dashboard/pricing/").content.decode()
    pinecone = next(p for p in prices if p.provider == "pinecone" and p.model == "*")
    assert f'href="/admin/pricing/price/{pinecone.pk}/change/"' in editor_body


# --- performance guard ------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/", "/dashboard/runs/", "/dashboard/runs/run-42/", "/dashboard/pricing/"])
def test_pages_use_a_bounded_number_of_queries(seeded, owner_client, django_assert_max_num_queries, path):
    # The run list's distribution and first models are one query each, whatever the page holds.
    with django_assert_max_num_queries(16):
        assert owner_client.get(path).status_code == 200


@pytest.mark.django_db
def test_service_choices_are_the_distinct_services(seeded, owner_client, api_key, project):
    from dashboard.selectors import run_service_list

    ingest(api_key, run_events("run-no-service", when=day_start(0), service=None))
    assert run_service_list(project_id=project.id) == ["batch-jobs", "support-bot"]
    assert run_service_list(project_id=project.id, limit=1) == ["batch-jobs"]
    body = owner_client.get("/dashboard/runs/").content.decode()
    assert "<option >batch-jobs</option>" in body or "<option>batch-jobs</option>" in body


@pytest.mark.django_db
@pytest.mark.parametrize("sparse_limit", [0, 1, 3, 1000])
def test_section_filter_same_runs_whether_sparse_or_dense(seeded, project, monkeypatch, sparse_limit):
    """The run list finds a section's runs by id when few runs have it and by a
    walk when many do; both give the same pages."""
    import events.selectors as ev
    from events.selectors import RunFilters, run_list

    def pages(section: str) -> list[str]:
        out: list[str] = []
        cursor = None
        while True:
            runs, cursor = run_list(project_id=project.id, filters=RunFilters(section=section), limit=2, cursor=cursor)
            out += [r.run_id for r in runs]
            if not cursor:
                return out

    expected = {
        s: list(
            Run.objects.filter(
                project=project, run_id__in=ev.RunSection.objects.filter(project=project, section=s).values("run_id")
            )
            .order_by("-started_at", "-id")
            .values_list("run_id", flat=True)
        )
        for s in ("retrieval", "tool:web_search", "agent:writer", "nope")
    }
    monkeypatch.setattr(ev, "SPARSE_SECTION_RUNS", sparse_limit)
    for section, runs in expected.items():
        assert pages(section) == runs


@pytest.mark.django_db
def test_not_found_page_keeps_the_layout(seeded, outsider_client):
    response = outsider_client.get("/dashboard/runs/run-42/")
    assert response.status_code == 404
    body = response.content.decode()
    assert "Not found" in body and 'class="mainnav"' in body and "run-42" not in body
