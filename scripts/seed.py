"""`make seed`: fill the collector with 8 days of a realistic simulated app.

A small support bot ("support-bot") answers tickets.  It is driven through the
real llmobserve SDK and the real `openai` and `pinecone` clients: when
OPENAI_API_KEY / PINECONE_API_KEY are unset the upstreams are fakes inside
this process (an httpx2 MockTransport for OpenAI, a loopback HTTP server for
Pinecone's data plane), so nothing leaves the machine and nothing costs money.

One run (one ticket), as the dashboard's tree shows it:

    agent:support                    @trace(agent="support")
    ├─ step:classify                 gpt-4o, 2 calls, ~12k-token policy prompt, ~5-token answers
    ├─ agent:researcher
    │  ├─ tool:embed_query           embeddings.create (text-embedding-3-small)
    │  ├─ tool:vector_search         pinecone Index.query (+ fetch)
    │  └─ tool:web_search ×2         AsyncOpenAI, asyncio.gather; retried on 429 / invalid answers
    └─ agent:writer                  gpt-4.1 drafts directly in the section
       └─ step:answer                gpt-4o-mini, streamed, prompt = question + retrieved documents

The last 24 h differ from the 7 days before in four ways, one per insight
kind of SPEC §7 (thresholds and minimums: insights/detectors.py):

- section_spike:      agent:writer drafts 3 times instead of once (cost per run ×3 > ×2);
- model_inefficiency: step:classify spends on gpt-4o for ~5-token answers (always; cheaper: gpt-4o-mini);
- token_bloat:        step:answer retrieves 12 documents instead of 4 (input tokens per call ~×2.5 > ×1.5);
- retry_loop:         a bad validator makes tool:web_search re-ask 1-2 times per query
                      (4-6 calls per run, more after a 429: p95 > 3).

History: the SDK stamps `started_at` with the current time, so runs of past
days carry a private run attribute with their offset, and the SDK's public
`before_send` hook moves `started_at` back by it (and drops the attribute)
on the exporter thread, before the batch is posted.  Today's runs are spread the same way
from midnight (UTC, the dashboard's day) up to now, as a day of real traffic would be, not
stamped all in the minute the seed runs.  Everything else (ids, tokens, sections, streaming,
errors) comes from the real SDK path.

Real services: OPENAI_API_KEY alone, or with PINECONE_API_KEY and PINECONE_INDEX
(an index of 1536 dimensions, for text-embedding-3-small); --yes confirms.

Usage: scripts/seed.py [--days 8] [--runs-per-day 40] [--collector-url URL] [--api-key KEY]
The API key comes from --api-key, LLMOBSERVE_API_KEY or .env; without one a
key for the project "default" is created (in this machine's database) and
written to .env.  At the end the insight job runs (as `manage.py
compute_insights` would) and the script prints the dashboard URL, the login
and what it produced.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from llmobserve import section, trace

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_COLLECTOR_URL = "http://127.0.0.1:8000"
SERVICE = "support-bot"
PROJECT = "default"
# Run attribute carrying "move this run back by N seconds"; removed before sending.
SHIFT_ATTR = "_seed_shift_s"
# Fake upstream latency = a realistic latency × this, so the seed stays quick.
LATENCY_SCALE = 0.002
# With the fake OpenAI, every this-many-th web search request gets a 429 (an error event, then a retry).
RATE_LIMIT_EVERY = 23
INSIGHT_KINDS = ("section_spike", "model_inefficiency", "token_bloat", "retry_loop")


# --------------------------------------------------------------------------- scenario


@dataclass(frozen=True)
class Day:
    """How the app behaves on one simulated day (0 = the last 24 h)."""

    offset: int

    @property
    def today(self) -> bool:
        return self.offset == 0

    @property
    def writer_drafts(self) -> int:
        return 3 if self.today else 1  # section_spike on agent:writer

    @property
    def answer_top_k(self) -> int:
        return 12 if self.today else 4  # token_bloat on step:answer

    def search_rejections(self, rng: random.Random) -> int:
        return rng.randint(1, 2) if self.today else 0  # retry_loop on tool:web_search


POLICY = " ".join(
    f"Policy {i}: refunds for plan tier {i % 5} are handled within {i % 9 + 1} business days unless the ticket is "
    f"escalated by a supervisor, in which case the customer is told the outcome in writing."
    for i in range(260)
)  # ~12k tokens: step:classify sends the whole support policy with each ticket
TOPICS = ["billing", "login", "refund", "api limits", "data export", "invoice", "sso", "webhooks"]

# Who the runs are for (issue 15's breakdown): twelve customers, a few of whom
# send most of the tickets (so cost most), each with its plan and its users.
# (customer, plan, share of the runs, users); user ids are numbered across customers.
CUSTOMERS = [
    ("acme", "enterprise", 0.34, 8),
    ("globex", "enterprise", 0.22, 6),
    ("initech", "pro", 0.12, 5),
    ("umbrella", "pro", 0.08, 4),
    ("hooli", "pro", 0.06, 4),
    ("stark", "free", 0.04, 3),
    ("wayne", "free", 0.04, 3),
    ("wonka", "free", 0.03, 2),
    ("tyrell", "free", 0.03, 2),
    ("cyberdyne", "free", 0.02, 2),
    ("soylent", "free", 0.01, 1),
    ("oscorp", "free", 0.01, 1),
]


def customer_users() -> dict[str, list[str]]:
    """Each customer's user ids: u-1.. in CUSTOMERS' order."""
    users: dict[str, list[str]] = {}
    n = 0
    for name, _, _, count in CUSTOMERS:
        users[name] = [f"u-{n + i + 1}" for i in range(count)]
        n += count
    return users


def run_attributes(rng: random.Random) -> dict[str, str]:
    """A run's user_id, customer and plan: a customer by its share, one of its users."""
    pick = rng.choices(CUSTOMERS, weights=[c[2] for c in CUSTOMERS])[0]
    return {"user_id": rng.choice(customer_users()[pick[0]]), "customer": pick[0], "plan": pick[1]}


DOCS = [
    f"Knowledge base article {i} about {TOPICS[i % len(TOPICS)]}: " + "step-by-step instructions and caveats " * 36
    for i in range(40)
]  # ~300 tokens each


def tokens(text: str) -> int:
    """A rough tokenizer for the fake upstream: about 4 characters a token."""
    return max(1, len(text) // 4)


# --------------------------------------------------------------------------- fake upstreams


class FakeOpenAI:
    """OpenAI's REST API for the real client's MockTransport: chat completions
    (JSON and SSE with a usage chunk), embeddings, 429s on request.  Usage is
    computed from the request, so a longer prompt really costs more."""

    def __init__(self, hx: Any) -> None:
        self.hx = hx
        self.requests = 0

    def respond(self, request: Any) -> Any:
        self.requests += 1
        body = json.loads(request.content or b"{}")
        if request.headers.get("x-seed-simulate") == "rate_limit":
            error = {"message": "Rate limit reached for requests", "type": "requests", "param": None, "code": None}
            return self.hx.Response(429, json={"error": error}, headers={"retry-after-ms": "10"})
        path = request.url.path
        if path.endswith("/chat/completions"):
            return self._chat(body)
        if path.endswith("/embeddings"):
            inputs = body.get("input")
            inputs = inputs if isinstance(inputs, list) else [inputs]
            used = sum(tokens(str(text)) for text in inputs)
            data = [{"object": "embedding", "index": i, "embedding": _vector(str(t))} for i, t in enumerate(inputs)]
            usage = {"prompt_tokens": used, "total_tokens": used}
            return self.hx.Response(200, json={"object": "list", "data": data, "model": body["model"], "usage": usage})
        error = {"message": f"no fake for {path}", "type": "invalid_request_error"}
        return self.hx.Response(404, json={"error": error})

    def latency(self, body: dict[str, Any]) -> float:
        out = body.get("max_completion_tokens") or body.get("max_tokens") or 300
        return (0.3 + out * 0.01) * LATENCY_SCALE

    def _chat(self, body: dict[str, Any]) -> Any:
        prompt = sum(tokens(str(m.get("content") or "")) + 4 for m in body.get("messages", []))
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or 300
        if (body.get("response_format") or {}).get("type") == "json_object":
            results = [{"title": f"Result {i}", "url": f"https://example.com/{i}"} for i in range(3)]
            content = json.dumps({"results": results})
            completion = tokens(content)
        else:
            completion = max(1, min(limit, int(limit * 0.9)))
            content = " ".join(["answer"] * completion)
        model = {"gpt-4o": "gpt-4o-2024-08-06", "gpt-4.1": "gpt-4.1-2025-04-14"}.get(body["model"], body["model"])
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }
        base = {"id": f"chatcmpl-{random.getrandbits(48):x}", "created": int(time.time()), "model": model}
        if body.get("stream"):
            return self.hx.Response(
                200, content=_chat_sse(base, content, usage, body), headers={"content-type": "text/event-stream"}
            )
        message = {"role": "assistant", "content": content, "refusal": None}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
        return self.hx.Response(200, json={**base, "object": "chat.completion", "choices": [choice], "usage": usage})

    def sync_handler(self, request: Any) -> Any:
        time.sleep(self.latency(json.loads(request.content or b"{}")))
        return self.respond(request)

    async def async_handler(self, request: Any) -> Any:
        await asyncio.sleep(self.latency(json.loads(request.content or b"{}")))
        return self.respond(request)


def _vector(text: str, dim: int = 16) -> list[float]:
    rng = random.Random(text)
    return [round(rng.uniform(-1, 1), 4) for _ in range(dim)]


def _chat_sse(base: dict[str, Any], content: str, usage: dict[str, Any], body: dict[str, Any]) -> bytes:
    """The chat completions SSE stream: role, content pieces, stop, then the usage chunk when asked for."""
    with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    words = content.split(" ")
    pieces = [" ".join(words[i : i + 40]) + " " for i in range(0, len(words), 40)]
    chunk = {**base, "object": "chat.completion.chunk"}

    def delta(d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        c = {**chunk, "choices": [{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}]}
        if with_usage:
            c["usage"] = None
        return c

    chunks = [delta({"role": "assistant", "content": ""})] + [delta({"content": p}) for p in pieces]
    chunks.append(delta({}, "stop"))
    if with_usage:
        chunks.append({**chunk, "choices": [], "usage": usage})
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


class FakePinecone:
    """A loopback fake of one Pinecone index's data plane (REST/JSON), in a thread."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw or b"{}")
                path = self.path.split("?", 1)[0]
                if path == "/query":
                    top_k = int(body.get("topK") or body.get("top_k") or 4)
                    start = random.randrange(len(DOCS))
                    matches = [
                        {
                            "id": f"kb-{(start + i) % len(DOCS)}",
                            "score": round(0.95 - i * 0.02, 3),
                            "values": [],
                            "metadata": {"text": DOCS[(start + i) % len(DOCS)]},
                        }
                        for i in range(top_k)
                    ]
                    reply = {
                        "matches": matches,
                        "namespace": body.get("namespace", ""),
                        "usage": {"readUnits": 5 + top_k // 4},
                    }
                elif path == "/vectors/upsert":
                    reply = {"upsertedCount": len(body.get("vectors", []))}
                else:
                    reply = {"code": 5, "message": f"no fake for {path}"}
                self._reply(200 if "code" not in reply else 404, reply)

            def do_GET(self) -> None:  # noqa: N802  fetch is a GET with ?ids=
                ids = [p.split("=", 1)[1] for p in self.path.split("?", 1)[-1].split("&") if p.startswith("ids=")]
                vectors = {i: {"id": i, "values": _vector(i)} for i in ids}
                self._reply(200, {"vectors": vectors, "namespace": "kb", "usage": {"readUnits": 1}})

            def _reply(self, status: int, obj: Any) -> None:
                out = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- clients


@dataclass
class Clients:
    openai: Any
    async_openai: Any
    index: Any
    real_openai: bool
    real_pinecone: bool
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in self.closers:
            try:
                close()
            except Exception:  # closing fakes must never hide the seed's result
                pass


def build_clients(loop: asyncio.AbstractEventLoop) -> Clients:
    """The real `openai` / `pinecone` clients, pointed at the real services when
    their keys are set, else at in-process fakes.  Built after observe(): an
    Index built before it would miss the instrumentation (see the SDK)."""
    import warnings

    import openai
    import pinecone

    closers: list[Callable[[], None]] = []
    real_openai = bool(os.environ.get("OPENAI_API_KEY"))
    if real_openai:
        sync_client, async_client = openai.OpenAI(max_retries=0), openai.AsyncOpenAI(max_retries=0)
    else:
        import httpx2

        fake = FakeOpenAI(httpx2)
        sync_client = openai.OpenAI(
            api_key="sk-fake",
            max_retries=0,
            http_client=httpx2.Client(transport=httpx2.MockTransport(fake.sync_handler)),
        )
        async_client = openai.AsyncOpenAI(
            api_key="sk-fake",
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(fake.async_handler)),
        )
    closers.append(sync_client.close)
    closers.append(lambda: loop.run_until_complete(async_client.close()))
    real_pinecone = bool(os.environ.get("PINECONE_API_KEY"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pinecone warns about a plain-http host
        if real_pinecone:
            pc = pinecone.Pinecone()
            index = pc.Index(os.environ.get("PINECONE_INDEX", "llmobserve-seed"))
        else:
            fake_pc = FakePinecone()
            closers.append(fake_pc.close)
            index = pinecone.Pinecone(api_key="pc-fake").Index(host=fake_pc.host)
    return Clients(sync_client, async_client, index, real_openai, real_pinecone, closers)


# --------------------------------------------------------------------------- the simulated app


class SupportBot:
    """The instrumented application: plain code using `section` and `@trace`."""

    def __init__(self, clients: Clients, loop: asyncio.AbstractEventLoop, rng: random.Random) -> None:
        self.c = clients
        self.loop = loop
        self.rng = rng
        self.search_requests = 0

    @trace(agent="support")
    def handle(self, ticket: str, day: Day) -> str:
        intent = self.classify(ticket)
        sources = self.research(ticket, day)
        return self.write(ticket, intent, sources, day)

    @trace(step="classify")
    def classify(self, ticket: str) -> str:
        # Two tiny questions, each with the whole policy: gpt-4o answering a
        # handful of tokens is what model_inefficiency looks for.
        labels = []
        for question in ("Which team should handle this ticket?", "How urgent is it, low/medium/high?"):
            reply = self.c.openai.chat.completions.create(
                model="gpt-4o",
                max_tokens=5,
                messages=[
                    {"role": "system", "content": "You are a support triage assistant.\n" + POLICY},
                    {"role": "user", "content": f"{question}\nTicket: {ticket}"},
                ],
            )
            labels.append(reply.choices[0].message.content or "")
        return labels[0]

    @trace(agent="researcher")
    def research(self, ticket: str, day: Day) -> list[str]:
        with section("tool:embed_query"):
            vector = self.c.openai.embeddings.create(model="text-embedding-3-small", input=ticket).data[0].embedding
        with section("tool:vector_search"):
            found = self.c.index.query(vector=vector, top_k=day.answer_top_k, include_metadata=True, namespace="kb")
            docs = [(m.metadata or {}).get("text", "") for m in found.matches]
            if self.rng.random() < 0.3:  # sometimes the bot re-reads the best match's vector
                self.c.index.fetch(ids=[found.matches[0].id], namespace="kb")
        queries = [f"{ticket} site:docs", f"{ticket} known issues"]
        self.loop.run_until_complete(self.search_all(queries, day))
        return docs

    async def search_all(self, queries: list[str], day: Day) -> list[list[dict[str, Any]]]:
        # The two searches run concurrently; each task gets its own tool:web_search section.
        return await asyncio.gather(*(self.web_search(q, day) for q in queries))

    async def web_search(self, query: str, day: Day) -> list[dict[str, Any]]:
        """Ask the model for search results as JSON; retry on 429 and on answers
        the validator rejects (today a buggy validator rejects 1-2 of them)."""
        from openai import RateLimitError

        rejections = day.search_rejections(self.rng)
        async with section("tool:web_search"):
            for attempt in range(8):
                headers = {}
                self.search_requests += 1
                if not self.c.real_openai and self.search_requests % RATE_LIMIT_EVERY == 0:
                    headers["x-seed-simulate"] = "rate_limit"  # the fake answers 429
                try:
                    reply = await self.c.async_openai.chat.completions.create(
                        model="gpt-4o-mini",
                        max_tokens=200,
                        response_format={"type": "json_object"},
                        messages=[{"role": "user", "content": f"Search the web for: {query}. Reply in JSON."}],
                        extra_headers=headers or None,
                    )
                except RateLimitError:
                    await asyncio.sleep(0.001 * 2**attempt)
                    continue
                if attempt < rejections:
                    continue  # the validator said no: ask again
                try:
                    return json.loads(reply.choices[0].message.content or "{}").get("results", [])
                except ValueError:
                    continue
        return []

    @trace(agent="writer")
    def write(self, ticket: str, intent: str, sources: list[str], day: Day) -> str:
        draft = ""
        for _ in range(day.writer_drafts):  # today: draft, critique, redraft
            reply = self.c.openai.chat.completions.create(
                model="gpt-4.1",
                max_tokens=1500,
                messages=[
                    {"role": "system", "content": "Write a careful reply to the customer. " + POLICY[:24000]},
                    {"role": "user", "content": f"Ticket ({intent}): {ticket}\nPrevious draft: {draft[:200]}"},
                ],
            )
            draft = reply.choices[0].message.content or ""
        with section("step:answer"):
            context = "\n\n".join(sources)
            answer = ""
            for prompt in ("Answer the customer using these documents.", "Now a one-line summary for the agent."):
                stream = self.c.openai.chat.completions.create(
                    model="gpt-4o-mini",
                    max_tokens=250,
                    stream=True,
                    messages=[
                        {"role": "system", "content": prompt + "\n" + context},
                        {"role": "user", "content": ticket + "\nDraft: " + draft[:400]},
                    ],
                )
                answer = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        return answer


# --------------------------------------------------------------------------- backdating


def backdate(event: dict[str, Any]) -> dict[str, Any]:
    """``before_send`` hook: an event whose run carries SHIFT_ATTR is moved
    back by that many seconds, and the private attribute is dropped."""
    shift = (event.get("attributes") or {}).pop(SHIFT_ATTR, None)
    if shift:
        started = dt.datetime.fromisoformat(event["started_at"].replace("Z", "+00:00"))
        moved = started - dt.timedelta(seconds=float(shift))
        event["started_at"] = moved.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return event


# --------------------------------------------------------------------------- configuration


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (comments and blanks skipped, quotes stripped)."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


def write_dotenv(path: Path, updates: dict[str, str]) -> None:
    """Set KEY=VALUE lines in .env, keeping every other line as it was."""
    lines = path.read_text().splitlines() if path.exists() else []
    pending = dict(updates)
    for i, line in enumerate(lines):
        key = line.split("=", 1)[0].strip().removeprefix("export ").strip()
        if "=" in line and not line.lstrip().startswith("#") and key in pending:
            lines[i] = f"{key}={pending.pop(key)}"
    lines += [f"{key}={value}" for key, value in pending.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


def django_setup() -> None:
    """Use this machine's Django settings (the collector's database) in-process."""
    import django
    from django.conf import settings

    if not settings.configured:
        sys.path.insert(0, str(ROOT))
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmobserve_site.settings")
    django.setup()


def create_api_key(dotenv: Path) -> str:
    django_setup()
    from projects.services import api_key_create

    _, raw = api_key_create(project_name=PROJECT, name="seed")
    write_dotenv(dotenv, {"LLMOBSERVE_API_KEY": raw})
    print(f"Created an API key for project {PROJECT!r} and saved it in {dotenv} as LLMOBSERVE_API_KEY.")
    return raw


# --------------------------------------------------------------------------- HTTP helpers


def http_json(url: str, api_key: str | None = None, timeout: float = 10.0) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None


def check_collector(url: str) -> str | None:
    """None when the collector answers /health, else what to do about it."""
    try:
        status, _ = http_json(f"{url}/health", timeout=5)
    except OSError as exc:
        return f"no collector at {url} ({exc.__class__.__name__}): start it with `make run` (or pass --collector-url)"
    return None if status == 200 else f"{url}/health answered {status}: is the collector healthy?"


def check_key(url: str, api_key: str) -> str | None:
    """None when the collector accepts the key, else what to do about it."""
    status, _ = http_json(f"{url}/runs/latest?limit=1", api_key, timeout=10)
    if status == 401:
        return "the collector rejected the API key: unset LLMOBSERVE_API_KEY / remove it from .env to get a new one"
    return None if status == 200 else f"{url}/runs/latest answered {status}"


# --------------------------------------------------------------------------- progress


class Progress:
    """A one-line progress bar on a terminal; a line per day otherwise (CI logs)."""

    def __init__(self, total: int, stream: Any = None) -> None:
        stream = stream or sys.stderr  # looked up now: tests swap sys.stderr
        self.total, self.done, self.stream = total, 0, stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.started = time.monotonic()

    def step(self, label: str) -> None:
        self.done += 1
        if self.tty:
            filled = int(30 * self.done / self.total)
            pct = 100 * self.done // self.total
            bar = "#" * filled + "." * (30 - filled)
            self.stream.write(f"\r[{bar}] {pct:3d}% {self.done}/{self.total} runs  {label:<28}")
            self.stream.flush()

    def note(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r" + " " * 78 + "\r")
        self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()


# --------------------------------------------------------------------------- the seed


@dataclass
class SeedResult:
    run_ids: set[str] = field(default_factory=set)
    events_sent: int = 0
    dropped: int = 0
    runs_found: int = 0
    total_cost_usd: float = 0.0
    insights: dict[str, int] = field(default_factory=dict)
    insight_messages: list[str] = field(default_factory=list)


def total_runs(args: argparse.Namespace) -> int:
    return args.runs_per_day + (args.days - 1) * args.history_runs_per_day


def simulate(args: argparse.Namespace, api_key: str, result: SeedResult) -> None:
    """Drive the bot through the SDK: the oldest day first, today last."""
    import llmobserve

    if not llmobserve.observe(
        args.collector_url,
        api_key,
        service=SERVICE,
        sample_rate=1.0,
        max_queue=200_000,
        batch_size=500,
        flush_interval=0.5,
        request_timeout=30.0,
        before_send=backdate,
    ):
        raise SystemExit("seed: the SDK is disabled (LLMOBSERVE_DISABLED is set); unset it to seed")
    try:
        # On a thread of its own: the bot runs its own asyncio loop, which cannot
        # start on a thread that already runs one (a caller's, or a test's).
        in_own_thread(lambda: drive(args, result))
        llmobserve.flush(timeout=120)
        stats = llmobserve.stats()
        result.events_sent = int(stats.get("sent", 0))
        result.dropped = int(stats.get("dropped", 0)) + int(stats.get("dropped_failed", 0))
    finally:
        llmobserve.shutdown(timeout=10)
        llmobserve.uninstrument()


def in_own_thread(fn: Callable[[], None]) -> None:
    """Run fn on a new thread and wait for it, re-raising what it raised."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # handed to the caller below
            failure.append(exc)

    thread = threading.Thread(target=target, name="seed-app")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def drive(args: argparse.Namespace, result: SeedResult) -> None:
    """The simulated app's traffic, day by day."""
    import llmobserve
    from llmobserve import run

    loop = asyncio.new_event_loop()
    clients = build_clients(loop)
    rng = random.Random(args.random_seed)
    # Today's times from a generator of their own: the scenario's draws stay as they were.
    clock = random.Random(args.random_seed)
    people = random.Random(args.random_seed + 1)
    bot = SupportBot(clients, loop, rng)
    progress = Progress(total_runs(args))
    try:
        for offset in range(args.days - 1, -1, -1):
            day = Day(offset)
            for _ in range(args.history_runs_per_day if offset else args.runs_per_day):
                # The scenario's two draws for the old user_id/plan stay, so its sequence is as it was;
                # who the run is for comes from a generator of its own.
                rng.randint(1, 60), rng.choice(["free", "pro"])
                attrs: dict[str, Any] = dict(run_attributes(people))
                if offset:
                    # Spread the day's runs between 30 min and 23 h before this moment, `offset` days ago.
                    attrs[SHIFT_ATTR] = offset * 86400 + rng.uniform(1800, 82800)
                else:
                    # Today's between midnight (UTC) and now.
                    attrs[SHIFT_ATTR] = clock.uniform(0, seconds_since_midnight())
                ticket = f"Ticket #{rng.randint(1000, 9999)}: problem with {rng.choice(TOPICS)}"
                with run(**attrs) as current:
                    result.run_ids.add(current.run_id)
                    bot.handle(ticket, day)
                progress.step("today" if day.today else f"{offset} day{'s' * (offset > 1)} ago")
            # One flush a day keeps the queue short and shows the collector keeping up.
            if not llmobserve.flush(timeout=120):
                progress.note("seed: the collector did not take every event yet; carrying on")
        progress.finish()
    finally:
        clients.close()
        loop.close()


def seconds_since_midnight() -> float:
    """How far into today (UTC, the dashboard's day) this moment is."""
    now = dt.datetime.now(dt.UTC)
    return (now - now.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds()


def compute_insights(api_key: str) -> bool:
    """Run the insight job for the key's project now (as `manage.py compute_insights`).

    It needs this machine's database; with a remote collector the periodic
    job there computes them within INSIGHTS_INTERVAL_SECONDS instead."""
    django_setup()
    from django.utils import timezone

    from insights.services import insights_compute
    from projects.models import ApiKey, hash_key

    key = ApiKey.objects.filter(key_hash=hash_key(api_key)).first()
    if key is None:
        return False
    insights_compute(project_id=key.project_id, at=timezone.now().replace(microsecond=0))
    return True


def collect_totals(args: argparse.Namespace, api_key: str, result: SeedResult) -> None:
    """Read back, through the read API, the runs this seed made and the insights."""
    cursor: str | None = None
    while True:
        url = f"{args.collector_url}/runs/latest?limit=200&service={SERVICE}"
        status, body = http_json(url + (f"&cursor={cursor}" if cursor else ""), api_key, timeout=30)
        if status != 200:
            break
        for row in body["runs"]:
            if row["run_id"] in result.run_ids:
                result.runs_found += 1
                result.total_cost_usd += float(row["cost_usd"] or 0)
        cursor = body.get("next")
        if not cursor:
            break
    status, body = http_json(f"{args.collector_url}/insights/daily", api_key)
    if status == 200:
        result.insights = dict(Counter(item["kind"] for item in body["insights"]))
        result.insight_messages = [f"[{i['kind']}] {i['message']}" for i in body["insights"]]


def login_hint() -> str:
    """The first-run login (written by `manage.py bootstrap`), when this machine has one."""
    var_dir = Path(os.environ.get("LLMOBSERVE_VAR_DIR", ROOT / "var"))
    saved = read_dotenv(var_dir / "first_run.txt")
    if saved.get("username") and saved.get("password"):
        return f"{saved['username']} / {saved['password']}  (from {var_dir / 'first_run.txt'})"
    return "your superuser (create one with `.venv/bin/python manage.py createsuperuser`)"


def report(args: argparse.Namespace, result: SeedResult, computed: bool) -> None:
    print()
    print(f"Dashboard:  {args.collector_url}/")
    print(f"Login:      {login_hint()}")
    cost = f"${result.total_cost_usd:,.2f}"
    print(f"Produced:   {result.runs_found} runs, {result.events_sent} events, {cost} total cost")
    if result.dropped:
        print(f"Warning:    the SDK dropped {result.dropped} events (collector too slow or unreachable)")
    if not computed:
        print("Insights:   this machine's database does not hold the key's project; the collector's periodic job")
        print("            computes them within INSIGHTS_INTERVAL_SECONDS")
    kinds = ", ".join(f"{result.insights.get(kind, 0)} {kind}" for kind in INSIGHT_KINDS)
    print(f"Insights:   {kinds}")
    for line in result.insight_messages:
        print(f"  {line}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    # --dotenv first: the file it names supplies the defaults below.
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--dotenv", type=Path, default=ROOT / ".env")
    dotenv = read_dotenv(pre.parse_known_args(argv)[0].dotenv)
    parser = argparse.ArgumentParser(description="Seed the collector with a simulated app's history.")
    parser.add_argument("--days", type=int, default=8, help="days of history, today included (default 8)")
    parser.add_argument("--runs-per-day", type=int, default=40, help="runs (tickets) per day (default 40)")
    parser.add_argument("--history-runs-per-day", type=int, help="runs per day before today (default: --runs-per-day)")
    parser.add_argument(
        "--collector-url",
        default=os.environ.get("COLLECTOR_URL") or dotenv.get("COLLECTOR_URL") or DEFAULT_COLLECTOR_URL,
        help="default: COLLECTOR_URL from the environment or .env, else " + DEFAULT_COLLECTOR_URL,
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("LLMOBSERVE_API_KEY") or dotenv.get("LLMOBSERVE_API_KEY"),
        help="default: LLMOBSERVE_API_KEY from the environment or .env, else a new key for project 'default'",
    )
    parser.add_argument("--dotenv", type=Path, default=ROOT / ".env", help="where the key is read and saved (.env)")
    parser.add_argument("--random-seed", type=int, default=7, help="same seed, same data shape (default 7)")
    parser.add_argument("--skip-insights", action="store_true", help="do not run the insight job at the end")
    parser.add_argument("--yes", action="store_true", help="confirm seeding against the real OpenAI/Pinecone")
    parser.add_argument(
        "--fake-openai-admin",
        type=int,
        metavar="PORT",
        help="afterwards serve a fake OpenAI admin API on PORT billing the seeded traffic with known gaps "
        "(reconciliation; 0 = any free port) until Ctrl-C",
    )
    args = parser.parse_args(argv)
    if args.history_runs_per_day is None:
        args.history_runs_per_day = args.runs_per_day
    if args.days < 1 or args.runs_per_day < 1 or args.history_runs_per_day < 1:
        parser.error("--days and the runs per day must be at least 1")
    args.collector_url = args.collector_url.rstrip("/")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    real = [name for name in ("OPENAI_API_KEY", "PINECONE_API_KEY") if os.environ.get(name)]
    if os.environ.get("PINECONE_API_KEY") and not os.environ.get("OPENAI_API_KEY"):
        print("seed: a real Pinecone index needs real embeddings: set OPENAI_API_KEY too, or unset PINECONE_API_KEY")
        return 2
    if real and not args.yes:
        print(
            f"seed: {' and '.join(real)} set: this would call the real services (and be billed for "
            f"{total_runs(args)} runs); rerun with --yes, or unset them to use the fakes."
        )
        return 2
    # The collector first: before `make run` has ever run there is no database to make a key in.
    problem = check_collector(args.collector_url)
    api_key = args.api_key
    if not problem:
        api_key = api_key or create_api_key(args.dotenv)
        problem = check_key(args.collector_url, api_key)
    if problem:
        print(f"seed: {problem}", file=sys.stderr)
        return 1
    upstreams = ", ".join(
        f"{name}: {'real' if os.environ.get(var) else 'fake'}"
        for name, var in (("OpenAI", "OPENAI_API_KEY"), ("Pinecone", "PINECONE_API_KEY"))
    )
    print(f"Seeding {args.collector_url}: {total_runs(args)} runs of {SERVICE} over {args.days} days ({upstreams})")
    result = SeedResult()
    started = time.monotonic()
    simulate(args, api_key, result)
    computed = False
    if not args.skip_insights:
        computed = compute_insights(api_key)
    collect_totals(args, api_key, result)
    print(f"Done in {time.monotonic() - started:.0f}s.")
    report(args, result, computed or args.skip_insights)
    if args.fake_openai_admin is not None and result.runs_found:
        django_setup()
        from reconciliation.fake_admin import serve_seeded

        serve_seeded(port=args.fake_openai_admin, api_key=api_key)
    return 0 if result.runs_found else 1


if __name__ == "__main__":
    raise SystemExit(main())
