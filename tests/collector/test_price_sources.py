"""SPEC §3: where prices come from (project, global, registry, the maintained
source), how model ids match, and GET /pricing/resolve.

Expected figures are OpenAI's published prices (openai.com/api/pricing, USD
per 1M tokens), written here by hand.
"""

from __future__ import annotations

import datetime as dt

import pytest

from events.models import Event
from pricing.models import Price
from projects.models import ApiKey, Project
from tests.conftest import Api, make_event

pytestmark = pytest.mark.django_db

EXACT = 1e-9
GPT_4O = (2.5, 1.25, 10.0)  # input, cached input, output
GPT_4O_MINI = (0.15, 0.075, 0.6)


def cost_of(event_id: str) -> float:
    return Event.objects.get(event_id=event_id).cost_usd


def million_in(event_id: str, model: str, **fields: object) -> dict[str, object]:
    return make_event(
        event_id=event_id, run_id=f"r-{event_id}", model=model, input_tokens=1_000_000, output_tokens=0, **fields
    )


def test_a_project_row_wins_for_that_project_only(api: Api, other_api: Api, project):
    Price.objects.create(
        project=project,
        provider="openai",
        model="gpt-4o",
        input_per_1m=1.0,
        effective_from=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
    api.post_events([million_in("mine", "gpt-4o-2024-08-06")])
    other_api.post_events([million_in("theirs", "gpt-4o-2024-08-06")])
    assert cost_of("mine") == pytest.approx(1.0, abs=EXACT)
    assert cost_of("theirs") == pytest.approx(GPT_4O[0], abs=EXACT)
    assert Event.objects.get(event_id="mine").price_source.startswith("project: openai/gpt-4o")
    assert Event.objects.get(event_id="theirs").price_source.startswith("genai-prices: openai/gpt-4o")


def test_a_project_discount_applies_to_list_prices(api: Api, other_api: Api, project):
    project.price_discount_percent = 20
    project.save()
    api.post_events([million_in("d", "gpt-4o")])
    other_api.post_events([million_in("full", "gpt-4o")])
    assert cost_of("d") == pytest.approx(GPT_4O[0] * 0.8, abs=EXACT)
    assert Event.objects.get(event_id="d").cost_details == {
        "input_tokens": pytest.approx(2.5, abs=EXACT),
        "discount": pytest.approx(-0.5, abs=EXACT),
    }
    assert cost_of("full") == pytest.approx(GPT_4O[0], abs=EXACT)


def test_a_global_row_matches_its_id_and_snapshots_but_never_another_family(api: Api):
    Price.objects.create(
        provider="acme", model="acme-large", input_per_1m=3.0, effective_from=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    )
    Price.objects.create(
        provider="acme",
        model="acme-turbo",
        input_per_1m=7.0,
        effective_from=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
    )
    api.post_events(
        [
            million_in("exact", "acme-large", provider="acme"),
            million_in("dated", "acme-large-2026-01-01", provider="acme"),
            million_in("short", "acme-turbo-0125", provider="acme"),
            million_in("family", "acme-large-v2", provider="acme"),
        ]
    )
    assert cost_of("exact") == pytest.approx(3.0, abs=EXACT)
    assert cost_of("dated") == pytest.approx(3.0, abs=EXACT)
    assert cost_of("short") == pytest.approx(7.0, abs=EXACT)
    # A prefix is not a match: acme-large-v2 is another model.
    assert Event.objects.get(event_id="family").cost_status == "unpriced"


def test_a_row_may_declare_a_pattern(api: Api):
    Price.objects.create(
        provider="selfhost",
        model="llama-any",
        match_pattern=r"llama-3\.\d+-\d+b-instruct",
        input_per_1m=0.2,
        effective_from=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
    )
    api.post_events(
        [
            million_in("p1", "llama-3.1-70b-instruct", provider="selfhost"),
            million_in("p2", "llama-3.1-70b-base", provider="selfhost"),
        ]
    )
    assert cost_of("p1") == pytest.approx(0.2, abs=EXACT)
    assert Event.objects.get(event_id="p2").cost_status == "unpriced"


@pytest.mark.parametrize(
    ("model", "usd_per_1m_in"),
    [
        ("gpt-5.4-mini-2026-03-17", 0.75),  # not gpt-5's $1.25
        ("o3-pro", 20.0),  # not o3's $2
        ("gpt-4o-2024-05-13", 5.0),  # its own snapshot price, not gpt-4o's $2.50
        ("gpt-4o-mini-2024-07-18", 0.15),
    ],
)
def test_a_prefix_never_crosses_model_families(api: Api, model: str, usd_per_1m_in: float):
    api.post_events([million_in("m", model)])
    assert cost_of("m") == pytest.approx(usd_per_1m_in, abs=EXACT)


def test_azure_from_the_provider_or_the_host(api: Api):
    api.post_events(
        [
            make_event(
                event_id="az1",
                run_id="a1",
                provider="azure",
                model="gpt-35-turbo",
                input_tokens=1000,
                output_tokens=300,
            ),
            make_event(
                event_id="az2",
                run_id="a2",
                provider=None,
                provider_host="acme.openai.azure.com",
                model="gpt-35-turbo",
                input_tokens=1000,
                output_tokens=300,
            ),
        ]
    )
    # gpt-3.5-turbo on Azure: $0.50 / $1.50 per 1M -> $0.00095 (the row).
    for event_id in ("az1", "az2"):
        assert cost_of(event_id) == pytest.approx(1000 * 0.5 / 1e6 + 300 * 1.5 / 1e6, abs=EXACT)


def test_history_before_a_price_change_gets_the_price_of_its_date(api: Api):
    api.post_events(
        [
            million_in("then", "gpt-4o", started_at="2024-06-01T00:00:00Z"),
            million_in("now", "gpt-4o", started_at="2026-06-01T00:00:00Z"),
        ]
    )
    assert cost_of("then") == pytest.approx(5.0, abs=EXACT)  # gpt-4o at launch: $5 / $15
    assert cost_of("now") == pytest.approx(2.5, abs=EXACT)


def test_resolve_says_what_a_call_would_cost_and_why(api: Api):
    body = api.get("/pricing/resolve", provider="openai", model="gpt-5.4-mini-2026-03-17", service_tier="flex").json()
    matched = body["matched"]
    assert (matched["provider"], matched["model"], matched["source"]) == ("openai", "gpt-5.4-mini", "genai-prices")
    # gpt-5.4-mini on flex: half of $0.75 / $0.075 / $4.50.
    assert matched["rates"]["input_tokens"]["usd_per_1m"] == pytest.approx(0.375, abs=EXACT)
    assert matched["rates"]["cached_input_tokens"]["usd_per_1m"] == pytest.approx(0.0375, abs=EXACT)
    assert matched["rates"]["output_tokens"]["usd_per_1m"] == pytest.approx(2.25, abs=EXACT)
    assert body["service_tier"] == "flex"
    nothing = api.get("/pricing/resolve", provider="openai", model="no-such-model").json()
    assert nothing["matched"] is None


def test_resolve_names_a_supplementing_rate_and_rejects_bad_input(api: Api):
    body = api.get("/pricing/resolve", provider="openai", model="gpt-4o-audio-preview").json()
    rates = body["matched"]["rates"]
    assert rates["input_audio_tokens"]["usd_per_1m"] == pytest.approx(40.0, abs=EXACT)
    assert "openai.com" in rates["input_audio_tokens"]["source"]
    assert api.get("/pricing/resolve", provider="openai").status_code == 400
    assert api.get("/pricing/resolve", model="x" * 200).status_code == 400


def test_resolve_needs_a_key(client):
    assert client.get("/pricing/resolve", {"model": "gpt-4o"}).status_code in (401, 403)


def test_put_with_a_project_writes_a_project_row(admin_key, project, other_project):
    response = Api(admin_key).put(
        "/pricing",
        {
            "project": project.name,
            "prices": [
                {"provider": "openai", "model": "ft:gpt-4o-mini:acme::x1", "input_per_1m": 0.2, "output_per_1m": 0.9}
            ],
        },
    )
    assert response.status_code == 200, response.content
    row = Price.objects.get(model="ft:gpt-4o-mini:acme::x1")
    assert row.project_id == project.id
    listed = {(p["model"], p["source"]) for p in response.json()["prices"]}
    assert ("ft:gpt-4o-mini:acme::x1", "project") in listed
    # A key may not write another project's prices.
    denied = Api(admin_key).put(
        "/pricing", {"project": other_project.name, "prices": [{"provider": "openai", "model": "m", "input_per_1m": 1}]}
    )
    assert denied.status_code == 403
    assert not Price.objects.filter(project=other_project).exists()


def test_other_projects_do_not_see_a_project_row(api: Api, project, other_project):
    Price.objects.create(
        project=project,
        provider="openai",
        model="secret-ft",
        input_per_1m=1,
        effective_from=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
    )
    other_key = ApiKey.generate(project=other_project)[1]
    assert "secret-ft" in {p["model"] for p in api.get("/pricing").json()["prices"]}
    assert "secret-ft" not in {p["model"] for p in Api(other_key).get("/pricing").json()["prices"]}
    assert Api(other_key).get("/pricing/resolve", provider="openai", model="secret-ft").json()["matched"] is None


def test_get_pricing_names_every_rows_source(api: Api):
    prices = api.get("/pricing").json()["prices"]
    sources = {(p["provider"], p["model"]): p["source"] for p in prices}
    assert sources[("openai", "gpt-5")] == "genai-prices"
    assert sources[("pinecone", "*")] == "registry"
    gpt5 = next(p for p in prices if p["model"] == "gpt-5" and p["provider"] == "openai")
    assert "service_tier=flex" in gpt5["variants"] and "service_tier=priority" in gpt5["variants"]
    assert gpt5["per_1m_units"]["web_search_calls"] == pytest.approx(10_000.0)  # $10 per 1k calls
    everything = api.get("/pricing", provider="all").json()["prices"]
    assert len(everything) > len(prices)
    assert any(p["provider"] == "anthropic" for p in everything)


def test_migrate_drops_only_the_old_shipped_copies():
    """0002 deletes stored copies of the first release's registry rows (they
    would shadow the maintained source as overrides) and keeps edited ones."""
    from importlib import import_module

    from django.apps import apps

    migration = import_module("pricing.migrations.0002_price_sources_and_variants")
    start = dt.datetime(2024, 8, 6, tzinfo=dt.UTC)
    Price.objects.create(
        provider="openai",
        model="gpt-4o",
        input_per_1m=2.5,
        cached_input_per_1m=1.25,
        output_per_1m=10.0,
        effective_from=start,
    )
    Price.objects.create(
        provider="openai",
        model="gpt-4o-mini",
        input_per_1m=0.1,
        cached_input_per_1m=0.075,
        output_per_1m=0.6,
        effective_from=dt.datetime(2024, 7, 18, tzinfo=dt.UTC),
    )
    migration.drop_old_shipped_rows(apps, None)
    assert not Price.objects.filter(model="gpt-4o", effective_from=start).exists()
    assert Price.objects.filter(model="gpt-4o-mini", input_per_1m=0.1).exists()  # a user's edit stays


def test_project_discount_must_be_a_percentage(project):
    from django.core.exceptions import ValidationError

    project.price_discount_percent = 120
    with pytest.raises(ValidationError):
        project.full_clean()
    assert Project.objects.get(id=project.id).price_discount_percent == 0
