"""Spend kept at ingest per budget scope, the cut-over between the recount and
ingest, and the hook's cost for a project without budgets."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from budgets import spend
from budgets.inputs import budget_input_parse
from budgets.models import Budget, BudgetSpend
from budgets.selectors import budget_status_get
from budgets.services import budget_create, budget_update
from tests.budgets.conftest import call, cost, ingest

pytestmark = pytest.mark.django_db

# Noon of the real UTC day: ingest stamps received_at with the real clock, and a
# budget's recount counts what was received before its cut-over, so the test's
# day must be the day the suite runs.
NOW = dt.datetime.combine(timezone.now().date(), dt.time(12), tzinfo=dt.UTC)


def make(project, name: str, **scope) -> Budget:
    return budget_create(
        project=project,
        data=budget_input_parse({"name": name, "amount_usd": 10, "period": "day", "scope": scope}),
    )


def spent(budget: Budget, at: dt.datetime = NOW) -> float:
    budget.refresh_from_db()
    return budget_status_get(budget=budget, tz_name=budget.project.timezone, at=at).projection.spent_usd


def test_each_scope_counts_exactly_its_calls(project, instant_counting):
    budgets = {
        "all": make(project, "all"),
        "section": make(project, "section", section="agent:researcher"),
        "model": make(project, "model", model="gpt-4o-mini"),
        "service": make(project, "service", service="billing"),
        "acme": make(project, "acme", attribute={"key": "customer", "value": "acme"}),
        "seven": make(project, "seven", attribute="tier=7"),
        "and": make(project, "and", section="tool:search", attribute={"key": "customer", "value": "acme"}),
    }
    t = NOW - dt.timedelta(hours=1)
    big = cost("gpt-4o", 100_000, 10_000)  # 0.35
    mini = cost("gpt-4o-mini", 100_000, 10_000)  # 0.015 + 0.006 = 0.021
    assert big == pytest.approx(0.35) and mini == pytest.approx(0.021)
    ingest(
        project.id,
        [
            # 1: its own section is the budget's section
            call(t, section="agent:researcher", section_path="agent:researcher"),
            # 2: the section is an outer label of its path (and customer=acme)
            call(
                t,
                section="tool:search",
                section_path="agent:researcher/tool:search",
                attributes={"customer": "acme"},
            ),
            # 3: a label that only contains the budget's section as a prefix: not it
            call(t, section="agent:researcher2", section_path="agent:researcher2", attributes={"customer": "acme2"}),
            # 4: another model and service, customer acme, tier 7 as a number
            call(t, model="gpt-4o-mini", service="billing", attributes={"customer": "acme", "tier": 7}),
            # 5: tier "7" as a string matches too; customer as a list never matches
            call(t, attributes={"tier": "7", "customer": ["acme"]}),
            # a section span is never a call
            {**call(t, section="agent:researcher", section_path="agent:researcher"), "span_type": "section"},
        ],
    )
    assert spent(budgets["all"]) == pytest.approx(4 * big + mini)
    assert spent(budgets["section"]) == pytest.approx(2 * big)  # 1 and 2
    assert spent(budgets["model"]) == pytest.approx(mini)  # 4
    assert spent(budgets["service"]) == pytest.approx(mini)  # 4
    assert spent(budgets["acme"]) == pytest.approx(big + mini)  # 2 and 4
    assert spent(budgets["seven"]) == pytest.approx(big + mini)  # 4 and 5
    assert spent(budgets["and"]) == pytest.approx(big)  # 2
    # A resent batch adds nothing (ingest's idempotency covers the hook).
    row = BudgetSpend.objects.get(budget=budgets["all"])
    assert row.calls == 5 and row.recount_calls == 0


def test_cut_over_between_recount_and_ingest(project, settings):
    """Real settings (5 s cache, 5 s skew): events received before `counted_from`
    are the recount's, after it ingest's; none is counted twice or lost."""
    t = timezone.now() - dt.timedelta(hours=1)
    ingest(project.id, [call(t, attributes={"customer": "acme"})])  # A: before the budget
    budget = make(project, "acme", attribute={"key": "customer", "value": "acme"})
    now = timezone.now()
    assert budget.counted_from >= now + dt.timedelta(seconds=9)  # 5 s cache + 5 s skew, less this test's time
    assert spent(budget, now) == pytest.approx(0.35)  # the first recount found A
    ingest(project.id, [call(t, attributes={"customer": "acme"})])  # B: received before counted_from
    assert spent(budget, now) == pytest.approx(0.35)  # ingest leaves it to the recount
    assert spend.budget_recounts_due(now=now) == 0  # not yet: batches may still commit
    later = budget.counted_from + spend.recount_grace()
    assert spend.budget_recounts_due(now=later) == 1
    assert spent(budget, now) == pytest.approx(0.70)  # A + B
    assert spend.budget_recounts_due(now=later) == 0  # the final recount runs once
    # Time passes: counted_from is behind us (moved back rather than waiting 10 s).
    Budget.objects.filter(id=budget.id).update(counted_from=timezone.now())
    spend.rules_cache_forget()
    ingest(project.id, [call(t, attributes={"customer": "acme"})])  # C: ingest's
    assert spent(budget, now) == pytest.approx(1.05)
    # Any recount again still sees only A and B (received before counted_from).
    spend.budget_recount(budget_id=budget.id, final=False)
    assert spent(budget, now) == pytest.approx(1.05)
    row = BudgetSpend.objects.get(budget=budget)
    assert (row.calls, row.recount_calls) == (1, 2)


def test_scope_change_starts_a_new_generation(project, instant_counting):
    t = NOW - dt.timedelta(hours=2)
    budget = make(project, "b", model="gpt-4o")
    ingest(project.id, [call(t), call(t, model="gpt-4o-mini")])
    assert spent(budget) == pytest.approx(0.35)
    budget_update(
        budget=budget,
        data=budget_input_parse({"scope": {"model": "gpt-4o-mini"}}, base=_input(budget)),
        now=timezone.now(),  # the cut-over follows the real clock that stamped received_at
    )
    budget.refresh_from_db()
    assert budget.generation == 2
    assert spent(budget) == pytest.approx(0.021)  # recounted under the new scope
    assert not BudgetSpend.objects.filter(budget=budget, generation=1).exists()
    # Renaming or a new amount keeps the spend.
    budget_update(budget=budget, data=budget_input_parse({"name": "c", "amount_usd": 3}, base=_input(budget)))
    budget.refresh_from_db()
    assert budget.generation == 2 and spent(budget) == pytest.approx(0.021)


def _input(budget: Budget):
    from budgets.inputs import budget_input_of

    return budget_input_of(budget, [c.id for c in budget.channels.all()])


def test_no_budgets_costs_no_query(project, django_assert_num_queries):
    spend.rules_for_project(project.id)  # the cache, warm
    events = [call(NOW)]
    with django_assert_num_queries(0):
        spend.budget_spend_add(project_id=project.id, received_at=NOW, calls=((e, 1.0) for e in events))


@pytest.mark.django_db(transaction=True)  # each batch commits: a foreign key would be checked
def test_a_budget_deleted_elsewhere_never_fails_ingest(project, instant_counting, settings):
    """Another process deleted the budget; this one's cache still has it for a
    few seconds: the batch is stored, the orphan row is harmless."""
    budget = make(project, "gone")
    settings.BUDGETS_CACHE_SECONDS = 60
    spend.rules_for_project(project.id)  # cached here for a minute
    Budget.objects.filter(id=budget.id).delete()  # as another process would, without touching this cache
    assert ingest(project.id, [call(NOW)]) == 1
    assert BudgetSpend.objects.filter(budget_id=budget.id).count() == 1
