"""POST /v1/traces: the OTLP/HTTP contract and the span → event mapping.

Requests are built with opentelemetry-proto's own classes; expected costs are
computed by hand from OpenAI's published prices (per 1M tokens, as
genai-prices carries them: tests/otlp/test_producers.py checks that data):
gpt-4o-2024-08-06 $2.50 input, $1.25 cached input, $10.00 output;
gpt-4o-mini $0.15 / $0.075 / $0.60.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json

import pytest
from django.utils import timezone
from google.protobuf import json_format
from google.rpc.status_pb2 import Status

from events.models import Event, Run, RunSection
from otlp.models import PendingSpan
from otlp.services import otlp_pending_flush
from tests.otlp.conftest import (
    OTHER_TRACE,
    TRACE,
    Otlp,
    chat_attrs,
    export_request,
    make_span,
    otlp_json,
    response_message,
    span_id,
)

pytestmark = pytest.mark.django_db

GPT4O_IN, GPT4O_CACHED, GPT4O_OUT = 2.50e-6, 1.25e-6, 10.00e-6
MINI_IN, MINI_OUT = 0.15e-6, 0.60e-6


def agent_tree() -> list:
    """An agent span, a tool span in it with one call, and a call directly in the agent."""
    return [
        make_span(1, name="agent:researcher", duration_ms=2000, attrs={"user.id": "u-7"}),
        make_span(2, parent=1, name="tool:web_search", start_ms=100, duration_ms=900),
        make_span(
            3,
            parent=2,
            start_ms=120,
            duration_ms=850,
            attrs=chat_attrs(**{"gen_ai.usage.cache_read.input_tokens": 1024, "server.address": "api.openai.com"}),
        ),
        make_span(
            4,
            parent=1,
            start_ms=1100,
            duration_ms=400,
            attrs=chat_attrs(model="gpt-4o-mini", input_tokens=300, output_tokens=20, **{"user.id": "u-7"}),
        ),
        # An HTTP span under the call: no cost, not stored.
        make_span(5, parent=3, name="POST", start_ms=121, duration_ms=800, attrs={"http.request.method": "POST"}),
    ]


CALL_3 = (1200 - 1024) * GPT4O_IN + 1024 * GPT4O_CACHED + 150 * GPT4O_OUT  # 0.00322
CALL_4 = 300 * MINI_IN + 20 * MINI_OUT  # 0.000057


def test_a_trace_becomes_a_run_with_its_section_tree(otlp: Otlp, project, api):
    response = otlp.send(export_request(agent_tree()))
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/x-protobuf"
    assert not response_message(response).HasField("partial_success")

    run = Run.objects.get(project=project, run_id=TRACE)
    assert (run.calls, run.events, run.input_tokens, run.output_tokens) == (2, 4, 1500, 170)
    assert run.service == "support-bot"
    assert run.cost_usd == pytest.approx(CALL_3 + CALL_4, abs=1e-9)
    assert run.duration_ms == pytest.approx(2000.0)

    call = Event.objects.get(project=project, span_id=span_id(3))
    assert call.event_id == f"otlp-{TRACE}-{span_id(3)}"
    assert (call.span_type, call.section, call.section_path) == (
        "llm",
        "tool:web_search",
        "agent:researcher/tool:web_search",
    )
    assert (call.provider, call.model, call.endpoint, call.provider_host) == (
        "openai",
        "gpt-4o-2024-08-06",
        "chat",
        "api.openai.com",
    )
    assert (call.input_tokens, call.cached_input_tokens, call.output_tokens) == (1200, 1024, 150)
    assert call.cost_status == "exact"
    assert call.cost_usd == pytest.approx(CALL_3, abs=1e-12)
    assert call.latency_ms == pytest.approx(850.0)
    assert call.parent_span_id == span_id(2)
    assert not Event.objects.filter(span_id=span_id(5)).exists()

    sections = dict(RunSection.objects.filter(project=project, run_id=TRACE).values_list("section", "is_root"))
    assert sections == {"agent:researcher": True, "tool:web_search": False}

    tree = api.get(f"/runs/{TRACE}").json()["tree"]
    assert [(n["name"], n["span_type"]) for n in tree] == [("agent:researcher", "section")]
    agent = tree[0]
    assert agent["cost_usd"] == pytest.approx(CALL_3 + CALL_4, abs=1e-9)
    assert [(c["name"], c["span_type"]) for c in agent["children"]] == [
        ("tool:web_search", "section"),
        ("chat gpt-4o", "llm"),
    ]
    tool = agent["children"][0]
    assert tool["calls"] == 1 and tool["cost_usd"] == pytest.approx(CALL_3, abs=1e-9)
    assert Event.objects.get(span_id=span_id(1)).attributes == {"user_id": "u-7"}


def test_json_with_hex_ids_gzip_and_int64_as_strings(otlp: Otlp, project):
    data = otlp_json(export_request(agent_tree()))
    span = data["resourceSpans"][0]["scopeSpans"][0]["spans"][2]
    assert isinstance(span["startTimeUnixNano"], str) and len(span["traceId"]) == 32  # the OTLP/JSON form
    tokens = next(a for a in span["attributes"] if a["key"] == "gen_ai.usage.input_tokens")
    assert tokens["value"] == {"intValue": "1200"}  # int64 as a string
    response = otlp.post(json.dumps(data).encode(), "application/json", gzip_body=True)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {}
    run = Run.objects.get(project=project, run_id=TRACE)
    assert run.cost_usd == pytest.approx(CALL_3 + CALL_4, abs=1e-9)
    assert Event.objects.get(span_id=span_id(3)).input_tokens == 1200


def test_protobuf_gzip(otlp: Otlp, project):
    response = otlp.send(export_request(agent_tree()), gzip_body=True)
    assert response.status_code == 200
    assert Run.objects.get(project=project, run_id=TRACE).calls == 2


def test_base64_ids_are_the_same_spans_as_hex_ids(otlp: Otlp, project):
    request = export_request(agent_tree())
    assert otlp.send_json(request, ids="base64").status_code == 200
    assert otlp.send_json(request, ids="hex").status_code == 200  # the same spans: duplicates
    assert otlp.send(request).status_code == 200
    run = Run.objects.get(project=project, run_id=TRACE)
    assert (run.calls, run.events) == (2, 4)
    assert run.cost_usd == pytest.approx(CALL_3 + CALL_4, abs=1e-9)
    assert Event.objects.filter(project=project).count() == 4


def test_a_resend_is_never_double_counted(otlp: Otlp, project):
    request = export_request(agent_tree())
    for _ in range(3):
        assert otlp.send(request).status_code == 200
    run = Run.objects.get(project=project, run_id=TRACE)
    assert (run.calls, run.events, run.input_tokens) == (2, 4, 1500)
    assert run.cost_usd == pytest.approx(CALL_3 + CALL_4, abs=1e-9)


def test_partial_success_names_the_rejected_spans_and_keeps_the_rest(otlp: Otlp, project):
    bad_tokens = make_span(7, attrs=chat_attrs(input_tokens=-5))
    bad_trace = make_span(8, attrs=chat_attrs())
    bad_trace.trace_id = b"\x00" * 16
    no_start = make_span(9, attrs=chat_attrs())
    no_start.start_time_unix_nano = 0
    good = make_span(10, trace=OTHER_TRACE, attrs=chat_attrs(model="gpt-4o-mini", input_tokens=300, output_tokens=20))
    for send in ("protobuf", "json"):
        request = export_request([bad_tokens, bad_trace, good, no_start])
        response = otlp.send(request) if send == "protobuf" else otlp.send_json(request)
        assert response.status_code == 200
        partial = response_message(response).partial_success
        assert partial.rejected_spans == 3
        assert "gen_ai.usage.input_tokens must be between 0 and 2**40" in partial.error_message
        assert "trace_id must be 16 bytes" in partial.error_message
        assert "start_time_unix_nano is required" in partial.error_message
    run = Run.objects.get(project=project, run_id=OTHER_TRACE)
    assert run.calls == 1 and run.cost_usd == pytest.approx(CALL_4, abs=1e-12)
    assert Event.objects.filter(project=project).count() == 1


@pytest.mark.parametrize(
    "body",
    [b"\xff\xff\xff\xff", b"\x0a\x05\x0a\x03\x0a", b"not protobuf at all, just text", b"\x0a" + b"\xff" * 12],
)
def test_malformed_protobuf_is_400_with_a_status(otlp: Otlp, project, body):
    response = otlp.post(body)
    assert response.status_code == 400
    status = Status()
    status.ParseFromString(response.content)
    assert status.code == 3 and "ExportTraceServiceRequest" in status.message
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[]",
        b'"resourceSpans"',
        b'{"resourceSpans": 5}',
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 5}]}]}]}',
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "\\ud800"}]}]}]}',
        b"\xff\xfe",
    ],
)
def test_malformed_json_is_400(otlp: Otlp, project, body):
    response = otlp.post(body, "application/json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content)["code"] == 3
    assert not Event.objects.exists()


def test_bad_gzip_is_400(otlp: Otlp):
    client_response = otlp.client.post(
        "/v1/traces",
        data=b"\x1f\x8b\x08\x00garbage",
        content_type="application/x-protobuf",
        headers={"Authorization": f"Bearer {otlp.key}", "Content-Encoding": "gzip"},
    )
    assert client_response.status_code == 400


@pytest.mark.parametrize("key", [None, "nope", "lmo_" + "x" * 40])
def test_a_bad_key_is_401(project, key):
    response = Otlp(key).send(export_request(agent_tree()))
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not Event.objects.exists()


def test_unsupported_content_type_is_415(otlp: Otlp):
    response = otlp.post(b"hello", "text/plain")
    assert response.status_code == 415
    assert otlp.post(b"", "application/grpc").status_code == 415


def test_content_type_parameters_are_accepted(otlp: Otlp, project):
    body = json.dumps(otlp_json(export_request(agent_tree()))).encode()
    assert otlp.post(body, "application/json; charset=utf-8").status_code == 200
    assert Run.objects.filter(project=project).count() == 1


def test_over_the_span_limit_is_413_and_stores_nothing(otlp: Otlp, settings):
    settings.INGEST_MAX_EVENTS = 3
    response = otlp.send(export_request(agent_tree()))
    assert response.status_code == 413
    assert not Event.objects.exists()


def test_over_5_mib_is_413(otlp: Otlp):
    big = make_span(1, attrs=chat_attrs(**{"gen_ai.input.messages": "x" * (5 * 1024 * 1024 + 10)}))
    response = otlp.send(export_request([big]))
    assert response.status_code == 413
    bomb = gzip.compress(b"\x00" * (6 * 1024 * 1024))
    response = otlp.client.post(
        "/v1/traces",
        data=bomb,
        content_type="application/x-protobuf",
        headers={"Authorization": f"Bearer {otlp.key}", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 413


def test_get_is_405(otlp: Otlp):
    assert otlp.client.get("/v1/traces").status_code == 405


def test_each_key_sees_its_own_project_only(otlp: Otlp, other_otlp: Otlp, project, other_project, api, other_api):
    request = export_request(agent_tree())
    assert otlp.send(request).status_code == 200
    assert other_otlp.send(request).status_code == 200  # the same ids in another project: stored there too
    assert Run.objects.get(project=project, run_id=TRACE).cost_usd == pytest.approx(CALL_3 + CALL_4, abs=1e-9)
    assert Run.objects.get(project=other_project, run_id=TRACE).cost_usd == pytest.approx(CALL_3 + CALL_4, abs=1e-9)
    assert api.get(f"/runs/{TRACE}").status_code == 200
    # A run only the other project has is not visible with this project's key.
    other_only = export_request([make_span(1, trace=OTHER_TRACE, attrs=chat_attrs())])
    assert other_otlp.send(other_only).status_code == 200
    assert api.get(f"/runs/{OTHER_TRACE}").status_code == 404
    assert other_api.get(f"/runs/{OTHER_TRACE}").status_code == 200
    assert not Run.objects.filter(project=project, run_id=OTHER_TRACE).exists()


def test_session_id_and_llmobserve_run_id_name_the_run(otlp: Otlp, project):
    session = [
        make_span(1, attrs=chat_attrs(**{"session.id": "chat-42"})),
        make_span(2, trace=OTHER_TRACE, attrs=chat_attrs(**{"session.id": "chat-42"})),
    ]
    assert otlp.send(export_request(session)).status_code == 200
    run = Run.objects.get(project=project, run_id="chat-42")
    assert run.calls == 2
    explicit = [make_span(3, trace="1" * 32, attrs=chat_attrs(**{"session.id": "s", "llmobserve.run_id": "run-7"}))]
    assert otlp.send(export_request(explicit)).status_code == 200
    assert Run.objects.get(project=project, run_id="run-7").calls == 1
    event = Event.objects.get(span_id=span_id(3))
    assert event.attributes == {"session_id": "s"}


def test_user_attributes_are_kept(otlp: Otlp, project):
    attrs = chat_attrs(
        **{
            "user.id": "u-1",
            "session.id": "sess-1",
            "tag.team": "search",
            "llmobserve.feature": "summaries",
            "gen_ai.input.messages": "secret prompt",
        }
    )
    request = export_request([make_span(1, attrs=attrs)], **{"deployment.environment": "prod", "tag.region": "eu"})
    assert otlp.send(request).status_code == 200
    event = Event.objects.get(project=project)
    assert event.attributes == {
        "user_id": "u-1",
        "session_id": "sess-1",
        "tag.team": "search",
        "tag.region": "eu",
        "feature": "summaries",
    }
    assert event.run_id == "sess-1"


def test_error_status_and_exception_type(otlp: Otlp, project):
    spans = [
        make_span(
            1,
            attrs={"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"},
            error=True,
            events=[("exception", {"exception.type": "openai.RateLimitError", "exception.message": "429"})],
        ),
        make_span(2, attrs=chat_attrs(**{"error.type": "timeout"}), error=True, start_ms=200),
    ]
    assert otlp.send(export_request(spans)).status_code == 200
    first = Event.objects.get(span_id=span_id(1))
    assert (first.status, first.error_type, first.cost_usd, first.cost_status) == (
        "error",
        "openai.RateLimitError",
        0.0,
        "exact",
    )
    assert first.usage_known  # an error before any usage: nothing billed, not "unknown"
    second = Event.objects.get(span_id=span_id(2))
    assert (second.status, second.error_type) == ("error", "timeout")
    assert Run.objects.get(project=project).errors == 2


def test_a_call_without_usage_is_flagged_usage_unknown(otlp: Otlp, project):
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"}
    assert otlp.send(export_request([make_span(1, attrs=attrs)])).status_code == 200
    event = Event.objects.get(project=project)
    assert (event.usage_known, event.cost_status) == (False, "usage_unknown")
    assert Run.objects.get(project=project).usage_unknown_calls == 1


def test_openinference_attributes(otlp: Otlp, project):
    attrs = {
        "openinference.span.kind": "LLM",
        "llm.provider": "openai",
        "llm.system": "openai",
        "llm.model_name": "gpt-4o-2024-08-06",
        "llm.token_count.prompt": 1200,
        "llm.token_count.completion": 150,
        "llm.token_count.total": 1350,
        "llm.token_count.prompt_details.cache_read": 1024,
    }
    chain = {"openinference.span.kind": "CHAIN", "llm.token_count.total": 1350}
    spans = [make_span(1, name="RunnableSequence", attrs=chain), make_span(2, parent=1, name="ChatOpenAI", attrs=attrs)]
    assert otlp.send(export_request(spans)).status_code == 200
    call = Event.objects.get(span_id=span_id(2))
    assert (call.model, call.input_tokens, call.cached_input_tokens, call.output_tokens) == (
        "gpt-4o-2024-08-06",
        1200,
        1024,
        150,
    )
    assert call.section == "RunnableSequence"
    assert Run.objects.get(project=project).cost_usd == pytest.approx(CALL_3, abs=1e-12)


def test_openllmetry_legacy_attributes_and_service_tier(otlp: Otlp, project):
    attrs = {
        "llm.request.type": "chat",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.usage.prompt_tokens": 1200,
        "gen_ai.usage.completion_tokens": 150,
        "llm.usage.total_tokens": 1350,
        "gen_ai.openai.response.service_tier": "default",
        "gen_ai.openai.api_base": "https://api.openai.com/v1/",
    }
    assert otlp.send(export_request([make_span(1, attrs=attrs)])).status_code == 200
    call = Event.objects.get(project=project)
    assert (call.endpoint, call.input_tokens, call.output_tokens) == ("chat", 1200, 150)
    assert call.price_context == {"service_tier": "default"}
    assert call.provider_host == "api.openai.com"
    assert call.cost_usd == pytest.approx(1200 * GPT4O_IN + 150 * GPT4O_OUT, abs=1e-12)


def test_anthropic_style_input_without_cache_is_made_whole(otlp: Otlp, project):
    # Anthropic's own usage counts input without the cache; the conventions
    # include it.  Parts larger than the whole mean the former: added back.
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.response.model": "claude-sonnet-4-5-20250929",
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.cache_read.input_tokens": 2000,
        "gen_ai.usage.cache_creation.input_tokens": 500,
        "gen_ai.usage.output_tokens": 40,
    }
    assert otlp.send(export_request([make_span(1, attrs=attrs)])).status_code == 200
    call = Event.objects.get(project=project)
    assert (call.input_tokens, call.cached_input_tokens, call.usage_details) == (
        2600,
        2000,
        {"cache_write_tokens": 500.0},
    )
    assert call.provider == "anthropic"


def test_client_cost_is_kept_as_the_clients_figure_only(otlp: Otlp, project):
    priced = chat_attrs(**{"gen_ai.usage.cost": 99.0})
    unpriced = chat_attrs(model="acme-private-llm", **{"llm.cost.total": 0.0123})
    spans = [make_span(1, attrs=priced), make_span(2, trace=OTHER_TRACE, attrs=unpriced)]
    assert otlp.send(export_request(spans)).status_code == 200
    known = Event.objects.get(span_id=span_id(1))
    assert known.client_cost_usd == 99.0
    assert known.cost_usd == pytest.approx(1200 * GPT4O_IN + 150 * GPT4O_OUT, abs=1e-12)  # our price, not theirs
    unknown = Event.objects.get(span_id=span_id(2))
    assert (unknown.cost_status, unknown.client_cost_usd, unknown.cost_usd) == ("unpriced", 0.0123, 0.0123)


def test_an_llm_span_around_another_is_a_section_not_a_second_bill(otlp: Otlp, project):
    outer = make_span(1, name="ChatOpenAI", attrs=chat_attrs())  # a framework's span
    inner = make_span(2, parent=1, name="chat gpt-4o", attrs=chat_attrs())  # the client's own
    assert otlp.send(export_request([outer, inner])).status_code == 200
    run = Run.objects.get(project=project)
    assert run.calls == 1
    assert run.cost_usd == pytest.approx(1200 * GPT4O_IN + 150 * GPT4O_OUT, abs=1e-12)
    assert Event.objects.get(span_id=span_id(1)).span_type == "section"


def test_agent_spans_with_usage_totals_are_not_billed_again(otlp: Otlp, project):
    agent = make_span(
        1,
        name="invoke_agent researcher",
        attrs={"gen_ai.operation.name": "invoke_agent", "gen_ai.usage.input_tokens": 1200},
    )
    call = make_span(2, parent=1, attrs=chat_attrs())
    assert otlp.send(export_request([agent, call])).status_code == 200
    assert Run.objects.get(project=project).calls == 1
    assert Event.objects.get(span_id=span_id(1)).section == "invoke_agent researcher"


def test_llmobserve_section_names_a_section_and_slashes_stay_in_one_label(otlp: Otlp, project):
    spans = [
        make_span(1, name="POST /v1/answer", attrs={"http.request.method": "POST"}),
        make_span(2, parent=1, name="plan", attrs={"llmobserve.section": "agent:planner"}),
        make_span(3, parent=2, attrs=chat_attrs()),
    ]
    assert otlp.send(export_request(spans)).status_code == 200
    call = Event.objects.get(span_id=span_id(3))
    assert (call.section, call.section_path) == ("agent:planner", "POST \u2215v1\u2215answer/agent:planner")
    root = Event.objects.get(span_id=span_id(1))
    assert root.name == "POST /v1/answer"  # the span's own name, unchanged


def test_children_in_a_later_request_than_their_parent(otlp: Otlp, project, api):
    # The parent (with one call) first; a late call under it after.
    first = [make_span(1, name="agent:researcher", duration_ms=5000), make_span(2, parent=1, attrs=chat_attrs())]
    assert otlp.send(export_request(first)).status_code == 200
    late = [
        make_span(3, parent=1, start_ms=4000, attrs=chat_attrs(model="gpt-4o-mini", input_tokens=300, output_tokens=20))
    ]
    assert otlp.send(export_request(late)).status_code == 200
    call = Event.objects.get(span_id=span_id(3))
    assert (call.section, call.section_path, call.parent_span_id) == (
        "agent:researcher",
        "agent:researcher",
        span_id(1),
    )
    section = RunSection.objects.get(project=project, run_id=TRACE, section="agent:researcher")
    assert section.calls == 2
    tree = api.get(f"/runs/{TRACE}").json()["tree"]
    assert len(tree) == 1 and tree[0]["calls"] == 2


def test_parents_in_a_later_request_than_their_children(otlp: Otlp, project, api):
    # What a SimpleSpanProcessor does: each span is exported when it ends,
    # children first.  They wait for their parents, then go in with their
    # section label and path, as if they had come together.
    assert otlp.send(export_request([make_span(3, parent=2, attrs=chat_attrs())])).status_code == 200
    assert otlp.send(export_request([make_span(2, parent=1, name="tool:web_search")])).status_code == 200
    assert not Event.objects.exists()
    assert PendingSpan.objects.filter(project=project).count() == 2
    assert otlp.send(export_request([make_span(1, name="agent:researcher")])).status_code == 200
    assert not PendingSpan.objects.exists()
    call = Event.objects.get(span_id=span_id(3))
    assert (call.section, call.section_path, call.parent_span_id) == (
        "tool:web_search",
        "agent:researcher/tool:web_search",
        span_id(2),
    )
    sections = dict(RunSection.objects.filter(project=project, run_id=TRACE).values_list("section", "calls"))
    assert sections == {"agent:researcher": 0, "tool:web_search": 1}
    tree = api.get(f"/runs/{TRACE}").json()["tree"]
    assert [n["name"] for n in tree] == ["agent:researcher"]
    assert [n["name"] for n in tree[0]["children"]] == ["tool:web_search"]
    assert tree[0]["children"][0]["children"][0]["span_id"] == span_id(3)
    assert tree[0]["cost_usd"] == pytest.approx(1200 * GPT4O_IN + 150 * GPT4O_OUT, abs=1e-12)


def test_a_waiting_span_keeps_only_what_the_mapping_reads_and_a_resend_waits_once(otlp: Otlp, project):
    attrs = chat_attrs(**{"gen_ai.input.messages": "a long secret prompt", "user.id": "u-1"})
    request = export_request([make_span(3, parent=2, attrs=attrs)], **{"tag.region": "eu", "host.name": "box-1"})
    assert otlp.send(request).status_code == 200
    assert otlp.send(request).status_code == 200
    (row,) = PendingSpan.objects.filter(project=project)
    assert b"secret prompt" not in bytes(row.span) and b"u-1" in bytes(row.span)
    assert b"box-1" not in bytes(row.resource) and b"eu" in bytes(row.resource)
    assert otlp.send(export_request([make_span(2, name="agent:researcher")])).status_code == 200
    call = Event.objects.get(span_id=span_id(3))
    assert call.attributes == {"user_id": "u-1", "tag.region": "eu"}
    assert call.service == "support-bot" and call.section == "agent:researcher"
    assert Run.objects.get(project=project).calls == 1


def test_a_parent_that_never_comes_is_waited_for_then_let_go(otlp: Otlp, project, api):
    # A call whose parent is in a service that does not export to us.
    assert otlp.send(export_request([make_span(3, parent=2, attrs=chat_attrs())])).status_code == 200
    assert otlp_pending_flush() == 0  # not yet OTLP_PENDING_SECONDS old
    assert not Event.objects.exists()
    later = timezone.now() + dt.timedelta(seconds=61)
    assert otlp_pending_flush(now=later) == 1
    assert not PendingSpan.objects.exists()
    call = Event.objects.get(span_id=span_id(3))
    assert (call.section, call.section_path, call.parent_span_id) == (None, None, span_id(2))
    assert Run.objects.get(project=project).cost_usd == pytest.approx(1200 * GPT4O_IN + 150 * GPT4O_OUT, abs=1e-12)
    assert otlp_pending_flush(now=later) == 0  # nothing left; a second flush stores nothing twice
    # If the parent comes after all, it is a section and the tree links the call under it.
    assert otlp.send(export_request([make_span(2, name="agent:late")])).status_code == 200
    tree = api.get(f"/runs/{TRACE}").json()["tree"]
    assert [(n["name"], n["calls"]) for n in tree] == [("agent:late", 1)]


def test_spans_without_llm_calls_are_not_stored(otlp: Otlp, project):
    spans = [
        make_span(1, name="GET /health", attrs={"http.request.method": "GET"}),
        make_span(2, parent=1, name="SELECT", attrs={"db.system": "postgresql"}),
    ]
    response = otlp.send(export_request(spans))
    assert response.status_code == 200 and not response_message(response).HasField("partial_success")
    assert not Event.objects.exists() and not Run.objects.exists()


def test_a_loop_of_parents_is_stored_once_each(otlp: Otlp, project):
    spans = [
        make_span(1, parent=2, name="a"),
        make_span(2, parent=1, name="b"),
        make_span(3, parent=2, attrs=chat_attrs()),
    ]
    assert otlp.send(export_request(spans)).status_code == 200
    assert Event.objects.filter(project=project).count() == 3
    assert Run.objects.get(project=project).calls == 1


def test_nul_and_long_text_are_stored_safely(otlp: Otlp, project):
    attrs = chat_attrs(model="m\x00" + "x" * 300, **{"user.id": "u\x00"})
    spans = [make_span(1, name="n\x00" * 200, attrs=attrs)]
    assert otlp.send(export_request(spans)).status_code == 200
    event = Event.objects.get(project=project)
    assert event.model is not None and len(event.model) == 128
    assert "\x00" not in event.model and "\x00" not in event.name
    assert event.attributes == {"user_id": "u\ufffd"}


def test_json_enum_names_and_numbers_and_snake_case(otlp: Otlp, project):
    data = otlp_json(export_request(agent_tree()))
    spans = data["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[0]["kind"] = 1
    spans[1]["kind"] = "SPAN_KIND_INTERNAL"
    spans[2]["start_time_unix_nano"] = spans[2].pop("startTimeUnixNano")
    spans[3]["startTimeUnixNano"] = int(spans[3]["startTimeUnixNano"])  # a number, as some exporters send
    assert otlp.send_json(data).status_code == 200
    assert Run.objects.get(project=project).calls == 2


def test_an_id_neither_hex_nor_base64_rejects_that_span_only(otlp: Otlp, project):
    data = otlp_json(export_request([make_span(1, attrs=chat_attrs()), make_span(2, attrs=chat_attrs())]))
    data["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] = "not-an-id!"
    response = otlp.send_json(data)
    assert response.status_code == 200
    assert response_message(response).partial_success.rejected_spans == 1
    assert list(Event.objects.values_list("span_id", flat=True)) == [span_id(2)]


def test_error_responses_are_in_the_requests_content_type(otlp: Otlp):
    response = otlp.post(b"{", "application/json")
    status = json_format.Parse(response.content, Status())
    assert status.code == 3


def test_a_span_older_than_the_projects_retention_is_rejected_by_name(otlp: Otlp, project):
    from events.retention import retention_cache_clear

    project.event_retention_days = 3650
    project.save()
    retention_cache_clear()
    old = make_span(1, trace=OTHER_TRACE, attrs=chat_attrs())
    old.start_time_unix_nano -= 20 * 365 * 86400 * 10**9  # 20 years before T0
    old.end_time_unix_nano -= 20 * 365 * 86400 * 10**9
    recent = make_span(2, attrs=chat_attrs())  # T0 (2026-11-26): within 10 years
    response = otlp.send(export_request([old, recent]))
    partial = response_message(response).partial_success
    assert partial.rejected_spans == 1 and "retention of 3650 days" in partial.error_message
    assert list(Event.objects.values_list("span_id", flat=True)) == [span_id(2)]
