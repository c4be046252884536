"""SPEC §3: exact costs at ingest, versioned prices, reprice."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command

from events.models import DailyRollup, Event, Run
from pricing.models import Price
from tests.conftest import Api, make_event

pytestmark = pytest.mark.django_db

EXACT = 1e-9


def cost_of(event_id: str) -> float:
    return Event.objects.get(event_id=event_id).cost_usd


def test_cached_tokens_use_the_cached_rate(api: Api):
    api.post_events(
        [make_event(event_id="c", model="gpt-4o", input_tokens=1200, cached_input_tokens=1024, output_tokens=150)]
    )
    # gpt-4o: $2.50 input, $1.25 cached input, $10 output per 1M.
    expected = 176 * 2.5 / 1e6 + 1024 * 1.25 / 1e6 + 150 * 10 / 1e6
    assert cost_of("c") == pytest.approx(expected, abs=EXACT)
    assert Event.objects.get(event_id="c").priced is True


def test_null_cached_rate_means_the_input_rate(api: Api):
    api.post_events(
        [make_event(event_id="t", model="gpt-4-turbo", input_tokens=1000, cached_input_tokens=400, output_tokens=10)]
    )
    assert cost_of("t") == pytest.approx(1000 * 10 / 1e6 + 10 * 30 / 1e6, abs=EXACT)


def test_snapshots_get_their_own_family_price(api: Api):
    # "gpt-4o-mini-2024-07-18" starts with both gpt-4o and gpt-4o-mini: it is a gpt-4o-mini.
    api.post_events(
        [
            make_event(event_id="mini", model="gpt-4o-mini-2024-07-18", input_tokens=1_000_000, output_tokens=0),
            make_event(event_id="big", model="gpt-4o-2024-08-06", input_tokens=1_000_000, output_tokens=0),
        ]
    )
    assert cost_of("mini") == pytest.approx(0.15, abs=EXACT)
    assert cost_of("big") == pytest.approx(2.5, abs=EXACT)


def test_reasoning_tokens_are_part_of_output(api: Api):
    api.post_events(
        [make_event(event_id="o", model="o3-mini", input_tokens=100, output_tokens=1000, reasoning_tokens=800)]
    )
    assert cost_of("o") == pytest.approx(100 * 1.1 / 1e6 + 1000 * 4.4 / 1e6, abs=EXACT)


def test_vector_units_and_per_request_price(api: Api):
    api.post_events(
        [
            make_event(
                event_id="pc",
                span_type="vector_db",
                provider="pinecone",
                model=None,
                endpoint="query",
                input_tokens=0,
                output_tokens=0,
                read_units=6,
                write_units=0,
            )
        ]
    )
    assert cost_of("pc") == pytest.approx(6 * 16 / 1e6, abs=EXACT)
    Price.objects.create(
        provider="acme-search",
        model="v1",
        per_request=0.002,
        per_1m_read_units=10,
        effective_from=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
    )
    api.post_events(
        [make_event(event_id="req", provider="acme-search", model="v1", input_tokens=0, output_tokens=0, read_units=3)]
    )
    assert cost_of("req") == pytest.approx(0.002 + 3 * 10 / 1e6, abs=EXACT)


def test_unpriced_model_uses_client_cost_or_zero(api: Api):
    api.post_events(
        [
            make_event(event_id="u1", provider="mystery", model="m-1", cost_usd=0.42),
            make_event(event_id="u2", provider="mystery", model="m-1"),
        ]
    )
    u1, u2 = Event.objects.get(event_id="u1"), Event.objects.get(event_id="u2")
    assert (u1.cost_usd, u1.priced) == (0.42, False)
    assert (u2.cost_usd, u2.priced) == (0.0, False)
    assert DailyRollup.objects.get(model="m-1").unpriced_calls == 2


def test_client_cost_is_ignored_when_a_price_matches(api: Api):
    api.post_events([make_event(event_id="p", model="gpt-4o", input_tokens=1000, output_tokens=0, cost_usd=99.0)])
    assert cost_of("p") == pytest.approx(1000 * 2.5 / 1e6, abs=EXACT)


def test_event_before_the_first_price_is_unpriced(api: Api):
    Price.objects.create(
        provider="acme", model="acme-large", input_per_1m=1.0, effective_from=dt.datetime(2025, 4, 14, tzinfo=dt.UTC)
    )
    api.post_events(
        [
            make_event(event_id="old", provider="acme", model="acme-large", started_at="2024-01-01T00:00:00Z"),
            make_event(event_id="new", provider="acme", model="acme-large", started_at="2025-05-01T00:00:00Z"),
        ]
    )
    old, new = Event.objects.get(event_id="old"), Event.objects.get(event_id="new")
    assert (old.priced, old.cost_status) == (False, "unpriced")
    assert (new.priced, new.cost_status) == (True, "exact")


def test_price_change_leaves_older_events_at_their_old_price_until_reprice(api: Api, admin_key):
    api.post_events(
        [
            make_event(
                event_id="before",
                model="gpt-4o",
                input_tokens=1_000_000,
                output_tokens=0,
                run_id="r1",
                started_at="2026-11-20T00:00:00Z",
            )
        ]
    )
    assert cost_of("before") == pytest.approx(2.5, abs=EXACT)
    response = Api(admin_key).put(
        "/pricing",
        {
            "prices": [
                {
                    "provider": "openai",
                    "model": "gpt-4o",
                    "input_per_1m": 2.0,
                    "cached_input_per_1m": 1.0,
                    "output_per_1m": 8.0,
                    "cheaper_alternative": "gpt-4o-mini",
                    "effective_from": "2026-11-21T00:00:00Z",
                }
            ]
        },
    )
    assert response.status_code == 200, response.content
    api.post_events(
        [
            make_event(
                event_id="after",
                model="gpt-4o",
                input_tokens=1_000_000,
                output_tokens=0,
                run_id="r2",
                started_at="2026-11-22T00:00:00Z",
            )
        ]
    )
    assert cost_of("after") == pytest.approx(2.0, abs=EXACT)
    assert cost_of("before") == pytest.approx(2.5, abs=EXACT)
    # A later event ingested with an earlier started_at still gets the old price.
    api.post_events(
        [
            make_event(
                event_id="late",
                model="gpt-4o",
                input_tokens=1_000_000,
                output_tokens=0,
                run_id="r3",
                started_at="2026-11-20T12:00:00Z",
            )
        ]
    )
    assert cost_of("late") == pytest.approx(2.5, abs=EXACT)


def test_reprice_recomputes_events_and_aggregates(api: Api, project):
    api.post_events(
        [
            make_event(
                event_id="a",
                model="gpt-4o",
                input_tokens=1_000_000,
                output_tokens=0,
                run_id="r",
                section="s",
                started_at="2026-11-20T00:00:00Z",
            )
        ]
    )
    assert Run.objects.get(run_id="r").cost_usd == pytest.approx(2.5, abs=EXACT)
    # A negotiated price added behind the events' backs (as in the admin).
    Price.objects.create(
        provider="openai", model="gpt-4o", input_per_1m=3.0, effective_from=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    )
    assert cost_of("a") == pytest.approx(2.5, abs=EXACT)
    out = StringIO()
    call_command("reprice", since="2026-11-19", stdout=out)
    assert "Repriced 1 events" in out.getvalue()
    assert "1 runs and 1 daily rollups rebuilt" in out.getvalue()
    assert "$2.500000 -> $3.000000 (+0.500000)" in out.getvalue()
    assert cost_of("a") == pytest.approx(3.0, abs=EXACT)
    assert Run.objects.get(run_id="r").cost_usd == pytest.approx(3.0, abs=EXACT)
    assert Run.objects.get(run_id="r").calls == 1
    rollup = DailyRollup.objects.get(project=project, section="s")
    assert (rollup.cost_usd, rollup.calls) == (pytest.approx(3.0, abs=EXACT), 1)


def test_reprice_since_leaves_earlier_events(api: Api):
    api.post_events(
        [
            make_event(
                event_id="early",
                model="gpt-4o",
                input_tokens=1_000_000,
                output_tokens=0,
                run_id="r1",
                started_at="2026-11-01T00:00:00Z",
            ),
            make_event(
                event_id="later",
                model="gpt-4o",
                input_tokens=1_000_000,
                output_tokens=0,
                run_id="r2",
                started_at="2026-11-25T00:00:00Z",
            ),
        ]
    )
    Price.objects.create(
        provider="openai", model="gpt-4o", input_per_1m=1.0, effective_from=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    )
    call_command("reprice", since="2026-11-20T00:00:00Z")
    assert cost_of("early") == pytest.approx(2.5, abs=EXACT)
    assert cost_of("later") == pytest.approx(1.0, abs=EXACT)


def test_reprice_rejects_a_bad_date():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--since"):
        call_command("reprice", since="last tuesday")
