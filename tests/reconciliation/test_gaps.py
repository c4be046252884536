"""Each gap a reconciliation must tell apart, with figures computed by hand and its explanation.

Observed traffic goes through the real ingest path (events → DailyRollup,
costed by the pricing engine); the bill comes from the loopback fake.
"""

from __future__ import annotations

import pytest

from reconciliation.fake_admin import Rates, Traffic
from reconciliation.selectors import reconciliation_report
from reconciliation.services import openai_project_links_set
from tests.conftest import make_event
from tests.reconciliation.conftest import D1, RATES, run_import

pytestmark = pytest.mark.django_db
# The conftest's published prices plus gpt-3.5-turbo ($0.50 / $1.50 per 1M).
RATES_WITH_35 = {**RATES, "gpt-3.5-turbo": Rates(input=0.50, output=1.50)}


def observe(api, model: str, calls: int, input_tokens: int, output_tokens: int, day: str = "2026-11-25") -> None:
    events = [
        make_event(
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            started_at=f"{day}T09:{i % 60:02d}:00Z",
        )
        for i in range(calls)
    ]
    assert api.post_events(events).status_code in (200, 202)


def by_model(project, day=D1):
    report = reconciliation_report(project_id=project.id, start=day, end=day)
    return {f.model: f for f in report.by_model}, report


def test_each_gap_with_its_explanation(api, project, fake_admin):
    # gpt-4o agrees: 10 calls of 10k in / 1k out = 10 × (10k × $2.50 + 1k × $10) / 1M = $0.35 on both sides.
    observe(api, "gpt-4o-2024-08-06", 10, 10_000, 1_000)
    # Uninstrumented: 9 of gpt-4o-mini's 10 calls observed.
    observe(api, "gpt-4o-mini-2024-07-18", 9, 100_000, 10_000)
    # Tier mispricing: gpt-4.1 billed on flex (half price), observed at the standard price.
    observe(api, "gpt-4.1-2025-04-14", 4, 50_000, 5_000)
    # Observed but never billed (another org's key, a proxy).
    observe(api, "gpt-4.1-mini", 3, 1_000, 100)
    bill = [
        Traffic(D1, "gpt-4o-2024-08-06", 100_000, 10_000, 10),
        Traffic(D1, "gpt-4o-mini-2024-07-18", 1_000_000, 100_000, 10),
        Traffic(D1, "gpt-4.1-2025-04-14", 200_000, 20_000, 4),
        # Billed but never observed.
        Traffic(D1, "gpt-3.5-turbo-0125", 2_000_000, 200_000, 40),
    ]
    fake = fake_admin(bill, tiers={"gpt-4.1": "flex"}, rates=RATES_WITH_35)
    run_import(fake, since=D1)
    rows, report = by_model(project)

    four_o = rows["gpt-4o"]
    assert float(four_o.billed_usd) == pytest.approx(0.35)
    assert four_o.observed_usd == pytest.approx(0.35)
    assert four_o.coverage == pytest.approx(1.0) and four_o.price_agreement == pytest.approx(1.0)
    assert (four_o.billed_requests, four_o.observed_requests) == (10, 10)
    assert four_o.explanations() == [] and not four_o.off

    mini = rows["gpt-4o-mini"]
    # Billed: 1M × $0.15 + 100k × $0.60 = $0.21; observed 9/10 of it = $0.189.
    assert float(mini.billed_usd) == pytest.approx(0.21)
    assert mini.observed_usd == pytest.approx(0.189)
    assert mini.coverage == pytest.approx(0.9)
    assert mini.price_agreement == pytest.approx(1.0)
    assert mini.explanations() == ["10 % of gpt-4o-mini tokens were never observed — uninstrumented calls?"]

    flex = rows["gpt-4.1"]
    # Observed: 200k × $2 + 20k × $8 = $0.56; billed on flex at half: $0.28.
    assert flex.observed_usd == pytest.approx(0.56)
    assert float(flex.billed_usd) == pytest.approx(0.28)
    assert flex.coverage == pytest.approx(1.0)
    assert flex.price_agreement == pytest.approx(2.0)
    assert flex.explanations() == [
        "gpt-4.1: tokens match but cost is 2.0× the bill — a price or tier error (the bill names the flex tier): "
        "flex or batch calls priced at the standard rate?"
    ]

    never_seen = rows["gpt-3.5-turbo"]
    # 2M × $0.50 + 200k × $1.50 = $1.30
    assert float(never_seen.billed_usd) == pytest.approx(1.30)
    assert never_seen.observed_tokens == 0 and never_seen.coverage == 0.0
    assert never_seen.explanations() == [
        "gpt-3.5-turbo: billed $1.30 but never observed — calls from an app or key without the SDK, "
        "or an OpenAI project that is not this project's."
    ]

    unbilled = rows["gpt-4.1-mini"]
    # 3 × (1k × $0.40 + 100 × $1.60) / 1M = $0.00168
    assert unbilled.observed_usd == pytest.approx(0.00168)
    assert unbilled.billed_usd == 0 and unbilled.coverage is None and unbilled.price_agreement is None
    assert unbilled.explanations() == [
        "gpt-4.1-mini: observed $0.0017 (3 requests) but never billed — calls through a proxy or another "
        "organization's key, or an OpenAI project not linked here."
    ]
    assert len(report.explanations) == 4
    # All models: observed ÷ billed-of-the-seen over the billed rows (gpt-4.1-mini was never billed):
    # (0.35 + 0.189 + 0.56) ÷ (0.35 + 0.189 + 0.28 + 1.30 × 0) — gpt-3.5-turbo was never seen.
    assert report.totals.price_agreement == pytest.approx((0.35 + 0.189 + 0.56) / (0.35 + 0.189 + 0.28))


def test_a_discount_or_credit(api, project, fake_admin):
    observe(api, "gpt-4o", 10, 10_000, 1_000)
    fake = fake_admin([Traffic(D1, "gpt-4o-2024-08-06", 100_000, 10_000, 10)], discount=0.78)
    run_import(fake, since=D1)
    four_o = by_model(project)[0]["gpt-4o"]
    # Billed 0.78 × $0.35 = $0.273; observed $0.35: cost 1/0.78 = 1.282× the bill.
    assert float(four_o.billed_usd) == pytest.approx(0.273)
    assert four_o.coverage == pytest.approx(1.0)
    assert four_o.price_agreement == pytest.approx(1 / 0.78)
    assert four_o.explanations() == [
        "gpt-4o: tokens match but the bill is 0.78× our cost (cost 1.28× the bill) — a discount or credit? "
        "set a project discount of 22 %."
    ]


def test_linked_openai_projects_scope_the_bill(api, project, fake_admin):
    observe(api, "gpt-4o", 10, 10_000, 1_000)
    bill = [
        Traffic(D1, "gpt-4o-2024-08-06", 100_000, 10_000, 10, project_id="proj_ours"),
        Traffic(D1, "gpt-4o-2024-08-06", 300_000, 30_000, 30, project_id="proj_theirs"),
    ]
    run_import(fake_admin(bill), since=D1)
    # Unlinked: the whole organization's bill, 4× what we saw.
    assert by_model(project)[0]["gpt-4o"].coverage == pytest.approx(0.25)
    openai_project_links_set(project=project, openai_project_ids=["proj_ours"])
    linked = by_model(project)[0]["gpt-4o"]
    assert linked.coverage == pytest.approx(1.0) and float(linked.billed_usd) == pytest.approx(0.35)
