"""POST /events: SPEC §2's rules, one test each."""

from __future__ import annotations

import gzip
import json

import pytest

from events.models import DailyRollup, Event, Run, RunSection
from tests.conftest import SPEC_EXAMPLE_TREE, Api, make_event

pytestmark = pytest.mark.django_db


# SPEC §2's example batch exactly: a tool section inside an agent section, one call in it.
SPEC_EXAMPLE = SPEC_EXAMPLE_TREE[:3]


def test_spec_example_is_accepted_and_stored(api: Api, project):
    response = api.post_events({"events": SPEC_EXAMPLE})
    assert response.status_code == 200
    assert response.json() == {"accepted": 3, "duplicates": 0, "rejected": []}
    assert Event.objects.filter(project=project).count() == 3
    call = Event.objects.get(event_id="6f1c-03")
    assert call.attributes == {"user_id": "u-7"}
    assert call.cached_input_tokens == 1024
    run = Run.objects.get(project=project, run_id="run-42")
    assert (run.calls, run.events, run.input_tokens, run.output_tokens) == (1, 3, 1200, 150)
    assert run.service == "support-bot"
    assert run.duration_ms == pytest.approx(1840.0)


def test_bare_list_is_accepted(api: Api, project):
    response = api.post_events([make_event(), make_event()])
    assert response.status_code == 200
    assert response.json()["accepted"] == 2


def test_gzip_body(api: Api, project):
    response = api.post_events({"events": SPEC_EXAMPLE}, gzip_body=True)
    assert response.status_code == 200
    assert response.json()["accepted"] == 3


def test_resent_batch_counts_duplicates_and_never_double_counts(api: Api, project):
    assert api.post_events({"events": SPEC_EXAMPLE}).json()["accepted"] == 3
    again = api.post_events({"events": SPEC_EXAMPLE})
    assert again.status_code == 200
    assert again.json() == {"accepted": 0, "duplicates": 3, "rejected": []}
    assert Event.objects.count() == 3
    run = Run.objects.get(run_id="run-42")
    assert (run.calls, run.events, run.input_tokens) == (1, 3, 1200)
    assert run.cost_usd == pytest.approx(0.00322, abs=1e-12)
    assert DailyRollup.objects.get(section="tool:web_search").calls == 1
    assert RunSection.objects.get(section="tool:web_search").calls == 1


def test_same_event_twice_in_one_batch(api: Api, project):
    ev = make_event(event_id="dup")
    body = api.post_events([ev, dict(ev)]).json()
    assert body == {"accepted": 1, "duplicates": 1, "rejected": []}
    assert Event.objects.filter(event_id="dup").count() == 1
    assert Run.objects.get(run_id="run-1").calls == 1


def test_partial_batch_returns_207_and_stores_the_valid_events(api: Api, project):
    good1 = make_event(event_id="good-1")
    bad_tokens = make_event(event_id="bad-1", input_tokens=-5)
    missing = make_event(event_id="bad-2")
    del missing["run_id"]
    bad_type = make_event(event_id="bad-3", span_type="banana")
    good2 = make_event(event_id="good-2")
    response = api.post_events({"events": [good1, bad_tokens, missing, bad_type, good2]})
    assert response.status_code == 207
    body = response.json()
    assert body["accepted"] == 2 and body["duplicates"] == 0
    rejected = {r["index"]: r for r in body["rejected"]}
    assert set(rejected) == {1, 2, 3}
    assert rejected[1]["event_id"] == "bad-1" and "input_tokens" in rejected[1]["errors"]
    assert rejected[2]["event_id"] == "bad-2" and "run_id" in rejected[2]["errors"]
    assert rejected[3]["event_id"] == "bad-3" and "span_type" in rejected[3]["errors"]
    assert set(Event.objects.values_list("event_id", flat=True)) == {"good-1", "good-2"}


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"cached_input_tokens": 200, "input_tokens": 100}, "cached_input_tokens"),
        ({"reasoning_tokens": 50, "output_tokens": 10}, "reasoning_tokens"),
        ({"started_at": "yesterday"}, "started_at"),
        ({"started_at": "2026-11-26T09:00:00"}, "started_at"),  # no offset: ambiguous
        ({"run_id": "r" * 129}, "run_id"),
        ({"status": "maybe"}, "status"),
        ({"attributes": {"blob": "x" * 17000}}, "attributes"),
        ({"attributes": ["not", "an", "object"]}, "attributes"),
        ({"model": "gpt\x00"}, "model"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"input_tokens": 2**63}, "input_tokens"),
        ({"cost_usd": "free"}, "cost_usd"),
    ],
)
def test_each_invalid_field_is_named(api: Api, project, override, field):
    response = api.post_events([make_event(event_id="ok"), make_event(event_id="bad", **override)])
    assert response.status_code == 207
    (rejected,) = response.json()["rejected"]
    assert rejected["index"] == 1
    assert field in rejected["errors"], rejected
    assert Event.objects.filter(event_id="ok").exists()


def test_every_event_rejected_is_400_with_the_reasons(api: Api, project):
    response = api.post_events([make_event(input_tokens="many"), {"not": "an event"}, 7])
    assert response.status_code == 400
    body = response.json()
    assert [r["index"] for r in body["rejected"]] == [0, 1, 2]
    assert body["rejected"][2]["errors"] == {"non_field_errors": ["an event must be a JSON object"]}
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    "raw",
    [b"not json", b'{"events": 5}', b'"a string"', b'{"something": []}', b"", b"[1, 2", b"\xff\xfe"],
)
def test_body_that_is_not_a_list_of_objects_is_400(api: Api, project, raw):
    response = api.post_events(None, raw=raw)
    assert response.status_code == 400
    assert "error" in response.json() or "rejected" in response.json()
    assert Event.objects.count() == 0


def test_bad_gzip_is_400(api: Api, project):
    response = api.client.post(
        "/events",
        data=b"\x1f\x8bnot really gzip",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api.key}",
        HTTP_CONTENT_ENCODING="gzip",
    )
    assert response.status_code == 400


@pytest.mark.parametrize("key", [None, "lo_wrong", ""])
def test_missing_or_wrong_key_is_401(project, key):
    response = Api(key).post_events([make_event()])
    assert response.status_code == 401
    assert Event.objects.count() == 0


def test_revoked_key_is_401(project):
    from projects.models import ApiKey

    key, raw = ApiKey.generate(project=project)
    key.revoked = True
    key.save()
    assert Api(raw).post_events([make_event()]).status_code == 401


def test_over_1000_events_is_413_and_stores_nothing(api: Api, project):
    response = api.post_events([make_event(event_id=f"e{i}") for i in range(1001)])
    assert response.status_code == 413
    assert Event.objects.count() == 0
    assert api.post_events([make_event(event_id=f"e{i}") for i in range(1000)]).json()["accepted"] == 1000


def test_over_5_mib_is_413(api: Api, project):
    padding = "x" * 6000
    events = [make_event(event_id=f"e{i}", name="n", attributes={"p": padding}) for i in range(900)]
    body = json.dumps(events).encode()
    assert len(body) > 5 * 1024 * 1024
    assert api.post_events(None, raw=body).status_code == 413
    assert Event.objects.count() == 0


def test_gzip_bomb_over_5_mib_decompressed_is_413(api: Api, project):
    body = b"[" + b" " * (6 * 1024 * 1024) + b"]"
    compressed = gzip.compress(body)
    assert len(compressed) < 100_000
    response = api.client.post(
        "/events",
        data=compressed,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api.key}",
        HTTP_CONTENT_ENCODING="gzip",
    )
    assert response.status_code == 413


def test_get_on_events_is_405(api: Api):
    assert api.get("/events").status_code == 405


def test_keys_are_stored_hashed(project):
    from projects.models import ApiKey

    key, raw = ApiKey.generate(project=project)
    stored = ApiKey.objects.get(pk=key.pk)
    assert raw not in (stored.key_hash, stored.prefix)
    assert len(stored.key_hash) == 64
    assert all(raw not in str(v) for v in ApiKey.objects.values_list().get(pk=key.pk))


def test_events_land_in_the_keys_project_only(api: Api, other_api: Api, project, other_project):
    api.post_events([make_event(event_id="same-id", run_id="r-a")])
    # The same event_id in another project is a different event.
    assert other_api.post_events([make_event(event_id="same-id", run_id="r-b")]).json()["accepted"] == 1
    assert Event.objects.get(project=project).run_id == "r-a"
    assert Event.objects.get(project=other_project).run_id == "r-b"


def test_run_aggregates_across_batches(api: Api, project):
    api.post_events([make_event(run_id="r", started_at="2026-11-26T10:00:05Z", latency_ms=1000, status="error")])
    api.post_events(
        [
            make_event(run_id="r", started_at="2026-11-26T10:00:00Z", latency_ms=100, input_tokens=7),
            make_event(
                run_id="r",
                span_type="section",
                name="agent:a",
                section="agent:a",
                section_path="agent:a",
                started_at="2026-11-26T09:59:59Z",
                latency_ms=8000,
                provider=None,
                model=None,
                input_tokens=0,
                output_tokens=0,
            ),
        ]
    )
    run = Run.objects.get(run_id="r")
    assert run.calls == 2
    assert run.events == 3
    assert run.input_tokens == 107
    assert run.status == "error"
    assert run.started_at.isoformat() == "2026-11-26T09:59:59+00:00"
    assert run.ended_at.isoformat() == "2026-11-26T10:00:07+00:00"


def test_wire_v11_fields_are_stored_and_bad_ones_rejected_per_event(api: Api):
    good = make_event(
        event_id="v11",
        usage_details={"input_audio_tokens": 40, "web_search_calls": 1},
        price_context={"service_tier": "flex"},
        usage_known=False,
        provider_host="acme.openai.azure.com",
    )
    bad = [
        make_event(event_id="b1", usage_details={"web_search_calls": -1}),
        make_event(event_id="b2", usage_details={"input_audio_tokens": 101}),  # more than input_tokens (100)
        make_event(event_id="b3", usage_details={"bad unit!": 1}),
        make_event(event_id="b4", price_context={"service_tier": 3}),
        make_event(event_id="b5", usage_known="no"),
        make_event(event_id="b6", price_context={"service_tier": "fl\u0000ex"}),
    ]
    response = api.post_events([good, *bad])
    assert response.status_code == 207, response.content
    rejected = {r["event_id"]: r["errors"] for r in response.json()["rejected"]}
    assert set(rejected) == {"b1", "b2", "b3", "b4", "b5", "b6"}
    assert "usage_details" in rejected["b2"] and "input_tokens" in rejected["b2"]["usage_details"][0]
    stored = Event.objects.get(event_id="v11")
    assert stored.usage_details == {"input_audio_tokens": 40, "web_search_calls": 1}
    assert stored.price_context == {"service_tier": "flex"}
    assert (stored.usage_known, stored.provider_host, stored.cost_status) == (
        False,
        "acme.openai.azure.com",
        "usage_unknown",
    )
