"""Alerts beyond budgets: new insights at or above a channel's severity (once
per finding and day, though the insight job rewrites its rows), and the daily
digest from the rollups; EMAIL_URL parsed strictly."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from budgets.email_url import email_settings
from budgets.models import Channel, Delivery
from budgets.services import digests_fire, insight_alerts_fire
from tests.budgets.conftest import call, ingest
from tests.dashboard.conftest import make_insight

ROOT = Path(__file__).resolve().parents[2]


def channel(project, name: str, **fields) -> Channel:  # type: ignore[no-untyped-def]
    created = Channel.objects.create(
        project=project, kind="slack", name=name, target="https://hooks.example.com/x", target_hint="", **fields
    )
    Channel.objects.filter(id=created.id).update(created_at=timezone.now() - dt.timedelta(days=3))
    created.refresh_from_db()
    return created


@pytest.mark.django_db
def test_insight_alerts_by_severity_once_per_finding(project):
    high_only = channel(project, "high", insight_min_severity="high")
    from_low = channel(project, "low", insight_min_severity="low")
    channel(project, "none")
    make_insight(project, severity="high")
    make_insight(project, severity="low", kind="token_bloat", section="agent:writer", model="")
    now = timezone.now()
    made = insight_alerts_fire(now=now)
    assert sorted((d.channel.name, d.payload["insight"]["kind"]) for d in made) == [
        ("high", "model_inefficiency"),
        ("low", "model_inefficiency"),
        ("low", "token_bloat"),
    ]
    high = Delivery.objects.get(channel=high_only)
    assert high.payload["insight"]["est_savings_usd"] == 3.25
    assert "Estimated savings: $3.25." in high.text
    # The insight job recomputes: the same findings under new rows, new ids.
    from insights.models import InsightComputation

    InsightComputation.objects.all().delete()
    make_insight(project, severity="high")
    assert insight_alerts_fire(now=now + dt.timedelta(minutes=10)) == []
    assert Delivery.objects.filter(channel=from_low).count() == 2


@pytest.mark.django_db
def test_daily_digest_once_with_top_spend(project, instant_counting):
    daily = channel(project, "daily", digest="daily")
    yesterday = (timezone.now() - dt.timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    ingest(
        project.id,
        [
            call(yesterday, section="agent:a", section_path="agent:a", attributes={"customer": "acme"}),
            call(yesterday, section="agent:a", section_path="agent:a", attributes={"customer": "acme"}),
            call(
                yesterday, section="agent:b", section_path="agent:b", model="gpt-4o-mini", attributes={"customer": "x"}
            ),
            call(timezone.now(), section="agent:b", section_path="agent:b"),  # today: not in yesterday's digest
        ],
    )
    make_insight(project)
    (delivery,) = digests_fire(now=timezone.now())
    digest = delivery.payload["digest"]
    assert digest["from"] == yesterday.date().isoformat()
    assert digest["total_usd"] == pytest.approx(0.35 * 2 + 0.021)
    assert digest["top_sections"][0] == {"key": "agent:a", "cost_usd": pytest.approx(0.70), "calls": 2}
    assert [m["key"] for m in digest["top_models"]] == ["gpt-4o", "gpt-4o-mini"]
    if digest["top_attributes"]:  # the attribute rollups, when the events app keeps them
        assert digest["top_attributes"][0]["value"] == "acme"
    assert digest["insights"][0]["est_savings_usd"] == 3.25
    assert "agent:a: $0.70 in 2 calls" in delivery.text
    assert delivery.channel == daily
    assert digests_fire(now=timezone.now()) == []  # once per day


@pytest.mark.parametrize(
    "raw",
    [
        "smtp://host:99999",
        "ftp://mail.example.com",
        "smtp://mail.example.com?tls=maybe",
        "smtp:///nohost",
        "smtp://mail.example.com?starttls=1",
        "smtp://mail.example.com?timeout=soon",
        "smtp://mail.example.com?tls=1&ssl=1",
    ],
)
def test_bad_email_urls_are_refused(raw):
    with pytest.raises(ImproperlyConfigured, match="EMAIL_URL"):
        email_settings(raw)


def test_email_url_parsed():
    conf = email_settings("smtp://alerts%40example.com:p%40ss@mail.example.com:587?tls=1")
    assert conf["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert (conf["EMAIL_HOST"], conf["EMAIL_PORT"], conf["EMAIL_USE_TLS"]) == ("mail.example.com", 587, True)
    assert (conf["EMAIL_HOST_USER"], conf["EMAIL_HOST_PASSWORD"]) == ("alerts@example.com", "p@ss")
    assert email_settings("")["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"


def test_a_bad_email_url_stops_start_up_without_showing_the_password():
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["EMAIL_URL"] = "smtp://user:hunter2@mail.example.com:notaport"
    proc = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    assert "EMAIL_URL" in proc.stderr and "hunter2" not in proc.stderr
