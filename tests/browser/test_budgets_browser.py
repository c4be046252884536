"""Budgets in a real browser: add a webhook channel (its signing secret shown
once), send a test to a real loopback receiver that verifies the signature,
create a budget on customer=acme with the scope picker, and read the alert
history.  Celery runs in-process here (eager) so the test's send is real."""

from __future__ import annotations

import pytest

from budgets.models import Budget, Channel, Delivery
from llmobserve_site.celery import app
from tests.browser.conftest import login
from tests.budgets.receiver import Receiver

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def eager():
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_budget_channel_test_and_history(page, screenshot, owner, project, eager):
    receiver = Receiver().start()
    try:
        login(page, "olivia", "pw-olivia-123", next_path="/dashboard/budgets/?project=acme")
        page.wait_for_selector("#channel-form")
        # A webhook channel: its secret is shown this once, its URL never again.
        page.select_option("#channel-kind", "webhook")
        page.fill("#channel-name", "ops hook")
        page.fill("#channel-target", receiver.url)
        page.click("#channel-save")
        secret = page.locator("#secret-value").inner_text().strip()
        assert len(secret) == 64 and secret == Channel.objects.get().signing_secret
        receiver.secret = secret
        screenshot("budgets-channel-secret")
        page.goto("/dashboard/budgets/?project=acme")
        assert secret not in page.content() and "/hook" not in page.locator("#channel-table").inner_text()
        # Send a test: the receiver gets a signed JSON body.
        page.click("#channel-table tr[data-channel] button:has-text('Send a test')")
        page.wait_for_selector("#history-table tr[data-delivery]")
        assert len(receiver.requests) == 1 and receiver.requests[0].signed_ok is True
        assert receiver.requests[0].json["kind"] == "test"
        row = page.locator("#history-table tr[data-delivery]").first.inner_text()
        assert "test" in row and "sent" in row and "ops hook" in row
        # A budget on customer=acme, $5 a day, notifying the hook.
        page.click("#new-budget")
        page.fill("#id_name", "acme daily")
        page.fill("#id_amount_usd", "5")
        page.select_option("#id_period", "day")
        page.fill("#id_attribute_key", "customer")
        page.fill("#id_attribute_value", "acme")
        page.check("input[name=channels]")
        page.click("#budget-save")
        page.wait_for_selector("tr[data-budget] svg.budget-bar")
        text = page.locator("#budgets").inner_text()
        assert "acme daily" in text and "customer=acme" in text and "ok" in text
        budget = Budget.objects.get()
        assert budget.amount_usd == 5 and list(budget.channels.values_list("name", flat=True)) == ["ops hook"]
        # The history refreshes in place (htmx) and as a link.
        page.click("#history a:has-text('Refresh')")
        page.wait_for_selector("#history-table tr[data-delivery]")
        assert Delivery.objects.get().status == "sent"
        screenshot("budgets")
    finally:
        receiver.stop()
