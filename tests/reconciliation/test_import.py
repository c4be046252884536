"""The real import job against the loopback fake of the Costs and Usage APIs."""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from reconciliation.fake_admin import FAKE_KEY, Traffic
from reconciliation.models import BilledCost, BilledUsage, ImportedDay
from reconciliation.openai_admin import AdminApiError, AdminConfig
from reconciliation.services import openai_bill_import
from tests.reconciliation.conftest import D1, D2, D3, TODAY, Sleeps, run_import

pytestmark = pytest.mark.django_db

TRAFFIC = [
    Traffic(D1, "gpt-4o-2024-08-06", 1_200_000, 150_000, 900, cached_input_tokens=1_000_000, project_id="proj_a"),
    Traffic(D1, "gpt-4o-mini-2024-07-18", 3_000_000, 400_000, 2_000, project_id="proj_b"),
    Traffic(D2, "gpt-4o-2024-08-06", 500_000, 50_000, 300, project_id="proj_a"),
    Traffic(D3, "text-embedding-3-small", 2_000_000, 0, 50, project_id="proj_a", endpoint="embeddings"),
]


def test_stored_figures_equal_the_bill_to_the_cent(fake_admin):
    # Two buckets a page (pagination), and a 429 before the first answer.
    fake = fake_admin(TRAFFIC, page_size=2, fail_first=1, retry_after="1")
    sleeps = Sleeps()
    result = run_import(fake, since=D1, sleep=sleeps)

    assert result.days == [D1, D2, D3, TODAY]
    assert sleeps == [1.0]  # the 429's Retry-After, honoured
    # costs: 4 days at 2 a page = 2 pages (+1 for the 429); completions and embeddings 2 pages each.
    paths = [p for p, _ in fake.requests]
    assert paths.count("/v1/organization/costs") == 3
    assert paths.count("/v1/organization/usage/completions") == 2
    assert paths.count("/v1/organization/usage/embeddings") == 2
    pages = [q.get("page") for p, q in fake.requests if p == "/v1/organization/costs"]
    assert pages[0] is None and pages[1] is None and pages[2] is not None
    first = fake.requests[0][1]
    assert first["group_by"] == ["line_item", "project_id"] and first["bucket_width"] == ["1d"]

    # By hand: gpt-4o on D1 = 200k input × $2.50 + 1M cached × $1.25 + 150k output × $10 (per 1M)
    #        = 0.50 + 1.25 + 1.50 = $3.25; gpt-4o-mini = 3M × 0.15 + 400k × 0.60 = 0.45 + 0.24 = $0.69;
    # D2 gpt-4o = 500k × 2.50 + 50k × 10 = 1.25 + 0.50 = $1.75; D3 embeddings = 2M × 0.02 = $0.04.
    def billed(day, model=None):
        rows = BilledCost.objects.filter(day=day, **({"model": model} if model else {}))
        return sum((r.amount_usd for r in rows), Decimal(0)).quantize(Decimal("0.01"))

    assert billed(D1, "gpt-4o") == Decimal("3.25")
    assert billed(D1, "gpt-4o-mini") == Decimal("0.69")
    assert billed(D2) == Decimal("1.75")
    assert billed(D3) == Decimal("0.04")
    assert billed(TODAY) == Decimal("0.00")
    for day in (D1, D2, D3):
        assert billed(day) == Decimal(str(round(fake.billed_usd(day=day), 2)))
    lines = {
        (r.line_item, r.kind, r.model, r.openai_project_id): r.amount_usd.quantize(Decimal("0.01"))
        for r in BilledCost.objects.filter(day=D1)
    }
    assert lines == {
        ("gpt-4o-2024-08-06, input", "input", "gpt-4o", "proj_a"): Decimal("0.50"),
        ("gpt-4o-2024-08-06, cached input", "cached_input", "gpt-4o", "proj_a"): Decimal("1.25"),
        ("gpt-4o-2024-08-06, output", "output", "gpt-4o", "proj_a"): Decimal("1.50"),
        ("gpt-4o-mini-2024-07-18, input", "input", "gpt-4o-mini", "proj_b"): Decimal("0.45"),
        ("gpt-4o-mini-2024-07-18, output", "output", "gpt-4o-mini", "proj_b"): Decimal("0.24"),
    }
    usage = {
        (u.day, u.endpoint, u.model_id, u.model, u.openai_project_id): (
            u.input_tokens,
            u.input_cached_tokens,
            u.output_tokens,
            u.num_model_requests,
        )
        for u in BilledUsage.objects.all()
    }
    assert usage == {
        (D1, "completions", "gpt-4o-2024-08-06", "gpt-4o", "proj_a"): (1_200_000, 1_000_000, 150_000, 900),
        (D1, "completions", "gpt-4o-mini-2024-07-18", "gpt-4o-mini", "proj_b"): (3_000_000, 0, 400_000, 2_000),
        (D2, "completions", "gpt-4o-2024-08-06", "gpt-4o", "proj_a"): (500_000, 0, 50_000, 300),
        (D3, "embeddings", "text-embedding-3-small", "text-embedding-3-small", "proj_a"): (2_000_000, 0, 0, 50),
    }
    assert set(ImportedDay.objects.values_list("day", flat=True)) == {D1, D2, D3, TODAY}


def test_a_rerun_replaces_a_day_never_doubles_it(fake_admin):
    run_import(fake_admin(TRAFFIC), since=D1)
    count = BilledCost.objects.count()
    run_import(fake_admin(TRAFFIC), since=D1)
    assert BilledCost.objects.count() == count == 8
    assert BilledUsage.objects.count() == 4
    total = sum(r.amount_usd for r in BilledCost.objects.all())
    assert total.quantize(Decimal("0.01")) == Decimal("5.73")  # 3.25 + 0.69 + 1.75 + 0.04
    # The provider revised D2 (a late batch): the re-run holds the new figure only.
    revised = [t for t in TRAFFIC if t.day != D2] + [
        Traffic(D2, "gpt-4o-2024-08-06", 1_000_000, 0, 10, project_id="proj_a")
    ]
    run_import(fake_admin(revised), since=D1)
    d2 = BilledCost.objects.filter(day=D2)
    assert [(r.line_item, r.amount_usd.quantize(Decimal("0.01"))) for r in d2] == [
        ("gpt-4o-2024-08-06, input", Decimal("2.50"))
    ]
    assert BilledUsage.objects.get(day=D2).input_tokens == 1_000_000


def test_final_days_are_not_fetched_again(fake_admin):
    # Imported on 2026-11-28 with 3 settle days: days before 11-25 are final.
    since = dt.date(2026, 11, 20)
    run_import(fake_admin(TRAFFIC), since=since)
    assert sorted(ImportedDay.objects.filter(final=True).values_list("day", flat=True)) == [
        dt.date(2026, 11, 20) + dt.timedelta(days=i) for i in range(5)
    ]
    fake = fake_admin(TRAFFIC)
    result = run_import(fake, today=TODAY)
    # The daily run: the 30-day window's days not final (never imported, or the last few).
    assert dt.date(2026, 11, 24) not in result.days and D1 in result.days
    assert dt.date(2026, 10, 29) in result.days  # never imported
    assert result.days[-1] == TODAY
    assert set(result.days) & {dt.date(2026, 11, 20) + dt.timedelta(days=i) for i in range(5)} == set()


def test_5xx_is_retried_with_backoff_then_gives_up_and_writes_nothing(fake_admin):
    fake = fake_admin(TRAFFIC, fail_first=100, retry_after="")
    sleeps = Sleeps()
    with pytest.raises(AdminApiError, match="gave up after 6 attempts"):
        run_import(fake, since=D1, sleep=sleeps)
    assert sleeps == [1.0, 2.0, 4.0, 8.0, 16.0]  # exponential without a Retry-After
    assert BilledCost.objects.count() == 0 and ImportedDay.objects.count() == 0


def test_the_admin_key_never_appears_in_errors_or_logs(fake_admin, caplog, monkeypatch):
    fake = fake_admin(TRAFFIC, key="sk-admin-the-right-one")
    wrong = "sk-admin-SECRET-never-shown-42"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AdminApiError) as info:
        openai_bill_import(since=D1, today=TODAY, config=AdminConfig(key=wrong, base_url=fake.base_url))
    # The fake echoes the key it was sent; the error says 401 without it.
    assert "401" in str(info.value) and "[redacted]" in str(info.value)
    assert wrong not in str(info.value) and wrong not in repr(AdminConfig(key=wrong, base_url="x"))
    monkeypatch.setenv("OPENAI_ADMIN_KEY", wrong)
    monkeypatch.setenv("OPENAI_ADMIN_BASE_URL", fake.base_url)
    with pytest.raises(CommandError) as command_error:
        call_command("reconcile", "--since", D1.isoformat())
    assert "401" in str(command_error.value) and wrong not in str(command_error.value)
    assert wrong not in caplog.text


def test_reconcile_command_imports_and_prints(fake_admin, monkeypatch, capsys, project):
    fake = fake_admin(TRAFFIC)
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_KEY)
    monkeypatch.setenv("OPENAI_ADMIN_BASE_URL", fake.base_url)
    call_command("reconcile", "--project", "acme", "--since", D1.isoformat())
    out = capsys.readouterr().out
    assert FAKE_KEY not in out
    assert "cost rows ($5.73)" in out
    assert "gpt-4o " in out and "billed $3.25 but never observed" not in out  # D1+D2 gpt-4o: $5.00
    assert "gpt-4o: billed $5.00 but never observed" in out


def test_bad_since_and_missing_key_are_clear_errors(monkeypatch):
    monkeypatch.delenv("OPENAI_ADMIN_KEY", raising=False)
    with pytest.raises(CommandError, match="not a date"):
        call_command("reconcile", "--since", "2026-13-01")
    with pytest.raises(CommandError, match="OPENAI_ADMIN_KEY is not set"):
        call_command("reconcile")


def test_the_daily_task_runs_the_job_and_is_a_no_op_without_a_key(fake_admin, monkeypatch):
    from llmobserve_site.celery import app
    from reconciliation.tasks import import_openai_bill

    app.loader.import_default_modules()
    assert "reconciliation.import_openai_bill" in app.tasks
    schedule = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert "reconciliation.import_openai_bill" in schedule
    monkeypatch.delenv("OPENAI_ADMIN_KEY", raising=False)
    assert import_openai_bill.apply(args=[D1.isoformat()]).get() == 0
    assert not BilledCost.objects.exists()
    fake = fake_admin(TRAFFIC)
    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_KEY)
    monkeypatch.setenv("OPENAI_ADMIN_BASE_URL", fake.base_url)
    days = import_openai_bill.apply(args=[D1.isoformat()]).get()
    assert days >= 4
    total = sum(r.amount_usd for r in BilledCost.objects.all())
    assert total.quantize(Decimal("0.01")) == Decimal("5.73")
