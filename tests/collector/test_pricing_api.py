"""GET/PUT /pricing, the registry file, the admin, and the commands."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from events.models import Event
from pricing.models import Price
from pricing.services import REGISTRY_PATH
from tests.conftest import Api, make_event

pytestmark = pytest.mark.django_db


def test_registry_is_loaded_on_migrate_with_cheaper_alternatives(api: Api):
    data = json.loads(REGISTRY_PATH.read_text())
    # Only what the maintained source lacks is stored, each row naming its source.
    assert Price.objects.count() == len(data["prices"])
    assert set(Price.objects.values_list("source", flat=True)) == {"registry"}
    assert all(Price.objects.values_list("note", flat=True))
    pinecone = Price.objects.get(provider="pinecone", model="*")
    assert (pinecone.per_1m_read_units, pinecone.per_1m_write_units) == (16.0, 4.0)
    prices = {(p["provider"], p["model"]): p for p in api.get("/pricing").json()["prices"]}
    assert prices[("openai", "gpt-4o")]["cheaper_alternative"] == "gpt-4o-mini"
    assert prices[("openai", "gpt-4.1")]["cheaper_alternative"] == "gpt-4.1-mini"
    # Every named alternative is itself priced.
    named = {p["cheaper_alternative"] for p in prices.values() if p["cheaper_alternative"]}
    assert named <= {model for _, model in prices}


def test_get_pricing_one_row_per_model(api: Api, admin_key):
    Api(admin_key).put(
        "/pricing",
        {
            "prices": [
                {
                    "provider": "openai",
                    "model": "gpt-4o",
                    "input_per_1m": 2.0,
                    "output_per_1m": 8.0,
                    "effective_from": "2026-01-01",
                }
            ]
        },
    )
    prices = api.get("/pricing").json()["prices"]
    gpt4o = [p for p in prices if p["model"] == "gpt-4o"]
    assert len(gpt4o) == 1
    assert gpt4o[0]["input_per_1m"] == 2.0
    assert gpt4o[0]["effective_from"] == "2026-01-01T00:00:00Z"
    assert gpt4o[0]["source"] == "project"  # an API key sets its own project's prices
    assert set(gpt4o[0]) >= {
        "provider",
        "model",
        "input_per_1m",
        "cached_input_per_1m",
        "output_per_1m",
        "per_1m_read_units",
        "per_1m_write_units",
        "per_request",
        "cheaper_alternative",
        "effective_from",
    }


def test_put_adds_a_version_effective_now_by_default(admin_key, project):
    before = Price.objects.filter(model="gpt-4o").count()
    response = Api(admin_key).put(
        "/pricing", {"prices": [{"provider": "openai", "model": "gpt-4o", "input_per_1m": 1.0, "output_per_1m": 4.0}]}
    )
    assert response.status_code == 200
    assert Price.objects.filter(model="gpt-4o").count() == before + 1
    # An API key belongs to one project: its prices are that project's.
    assert Price.objects.get(model="gpt-4o", input_per_1m=1.0).project_id == project.id
    row = next(p for p in response.json()["prices"] if p["model"] == "gpt-4o")
    assert (row["input_per_1m"], row["source"], row["project"]) == (1.0, "project", project.name)


def test_put_needs_an_admin_key_or_the_price_permissions(api: Api, client, owner, staff, price_editor):
    payload = {"prices": [{"provider": "openai", "model": "x", "input_per_1m": 1}]}
    assert api.put("/pricing", payload).status_code == 403
    client.force_login(owner)
    assert client.put("/pricing", json.dumps(payload), content_type="application/json").status_code == 403
    # Staff alone is not enough: global prices need the change-price permission.
    client.force_login(staff)
    assert client.put("/pricing", json.dumps(payload), content_type="application/json").status_code == 403
    assert not Price.objects.filter(model="x").exists()
    client.force_login(price_editor)
    assert client.put("/pricing", json.dumps(payload), content_type="application/json").status_code == 200
    assert Price.objects.get(model="x").project_id is None


def test_another_projects_admin_key_cannot_touch_global_or_shared_prices(project, other_project):
    """The audit's reproduction: project B's admin key PUT gpt-4o-mini with an
    existing effective_from and edited that price in place for every project."""
    from projects.models import ApiKey

    stored = Price.objects.create(
        provider="openai",
        model="gpt-4o-mini",
        input_per_1m=0.15,
        effective_from=dt.datetime(2024, 7, 18, tzinfo=dt.UTC),
    )
    b_admin = ApiKey.generate(project=other_project, is_admin=True)[1]
    response = Api(b_admin).put(
        "/pricing",
        {
            "prices": [
                {"provider": "openai", "model": "gpt-4o-mini", "input_per_1m": 150.0, "effective_from": "2024-07-18"}
            ]
        },
    )
    assert response.status_code == 200, response.content
    stored.refresh_from_db()
    assert stored.input_per_1m == 0.15  # the global row is untouched
    assert Price.objects.get(model="gpt-4o-mini", input_per_1m=150.0).project_id == other_project.id
    # Project A still pays the list price.
    key_a = ApiKey.generate(project=project)[1]
    Api(key_a).post_events(
        [make_event(event_id="a-mini", model="gpt-4o-mini", input_tokens=1_000_000, output_tokens=0)]
    )
    assert Event.objects.get(event_id="a-mini").cost_usd == pytest.approx(0.15, abs=1e-9)


def test_a_put_never_edits_a_stored_version(price_editor, client):
    client.force_login(price_editor)
    first = {"prices": [{"provider": "acme", "model": "m", "input_per_1m": 1.0, "effective_from": "2026-01-01"}]}
    assert client.put("/pricing", json.dumps(first), content_type="application/json").status_code == 200
    again = {"prices": [{"provider": "acme", "model": "m", "input_per_1m": 1000.0, "effective_from": "2026-01-01"}]}
    response = client.put("/pricing", json.dumps(again), content_type="application/json")
    assert response.status_code == 409
    assert "never edited in place" in response.json()["detail"]
    assert list(Price.objects.filter(model="m").values_list("input_per_1m", flat=True)) == [1.0]
    later = {"prices": [{"provider": "acme", "model": "m", "input_per_1m": 2.0, "effective_from": "2026-02-01"}]}
    assert client.put("/pricing", json.dumps(later), content_type="application/json").status_code == 200
    assert Price.objects.filter(model="m").count() == 2


def test_put_with_a_session_keeps_csrf_on(price_editor):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(price_editor)
    payload = {"prices": [{"provider": "openai", "model": "y", "input_per_1m": 1}]}
    assert strict.put("/pricing", json.dumps(payload), content_type="application/json").status_code == 403
    assert not Price.objects.filter(model="y").exists()


@pytest.mark.parametrize(
    "payload",
    [
        {"prices": [{"provider": "openai"}]},
        {"prices": [{"provider": "openai", "model": "m", "input_per_1m": -1}]},
        {"prices": [{"provider": "openai", "model": "m", "input_per_1m": "cheap"}]},
        {"prices": [{"provider": "openai", "model": "m", "effective_from": "soon"}]},
        {"prices": []},
        {"prices": "all"},
        ["not", "objects"],
    ],
)
def test_put_rejects_bad_rows_and_stores_nothing(admin_key, payload):
    before = Price.objects.count()
    response = Api(admin_key).put("/pricing", payload)
    assert response.status_code == 400
    assert Price.objects.count() == before


def test_load_pricing_is_idempotent_and_takes_a_path(tmp_path):
    before = Price.objects.count()
    call_command("load_pricing")
    assert Price.objects.count() == before
    custom = tmp_path / "prices.json"
    custom.write_text(
        json.dumps({"prices": [{"provider": "x", "model": "m", "input_per_1m": 1, "effective_from": "2020-01-01"}]})
    )
    call_command("load_pricing", str(custom))
    assert Price.objects.count() == before + 1


def test_load_pricing_reports_a_bad_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(CommandError):
        call_command("load_pricing", str(bad))
    with pytest.raises(CommandError):
        call_command("load_pricing", str(tmp_path / "missing.json"))


def test_create_api_key_prints_the_key_alone_on_the_last_line(capsys):
    from projects.models import ApiKey, Project

    call_command("create_api_key", project="newproj")
    out = capsys.readouterr().out.strip().splitlines()
    key = out[-1]
    assert key.startswith("lo_") and " " not in key
    assert Project.objects.filter(name="newproj").exists()
    assert Api(key).get("/runs/latest").status_code == 200
    call_command("create_api_key", project="newproj", admin=True)
    admin = capsys.readouterr().out.strip().splitlines()[-1]
    assert ApiKey.objects.filter(project__name="newproj").count() == 2
    assert Api(admin).put("/pricing", {"prices": [{"provider": "p", "model": "m"}]}).status_code == 200


def test_admin_lists_prices_for_staff(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-123")
    client.force_login(admin)
    response = client.get("/admin/pricing/price/")
    assert response.status_code == 200
    assert b"llama-text-embed-v2" in response.content
    price = Price.objects.get(model="llama-text-embed-v2")
    assert client.get(f"/admin/pricing/price/{price.id}/change/").status_code == 200
