"""Issue 14: one bad event never loses its batch, limits are checked before
per-event work, and aggregates cannot overflow (SQLite and PostgreSQL).

Every shape here once cost a whole batch (a 500, or a 400 for all of it) or
far more CPU and memory than its size: each is now a per-event rejection in
the 207, beside 999 good events that are all stored.
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.models import DailyRollup, Event, Run
from events.schema import MAX_ATTRIBUTES_DEPTH, MAX_LATENCY_MS, MAX_SECTION_DEPTH, MAX_TOKENS
from tests.conftest import Api, make_event

pytestmark = pytest.mark.django_db

BAD = "@@BAD@@"  # a placeholder replaced in the encoded body by bytes json.dumps cannot write
INT64_MAX = 2**63 - 1


def deep(levels: int, leaf: str = "1") -> str:
    return '{"a":' * levels + leaf + "}" * levels


def batch_with_one_bad(bad: dict[str, Any], raw: bytes | None, *, good: int = 999, at: int = 500) -> bytes:
    """`good` valid events with one bad event inserted at index `at`; `raw`
    replaces the BAD placeholder in the encoded body."""
    events = [make_event(event_id=f"good-{i:04d}", run_id=f"run-{i % 37}") for i in range(good)]
    events.insert(at, make_event(event_id="the-bad-one", run_id="run-bad", **bad))
    body = json.dumps({"events": events}).encode()
    if raw is not None:
        body = body.replace(json.dumps(BAD).encode(), raw)
    return body


# (fields of the bad event, bytes for the BAD placeholder, must it be rejected?)
BAD_EVENTS: dict[str, tuple[dict[str, Any], bytes | None, bool]] = {
    # ended_at = started_at + latency overflowed the datetime (1e15 ms was allowed)
    "latency 3e14 ms": ({"latency_ms": 3e14}, None, True),
    "latency 1e15 ms": ({"latency_ms": 1e15}, None, True),
    "latency just over the bound": ({"latency_ms": MAX_LATENCY_MS * 1.0001}, None, True),
    # year 1 at +05:00 is year 0 in UTC
    "started_at 0001-01-01T00:00:00+05:00": ({"started_at": "0001-01-01T00:00:00+05:00"}, None, True),
    # PostgreSQL refuses offsets past 15:59; in UTC this is year 9999
    "started_at 9998-12-31T23:59:59-23:59": ({"started_at": "9998-12-31T23:59:59-23:59"}, None, True),
    # an offset PostgreSQL cannot parse, in an ordinary year: stored (in UTC) or rejected, never the batch
    "started_at 2026-11-26T09:00:00-16:00": ({"started_at": "2026-11-26T09:00:00-16:00"}, None, False),
    # attributes nested ~1000 deep: msgspec's RecursionError took the batch
    "attributes nested 1000 deep": ({"attributes": BAD}, deep(1000).encode(), True),
    "attributes one level too deep": ({"attributes": BAD}, deep(MAX_ATTRIBUTES_DEPTH + 1).encode(), True),
    "a field nested 1000 deep": ({"model": BAD}, ("[" * 1000 + "]" * 1000).encode(), True),
    "invalid UTF-8 in a field": ({"model": BAD}, b'"gpt\xff\xfe-4o"', True),
    "invalid UTF-8 in an attribute": ({"attributes": {"k": BAD}}, b'"v\xc3"', True),
    "invalid UTF-8 in an attribute key": ({"attributes": BAD}, b'{"k\xe2\x82": 1}', True),
    # PostgreSQL's jsonb refuses these numbers (a raw COPY error was a 500)
    "attribute number 1e999999": ({"attributes": BAD}, b'{"n": 1e999999}', True),
    "attribute number -1e-999999": ({"attributes": BAD}, b'{"n": [1, -1e-999999]}', True),
    "attribute number of 400 digits": ({"attributes": BAD}, b'{"n": 1' + b"0" * 400 + b"}", True),
    "latency_ms 1e999999": ({"latency_ms": BAD}, b"1e999999", True),
    "tokens 2**53": ({"input_tokens": 2**53}, None, True),
    "tokens just over the bound": ({"input_tokens": MAX_TOKENS + 1}, None, True),
    "section_path too deep": ({"section_path": "/".join(["s"] * (MAX_SECTION_DEPTH + 1))}, None, True),
}


@pytest.mark.parametrize("name", list(BAD_EVENTS))
def test_one_bad_event_never_loses_its_batch(api: Api, name: str):
    bad, raw, must_reject = BAD_EVENTS[name]
    response = api.post_events(None, raw=batch_with_one_bad(bad, raw))
    assert response.status_code in (200, 207), (response.status_code, response.content[:300])
    body = response.json()
    assert Event.objects.filter(event_id__startswith="good-").count() == 999
    rejected = {r["index"]: r for r in body["rejected"]}
    assert set(rejected) <= {500}
    if must_reject:
        assert response.status_code == 207
        assert set(rejected) == {500}, body
        assert not Event.objects.filter(event_id="the-bad-one").exists()
        (messages,) = rejected[500]["errors"].values()
        assert messages and all(isinstance(m, str) and m for m in messages)
    else:
        assert (500 in rejected) != Event.objects.filter(event_id="the-bad-one").exists()
    assert body["accepted"] == 999 + (500 not in rejected)
    # Everything stored reads back, through the API and the aggregates.
    assert api.get("/runs/latest", limit=200).status_code == 200
    assert api.get("/runs/run-bad").status_code in (200, 404)


def test_an_event_that_is_itself_deeply_nested_is_rejected_alone(api: Api):
    events = [make_event(event_id="g-1"), BAD, make_event(event_id="g-2")]
    body = json.dumps(events).encode().replace(json.dumps(BAD).encode(), b"[" * 5000 + b"]" * 5000)
    response = api.post_events(None, raw=body)
    assert response.status_code == 207, response.content[:300]
    assert [r["index"] for r in response.json()["rejected"]] == [1]
    assert set(Event.objects.values_list("event_id", flat=True)) == {"g-1", "g-2"}


@pytest.mark.parametrize("gzip_body", [False, True])
def test_the_envelope_is_split_by_its_structure_alone(api: Api, gzip_body: bool):
    """With an event no JSON parser here can read whole (nested past the
    recursion limit), the body is split by strings and brackets: other keys
    before "events", brackets and escaped quotes inside strings, whitespace."""
    good = [make_event(event_id=f"s-{i}", model='gp"t]},{') for i in range(3)]
    parts = [json.dumps(e).encode() for e in good]
    deep_event = b'{"event_id": "s-deep", "attributes": ' + deep(3000).encode() + b"}"
    body = (
        b'{"meta": {"x": [1, {"y": "]}\\\\"}, [[]]], "z": "\\"[{"}, "events":\n [ '
        + parts[0]
        + b" ,\n"
        + deep_event
        + b",  "
        + parts[1]
        + b",["
        + b"[" * 2000
        + b"]" * 2000
        + b"],"
        + parts[2]
        + b" ] , "
        + b'"after": [1,2]}'
    )
    response = api.post_events(None, raw=body, gzip_body=gzip_body)
    assert response.status_code == 207, response.content[:300]
    rejected = {r["index"]: r for r in response.json()["rejected"]}
    assert set(rejected) == {1, 3}
    assert rejected[3]["errors"] == {"non_field_errors": ["an event must be a JSON object"]}
    assert set(Event.objects.values_list("event_id", flat=True)) == {"s-0", "s-1", "s-2"}
    assert Event.objects.get(event_id="s-0").model == 'gp"t]},{'


def test_the_bounds_themselves_are_accepted(api: Api):
    """The largest values the bounds allow are stored and add up."""
    event = make_event(
        event_id="edge",
        run_id="run-edge",
        input_tokens=MAX_TOKENS,
        output_tokens=MAX_TOKENS,
        cached_input_tokens=MAX_TOKENS,
        reasoning_tokens=MAX_TOKENS,
        latency_ms=MAX_LATENCY_MS,
        started_at="9998-06-30T00:00:00Z",
        section="s",
        section_path="/".join(["s"] * MAX_SECTION_DEPTH),
        attributes={"big": 1.7e308, "tiny": 5e-324, "deep": json.loads(deep(MAX_ATTRIBUTES_DEPTH - 1))},
    )
    early = make_event(event_id="early", run_id="run-edge", started_at="0001-01-01T00:00:00Z")
    response = api.post_events([event, early])
    assert response.status_code == 200, response.content
    run = Run.objects.get(run_id="run-edge")
    assert run.input_tokens == MAX_TOKENS + 100
    stored = Event.objects.get(event_id="edge")
    # (PostgreSQL's jsonb hands the number back written out in full: an int.)
    assert stored.attributes is not None
    assert float(stored.attributes["big"]) == 1.7e308
    assert api.get("/runs/run-edge").status_code == 200


def test_a_token_count_over_the_bound_names_the_bound(api: Api):
    response = api.post_events([make_event(event_id="ok"), make_event(event_id="big", output_tokens=2**41)])
    assert response.status_code == 207
    (rejected,) = response.json()["rejected"]
    assert rejected["event_id"] == "big"
    assert (
        str(MAX_TOKENS) in rejected["errors"]["output_tokens"][0] or "2**40" in rejected["errors"]["output_tokens"][0]
    )


def test_tokens_at_the_old_limit_cannot_overflow_run_aggregates(api: Api, owner):
    """Tokens of 2**53 an event (the old limit) overflowed a run's 64-bit sums:
    PostgreSQL then refused every later batch of that run, and SQLite's
    overview answered 500 for good.  Now such events are rejected one by one,
    the run keeps taking batches, and every read answers."""
    for batch in range(2):
        events = [
            make_event(event_id=f"b{batch}-{i}", run_id="run-huge", input_tokens=2**53, output_tokens=2**53)
            for i in range(600)
        ]
        events.append(make_event(event_id=f"b{batch}-fine", run_id="run-huge"))
        response = api.post_events(events)
        assert response.status_code == 207, response.content[:300]
        body = response.json()
        assert body["accepted"] == 1
        assert "error" not in body  # never "the database refused this batch"
    run = Run.objects.get(run_id="run-huge")
    assert run.calls == 2 and run.input_tokens == 200
    client = Client()
    client.force_login(owner)
    assert client.get("/").status_code == 200
    assert api.get("/runs/latest").status_code == 200


def test_aggregate_upserts_saturate_instead_of_failing(api: Api, owner, project):
    """Should a run's or a day's totals ever reach the 64-bit limit, adding to
    them saturates: the batch is stored, never refused for the run's sake."""
    first = make_event(event_id="seed", run_id="run-full", input_tokens=10, output_tokens=10)
    assert api.post_events([first]).status_code == 200
    Run.objects.filter(run_id="run-full").update(input_tokens=INT64_MAX - 5, output_tokens=INT64_MAX, calls=2**31 - 1)
    DailyRollup.objects.filter(project=project).update(input_tokens=INT64_MAX - 5, calls=2**31 - 1)
    more = [make_event(event_id=f"more-{i}", run_id="run-full", input_tokens=MAX_TOKENS) for i in range(3)]
    response = api.post_events(more)
    assert response.status_code == 200, response.content
    run = Run.objects.get(run_id="run-full")
    assert (run.input_tokens, run.output_tokens, run.calls) == (INT64_MAX, INT64_MAX, 2**31 - 1)
    roll = DailyRollup.objects.get(project=project)
    assert (roll.input_tokens, roll.calls) == (INT64_MAX, 2**31 - 1)
    assert Event.objects.filter(run_id="run-full").count() == 4
    assert api.get("/runs/run-full").status_code == 200


def test_rebuilding_aggregates_of_rows_past_the_bounds_saturates(api: Api, project):
    """A rebuild (reprice) sums stored events in Python: rows written before
    the bounds (tokens up to 2**53 each) can add up past 64 bits."""
    from events.services import aggregates_rebuild

    assert api.post_events([make_event(event_id=f"old-{i}", run_id="run-old") for i in range(2)]).status_code == 200
    Event.objects.filter(run_id="run-old").update(input_tokens=2**62 + 2**61)
    day = Event.objects.filter(run_id="run-old").first().started_at.date()  # type: ignore[union-attr]
    aggregates_rebuild(runs=[(project.id, "run-old")], days=[(project.id, day)])
    assert Run.objects.get(run_id="run-old").input_tokens == INT64_MAX
    assert DailyRollup.objects.get(project=project).input_tokens == INT64_MAX
    assert api.get("/runs/run-old").status_code == 200


def test_section_path_depth_limit(api: Api):
    ok = make_event(event_id="deep-ok", section="s", section_path="/".join(["s"] * MAX_SECTION_DEPTH))
    bad = make_event(event_id="too-deep", section="s", section_path="/".join(["s"] * (MAX_SECTION_DEPTH + 1)))
    response = api.post_events([ok, bad])
    assert response.status_code == 207
    (rejected,) = response.json()["rejected"]
    assert rejected["event_id"] == "too-deep"
    assert str(MAX_SECTION_DEPTH) in rejected["errors"]["section_path"][0]


# --- Cheap rejection first -------------------------------------------------------


def test_5kb_gzip_of_empty_objects_is_refused_before_any_per_event_work(api: Api):
    """{"events": [{}, {}, ...]}: 1.75 M items in 5 KB of gzip.  It was
    validated item by item, an error object each (7 s, 1.2 GB), before the
    count was checked; now the count stops it at item 1001."""
    raw = b'{"events":[' + b",".join([b"{}"] * 1_747_000) + b"]}"  # just under 5 MiB
    compressed = gzip.compress(raw, 9)
    assert len(compressed) < 8_000
    tracemalloc.start()
    try:
        response = api.client.post(
            "/events",
            data=compressed,
            content_type="application/json",
            headers={**api._headers(), "Content-Encoding": "gzip"},
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 413, response.content[:300]
    assert "at most 1000 events" in response.json()["error"]
    assert len(response.content) < 300
    # The 5 MiB of decompressed body, and not much besides (1.2 GB before).
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "item",
    [b"{}", b"1", b'"x"', b"[]", b'{"a":' + b"[" * 50 + b"]" * 50 + b"}", b'{"n":1e999999}', b'"\xff"'],
)
def test_over_1000_items_of_any_kind_is_413(api: Api, item: bytes):
    body = b"[" + b",".join([item] * 1001) + b"]"
    response = api.post_events(None, raw=body)
    assert response.status_code == 413, response.content[:300]
    assert "at most 1000 events" in response.json()["error"]


def test_over_1000_valid_events_is_413(api: Api):
    response = api.post_events([make_event(event_id=f"v-{i}") for i in range(1001)])
    assert response.status_code == 413
    assert "at most 1000 events" in response.json()["error"]
    assert not Event.objects.exists()


def test_per_event_errors_are_listed_for_the_first_100_and_summarised(api: Api):
    events: list[Any] = [{} for _ in range(900)] + [make_event(event_id="kept")] + [{} for _ in range(99)]
    response = api.post_events(events)
    assert response.status_code == 207
    body = response.json()
    assert body["accepted"] == 1
    assert [r["index"] for r in body["rejected"]] == list(range(100))
    assert body["rejected_omitted"] == 899
    assert len(response.content) < 20_000


def test_two_gzip_members_are_read_whole(api: Api):
    """A body of two gzip members (what `cat a.gz b.gz` makes, and some
    streaming compressors write) was cut after the first member."""
    events = [make_event(event_id="m-1"), make_event(event_id="m-2")]
    text = json.dumps({"events": events}).encode()
    cut = len(text) // 2
    body = gzip.compress(text[:cut]) + gzip.compress(text[cut:]) + b"\x00\x00"
    response = api.client.post(
        "/events",
        data=body,
        content_type="application/json",
        headers={**api._headers(), "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200, response.content
    assert set(Event.objects.values_list("event_id", flat=True)) == {"m-1", "m-2"}


@pytest.mark.parametrize(
    "tail, status",
    [(b"garbage", 400), (gzip.compress(b"x" * (6 * 2**20)), 413), (gzip.compress(b"abc")[:-3], 400)],
)
def test_a_bad_second_gzip_member_is_refused(api: Api, tail: bytes, status: int):
    body = gzip.compress(json.dumps([make_event(event_id="m")]).encode()) + tail
    response = api.client.post(
        "/events",
        data=body,
        content_type="application/json",
        headers={**api._headers(), "Content-Encoding": "gzip"},
    )
    assert response.status_code == status, response.content
    assert not Event.objects.exists()


# --- Fuzzing these shapes (on whichever database the run uses) -------------------------

nasty_fragment = st.one_of(
    st.integers(min_value=1, max_value=3000).map(lambda n: ("[" * n + "]" * n).encode()),
    st.integers(min_value=1, max_value=1500).map(lambda n: deep(n).encode()),
    st.sampled_from([b"1e999999", b"-1e-999999", b"1e308", b"1e309", b"1" + b"0" * 400, b"-0.0", b"5e-324"]),
    st.binary(min_size=1, max_size=6).map(lambda b: b'"' + b.replace(b'"', b"").replace(b"\\", b"") + b'"'),
    st.sampled_from([b'"\\ud800"', b'"\\u0000"', b'"a\\udfff"', b"9" * 30, b"-1", b"[]", b"{}", b"null", b"true"]),
    st.sampled_from(
        [
            b'"0001-01-01T00:00:00+05:00"',
            b'"9998-12-31T23:59:59-23:59"',
            b'"9999-12-31T23:59:59Z"',
            b'"2026-11-26T09:00:00+99:00"',
            b'"2026-02-30T00:00:00Z"',
            b'"2026-11-26T09:00:00-15:59"',
        ]
    ),
    st.integers(min_value=0, max_value=2**70).map(lambda n: str(n).encode()),
    st.floats(min_value=0, max_value=1e300).map(lambda f: repr(f).encode()),
)
FIELDS = [
    "event_id",
    "run_id",
    "started_at",
    "latency_ms",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "model",
    "section",
    "section_path",
    "attributes",
    "usage_details",
    "price_context",
    "read_units",
    "cost_usd",
]


@st.composite
def nasty_event(draw: Any) -> tuple[bytes, bool]:
    """An encoded event with some fields replaced by nasty fragments (or the
    attributes given one as a value); says whether it was left intact."""
    event = make_event(event_id="z-" + draw(st.uuids()).hex, attributes={"k": "v"})
    targets = draw(st.lists(st.sampled_from([*FIELDS, "attributes.k"]), max_size=2, unique=True))
    fragments: dict[str, bytes] = {}
    for i, target in enumerate(targets):
        placeholder = f"@@{i}@@"
        if target == "attributes.k":
            event["attributes"] = {"k": placeholder}
        else:
            event[target] = placeholder
        fragments[json.dumps(placeholder)] = draw(nasty_fragment)
    encoded = json.dumps(event).encode()
    for placeholder, fragment in fragments.items():
        encoded = encoded.replace(placeholder.encode(), fragment)
    return encoded, not targets


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(st.lists(nasty_event(), min_size=1, max_size=6), st.booleans())
def test_fuzzed_nasty_shapes_never_500_and_keep_every_intact_event(api: Api, batch, compress):
    body = b'{"events": [' + b", ".join(encoded for encoded, _ in batch) + b"]}"
    response = api.post_events(None, raw=body, gzip_body=compress)
    assert response.status_code in (200, 207, 400), response.content[:300]
    payload = response.json()
    if response.status_code == 400 and "error" in payload:
        # Only a body that is not JSON at all is refused whole.
        assert "JSON" in payload["error"], payload
        assert not any(intact for _, intact in batch)
        return
    rejected = {r["index"] for r in payload["rejected"]}
    stored = set(Event.objects.values_list("event_id", flat=True))
    for index, (encoded, intact) in enumerate(batch):
        if intact:
            assert index not in rejected
            assert json.loads(encoded)["event_id"] in stored
    # Whatever was stored reads back.
    assert api.get("/runs/latest", limit=200).status_code == 200


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(json_values, max_size=8), st.sampled_from(["", " ", "\n\t "]), st.booleans())
def test_the_scanner_splits_a_body_as_a_json_parser_does(items, space, envelope):
    """The fallback splitter (strings and brackets only, no recursion) finds
    the same events as a JSON parser, whatever they hold."""
    from events.schema import _scan

    text = json.dumps(items, indent=1 if space else None).replace("\n", space or "\n")
    body = (f'{{"x": {json.dumps(items[:1])},{space}"events":{space}{text}}}' if envelope else text).encode()
    spans = _scan(body, 1000)
    assert [json.loads(bytes(span)) for span in spans] == items
