"""A loopback fake of OpenAI's organization Costs and Usage APIs.

It bills the traffic it is given (day, model, project, tokens, requests) at
the rates it is given, in the documented JSON shapes: pages of daily buckets
(`{"object": "page", "data": [{"object": "bucket", "start_time", "end_time",
"results": [...]}], "has_more", "next_page"}`), cost results per line item
("gpt-4o-2024-08-06, input" / "cached input" / "output") and project, usage
results per model and project.  Knobs for the gaps a reconciliation must
explain: a tier per model (billed at that tier's factor, flex = 0.5, with the
tier named in the line item), a discount on the whole bill, small pages (to
force pagination), 429s before the first answers, a required admin key.

Used by tests/reconciliation and by `scripts/seed.py --fake-openai-admin PORT`
(`serve_seeded`), which bills the seeded traffic with known gaps.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

FAKE_KEY = "sk-admin-fake-0123456789"
DAY = 86400
TIER_FACTORS = {"flex": 0.5, "batch": 0.5, "priority": 1.75}


@dataclass(frozen=True, slots=True)
class Traffic:
    """What the organization really used on one day (what the bill is for)."""

    day: dt.date
    model: str  # the id as billed, e.g. gpt-4o-2024-08-06
    input_tokens: int  # cached included, as OpenAI counts them
    output_tokens: int
    requests: int
    cached_input_tokens: int = 0
    project_id: str = "proj_default"
    endpoint: str = "completions"  # or embeddings


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per 1M tokens."""

    input: float
    output: float = 0.0
    cached_input: float | None = None


@dataclass(frozen=True, slots=True)
class Line:
    day: dt.date
    project_id: str
    line_item: str
    amount: float


def _fold(model: str) -> str:
    from reconciliation.compare import model_fold

    return model_fold(model)


@dataclass
class FakeAdminAPI:
    traffic: list[Traffic]
    rates: dict[str, Rates]  # by folded model id (gpt-4o), or the exact id
    key: str = FAKE_KEY
    tiers: dict[str, str] = field(default_factory=dict)  # folded model -> tier it is billed on
    discount: float = 1.0  # the bill is this × list (0.78: a 22 % discount or credit)
    page_size: int = 31  # buckets per page at most (a small one forces pagination)
    fail_first: int = 0  # answer this many requests with 429 first
    retry_after: str = "1"
    requests: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._failures_left = self.fail_first
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                status, body, headers = fake.handle(self.path, self.headers.get("Authorization", ""))
                out = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(out)

        self._handler = Handler
        self.server: ThreadingHTTPServer | None = None

    # --- serving -------------------------------------------------------------

    def start(self, port: int = 0) -> FakeAdminAPI:
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    @property
    def base_url(self) -> str:
        assert self.server is not None, "start() first"
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def __enter__(self) -> FakeAdminAPI:
        return self.start() if self.server is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def handle(self, raw_path: str, authorization: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        url = urlsplit(raw_path)
        query = parse_qs(url.query)
        with self._lock:
            self.requests.append((url.path, query))
            if self._failures_left > 0:
                self._failures_left -= 1
                error = {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit"}
                return 429, {"error": error}, {"Retry-After": self.retry_after}
        if authorization != f"Bearer {self.key}":
            # Echoes what it was sent, so a test can prove the client never repeats it.
            error = {"message": f"Incorrect API key provided: {authorization[7:]}", "type": "invalid_request_error"}
            return 401, {"error": error}, {}
        try:
            start = int(query["start_time"][0])
            end = int(query.get("end_time", [str(start + 7 * DAY)])[0])
            limit = int(query.get("limit", ["7"])[0])
            offset = int(base64.urlsafe_b64decode(query["page"][0]).decode()) if "page" in query else 0
        except (KeyError, ValueError):
            return 400, {"error": {"message": "bad start_time, end_time, limit or page"}}, {}
        if query.get("bucket_width", ["1d"])[0] != "1d":
            return 400, {"error": {"message": "only bucket_width=1d is faked"}}, {}
        group_by = {g for value in query.get("group_by", []) + query.get("group_by[]", []) for g in value.split(",")}
        if url.path == "/v1/organization/costs":
            result = self._costs_result
        elif url.path in ("/v1/organization/usage/completions", "/v1/organization/usage/embeddings"):
            endpoint = url.path.rsplit("/", 1)[1]

            def result(day: dt.date, group: set[str]) -> list[dict[str, Any]]:
                return self._usage_result(day, group, endpoint)
        else:
            return 404, {"error": {"message": f"no fake for {url.path}"}}, {}
        starts = list(range(start - start % DAY, end, DAY))
        page = starts[offset : offset + min(limit, self.page_size)]
        data = [
            {
                "object": "bucket",
                "start_time": s,
                "end_time": s + DAY,
                "results": result(dt.datetime.fromtimestamp(s, tz=dt.UTC).date(), group_by),
            }
            for s in page
        ]
        more = offset + len(page) < len(starts)
        next_page = base64.urlsafe_b64encode(str(offset + len(page)).encode()).decode() if more else None
        return 200, {"object": "page", "data": data, "has_more": more, "next_page": next_page}, {}

    # --- the bill ------------------------------------------------------------

    def _rates(self, model: str) -> Rates:
        return self.rates.get(model) or self.rates[_fold(model)]

    def lines(self) -> list[Line]:
        """Every cost line item the bill holds, as the Costs API groups it by line item and project."""
        out: dict[tuple[dt.date, str, str], float] = {}
        for t in self.traffic:
            rates = self._rates(t.model)
            tier = self.tiers.get(_fold(t.model), "")
            factor = TIER_FACTORS.get(tier, 1.0) * self.discount
            prefix = f"{tier} | " if tier else ""
            cached_rate = rates.input if rates.cached_input is None else rates.cached_input
            parts = [
                ("input", (t.input_tokens - t.cached_input_tokens) * rates.input),
                ("cached input", t.cached_input_tokens * cached_rate),
                ("output", t.output_tokens * rates.output),
            ]
            for kind, usd in parts:
                if usd:
                    key = (t.day, t.project_id, f"{prefix}{t.model}, {kind}")
                    out[key] = out.get(key, 0.0) + usd / 1e6 * factor
        return [Line(day=k[0], project_id=k[1], line_item=k[2], amount=v) for k, v in sorted(out.items())]

    def billed_usd(self, *, day: dt.date | None = None, model: str | None = None) -> float:
        from reconciliation.compare import line_item_parse

        return sum(
            line.amount
            for line in self.lines()
            if (day is None or line.day == day) and (model is None or line_item_parse(line.line_item).model == model)
        )

    def _costs_result(self, day: dt.date, group: set[str]) -> list[dict[str, Any]]:
        sums: dict[tuple[str | None, str | None], float] = {}
        for line in self.lines():
            if line.day != day:
                continue
            key = (
                line.line_item if "line_item" in group else None,
                line.project_id if "project_id" in group else None,
            )
            sums[key] = sums.get(key, 0.0) + line.amount
        return [
            {
                "object": "organization.costs.result",
                "amount": {"value": value, "currency": "usd"},
                "line_item": line_item,
                "project_id": project_id,
            }
            for (line_item, project_id), value in sums.items()
        ]

    def _usage_result(self, day: dt.date, group: set[str], endpoint: str) -> list[dict[str, Any]]:
        sums: dict[tuple[str | None, str | None], list[int]] = {}
        for t in self.traffic:
            if t.day != day or t.endpoint != endpoint:
                continue
            key = (t.model if "model" in group else None, t.project_id if "project_id" in group else None)
            acc = sums.setdefault(key, [0, 0, 0, 0])
            acc[0] += t.input_tokens
            acc[1] += t.cached_input_tokens
            acc[2] += t.output_tokens
            acc[3] += t.requests
        results = []
        for (model, project_id), (inp, cached, out, req) in sums.items():
            common = {"num_model_requests": req, "project_id": project_id, "user_id": None, "api_key_id": None}
            if endpoint == "embeddings":
                results.append(
                    {"object": "organization.usage.embeddings.result", "input_tokens": inp, **common, "model": model}
                )
            else:
                results.append(
                    {
                        "object": "organization.usage.completions.result",
                        "input_tokens": inp,
                        "output_tokens": out,
                        "input_cached_tokens": cached,
                        "input_audio_tokens": 0,
                        "output_audio_tokens": 0,
                        **common,
                        "model": model,
                        "batch": None,
                    }
                )
        return results


# --- the seed's fake ---------------------------------------------------------

SEED_UNOBSERVED_SHARE = 0.10  # of one model's calls, never observed
SEED_PROJECT_ID = "proj_seed"
SEED_UNOBSERVED_MODEL = "gpt-4o-mini"  # step:answer and tool:web_search: the seed's busiest chat model
SEED_FLEX_MODEL = "gpt-4.1"  # agent:writer's drafts


def seeded_traffic(*, project_name: str) -> tuple[list[Traffic], dict[str, Rates], dict[str, str], str]:
    """The bill of what the seed sent for `project_name` (read back from its
    rollups), with two known gaps: 10 % of gpt-4o-mini's calls never observed
    (the bill has 1/0.9 of what was seen), gpt-4.1 billed on the flex tier
    (other chat models stand in when a seed lacks them).  Rates are the
    pricing engine's for each model, so every other model agrees."""
    from collections import defaultdict

    from events.models import DailyRollup
    from pricing.services import price_table_current
    from projects.models import Project

    project = Project.objects.get(name=project_name)
    sums: dict[tuple[dt.date, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in DailyRollup.objects.filter(project=project, provider="openai").exclude(model=""):
        acc = sums[(r.day, r.model)]
        acc[0] += r.input_tokens
        acc[1] += r.output_tokens
        acc[2] += r.calls - r.errors
    calls_by_model: dict[str, int] = defaultdict(int)
    for (_, model), acc in sums.items():
        if acc[1]:  # a chat model (embeddings have no output tokens)
            calls_by_model[_fold(model)] += acc[2]
    ranked = sorted(calls_by_model, key=lambda m: (-calls_by_model[m], m))
    if not ranked:
        raise SystemExit("fake admin: the seeded project has no OpenAI calls to bill")
    # The seed's models when present (same gaps whatever --days and --runs-per-day), else by calls.
    unobserved = SEED_UNOBSERVED_MODEL if SEED_UNOBSERVED_MODEL in calls_by_model else ranked[0]
    others = [m for m in ranked if m != unobserved]
    flex = SEED_FLEX_MODEL if SEED_FLEX_MODEL in others else (others[0] if others else "")
    table = price_table_current(fresh=True)
    rates: dict[str, Rates] = {}
    traffic = []
    for (day, model), (inp, out, calls) in sorted(sums.items()):
        folded = _fold(model)
        if folded not in rates:
            card = table.card("openai", model, dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC))
            per_1m = {unit: rate.per_unit * 1e6 for unit, rate in (card.rates.items() if card else ())}
            rates[folded] = Rates(input=per_1m.get("input_tokens", 0.0), output=per_1m.get("output_tokens", 0.0))
        scale = 1 / (1 - SEED_UNOBSERVED_SHARE) if folded == unobserved else 1.0
        traffic.append(
            Traffic(
                day=day,
                model=model,
                input_tokens=round(inp * scale),
                output_tokens=round(out * scale),
                requests=round(calls * scale),
                project_id=SEED_PROJECT_ID,
                endpoint="completions" if out else "embeddings",
            )
        )
    return traffic, rates, ({flex: "flex"} if flex else {}), unobserved


def serve_seeded(*, port: int, api_key: str, out: Any = None, forever: bool = True) -> FakeAdminAPI:
    """`scripts/seed.py --fake-openai-admin PORT`: serve the bill of the seeded
    traffic of the key's project (in this machine's database) until Ctrl-C."""
    import sys

    from projects.models import ApiKey, hash_key

    out = out or sys.stdout
    key = ApiKey.objects.select_related("project").filter(key_hash=hash_key(api_key)).first()
    if key is None:
        raise SystemExit("fake admin: this machine's database does not hold the seed key's project")
    project_name = key.project.name
    traffic, rates, tiers, unobserved = seeded_traffic(project_name=project_name)
    from django.db import connections

    # The bill is in memory now: hold no database connection while serving for hours.
    connections.close_all()
    fake = FakeAdminAPI(traffic=traffic, rates=rates, tiers=tiers, page_size=7).start(port)
    flex = ", ".join(tiers) or "none"
    out.write(
        f"\nFake OpenAI admin API billing the seeded traffic of {project_name!r}: "
        f"{SEED_UNOBSERVED_SHARE:.0%} of {unobserved} calls never observed, billed on flex: {flex}.\n"
        f"OPENAI_ADMIN_BASE_URL={fake.base_url}\n"
        f"In another shell (the key is the fake's, not a secret):\n"
        f"  OPENAI_ADMIN_BASE_URL={fake.base_url} OPENAI_ADMIN_KEY={FAKE_KEY} "
        f".venv/bin/python manage.py reconcile --project {project_name} --since {traffic[0].day}\n"
        f"Serving until Ctrl-C.\n"
    )
    out.flush()
    if not forever:
        return fake
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.close()
    return fake


def traffic_total(traffic: Iterable[Traffic]) -> int:
    return sum(t.input_tokens + t.output_tokens for t in traffic)
