"""Property-based fuzzing of POST /events: no 500, and nothing valid is lost."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.models import Event
from tests.conftest import Api, make_event

pytestmark = pytest.mark.django_db

FIELDS = list(make_event().keys()) + [
    "attributes",
    "cached_input_tokens",
    "reasoning_tokens",
    "read_units",
    "write_units",
    "cost_usd",
    "error_type",
    # wire v1.1
    "usage_details",
    "price_context",
    "usage_known",
    "provider_host",
]
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=300),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    st.dictionaries(
        st.sampled_from(["input_audio_tokens", "web_search_calls", "x y", "", "service_tier"]),
        st.one_of(st.integers(min_value=-5, max_value=2**60), st.floats(), st.text(max_size=5)),
        max_size=3,
    ),
)


@st.composite
def mutated_event(draw: Any) -> tuple[dict[str, Any], bool]:
    """An event with random fields replaced by junk; says if it was left intact."""
    event = make_event()
    event["event_id"] = "f-" + draw(st.uuids()).hex
    mutate = draw(st.lists(st.sampled_from(FIELDS), max_size=3, unique=True))
    for field in mutate:
        if draw(st.booleans()):
            event.pop(field, None)
        else:
            event[field] = draw(junk)
    return event, not mutate


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(st.lists(mutated_event(), min_size=1, max_size=8))
def test_fuzzed_batches_never_500_and_keep_every_intact_event(api: Api, batch):
    events = [e for e, _ in batch]
    response = api.post_events(events)
    assert response.status_code in (200, 207, 400), response.content
    body = response.json()
    rejected = {r["index"] for r in body.get("rejected", [])}
    for index, (event, intact) in enumerate(batch):
        if intact:
            assert index not in rejected
            assert Event.objects.filter(event_id=event["event_id"]).exists()
        if index not in rejected and isinstance(event.get("event_id"), str):
            assert Event.objects.filter(event_id=event["event_id"]).exists()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_never_500(api: Api, raw):
    response = api.post_events(None, raw=raw)
    assert response.status_code in (200, 207, 400, 413)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=20,
    )
)
def test_arbitrary_json_never_500(api: Api, value):
    response = api.post_events(None, raw=json.dumps(value).encode())
    assert response.status_code in (200, 207, 400)


@pytest.mark.parametrize(
    "fragment",
    [
        '"model": "gpt\\ud800"',
        '"attributes": {"k": "v\\u0000"}',
        '"attributes": {"k\\ud83d": 1}',
        '"section": "a\\u0000b"',
    ],
)
def test_text_the_database_cannot_hold_is_a_field_error(api: Api, fragment):
    good = json.dumps(make_event(event_id="good"))
    bad = json.dumps(make_event(event_id="bad"))[:-1] + ", " + fragment + "}"
    response = api.post_events(None, raw=f"[{good}, {bad}]".encode())
    assert response.status_code == 207, response.content
    assert [r["index"] for r in response.json()["rejected"]] == [1]
    assert Event.objects.filter(event_id="good").exists()
