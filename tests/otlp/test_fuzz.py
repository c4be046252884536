"""Property-based fuzzing of POST /v1/traces in its OTLP/JSON form: never a
500, a valid span beside junk is still stored, and protobuf noise is a 400."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.models import Event
from tests.otlp.conftest import Otlp, chat_attrs, export_request, make_span, otlp_json

pytestmark = pytest.mark.django_db

SPAN_FIELDS = [
    "traceId",
    "spanId",
    "parentSpanId",
    "name",
    "kind",
    "startTimeUnixNano",
    "endTimeUnixNano",
    "attributes",
    "status",
    "events",
]
scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["", "00", "0" * 32, "f" * 16, "AAAAAAAAAAA=", "SPAN_KIND_CLIENT", "18446744073709551616"]),
)
any_value = st.recursive(
    st.one_of(
        st.builds(lambda v: {"stringValue": v}, st.text(max_size=20)),
        st.builds(lambda v: {"intValue": v}, st.one_of(st.integers(-(2**64), 2**64), st.text(max_size=8))),
        st.builds(lambda v: {"doubleValue": v}, st.one_of(st.floats(), st.text(max_size=5))),
        st.builds(lambda v: {"boolValue": v}, st.one_of(st.booleans(), st.integers())),
        scalar,
    ),
    lambda inner: st.one_of(
        st.builds(lambda vs: {"arrayValue": {"values": vs}}, st.lists(inner, max_size=3)),
        st.builds(
            lambda kvs: {"kvlistValue": {"values": [{"key": k, "value": v} for k, v in kvs]}},
            st.lists(st.tuples(st.text(max_size=8), inner), max_size=3),
        ),
    ),
    max_leaves=8,
)
attribute_keys = st.one_of(
    st.sampled_from(
        [
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.cache_read.input_tokens",
            "gen_ai.usage.cache_creation.input_tokens",
            "gen_ai.usage.reasoning_tokens",
            "gen_ai.response.model",
            "gen_ai.provider.name",
            "gen_ai.operation.name",
            "openai.response.service_tier",
            "server.address",
            "session.id",
            "llmobserve.run_id",
            "llmobserve.section",
            "user.id",
            "tag.x",
            "gen_ai.usage.cost",
            "error.type",
        ]
    ),
    st.text(max_size=10),
)
attributes = st.lists(
    st.one_of(st.builds(lambda k, v: {"key": k, "value": v}, attribute_keys, any_value), scalar),
    max_size=5,
)
junk = st.one_of(scalar, attributes, st.dictionaries(st.text(max_size=6), scalar, max_size=3), st.lists(scalar))


@st.composite
def mutated_body(draw: Any) -> tuple[dict[str, Any], bool]:
    """A two-span OTLP/JSON body; span 0 gets junk fields (or a junk envelope).
    Says whether span 1, a valid call in its own trace, must be stored."""
    request = export_request(
        [
            make_span(1, attrs=chat_attrs()),
            make_span(2, trace="0af7651916cd43dd8448eb211c80319c", attrs=chat_attrs(model="gpt-4o-mini")),
        ]
    )
    data = otlp_json(request)
    span = data["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    for field in draw(st.lists(st.sampled_from(SPAN_FIELDS), max_size=4, unique=True)):
        if draw(st.booleans()):
            span.pop(field, None)
        else:
            span[field] = draw(junk)
    if draw(st.booleans()):
        span["attributes"] = draw(attributes)
    envelope_broken = draw(st.integers(0, 9)) == 0
    if envelope_broken:
        target = draw(st.sampled_from(["resourceSpans", "resource", "scopeSpans"]))
        if target == "resourceSpans":
            data["resourceSpans"] = draw(junk)
        elif target == "resource":
            data["resourceSpans"][0]["resource"] = draw(junk)
        else:
            data["resourceSpans"][0]["scopeSpans"][0]["scope"] = draw(junk)
    return data, not envelope_broken


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=mutated_body())
def test_json_fuzz_never_500(otlp: Otlp, case: tuple[dict[str, Any], bool]):
    data, envelope_intact = case
    Event.objects.all().delete()
    response = otlp.post(json.dumps(data).encode(), "application/json")
    assert response.status_code in (200, 400), response.content
    if response.status_code == 200 and envelope_intact:
        # The valid neighbour is stored whatever happened to span 0.
        assert Event.objects.filter(span_id=f"{2:016x}").exists()
    elif envelope_intact:
        # A 400 only for a body the JSON mapping cannot read at all: a junk
        # field type in span 0 (protobuf's JSON mapping has no per-span errors).
        assert not Event.objects.exists()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(noise=st.binary(max_size=200), cut=st.integers(0, 400))
def test_protobuf_noise_and_truncation_never_500(otlp: Otlp, noise: bytes, cut: int):
    body = export_request([make_span(1, attrs=chat_attrs())]).SerializeToString()
    for candidate in (noise, body[:cut] + noise, body[:cut]):
        if not candidate:
            continue  # Django's test client drops the Content-Type of an empty body
        response = otlp.post(candidate)
        assert response.status_code in (200, 400), response.content
