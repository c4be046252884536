"""The Budgets page: owners change, members read, outsiders get 404; the signing secret is shown once."""

from __future__ import annotations

import pytest
from django.test import Client

from budgets.models import Budget, Channel, Delivery

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


def test_owner_creates_a_budget_and_a_webhook_whose_secret_is_shown_once(project, owner):
    c = client_for(owner)
    r = c.post(
        "/dashboard/budgets/channels/?project=acme",
        {"kind": "webhook", "name": "hook", "target": "https://hooks.example.com/T000/secret-path-9f3a"},
    )
    assert r.status_code == 200
    channel = Channel.objects.get()
    assert len(channel.signing_secret) == 64
    page = r.content.decode()
    assert channel.signing_secret in page
    assert "secret-path" not in page  # the URL is a secret too: only its hint
    assert "https://hooks.example.com/…9f3a" in page
    again = c.get("/dashboard/budgets/?project=acme").content.decode()
    assert channel.signing_secret not in again and "secret-path" not in again
    r = c.post(
        "/dashboard/budgets/new/?project=acme",
        {
            "name": "acme daily",
            "amount_usd": "5",
            "period": "day",
            "mode": "soft",
            "thresholds": "50, 80, 100",
            "attribute_key": "customer",
            "attribute_value": "acme",
            "channels": [str(channel.id)],
        },
    )
    assert r.status_code == 302
    budget = Budget.objects.get()
    assert (budget.amount_usd, budget.scope_attribute_key, budget.scope_attribute_value) == (5.0, "customer", "acme")
    assert list(budget.channels.all()) == [channel]
    page = c.get("/dashboard/budgets/?project=acme").content.decode()
    assert "acme daily" in page and "customer=acme" in page and 'class="budget-bar"' in page
    # Send a test: a delivery row, queued.
    r = c.post(f"/dashboard/budgets/channels/{channel.id}/test/")
    assert r.status_code == 302
    assert Delivery.objects.get().kind == "test"
    assert 'data-delivery="' in c.get("/dashboard/budgets/?project=acme").content.decode()


def test_bad_form_input_is_a_400_with_messages(project, owner):
    c = client_for(owner)
    r = c.post("/dashboard/budgets/new/?project=acme", {"name": "", "amount_usd": "-3", "period": "year"})
    assert r.status_code == 400
    page = r.content.decode()
    assert "amount_usd" in page and "period" in page and "name" in page
    r = c.post("/dashboard/budgets/channels/?project=acme", {"kind": "email", "name": "e", "target": "not-an-address"})
    assert r.status_code == 400 and "is not an email address" in r.content.decode()
    assert not Budget.objects.exists() and not Channel.objects.exists()


def test_members_read_outsiders_get_404(project, owner, member, outsider):
    budget = Budget.objects.create(
        project=project,
        name="b",
        amount_usd=1,
        period="day",
        counted_from=project.created_at,
        recount_from=project.created_at,
    )
    channel = Channel.objects.create(project=project, kind="email", name="e", target="a@example.com", target_hint="a…")
    m = client_for(member)
    page = m.get("/dashboard/budgets/?project=acme")
    assert page.status_code == 200 and "Send a test" not in page.content.decode()
    assert m.get(f"/dashboard/budgets/{budget.id}/").status_code == 403
    assert m.post(f"/dashboard/budgets/{budget.id}/delete/").status_code == 403
    assert m.post(f"/dashboard/budgets/channels/{channel.id}/test/").status_code == 403
    o = client_for(outsider)
    assert o.get("/dashboard/budgets/?project=acme").status_code == 404
    assert o.get(f"/dashboard/budgets/{budget.id}/").status_code == 404
    assert o.post(f"/dashboard/budgets/{budget.id}/delete/").status_code == 404
    assert o.post(f"/dashboard/budgets/channels/{channel.id}/test/").status_code == 404
    assert Budget.objects.exists() and not Delivery.objects.exists()
    assert client_for(owner).post(f"/dashboard/budgets/{budget.id}/delete/").status_code == 302
    assert not Budget.objects.exists()


def test_history_is_an_htmx_fragment(project, owner):
    page = client_for(owner).get(
        "/dashboard/budgets/?project=acme", headers={"HX-Request": "true", "HX-Target": "history"}
    )
    body = page.content.decode()
    assert page.status_code == 200 and 'id="history"' in body and "<html" not in body


def test_owner_edits_a_budget_and_a_new_scope_is_recounted(project, owner):
    c = client_for(owner)
    assert (
        c.post(
            "/dashboard/budgets/new/?project=acme",
            {"name": "b", "amount_usd": "5", "period": "day", "mode": "soft", "thresholds": "50, 80, 100"},
        ).status_code
        == 302
    )
    budget = Budget.objects.get()
    page = c.get(f"/dashboard/budgets/{budget.id}/")
    assert page.status_code == 200 and 'value="50, 80, 100"' in page.content.decode()
    r = c.post(
        f"/dashboard/budgets/{budget.id}/",
        {"name": "b", "amount_usd": "7", "period": "week", "mode": "hard", "thresholds": "90", "model": "gpt-4o"},
    )
    assert r.status_code == 302
    budget.refresh_from_db()
    assert (budget.amount_usd, budget.period, budget.mode, budget.thresholds) == (7.0, "week", "hard", [90])
    assert (budget.scope_model, budget.generation) == ("gpt-4o", 2)
