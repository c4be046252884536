"""Insights on the dashboard (issue 15): readable text with units, drill-down
links, dismiss / snooze enforced by the job, the history, permissions."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape

import pytest
from django.test import Client

from insights.models import Insight, InsightTrack
from insights.services import insights_compute
from tests.insights.conftest import AT, BASELINE_AT, WINDOW_AT, History

pytestmark = pytest.mark.django_db


def bloat(history: History) -> None:
    """token_bloat on `rag`: 1,000 → 2,000 input tokens a call (30 runs each side)."""
    history.runs("rag", 30, BASELINE_AT, [{"input_tokens": 1_000}])
    history.runs("rag", 30, WINDOW_AT, [{"input_tokens": 2_000}])
    history.ingest()


def current(project) -> list[Insight]:
    from insights.selectors import insight_list_latest

    return insight_list_latest(project_id=project.id)


@pytest.fixture
def member_client(member) -> Client:
    client = Client()
    client.force_login(member)
    return client


def test_card_text_units_and_drill_down(project, history, member_client):
    bloat(history)
    (insight,) = insights_compute(project_id=project.id, at=AT)
    assert insight.kind == "token_bloat" and insight.observed == 2000.0 and insight.baseline == 1000.0
    body = member_client.get("/dashboard/insights/").content.decode()
    card = body[body.index(f'id="insight-{insight.pk}"') :].split("</li>")[0]
    # No Markdown backticks: the section is a <code> element.
    assert "`" not in card and "<code>rag</code>" in card
    assert '<dd data-figure="observed">2,000 tokens per call</dd>' in card
    assert '<dd data-figure="baseline">1,000 tokens per call</dd>' in card
    assert '<dd data-figure="ratio">2.0× (+100 %)</dd>' in card
    link = unescape(re.search(r'<a class="follow" href="([^"]+)" data-drill-down', card).group(1))
    assert link == "/dashboard/runs/?since=2026-11-19T12%3A00%3A00Z&until=2026-11-20T12%3A00%3A00Z&section=rag"
    # The link lists the window's 30 rag runs, not the baseline's.
    runs = member_client.get(link).content.decode()
    assert len(re.findall(r'data-run-id="', runs)) == 30


def test_model_insight_drill_down_keeps_the_model(project, member_client):
    from tests.dashboard.conftest import make_insight

    insight = make_insight(project, section="summarize", model="gpt-4o", observed=4359.5658, baseline=1200.0)
    body = member_client.get("/dashboard/insights/").content.decode()
    card = body[body.index(f'id="insight-{insight.pk}"') :].split("</li>")[0]
    assert "model=gpt-4o" in card and "section=summarize" in card and "since=" in card and "until=" in card
    assert '<dd data-figure="observed">$4,359.57</dd>' in card  # USD, not 4359.5658
    assert '<dd data-figure="baseline">$1,200.00</dd>' in card


def test_dismissed_insight_stays_quiet_until_its_figures_change_materially(project, history, member, member_client):
    bloat(history)
    (insight,) = insights_compute(project_id=project.id, at=AT)
    response = member_client.post(f"/dashboard/insights/{insight.pk}/dismiss/")
    assert response.status_code == 302
    assert current(project) == []
    track = InsightTrack.objects.get(project=project, kind="token_bloat", section="rag")
    assert track.dismissed_by == member and track.dismissed_observed == 2000.0
    # The job recomputes a minute later: same figures, still quiet (stored, marked quiet).
    later = AT + dt.timedelta(minutes=1)
    (again,) = insights_compute(project_id=project.id, at=later)
    assert again.quiet and current(project) == []
    # Five more runs at 3,000 tokens: the mean is (30×2,000 + 5×3,000) / 35 = 2,142.9, +7 %: quiet.
    history.runs("rag", 5, WINDOW_AT + dt.timedelta(hours=1), [{"input_tokens": 3_000}])
    history.ingest()
    (again,) = insights_compute(project_id=project.id, at=later + dt.timedelta(minutes=1))
    assert again.observed == pytest.approx(75_000 / 35) and again.quiet
    # Thirty more at 6,000: (60,000 + 15,000 + 180,000) / 65 = 3,923, +96 % of 2,000: it speaks again.
    history.runs("rag", 30, WINDOW_AT + dt.timedelta(hours=2), [{"input_tokens": 6_000}])
    history.ingest()
    (again,) = insights_compute(project_id=project.id, at=later + dt.timedelta(minutes=2))
    assert again.observed == pytest.approx(255_000 / 65) and not again.quiet
    assert current(project) == [again]
    assert InsightTrack.objects.get(pk=track.pk).dismissed_at is None


def test_snoozed_insight_is_quiet_until_the_snooze_ends(project, history, owner):
    client = Client()
    client.force_login(owner)
    bloat(history)
    (insight,) = insights_compute(project_id=project.id, at=AT)
    assert client.post(f"/dashboard/insights/{insight.pk}/snooze/", {"days": "1"}).status_code == 302
    assert current(project) == []
    track = InsightTrack.objects.get(project=project, kind="token_bloat")
    assert track.snoozed_until > AT + dt.timedelta(days=1)  # a day from now; the data's clock is earlier
    # Computations inside the snooze are quiet; one after it ends speaks.
    (inside,) = insights_compute(project_id=project.id, at=AT + dt.timedelta(minutes=1))
    assert inside.quiet
    InsightTrack.objects.filter(pk=track.pk).update(snoozed_until=AT + dt.timedelta(minutes=30))
    (after,) = insights_compute(project_id=project.id, at=AT + dt.timedelta(minutes=31))
    assert not after.quiet and current(project) == [after]
    assert client.post(f"/dashboard/insights/{after.pk}/snooze/", {"days": "2"}).status_code == 400


def test_history_lists_past_insights_and_restores(project, history, member_client):
    bloat(history)
    (insight,) = insights_compute(project_id=project.id, at=AT)
    member_client.post(f"/dashboard/insights/{insight.pk}/dismiss/")
    # A later computation with nothing to say prunes the old one; the history keeps it.
    insights_compute(project_id=project.id, at=AT + dt.timedelta(days=3))
    assert not Insight.objects.filter(pk=insight.pk).exists()
    body = member_client.get("/dashboard/insights/").content.decode()
    track = InsightTrack.objects.get(project=project)
    row = body[body.index(f'data-track="{track.pk}"') :].split("</tr>")[0]
    assert 'data-state="dismissed"' in row and "2,000 tokens per call" in row and "1,000 tokens per call" in row
    assert "<code>rag</code>" in row
    assert member_client.post(f"/dashboard/insights/history/{track.pk}/restore/").status_code == 302
    track.refresh_from_db()
    assert track.dismissed_at is None


def test_a_member_of_another_project_cannot_see_or_dismiss(project, history, outsider):
    bloat(history)
    (insight,) = insights_compute(project_id=project.id, at=AT)
    track = InsightTrack.objects.get(project=project)
    client = Client()
    client.force_login(outsider)
    body = client.get("/dashboard/insights/").content.decode()
    assert f'id="insight-{insight.pk}"' not in body and f'data-track="{track.pk}"' not in body
    assert client.post(f"/dashboard/insights/{insight.pk}/dismiss/").status_code == 404
    assert client.post(f"/dashboard/insights/{insight.pk}/snooze/", {"days": "1"}).status_code == 404
    assert client.post(f"/dashboard/insights/history/{track.pk}/restore/").status_code == 404
    assert client.get(f"/dashboard/insights/{insight.pk}/dismiss/").status_code == 405
    assert current(project) == [insight]


def test_the_api_leaves_dismissed_insights_out(project, history, member_client, api):
    bloat(history)
    (insight,) = insights_compute(project_id=project.id, at=AT)
    assert [i["id"] for i in api.get("/insights/daily").json()["insights"]] == [insight.pk]
    member_client.post(f"/dashboard/insights/{insight.pk}/dismiss/")
    assert api.get("/insights/daily").json()["insights"] == []
