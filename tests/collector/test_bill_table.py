"""SPEC §3 (cost v2): every call costed as the provider bills it.

A table of model ids × response shapes, each posted through the real ingest
API; the stored Event and the call node of GET /runs/{run_id} must carry the
provider's bill to 1e-9 USD.

Every expected figure is computed here, by hand, from the prices the provider
publishes, written below as constants with their source.  Nothing is read from
pricing/registry.json, genai-prices or any product code: a wrong row there
must fail this test, not move it.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import re
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
from django.core.management import call_command

from events.models import Event
from tests.conftest import Api, make_event

pytestmark = pytest.mark.django_db

EXACT = 1e-9
M = 1_000_000  # prices are USD per 1M units


class P(NamedTuple):
    """Published text-token prices, USD per 1M tokens.  cached: None where the
    provider publishes no cached-input rate (no discount: billed as input)."""

    input: float
    cached: float | None
    output: float


def tokens(p: P, input_tokens: int, output_tokens: int, cached: int = 0) -> float:
    """The bill for text tokens: input includes cached, output includes reasoning."""
    cached_rate = p.input if p.cached is None else p.cached
    return ((input_tokens - cached) * p.input + cached * cached_rate + output_tokens * p.output) / M


# --- Published prices ----------------------------------------------------------
#
# OpenAI: the API pricing page, https://platform.openai.com/docs/pricing
# (= https://developers.openai.com/api/docs/pricing, https://openai.com/api/pricing/),
# "Standard" tab unless noted; input / cached input / output per 1M tokens.
GPT_5_4 = P(2.50, 0.25, 15.00)
# developers.openai.com/api/docs/models/gpt-5.4: "prompts with >272K input tokens
# are priced at 2x input and 1.5x output for the full session for standard,
# batch, and flex."
GPT_5_4_LONG = P(5.00, 0.50, 22.50)
GPT_5_4_LONG_CONTEXT_FROM = 272_000  # input tokens strictly above this
GPT_5_4_MINI = P(0.75, 0.075, 4.50)
GPT_5_2 = P(1.75, 0.175, 14.00)
GPT_5_1 = P(1.25, 0.125, 10.00)
GPT_5 = P(1.25, 0.125, 10.00)
GPT_5_MINI = P(0.25, 0.025, 2.00)
GPT_5_NANO = P(0.05, 0.005, 0.40)
GPT_5_PRO = P(15.00, None, 120.00)
O3_PRO = P(20.00, None, 80.00)
O1_PRO = P(150.00, None, 600.00)
O1 = P(15.00, 7.50, 60.00)
O3 = P(2.00, 0.50, 8.00)  # since OpenAI's o3 price cut of 2025-06-10
O3_AT_LAUNCH = P(10.00, 2.50, 40.00)  # o3 from its launch (2025-04-16) until 2025-06-10
O3_MINI = P(1.10, 0.55, 4.40)
O4_MINI = P(1.10, 0.275, 4.40)
O3_DEEP_RESEARCH = P(10.00, 2.50, 40.00)
GPT_4_1 = P(2.00, 0.50, 8.00)
GPT_4_5_PREVIEW = P(75.00, 37.50, 150.00)
GPT_4_32K = P(60.00, None, 120.00)
GPT_4 = P(30.00, None, 60.00)  # gpt-4-0613
GPT_4_TURBO = P(10.00, None, 30.00)  # gpt-4-turbo-2024-04-09, gpt-4-0125-preview, gpt-4-1106-preview
GPT_4O_2024_05_13 = P(5.00, None, 15.00)  # also gpt-4o's own price from its launch (2024-05-13)
GPT_4O_2024_08_06 = P(2.50, 1.25, 10.00)
GPT_4O_MINI = P(0.15, 0.075, 0.60)  # gpt-4o-mini-2024-07-18
CHATGPT_4O_LATEST = P(5.00, None, 15.00)
GPT_3_5_TURBO = P(0.50, None, 1.50)  # gpt-3.5-turbo-0125
GPT_3_5_TURBO_1106 = P(1.00, None, 2.00)
GPT_3_5_TURBO_0613 = P(1.50, None, 2.00)
GPT_3_5_TURBO_16K_0613 = P(3.00, None, 4.00)
GPT_3_5_TURBO_INSTRUCT = P(1.50, None, 2.00)  # legacy completions
DAVINCI_002 = P(2.00, None, 2.00)  # legacy completions
BABBAGE_002 = P(0.40, None, 0.40)  # legacy completions
TEXT_EMBEDDING_3_SMALL = 0.02
TEXT_EMBEDDING_3_LARGE = 0.13
TEXT_EMBEDDING_ADA_002 = 0.10
# Audio models: text tokens, and audio tokens per 1M (pricing page, "Audio tokens").
GPT_4O_AUDIO_PREVIEW = P(2.50, None, 10.00)
GPT_4O_AUDIO_PREVIEW_AUDIO = (40.00, 80.00)  # audio input, audio output (since 2024-12-17)
GPT_4O_AUDIO_PREVIEW_AUDIO_AT_LAUNCH = (100.00, 200.00)  # from its launch (2024-10-01) until 2024-12-17
GPT_4O_MINI_AUDIO_PREVIEW = P(0.15, None, 0.60)
GPT_4O_MINI_AUDIO_PREVIEW_AUDIO = (10.00, 20.00)
# "Flex" tab (service_tier="flex").
O3_FLEX = P(1.00, 0.25, 4.00)
O4_MINI_FLEX = P(0.55, 0.138, 2.20)
GPT_5_FLEX = P(0.625, 0.0625, 5.00)
GPT_5_MINI_FLEX = P(0.125, 0.0125, 1.00)
GPT_5_4_FLEX_LONG = P(2.50, None, 11.25)  # flex $1.25 / $7.50, ×2 input and ×1.5 output above 272K input
# "Priority" tab (service_tier="priority").
GPT_5_PRIORITY = P(2.50, 0.25, 20.00)
GPT_5_MINI_PRIORITY = P(0.45, 0.045, 3.60)
O3_PRIORITY = P(3.50, 0.875, 14.00)
GPT_4O_PRIORITY = P(4.25, 2.125, 17.00)
# "Batch" tab (Batch API: 50% of standard, since its launch in April 2024).
GPT_5_BATCH = P(0.625, 0.0625, 5.00)
GPT_4O_BATCH = P(1.25, None, 5.00)
GPT_4O_MINI_BATCH = P(0.075, None, 0.30)
O3_BATCH = P(1.00, None, 4.00)
TEXT_EMBEDDING_3_SMALL_BATCH = 0.01
TEXT_EMBEDDING_3_LARGE_BATCH = 0.065
# "Built-in tools".
WEB_SEARCH_PER_CALL = 10.00 / 1000  # web search (gpt-5, o-series): $10 / 1k calls, content tokens at model rates
FILE_SEARCH_PER_CALL = 2.50 / 1000  # file search tool calls: $2.50 / 1k calls
CODE_INTERPRETER_PER_SESSION = 0.03  # code interpreter: $0.03 per container
# "Fine-tuning" (inference on a fine-tuned model).
FT_GPT_4O_MINI = P(0.30, 0.15, 1.20)  # gpt-4o-mini-2024-07-18
FT_GPT_4O = P(3.75, 1.875, 15.00)  # gpt-4o-2024-08-06
FT_GPT_3_5_TURBO = P(3.00, None, 6.00)
# Azure OpenAI: https://azure.microsoft.com/pricing/details/cognitive-services/openai-service/
# GPT-3.5-Turbo-0125 (deployment model id "gpt-35-turbo"): $0.0005 / 1K input, $0.0015 / 1K output.
AZURE_GPT_35_TURBO = P(0.50, None, 1.50)
# Pinecone: https://www.pinecone.io/pricing/ (serverless, Standard plan).
PINECONE_PER_READ_UNIT = 16.00 / M  # $16 per 1M read units
PINECONE_PER_WRITE_UNIT = 4.00 / M  # $4 per 1M write units
PINECONE_LLAMA_TEXT_EMBED_V2_PER_TOKEN = 0.16 / M  # inference embed: $0.16 per 1M tokens
PINECONE_BGE_RERANKER_V2_M3_PER_UNIT = 2.00 / 1000  # inference rerank: $2 per 1k requests (rerank units)


class Case(NamedTuple):
    id: str
    event_fields: dict[str, Any]
    expected_usd: float
    expected_status: str = "exact"


def chat(model: str, input_tokens: int, output_tokens: int, **more: Any) -> dict[str, Any]:
    return {"model": model, "input_tokens": input_tokens, "output_tokens": output_tokens, **more}


def responses(model: str, input_tokens: int, output_tokens: int, **more: Any) -> dict[str, Any]:
    return chat(model, input_tokens, output_tokens, name="responses.create", endpoint="responses.create", **more)


def completions(model: str, input_tokens: int, output_tokens: int, **more: Any) -> dict[str, Any]:
    return chat(model, input_tokens, output_tokens, name="completions.create", endpoint="completions.create", **more)


def embeddings(model: str, input_tokens: int, **more: Any) -> dict[str, Any]:
    return chat(model, input_tokens, 0, name="embeddings.create", endpoint="embeddings.create", **more)


def pinecone(op: str, **more: Any) -> dict[str, Any]:
    return {
        "span_type": "vector_db",
        "provider": "pinecone",
        "model": None,
        "name": op,
        "endpoint": op,
        "input_tokens": 0,
        "output_tokens": 0,
        **more,
    }


def tier(name: str) -> dict[str, Any]:
    return {"price_context": {"service_tier": name}}


BATCH = {"price_context": {"processing": "batch"}}

CASES = [
    # --- gpt-5.x ---------------------------------------------------------------
    Case("gpt-5", chat("gpt-5", 3_000, 800, reasoning_tokens=500), tokens(GPT_5, 3_000, 800)),
    Case(
        "gpt-5-2025-08-07-cached",
        chat("gpt-5-2025-08-07", 12_000, 1_500, cached_input_tokens=8_192),
        tokens(GPT_5, 12_000, 1_500, cached=8_192),
    ),
    Case(
        "gpt-5-mini-cached",
        chat("gpt-5-mini", 5_000, 700, cached_input_tokens=2_048),
        tokens(GPT_5_MINI, 5_000, 700, cached=2_048),
    ),
    Case("gpt-5-nano", chat("gpt-5-nano", 40_000, 4_000), tokens(GPT_5_NANO, 40_000, 4_000)),
    Case(
        "gpt-5.1-cached",
        chat("gpt-5.1", 9_000, 1_200, cached_input_tokens=4_096),
        tokens(GPT_5_1, 9_000, 1_200, cached=4_096),
    ),
    Case(
        "gpt-5.2-cached",
        responses("gpt-5.2", 20_000, 3_000, cached_input_tokens=10_000, reasoning_tokens=2_000),
        tokens(GPT_5_2, 20_000, 3_000, cached=10_000),
    ),
    Case(
        "gpt-5.4-cached",
        responses("gpt-5.4", 50_000, 4_000, cached_input_tokens=30_000),
        tokens(GPT_5_4, 50_000, 4_000, cached=30_000),
    ),
    # The first row: 10k in (4k cached) / 2k out = $0.0138.
    Case(
        "gpt-5.4-mini-2026-03-17-cached",
        chat("gpt-5.4-mini-2026-03-17", 10_000, 2_000, cached_input_tokens=4_000),
        tokens(GPT_5_4_MINI, 10_000, 2_000, cached=4_000),
    ),
    # Long context: the whole call at the >272K rates, only above the threshold.
    Case(
        "gpt-5.4-long-context-300k",
        responses("gpt-5.4", 300_000, 5_000),
        tokens(GPT_5_4_LONG, 300_000, 5_000),
    ),
    Case(
        "gpt-5.4-at-272k-is-standard",
        responses("gpt-5.4", GPT_5_4_LONG_CONTEXT_FROM, 5_000),
        tokens(GPT_5_4, GPT_5_4_LONG_CONTEXT_FROM, 5_000),
    ),
    # --- -pro models: never the base model's price -------------------------------
    Case("o3-pro", responses("o3-pro", 10_000, 2_000, reasoning_tokens=1_500), tokens(O3_PRO, 10_000, 2_000)),
    Case("gpt-5-pro", responses("gpt-5-pro", 6_000, 3_000), tokens(GPT_5_PRO, 6_000, 3_000)),
    Case("o1-pro", responses("o1-pro", 2_000, 1_000, reasoning_tokens=800), tokens(O1_PRO, 2_000, 1_000)),
    # --- o-series ------------------------------------------------------------------
    Case(
        "o1-cached",
        chat("o1", 4_000, 2_500, cached_input_tokens=1_024, reasoning_tokens=2_000),
        tokens(O1, 4_000, 2_500, cached=1_024),
    ),
    Case(
        "o3-cached",
        chat("o3", 10_000, 2_000, cached_input_tokens=3_000, reasoning_tokens=1_600),
        tokens(O3, 10_000, 2_000, cached=3_000),
    ),
    Case(
        "o3-mini-reasoning",
        chat("o3-mini", 100, 1_000, reasoning_tokens=800),
        tokens(O3_MINI, 100, 1_000),
    ),
    Case(
        "o4-mini-cached-reasoning",
        chat("o4-mini", 8_000, 3_000, cached_input_tokens=6_000, reasoning_tokens=2_500),
        tokens(O4_MINI, 8_000, 3_000, cached=6_000),
    ),
    Case(
        "o3-deep-research-web-search",
        responses(
            "o3-deep-research",
            60_000,
            8_000,
            cached_input_tokens=20_000,
            reasoning_tokens=6_000,
            usage_details={"web_search_calls": 7},
        ),
        tokens(O3_DEEP_RESEARCH, 60_000, 8_000, cached=20_000) + 7 * WEB_SEARCH_PER_CALL,
    ),
    # --- GPT-4.x and dated snapshots -------------------------------------------------
    Case("gpt-4.1-cached", chat("gpt-4.1", 3_000, 500, cached_input_tokens=1_500), tokens(GPT_4_1, 3_000, 500, 1_500)),
    Case(
        "gpt-4.5-preview-cached",
        chat("gpt-4.5-preview", 2_000, 300, cached_input_tokens=1_024),
        tokens(GPT_4_5_PREVIEW, 2_000, 300, cached=1_024),
    ),
    Case("gpt-4-32k", chat("gpt-4-32k", 1_500, 400), tokens(GPT_4_32K, 1_500, 400)),
    Case("gpt-4", chat("gpt-4", 1_500, 400), tokens(GPT_4, 1_500, 400)),
    Case("gpt-4-0613", chat("gpt-4-0613", 900, 100), tokens(GPT_4, 900, 100)),
    Case("gpt-4-turbo", chat("gpt-4-turbo", 2_500, 600), tokens(GPT_4_TURBO, 2_500, 600)),
    Case("gpt-4-turbo-2024-04-09", chat("gpt-4-turbo-2024-04-09", 2_500, 600), tokens(GPT_4_TURBO, 2_500, 600)),
    Case("gpt-4-0125-preview", chat("gpt-4-0125-preview", 3_000, 700), tokens(GPT_4_TURBO, 3_000, 700)),
    Case("gpt-4-1106-preview", chat("gpt-4-1106-preview", 3_000, 700), tokens(GPT_4_TURBO, 3_000, 700)),
    Case("gpt-4o-2024-05-13", chat("gpt-4o-2024-05-13", 1_000, 200), tokens(GPT_4O_2024_05_13, 1_000, 200)),
    Case(
        "gpt-4o-2024-08-06-cached",
        chat("gpt-4o-2024-08-06", 5_000, 300, cached_input_tokens=2_560),
        tokens(GPT_4O_2024_08_06, 5_000, 300, cached=2_560),
    ),
    # README / SPEC §2 example: 176 uncached + 1,024 cached in, 150 out = $0.00322.
    Case(
        "readme-example-gpt-4o-2024-08-06",
        chat("gpt-4o-2024-08-06", 1_200, 150, cached_input_tokens=1_024),
        tokens(GPT_4O_2024_08_06, 1_200, 150, cached=1_024),
    ),
    Case(
        "gpt-4o-before-2024-08-06",
        chat("gpt-4o", 1_000, 200, started_at="2024-06-01T12:00:00Z"),
        tokens(GPT_4O_2024_05_13, 1_000, 200),
    ),
    Case(
        "gpt-4o-mini-2024-07-18-cached",
        chat("gpt-4o-mini-2024-07-18", 7_000, 900, cached_input_tokens=3_072),
        tokens(GPT_4O_MINI, 7_000, 900, cached=3_072),
    ),
    Case("chatgpt-4o-latest", chat("chatgpt-4o-latest", 1_000, 200), tokens(CHATGPT_4O_LATEST, 1_000, 200)),
    # --- gpt-3.5 ---------------------------------------------------------------------
    Case("gpt-3.5-turbo", chat("gpt-3.5-turbo", 1_000, 300), tokens(GPT_3_5_TURBO, 1_000, 300)),
    Case("gpt-3.5-turbo-0125", chat("gpt-3.5-turbo-0125", 1_000, 300), tokens(GPT_3_5_TURBO, 1_000, 300)),
    Case("gpt-3.5-turbo-1106", chat("gpt-3.5-turbo-1106", 1_000, 300), tokens(GPT_3_5_TURBO_1106, 1_000, 300)),
    Case("gpt-3.5-turbo-0613", chat("gpt-3.5-turbo-0613", 1_000, 300), tokens(GPT_3_5_TURBO_0613, 1_000, 300)),
    Case(
        "gpt-3.5-turbo-16k-0613",
        chat("gpt-3.5-turbo-16k-0613", 1_000, 300),
        tokens(GPT_3_5_TURBO_16K_0613, 1_000, 300),
    ),
    Case(
        "gpt-3.5-turbo-instruct-completions",
        completions("gpt-3.5-turbo-instruct", 1_200, 250),
        tokens(GPT_3_5_TURBO_INSTRUCT, 1_200, 250),
    ),
    Case("davinci-002-completions", completions("davinci-002", 1_000, 1_000), tokens(DAVINCI_002, 1_000, 1_000)),
    Case("babbage-002-completions", completions("babbage-002", 1_000, 1_000), tokens(BABBAGE_002, 1_000, 1_000)),
    # --- embeddings ------------------------------------------------------------------
    Case(
        "text-embedding-3-small",
        embeddings("text-embedding-3-small", 12_345),
        12_345 * TEXT_EMBEDDING_3_SMALL / M,
    ),
    Case(
        "text-embedding-3-large",
        embeddings("text-embedding-3-large", 12_345),
        12_345 * TEXT_EMBEDDING_3_LARGE / M,
    ),
    Case(
        "text-embedding-ada-002",
        embeddings("text-embedding-ada-002", 12_345),
        12_345 * TEXT_EMBEDDING_ADA_002 / M,
    ),
    # --- service tiers ----------------------------------------------------------------
    # The rows: o3 flex 10k/2k = $0.015 (not $0.030); gpt-5 priority 10k/2k = $0.056.
    Case("o3-flex", chat("o3", 10_000, 2_000, **tier("flex")), tokens(O3_FLEX, 10_000, 2_000)),
    Case(
        "o3-flex-cached",
        chat("o3", 10_000, 2_000, cached_input_tokens=4_000, **tier("flex")),
        tokens(O3_FLEX, 10_000, 2_000, cached=4_000),
    ),
    Case(
        "o4-mini-flex-cached",
        chat("o4-mini", 10_000, 2_000, cached_input_tokens=5_000, **tier("flex")),
        tokens(O4_MINI_FLEX, 10_000, 2_000, cached=5_000),
    ),
    Case(
        "gpt-5-flex-cached",
        responses("gpt-5", 10_000, 2_000, cached_input_tokens=4_000, **tier("flex")),
        tokens(GPT_5_FLEX, 10_000, 2_000, cached=4_000),
    ),
    Case(
        "gpt-5.4-flex-long-context-300k",
        responses("gpt-5.4", 300_000, 5_000, **tier("flex")),
        tokens(GPT_5_4_FLEX_LONG, 300_000, 5_000),
    ),
    Case("gpt-5-mini-flex", chat("gpt-5-mini", 10_000, 2_000, **tier("flex")), tokens(GPT_5_MINI_FLEX, 10_000, 2_000)),
    Case("gpt-5-priority", chat("gpt-5", 10_000, 2_000, **tier("priority")), tokens(GPT_5_PRIORITY, 10_000, 2_000)),
    Case(
        "gpt-5-mini-priority-cached",
        chat("gpt-5-mini", 10_000, 2_000, cached_input_tokens=2_000, **tier("priority")),
        tokens(GPT_5_MINI_PRIORITY, 10_000, 2_000, cached=2_000),
    ),
    Case("o3-priority", chat("o3", 10_000, 2_000, **tier("priority")), tokens(O3_PRIORITY, 10_000, 2_000)),
    Case(
        "gpt-4o-priority-cached",
        chat("gpt-4o", 10_000, 2_000, cached_input_tokens=2_000, **tier("priority")),
        tokens(GPT_4O_PRIORITY, 10_000, 2_000, cached=2_000),
    ),
    Case("gpt-5-default-tier", chat("gpt-5", 10_000, 2_000, **tier("default")), tokens(GPT_5, 10_000, 2_000)),
    Case("gpt-5-auto-tier", chat("gpt-5", 10_000, 2_000, **tier("auto")), tokens(GPT_5, 10_000, 2_000)),
    Case("o3-default-tier", chat("o3", 10_000, 2_000, **tier("default")), tokens(O3, 10_000, 2_000)),
    # --- batch --------------------------------------------------------------------------
    Case(
        "gpt-5-batch-cached",
        responses("gpt-5", 10_000, 2_000, cached_input_tokens=4_000, **BATCH),
        tokens(GPT_5_BATCH, 10_000, 2_000, cached=4_000),
    ),
    Case("gpt-4o-batch", chat("gpt-4o", 10_000, 2_000, **BATCH), tokens(GPT_4O_BATCH, 10_000, 2_000)),
    Case("gpt-4o-mini-batch", chat("gpt-4o-mini", 10_000, 2_000, **BATCH), tokens(GPT_4O_MINI_BATCH, 10_000, 2_000)),
    Case("o3-batch", chat("o3", 10_000, 2_000, **BATCH), tokens(O3_BATCH, 10_000, 2_000)),
    Case(
        "text-embedding-3-small-batch",
        embeddings("text-embedding-3-small", 500_000, **BATCH),
        500_000 * TEXT_EMBEDDING_3_SMALL_BATCH / M,
    ),
    Case(
        "text-embedding-3-large-batch",
        embeddings("text-embedding-3-large", 500_000, **BATCH),
        500_000 * TEXT_EMBEDDING_3_LARGE_BATCH / M,
    ),
    # --- price history: each call at the price of its own date ----------------------------
    Case(
        "o3-at-launch-price-2025-05-01-cached",
        chat("o3", 10_000, 2_000, cached_input_tokens=4_000, started_at="2025-05-01T12:00:00Z"),
        tokens(O3_AT_LAUNCH, 10_000, 2_000, cached=4_000),
    ),
    Case(
        "gpt-4o-mini-batch-2025-03-01",
        chat("gpt-4o-mini", 10_000, 2_000, started_at="2025-03-01T12:00:00Z", **BATCH),
        tokens(GPT_4O_MINI_BATCH, 10_000, 2_000),
    ),
    Case(
        "o3-flex-2025-07-01",
        chat("o3", 10_000, 2_000, started_at="2025-07-01T12:00:00Z", **tier("flex")),
        tokens(O3_FLEX, 10_000, 2_000),
    ),
    # --- Responses tool calls ---------------------------------------------------------------
    # The row: gpt-5 with 2 web searches = tokens + 2 × $10/1k = $0.03425.
    Case(
        "gpt-5-responses-2-web-searches",
        responses("gpt-5", 3_400, 1_000, usage_details={"web_search_calls": 2}),
        tokens(GPT_5, 3_400, 1_000) + 2 * WEB_SEARCH_PER_CALL,
    ),
    Case(
        "gpt-5-mini-responses-file-search",
        responses("gpt-5-mini", 6_000, 800, usage_details={"file_search_calls": 3}),
        tokens(GPT_5_MINI, 6_000, 800) + 3 * FILE_SEARCH_PER_CALL,
    ),
    Case(
        "gpt-4.1-responses-code-interpreter",
        responses("gpt-4.1", 4_000, 1_000, usage_details={"code_interpreter_sessions": 2}),
        tokens(GPT_4_1, 4_000, 1_000) + 2 * CODE_INTERPRETER_PER_SESSION,
    ),
    Case(
        "gpt-5-responses-all-tools",
        responses(
            "gpt-5",
            20_000,
            3_000,
            cached_input_tokens=12_000,
            reasoning_tokens=2_000,
            usage_details={"web_search_calls": 1, "file_search_calls": 2, "code_interpreter_sessions": 1},
        ),
        tokens(GPT_5, 20_000, 3_000, cached=12_000)
        + WEB_SEARCH_PER_CALL
        + 2 * FILE_SEARCH_PER_CALL
        + CODE_INTERPRETER_PER_SESSION,
    ),
    # --- fine-tuned models ----------------------------------------------------------------------
    # The row: ft:gpt-4o-mini 10k / 2k = $0.0054.
    Case(
        "ft-gpt-4o-mini",
        chat("ft:gpt-4o-mini-2024-07-18:org::id", 10_000, 2_000),
        tokens(FT_GPT_4O_MINI, 10_000, 2_000),
    ),
    Case(
        "ft-gpt-4o-mini-cached",
        chat("ft:gpt-4o-mini-2024-07-18:org::id", 10_000, 2_000, cached_input_tokens=4_000),
        tokens(FT_GPT_4O_MINI, 10_000, 2_000, cached=4_000),
    ),
    Case("ft-gpt-4o", chat("ft:gpt-4o-2024-08-06:acme:support:9xYz", 5_000, 1_000), tokens(FT_GPT_4O, 5_000, 1_000)),
    Case(
        "ft-gpt-4o-cached",
        chat("ft:gpt-4o-2024-08-06:acme:support:9xYz", 5_000, 1_000, cached_input_tokens=2_000),
        tokens(FT_GPT_4O, 5_000, 1_000, cached=2_000),
    ),
    Case(
        "ft-gpt-3.5-turbo",
        chat("ft:gpt-3.5-turbo-0125:acme::abc123", 5_000, 1_000),
        tokens(FT_GPT_3_5_TURBO, 5_000, 1_000),
    ),
    # --- Azure ---------------------------------------------------------------------------------
    # The row: 1000 in / 300 out = $0.00095.
    Case(
        "azure-gpt-35-turbo",
        chat("gpt-35-turbo", 1_000, 300, provider="azure", provider_host="acme.openai.azure.com"),
        tokens(AZURE_GPT_35_TURBO, 1_000, 300),
    ),
    Case(
        "azure-host-only-gpt-35-turbo",
        chat("gpt-35-turbo", 1_000, 300, provider=None, provider_host="acme.openai.azure.com"),
        tokens(AZURE_GPT_35_TURBO, 1_000, 300),
    ),
    # --- audio -------------------------------------------------------------------------------
    # The row: 800 audio of 1000 in, 600 audio of 700 out = $0.0815.
    Case(
        "gpt-4o-audio-preview",
        chat(
            "gpt-4o-audio-preview",
            1_000,
            700,
            usage_details={"input_audio_tokens": 800, "output_audio_tokens": 600},
        ),
        tokens(GPT_4O_AUDIO_PREVIEW, 1_000 - 800, 700 - 600)
        + (800 * GPT_4O_AUDIO_PREVIEW_AUDIO[0] + 600 * GPT_4O_AUDIO_PREVIEW_AUDIO[1]) / M,
    ),
    Case(
        "gpt-4o-audio-preview-at-launch-price-2024-11-01",
        chat(
            "gpt-4o-audio-preview",
            1_000,
            700,
            started_at="2024-11-01T12:00:00Z",
            usage_details={"input_audio_tokens": 800, "output_audio_tokens": 600},
        ),
        tokens(GPT_4O_AUDIO_PREVIEW, 1_000 - 800, 700 - 600)
        + (800 * GPT_4O_AUDIO_PREVIEW_AUDIO_AT_LAUNCH[0] + 600 * GPT_4O_AUDIO_PREVIEW_AUDIO_AT_LAUNCH[1]) / M,
    ),
    Case(
        "gpt-4o-mini-audio-preview",
        chat(
            "gpt-4o-mini-audio-preview",
            2_000,
            900,
            usage_details={"input_audio_tokens": 1_500, "output_audio_tokens": 700},
        ),
        tokens(GPT_4O_MINI_AUDIO_PREVIEW, 2_000 - 1_500, 900 - 700)
        + (1_500 * GPT_4O_MINI_AUDIO_PREVIEW_AUDIO[0] + 700 * GPT_4O_MINI_AUDIO_PREVIEW_AUDIO[1]) / M,
    ),
    # --- Pinecone -------------------------------------------------------------------------------
    Case("pinecone-query-read-units", pinecone("query", read_units=6), 6 * PINECONE_PER_READ_UNIT),
    Case("pinecone-upsert-write-units", pinecone("upsert", write_units=250), 250 * PINECONE_PER_WRITE_UNIT),
    Case(
        "pinecone-update-read-and-write-units",
        pinecone("update", read_units=3, write_units=12),
        3 * PINECONE_PER_READ_UNIT + 12 * PINECONE_PER_WRITE_UNIT,
    ),
    Case(
        "pinecone-inference-embed-llama-text-embed-v2",
        pinecone("embed", model="llama-text-embed-v2", usage_details={"embed_tokens": 52_000}),
        52_000 * PINECONE_LLAMA_TEXT_EMBED_V2_PER_TOKEN,
    ),
    Case(
        "pinecone-inference-rerank-bge-reranker-v2-m3",
        pinecone("rerank", model="bge-reranker-v2-m3", usage_details={"rerank_units": 3}),
        3 * PINECONE_BGE_RERANKER_V2_M3_PER_UNIT,
    ),
    Case(
        "pinecone-search-records-with-rerank",
        pinecone(
            "search_records",
            read_units=5,
            usage_details={"rerank_units": 1},
            price_context={"rerank_model": "bge-reranker-v2-m3"},
        ),
        5 * PINECONE_PER_READ_UNIT + 1 * PINECONE_BGE_RERANKER_V2_M3_PER_UNIT,
    ),
    # --- what must not be an exact figure ---------------------------------------------------------
    Case(
        "unknown-model-unpriced-zero",
        chat("llmobserve-no-such-model-1", 1_000, 100),
        0.0,
        "unpriced",
    ),
    Case(
        "unknown-model-unpriced-client-cost",
        chat("llmobserve-no-such-model-2", 1_000, 100, cost_usd=0.0123),
        0.0123,
        "unpriced",
    ),
    Case(
        "unknown-provider-and-model-unpriced",
        chat("mystery-1", 1_000, 100, provider="acme-ai"),
        0.0,
        "unpriced",
    ),
    Case(
        "unknown-unit-unpriced-client-cost",
        responses("gpt-5", 1_000, 100, usage_details={"hologram_renders": 2}, cost_usd=0.5),
        0.5,
        "unpriced",
    ),
    Case(
        "audio-on-a-model-without-audio-rate-unpriced",
        chat("gpt-4o-mini", 1_000, 100, usage_details={"input_audio_tokens": 400}, cost_usd=0.002),
        0.002,
        "unpriced",
    ),
    Case(
        "abandoned-stream-usage-unknown",
        chat("gpt-4o", 0, 0, usage_known=False),
        0.0,
        "usage_unknown",
    ),
    Case(
        "abandoned-stream-unknown-model-usage-unknown",
        chat("llmobserve-no-such-model-3", 0, 0, usage_known=False),
        0.0,
        "usage_unknown",
    ),
]


def test_the_table_is_wide_enough():
    assert len({c.id for c in CASES}) == len(CASES)
    models = {c.event_fields.get("model") for c in CASES} - {None}
    assert len(models) >= 45, sorted(models)


def _call_node(tree: list[dict[str, Any]], span_id: str) -> dict[str, Any]:
    for node in tree:
        if node.get("span_id") == span_id:
            return node
        found = _call_node(node.get("children") or [], span_id)
        if found:
            return found
    return {}


def _slug(case_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.:-]", "-", case_id)


# Known gaps of the pinned price source that no registry row fills yet: these
# cases fail on purpose (strict: they turn red the day the source gets it right,
# so the mark comes off).  genai-prices 0.2.3 dates OpenAI's flex, priority and
# batch variants from 2026-10-12/14, so an older call on those tiers gets the
# standard price.
SOURCE_GAPS = {
    "gpt-4o-mini-batch-2025-03-01": "genai-prices 0.2.3: batch variants start 2026-10-14",
    "o3-flex-2025-07-01": "genai-prices 0.2.3: flex variants start 2026-10-12",
}


def _params(cases: list[Case]) -> list[Any]:
    return [
        pytest.param(c, id=c.id, marks=pytest.mark.xfail(strict=True, reason=SOURCE_GAPS[c.id]))
        if c.id in SOURCE_GAPS
        else pytest.param(c, id=c.id)
        for c in cases
    ]


@pytest.mark.parametrize("case", _params(CASES))
def test_bill(api: Api, case: Case):
    slug = _slug(case.id)
    event = make_event(event_id=f"bill-{slug}", run_id=f"run-bill-{slug}", span_id=f"call-{slug}")
    event.update(case.event_fields)
    response = api.post_events({"events": [event]})
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 1

    stored = Event.objects.get(event_id=event["event_id"])
    assert stored.cost_status == case.expected_status, (stored.cost_status, stored.cost_details)
    assert stored.cost_usd == pytest.approx(case.expected_usd, abs=EXACT), stored.cost_details
    if case.expected_status != "exact":
        assert stored.priced is False

    detail = api.get(f"/runs/{event['run_id']}")
    assert detail.status_code == 200, detail.content
    node = _call_node(detail.json()["tree"], event["span_id"])
    assert node, detail.json()
    assert node["cost_usd"] == pytest.approx(case.expected_usd, abs=EXACT)
    assert node["cost_status"] == case.expected_status
    assert node["provider"] == event.get("provider") and node["model"] == event.get("model")
    assert node["service_tier"] == (event.get("price_context") or {}).get("service_tier")
    # The per-unit figures add up to the call's cost when every unit is priced.
    if case.expected_status == "exact":
        assert sum(node["cost_details"].values()) == pytest.approx(case.expected_usd, abs=EXACT)


# --- A newer price source never re-costs stored events until `reprice` ----------------------------


@pytest.fixture
def restore_price_source():
    from genai_prices import data_snapshot

    before = data_snapshot._custom_snapshot
    try:
        yield data_snapshot
    finally:
        data_snapshot.set_custom_snapshot(before)


def _snapshot_with_price(data_snapshot: Any, provider_id: str, model_id: str, **prices: Decimal) -> Any:
    """A deep copy of the current genai-prices snapshot with one model's prices changed,
    as an upgrade of the package (or its auto-update) would bring."""
    snapshot = copy.deepcopy(data_snapshot.get_snapshot())
    snapshot._lookup_cache.clear()
    (provider,) = [p for p in snapshot.providers if p.id == provider_id]
    (model,) = [m for m in provider.models if m.id == model_id]
    assert not isinstance(model.prices, list), "expected one unconditional price for the test model"
    old = {k: v for k, v in model.prices.__dict__.items() if not k.startswith("_")}
    model.prices = type(model.prices)(**{**old, **prices})
    return dataclasses.replace(snapshot, from_auto_update=True)


def test_a_price_source_upgrade_recosts_only_on_reprice(api: Api, restore_price_source):
    # gpt-5-mini, published: $0.25 in / $2.00 out per 1M.
    first = make_event(
        event_id="src-first",
        run_id="run-src-first",
        model="gpt-5-mini",
        input_tokens=100_000,
        output_tokens=10_000,
        started_at="2026-11-20T10:00:00Z",
    )
    assert api.post_events([first]).status_code == 200
    old_first = tokens(GPT_5_MINI, 100_000, 10_000)
    assert Event.objects.get(event_id="src-first").cost_usd == pytest.approx(old_first, abs=EXACT)

    # A newer source says gpt-5-mini input costs $0.40 per 1M (output unchanged).
    restore_price_source.set_custom_snapshot(
        _snapshot_with_price(restore_price_source, "openai", "gpt-5-mini", input_mtok=Decimal("0.40"))
    )
    newer = P(0.40, GPT_5_MINI.cached, GPT_5_MINI.output)
    second = make_event(
        event_id="src-second",
        run_id="run-src-second",
        model="gpt-5-mini",
        input_tokens=100_000,
        output_tokens=10_000,
        started_at="2026-11-21T10:00:00Z",
    )
    assert api.post_events([second]).status_code == 200
    new_cost = tokens(newer, 100_000, 10_000)
    assert Event.objects.get(event_id="src-second").cost_usd == pytest.approx(new_cost, abs=EXACT)
    # The stored event keeps the price it was costed with, and so does its run.
    assert Event.objects.get(event_id="src-first").cost_usd == pytest.approx(old_first, abs=EXACT)
    assert api.get("/runs/run-src-first").json()["cost_usd"] == pytest.approx(old_first, abs=EXACT)

    out = io.StringIO()
    call_command("reprice", since="2026-11-01", stdout=out)
    report = out.getvalue()

    assert Event.objects.get(event_id="src-first").cost_usd == pytest.approx(new_cost, abs=EXACT)
    assert Event.objects.get(event_id="src-second").cost_usd == pytest.approx(new_cost, abs=EXACT)
    assert api.get("/runs/run-src-first").json()["cost_usd"] == pytest.approx(new_cost, abs=EXACT)
    # One event changed (the second already had the new price), one run and one day rebuilt,
    # and the old -> new total over everything it looked at.
    assert "Repriced 1 events" in report, report
    assert "1 runs" in report and "1 daily rollups" in report, report
    assert f"${old_first + new_cost:.6f} -> ${2 * new_cost:.6f}" in report, report
