"""Real producers against a live collector: the OpenTelemetry SDK with its
OTLP/HTTP protobuf exporter (and an OTLP/JSON exporter built on the SDK's own
encoder), driving OTel's `opentelemetry-instrumentation-openai-v2` and
OpenLLMetry's `opentelemetry-instrumentation-openai` around the real `openai`
client (3.x, on httpx2), whose upstream is a MockTransport.

Expected bills are computed by hand from OpenAI's published prices per 1M
tokens; `test_published_rates_match_genai_prices` checks those rates against
genai-prices' data (the source the collector prices from, not our registry).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import gzip
import json
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

import httpx2
import openai
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from events.models import Event, Run
from projects.models import ApiKey, Project

GPT4O = {"input": 2.50, "cached": 1.25, "output": 10.00}  # gpt-4o-2024-08-06, USD per 1M tokens
EMBED_SMALL = 0.02  # text-embedding-3-small, USD per 1M input tokens
M = 1_000_000


def test_published_rates_match_genai_prices():
    from genai_prices import Usage, calc_price

    when = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
    gpt4o = calc_price(
        Usage(input_tokens=M, output_tokens=M),
        model_ref="gpt-4o-2024-08-06",
        provider_id="openai",
        genai_request_timestamp=when,
    ).model_price
    assert (float(gpt4o.input_mtok), float(gpt4o.cache_read_mtok), float(gpt4o.output_mtok)) == (
        GPT4O["input"],
        GPT4O["cached"],
        GPT4O["output"],
    )
    embed = calc_price(
        Usage(input_tokens=M), model_ref="text-embedding-3-small", provider_id="openai", genai_request_timestamp=when
    ).model_price
    assert float(embed.input_mtok) == EMBED_SMALL


# --- A fake OpenAI upstream ---------------------------------------------------------------


class Upstream:
    """Chat completions and embeddings as OpenAI answers them."""

    def __init__(self, usage: dict[str, Any]) -> None:
        self.usage = usage
        self.requests: list[str] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content or b"{}")
        self.requests.append(request.url.path)
        if request.url.path.endswith("/embeddings"):
            return httpx2.Response(
                200,
                json={
                    "object": "list",
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                    "model": body["model"],
                    "usage": {"prompt_tokens": 17, "total_tokens": 17},
                },
            )
        return httpx2.Response(
            200,
            json={
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1764147600,
                "model": "gpt-4o-2024-08-06",
                "service_tier": "default",
                "system_fingerprint": "fp_1",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
                "usage": self.usage,
            },
        )


PLAIN_USAGE = {"prompt_tokens": 1200, "completion_tokens": 150, "total_tokens": 1350}
CACHED_USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 150,
    "total_tokens": 1350,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 64, "audio_tokens": 0},
}


def client_for(upstream: Upstream) -> openai.OpenAI:
    return openai.OpenAI(
        api_key="sk-test",
        base_url="https://api.openai.com/v1",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(upstream)),
    )


# --- The collector, a key, and an OTLP/JSON exporter -------------------------------------------


@pytest.fixture
def collector(live_server, transactional_db) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    project = Project.objects.create(name="otel-app")
    _, key = ApiKey.generate(project=project)
    return {"url": live_server.url, "key": key, "project": project}


def get_json(url: str, key: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


class OtlpJsonExporter(SpanExporter):
    """OTLP/HTTP with a JSON body: the SDK's own protobuf encoding, written in
    the OTLP/JSON form (json_format's lowerCamelCase and int64 strings; ids
    turned from base64 into hex as the OTLP spec asks), gzipped."""

    def __init__(self, endpoint: str, key: str, ids: str = "hex") -> None:
        self.endpoint = endpoint
        self.key = key
        self.ids = ids
        self.responses: list[tuple[int, dict[str, Any]]] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = json_format.MessageToDict(encode_spans(spans))
        if self.ids == "hex":
            for resource_spans in data.get("resourceSpans", []):
                for scope_spans in resource_spans.get("scopeSpans", []):
                    for span in scope_spans.get("spans", []):
                        for key in ("traceId", "spanId", "parentSpanId"):
                            if span.get(key):
                                span[key] = base64.b64decode(span[key]).hex()
        request = urllib.request.Request(
            self.endpoint,
            data=gzip.compress(json.dumps(data).encode()),
            headers={
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
                "Authorization": f"Bearer {self.key}",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            self.responses.append((response.status, json.loads(response.read())))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def provider_with(processor: Any) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(processor)
    return provider


def openai_class_attributes() -> dict[tuple[type, str], Any]:
    """Every attribute of every class in the loaded openai modules."""
    import sys

    found: dict[tuple[type, str], Any] = {}
    for name, module in list(sys.modules.items()):
        if not (name == "openai" or name.startswith("openai.")) or module is None:
            continue
        for value in list(vars(module).values()):
            if isinstance(value, type) and value.__module__ == name:
                for attr, member in list(vars(value).items()):
                    found[(value, attr)] = member
    return found


@contextlib.contextmanager
def openai_restored() -> Iterator[None]:
    """Put back what an instrumentor patched into openai's classes.

    OpenLLMetry's uninstrument() leaves some wrappers in place (its streams
    stay wrapped), and this pytest process goes on to test our own SDK on the
    same openai classes: they must be the pristine ones again."""
    before = openai_class_attributes()
    try:
        yield
    finally:
        after = openai_class_attributes()
        for (cls, attr), member in before.items():
            if after.get((cls, attr)) is not member:
                setattr(cls, attr, member)
        # Classes first imported meanwhile (openai loads modules lazily) were never patched.
        known = {cls for cls, _ in before}
        for cls, attr in after.keys() - before.keys():
            if cls in known:
                delattr(cls, attr)


@pytest.fixture
def openai_v2() -> Iterator[Any]:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    with openai_restored():
        instrumentor = OpenAIInstrumentor()
        yield instrumentor
        instrumentor.uninstrument()


@pytest.fixture
def openllmetry() -> Iterator[Any]:
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    with openai_restored():
        instrumentor = OpenAIInstrumentor()
        yield instrumentor
        instrumentor.uninstrument()


def agent_run(provider: TracerProvider, client: openai.OpenAI) -> str:
    """An agent section with a chat call and an embeddings call; returns the trace id (hex)."""
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("agent:researcher", attributes={"user.id": "u-7"}) as root:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        client.embeddings.create(model="text-embedding-3-small", input="what is OTLP?")
        return format(root.get_span_context().trace_id, "032x")


# --- OTel's openai-v2 instrumentation, protobuf exporter ------------------------------------------


def test_openai_v2_over_protobuf(collector, openai_v2, monkeypatch):
    # Configured as the README says: the exporter and the service name from the environment.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{collector['url']}/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{collector['key']}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "support-bot")
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    openai_v2.instrument(tracer_provider=provider)
    upstream = Upstream(PLAIN_USAGE)
    trace = agent_run(provider, client_for(upstream))
    assert provider.force_flush(10_000)
    provider.shutdown()
    assert upstream.requests == ["/v1/chat/completions", "/v1/embeddings"]

    chat = (1200 * GPT4O["input"] + 150 * GPT4O["output"]) / M  # 0.0045
    embed = 17 * EMBED_SMALL / M  # 0.00000034
    run = Run.objects.get(project=collector["project"], run_id=trace)
    assert (run.calls, run.events, run.input_tokens, run.output_tokens) == (2, 3, 1217, 150)
    assert run.service == "support-bot"
    assert abs(run.cost_usd - (chat + embed)) < 1e-9

    calls = {e.endpoint: e for e in Event.objects.filter(run_id=trace, span_type="llm")}
    assert set(calls) == {"chat", "embeddings"}
    assert (calls["chat"].model, calls["chat"].provider, calls["chat"].cost_status) == (
        "gpt-4o-2024-08-06",
        "openai",
        "exact",
    )
    assert calls["chat"].price_context == {"service_tier": "default"}
    assert abs(calls["embeddings"].cost_usd - embed) < 1e-12

    detail = get_json(f"{collector['url']}/runs/{trace}", collector["key"])
    (agent,) = detail["tree"]
    assert (agent["name"], agent["span_type"], agent["calls"]) == ("agent:researcher", "section", 2)
    assert abs(agent["cost_usd"] - (chat + embed)) < 1e-9
    assert sorted(child["name"] for child in agent["children"]) == ["chat gpt-4o", "embeddings text-embedding-3-small"]
    assert Event.objects.get(run_id=trace, span_type="section").attributes == {"user_id": "u-7"}


# --- OpenLLMetry, protobuf exporter, one request per span (children first) ------------------------


def test_openllmetry_over_protobuf_span_by_span(collector, openllmetry):
    exporter = OTLPSpanExporter(
        endpoint=f"{collector['url']}/v1/traces", headers={"Authorization": f"Bearer {collector['key']}"}
    )
    # SimpleSpanProcessor exports each span when it ends: the calls reach the
    # collector before the agent span they belong to.
    provider = provider_with(SimpleSpanProcessor(exporter))
    openllmetry.instrument(tracer_provider=provider)
    trace = agent_run(provider, client_for(Upstream(CACHED_USAGE)))
    provider.shutdown()

    chat = ((1200 - 1024) * GPT4O["input"] + 1024 * GPT4O["cached"] + 150 * GPT4O["output"]) / M  # 0.00322
    embed = 17 * EMBED_SMALL / M
    run = Run.objects.get(project=collector["project"], run_id=trace)
    assert (run.calls, run.events) == (2, 3)
    assert abs(run.cost_usd - (chat + embed)) < 1e-9

    call = Event.objects.get(run_id=trace, span_type="llm", endpoint="chat")
    assert (call.input_tokens, call.cached_input_tokens, call.output_tokens, call.reasoning_tokens) == (
        1200,
        1024,
        150,
        64,
    )
    assert call.cost_details == pytest.approx(
        {
            "input_tokens": 176 * GPT4O["input"] / M,
            "cached_input_tokens": 1024 * GPT4O["cached"] / M,
            "output_tokens": 150 * GPT4O["output"] / M,
        },
        abs=1e-12,
    )
    assert call.provider_host == "api.openai.com"  # from OpenLLMetry's gen_ai.openai.api_base
    # The calls came first and waited for the agent span: they carry its label.
    assert (call.section, call.section_path) == ("agent:researcher", "agent:researcher")

    detail = get_json(f"{collector['url']}/runs/{trace}", collector["key"])
    (agent,) = detail["tree"]
    assert agent["name"] == "agent:researcher" and agent["calls"] == 2
    assert abs(agent["cost_usd"] - (chat + embed)) < 1e-9


# --- OTLP/JSON: hex ids, then the same spans again with base64 ids ----------------------------------


def test_openllmetry_over_otlp_json_and_a_resend(collector, openllmetry):
    exporter = OtlpJsonExporter(f"{collector['url']}/v1/traces", collector["key"])
    captured: list[ReadableSpan] = []

    class Capture(SimpleSpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            captured.append(span)

    provider = provider_with(BatchSpanProcessor(exporter))
    provider.add_span_processor(Capture(exporter))
    openllmetry.instrument(tracer_provider=provider)
    trace = agent_run(provider, client_for(Upstream(CACHED_USAGE)))
    assert provider.force_flush(10_000)
    assert exporter.responses == [(200, {})]

    chat = ((1200 - 1024) * GPT4O["input"] + 1024 * GPT4O["cached"] + 150 * GPT4O["output"]) / M
    embed = 17 * EMBED_SMALL / M
    run = Run.objects.get(project=collector["project"], run_id=trace)
    assert (run.calls, run.events) == (2, 3)
    assert abs(run.cost_usd - (chat + embed)) < 1e-9

    # The exporter retries a batch it thinks was lost: nothing is counted twice,
    # whichever id encoding it uses.
    for ids in ("hex", "base64"):
        again = OtlpJsonExporter(f"{collector['url']}/v1/traces", collector["key"], ids=ids)
        assert again.export(captured) == SpanExportResult.SUCCESS
        assert again.responses == [(200, {})]
    run.refresh_from_db()
    assert (run.calls, run.events) == (2, 3)
    assert abs(run.cost_usd - (chat + embed)) < 1e-9
    assert Event.objects.filter(run_id=trace).count() == 3
    provider.shutdown()
