"""Dashboard page times with a lot of stored events (issues 5 and 15: each page ≤ 150 ms at 1,000,000 events).

    .venv/bin/python bench/dashboard.py                   # 1,000,000 events, SQLite under var/bench/
    .venv/bin/python bench/dashboard.py --events 100000   # a smaller store
    .venv/bin/python bench/dashboard.py --db-tag mine     # SQLite file var/bench/dashboard-mine-<events>.sqlite3
    DATABASE_URL=postgres://…/bench_dash_mine .venv/bin/python bench/dashboard.py   # a database you created

Every run carries `user_id` (USERS distinct values over the store, each user
on two or three runs), `customer` and `plan` attributes, as the SDK sends
`run(user_id=..., customer=..., plan=...)`: the Breakdown page and
`GET /costs?group_by=attribute:user_id` read the attribute rollup they build.
Every page of the nav found on the overview is timed too.  Before timing, the
attribute windows job runs as beat keeps it (the breakdown presets read them).

Builds (or reuses, when it already holds enough events) a project "bench" with
`--events` events over the last 60 days, written through the real ingest
service (`events.services.event_batch_ingest`, 1000-event batches) so the
aggregates are exactly what production keeps.  Then logs a member in with
Django's test Client and prints the median (and p95) server time of each page:
the whole request through middleware, view, queries and template rendering.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUDGET_MS = 150.0
AGENTS = ["agent:researcher", "agent:writer", "agent:support", "agent:planner"]
TOOLS = ["tool:web_search", "tool:retrieval", "tool:summarize", "tool:classify", "step:analyze_results", "step:draft"]
MODELS = [
    ("openai", "gpt-4o-2024-08-06", 0.25),
    ("openai", "gpt-4o-mini", 0.45),
    ("openai", "o3-mini", 0.12),
    ("openai", "text-embedding-3-small", 0.15),
    ("openai", "gpt-4.1-nano", 0.025),
    ("acme-ai", "house-model-2", 0.005),  # no price: shows up as unpriced
]
SERVICES = ["support-bot", "research-api", "batch-jobs"]
DAYS = 60
USERS = 50_000
CUSTOMERS = 400


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="events to store (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=15, help="timed requests per page (default 15)")
    parser.add_argument("--rebuild", action="store_true", help="drop the bench project's data and build it again")
    parser.add_argument("--seed", type=int, default=5, help="random seed for the generated traffic")
    parser.add_argument("--db-tag", default="", help="SQLite: a tag in the database file's name")
    parser.add_argument("--only", default="", help="time only the pages whose label contains this text")
    return parser.parse_args()


def setup_django(events: int, tag: str = "") -> None:
    if not os.environ.get("DATABASE_URL"):
        path = ROOT / "var" / "bench" / f"dashboard-{tag + '-' if tag else ''}{events}.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmobserve_site.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def generate_runs(total_events: int, rng: random.Random, now: dt.datetime):  # type: ignore[no-untyped-def]
    """Yield lists of EventIn, one run each (about 8 events), spread over DAYS days, oldest first."""
    import msgspec

    from events.schema import EventIn

    runs = max(1, total_events // 8)
    span = dt.timedelta(days=DAYS)
    weights = [m[2] for m in MODELS]
    produced = 0
    for n in range(runs):
        if produced >= total_events:
            return
        started = now - span + span * (n / runs) + dt.timedelta(seconds=rng.random())
        run_id = f"bench-{n:07d}"
        service = SERVICES[n % len(SERVICES)]
        agent = AGENTS[rng.randrange(len(AGENTS))]
        tools = rng.sample(TOOLS, 2)
        root_span = f"{run_id}-a"
        # Each of the USERS users on two or three runs (7919 is prime to USERS: a
        # permutation); customers by a skew: user u belongs to customer u % k of
        # a Zipf-ish ladder, so a few customers hold most users and cost.
        user = (n * 7919) % USERS
        customer = int(CUSTOMERS * (user / USERS) ** 3)
        plan = "enterprise" if customer < 8 else "pro" if customer < 80 else "free"
        attrs = msgspec.Raw(
            msgspec.json.encode({"user_id": f"u-{user}", "customer": f"c-{customer:03d}", "plan": plan})
        )
        events = [
            EventIn(
                event_id=f"{run_id}-a",
                run_id=run_id,
                span_id=root_span,
                span_type="section",
                name=agent,
                section=agent,
                section_path=agent,
                latency_ms=2500.0,
                started_at=started,
                service=service,
                attributes=attrs,
            )
        ]
        for t, tool in enumerate(tools):
            tool_span = f"{run_id}-t{t}"
            path = f"{agent}/{tool}"
            at = started + dt.timedelta(milliseconds=100 + 1000 * t)
            events.append(
                EventIn(
                    event_id=f"{run_id}-t{t}",
                    run_id=run_id,
                    span_id=tool_span,
                    parent_span_id=root_span,
                    span_type="section",
                    name=tool,
                    section=tool,
                    section_path=path,
                    latency_ms=900.0,
                    started_at=at,
                    service=service,
                    attributes=attrs,
                )
            )
            for c in range(2 if t == 0 else 3):
                provider, model = rng.choices(MODELS, weights)[0][:2]
                failed = rng.random() < 0.02
                tokens_in = rng.randint(200, 4000)
                events.append(
                    EventIn(
                        event_id=f"{run_id}-t{t}-c{c}",
                        run_id=run_id,
                        span_id=f"{run_id}-t{t}-c{c}",
                        parent_span_id=tool_span,
                        span_type="vector_db" if model.startswith("text-embedding") else "llm",
                        name="chat.completions.create",
                        section=tool,
                        section_path=path,
                        provider=provider,
                        model=model,
                        endpoint="chat.completions.create",
                        input_tokens=0 if failed else tokens_in,
                        cached_input_tokens=0 if failed else rng.choice([0, 0, tokens_in // 2]),
                        output_tokens=0 if failed else rng.randint(20, 600),
                        latency_ms=float(rng.randint(80, 2500)),
                        started_at=at + dt.timedelta(milliseconds=10 + c),
                        status="error" if failed else "ok",
                        error_type="RateLimitError" if failed else None,
                        service=service,
                        attributes=attrs,
                    )
                )
        events = events[: total_events - produced]
        produced += len(events)
        yield events


def build(project_id: int, total_events: int, seed: int) -> None:
    from django.utils import timezone

    from events.services import event_batch_ingest

    rng = random.Random(seed)
    now = timezone.now()
    batch: list = []
    stored = 0
    started = time.perf_counter()
    for run in generate_runs(total_events, rng, now):
        batch.extend(run)
        if len(batch) >= 1000:
            stored += event_batch_ingest(project_id=project_id, events=batch[:1000]).accepted
            batch = batch[1000:]
            if stored % 50_000 < 1000:
                rate = stored / (time.perf_counter() - started)
                print(f"  {stored:>9,} events stored ({rate:,.0f}/s)", file=sys.stderr, flush=True)
    if batch:
        stored += event_batch_ingest(project_id=project_id, events=batch).accepted
    print(f"  {stored:,} events stored in {time.perf_counter() - started:,.0f} s", file=sys.stderr)


def ensure_data(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from events.models import (
        AttributeKey,
        AttributeKeyDay,
        AttributeRollup,
        AttributeValueMonth,
        AttributeValueRollup,
        AttributeValueWeek,
        DailyRollup,
        Event,
        Run,
        RunSection,
    )
    from projects.models import Membership, Project

    call_command("migrate", verbosity=0, interactive=False)
    project, _ = Project.objects.get_or_create(name="bench")
    user, created = User.objects.get_or_create(username="bench-viewer")
    if created:
        user.set_password("bench-viewer-pw")
        user.save()
    Membership.objects.get_or_create(project=project, user=user)
    have = Event.objects.filter(project=project).count()
    if args.rebuild or have < args.events:
        if have:
            print(f"dropping {have:,} bench events", file=sys.stderr)
            rollups = (AttributeRollup, AttributeValueRollup, AttributeValueWeek, AttributeValueMonth, AttributeKeyDay)
            for model in (Event, Run, RunSection, DailyRollup, *rollups, AttributeKey):
                model.objects.filter(project=project).delete()
        print(f"building {args.events:,} events …", file=sys.stderr)
        build(project.id, args.events, args.seed)
    else:
        print(f"reusing {have:,} stored events", file=sys.stderr)
    add_rare_section(project.id)
    return project, user


RARE = "tool:rare_lookup"


def add_rare_section(project_id: int) -> None:
    """25 runs (0.02% at 1M events) with a section nothing else has, spread over
    the 60 days: the run list's worst case for a section filter."""
    from django.utils import timezone

    from events.models import RunSection
    from events.schema import EventIn
    from events.services import event_batch_ingest

    if RunSection.objects.filter(project_id=project_id, section=RARE).exists():
        return
    now = timezone.now()
    events = []
    for i in range(25):
        started = now - dt.timedelta(days=DAYS) + dt.timedelta(days=DAYS * i / 25, minutes=7)
        run_id = f"bench-rare-{i:02d}"
        common: dict[str, Any] = {"run_id": run_id, "service": "batch-jobs"}
        events += [
            EventIn(
                event_id=f"{run_id}-a",
                span_id=f"{run_id}-a",
                span_type="section",
                name="agent:planner",
                section="agent:planner",
                section_path="agent:planner",
                started_at=started,
                **common,
            ),
            EventIn(
                event_id=f"{run_id}-t",
                span_id=f"{run_id}-t",
                parent_span_id=f"{run_id}-a",
                span_type="section",
                name=RARE,
                section=RARE,
                section_path=f"agent:planner/{RARE}",
                started_at=started,
                **common,
            ),
            EventIn(
                event_id=f"{run_id}-c",
                span_id=f"{run_id}-c",
                parent_span_id=f"{run_id}-t",
                span_type="llm",
                name="chat.completions.create",
                section=RARE,
                section_path=f"agent:planner/{RARE}",
                provider="openai",
                model="gpt-4o-mini",
                input_tokens=900,
                output_tokens=90,
                started_at=started,
                **common,
            ),
        ]
    event_batch_ingest(project_id=project_id, events=events)


def timed(client, path: str, repeat: int, headers: dict[str, str]) -> tuple[float, float, float, int]:  # type: ignore[no-untyped-def]
    """(median wall ms, p95 wall ms, median CPU ms, response bytes).

    CPU time is this process's own (SQLite runs in-process, so its query work
    counts); it stays honest on a busy machine where wall time includes
    waiting for a core.
    """
    for _ in range(2):  # warm caches (templates, price table, sqlite pages)
        response = client.get(path, **headers)
        assert response.status_code == 200, (path, response.status_code)
    samples = []
    cpu = []
    size = 0
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        response = client.get(path, **headers)
        samples.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
        size = len(response.content)
    samples.sort()
    p95 = samples[min(len(samples) - 1, int(round(0.95 * (len(samples) - 1))))]
    return statistics.median(samples), p95, statistics.median(cpu), size


def main() -> int:
    args = parse_args()
    setup_django(args.events, args.db_tag)
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from attribution.services import attribute_windows_refresh
    from events.models import Event, Run
    from projects.models import ApiKey

    project, user = ensure_data(args)
    api_key = ApiKey.generate(project=project)[1]
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {api_key}"}
    # The breakdown presets' attribute windows, as beat keeps them in service.
    t0 = time.perf_counter()
    windows = attribute_windows_refresh(project_id=project.id, today=timezone.now().date())
    print(f"attribute windows job: {windows} in {(time.perf_counter() - t0) * 1000:,.0f} ms")
    if connection.vendor == "postgresql":
        # Fresh planner statistics and visibility maps, as autovacuum keeps them
        # in service: right after a bulk load PostgreSQL still believes the
        # tables hold a few hundred rows and picks bitmap scans of the whole
        # project (0.3-1 s); and with no page marked all-visible (this server
        # runs with autovacuum off) no index-only scan pays, so a 30-day sort
        # of runs scans the whole runs table instead of the run_project_sort
        # index range.
        with connection.cursor() as db:
            db.execute("VACUUM (ANALYZE)")
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    newest = Run.objects.filter(project=project).order_by("-started_at", "-id").first()
    oldest = Run.objects.filter(project=project).order_by("started_at", "id").first()
    assert newest is not None and oldest is not None
    page_one = client.get("/dashboard/runs/", HTTP_HOST="localhost").content.decode()
    cursor = page_one.split("cursor=", 1)[1].split('"', 1)[0] if "cursor=" in page_one else ""
    week_ago = (timezone.now() - dt.timedelta(days=7)).date()
    today = timezone.now().date()
    yesterday, month_ago = today - dt.timedelta(days=1), today - dt.timedelta(days=29)
    htmx = {"HTTP_HX_REQUEST": "true"}
    pages: list[tuple[str, str, dict[str, str]]] = [
        ("overview", "/", {}),
        ("overview, today", "/?days=1", {}),
        ("overview, 30 days", "/?days=30", {}),
        ("overview chart by model (htmx)", "/?by=model", {**htmx, "HTTP_HX_TARGET": "chart"}),
        ("runs", "/dashboard/runs/", {}),
        ("runs live poll (htmx)", "/dashboard/runs/?", {**htmx, "HTTP_HX_TARGET": "run-table"}),
        ("runs, older page (cursor)", f"/dashboard/runs/?cursor={cursor}", {}),
        ("runs, section filter", "/dashboard/runs/?section=tool:web_search", {}),
        ("runs, rare section (25 runs)", f"/dashboard/runs/?section={RARE}", {}),
        ("runs, service filter", "/dashboard/runs/?service=batch-jobs", {}),
        ("runs, status=error", "/dashboard/runs/?status=error", {}),
        ("runs, min cost $0.01", "/dashboard/runs/?min_cost=0.01", {}),
        ("runs, one day a week ago", f"/dashboard/runs/?since={week_ago}&until={week_ago}", {}),
        # Sorts by a figure (the last 7 days unless a period is given) and the "most expensive" presets.
        ("runs by cost (7 days)", "/dashboard/runs/?sort=cost", {}),
        ("runs by duration (7 days)", "/dashboard/runs/?sort=duration", {}),
        ("runs by calls, fewest (7 days)", "/dashboard/runs/?sort=calls&dir=asc", {}),
        ("runs by cost, page 3", "/dashboard/runs/?sort=cost&offset=100", {}),
        ("most expensive, yesterday", f"/dashboard/runs/?since={yesterday}&until={yesterday}&sort=cost", {}),
        ("most expensive, 30 days", f"/dashboard/runs/?since={month_ago}&until={today}&sort=cost", {}),
        ("runs by duration, 30 days", f"/dashboard/runs/?since={month_ago}&until={today}&sort=duration", {}),
        # Searches (each tests at most 5,000 runs a page).
        ("runs search: bare word", "/dashboard/runs/?q=u-123", {}),
        ("runs search: model", "/dashboard/runs/?q=model:o3-mini", {}),
        ("runs search: rare model", "/dashboard/runs/?q=model:house-model-2", {}),
        ("runs search: section", "/dashboard/runs/?q=section:classify", {}),
        ("runs search: user_id", "/dashboard/runs/?q=user_id:u-123", {}),
        ("runs, model filter (7-day p50/p95)", "/dashboard/runs/?model=o3-mini", {}),
        ("run detail", f"/dashboard/runs/{newest.run_id}/", {}),
        ("insights", "/dashboard/insights/", {}),
        ("pricing", "/dashboard/pricing/", {}),
        ("breakdown (default: model, 7 days)", "/dashboard/breakdown/", {}),
        ("breakdown model, 30 days", "/dashboard/breakdown/?days=30", {}),
        ("breakdown user_id, 7 days", "/dashboard/breakdown/?group_by=attribute:user_id&days=7", {}),
        ("breakdown user_id, 30 days", "/dashboard/breakdown/?group_by=attribute:user_id&days=30", {}),
        ("breakdown user_id, 90 days", "/dashboard/breakdown/?group_by=attribute:user_id&days=90", {}),
        ("breakdown customer, 30 days", "/dashboard/breakdown/?group_by=attribute:customer&days=30", {}),
        ("breakdown model, plan=enterprise", "/dashboard/breakdown/?group_by=model&attribute=plan:enterprise", {}),
        ("breakdown service, 90 days", "/dashboard/breakdown/?group_by=service&days=90", {}),
        ("GET /costs user_id (default 7 days)", "/costs?group_by=attribute:user_id", bearer),
        ("GET /costs user_id, 30 days", "/costs?group_by=attribute:user_id&days=30", bearer),
        ("GET /costs user_id, 90 days, csv", "/costs?group_by=attribute:user_id&days=90&format=csv", bearer),
        ("GET /costs user_id, model filter, 7 d", "/costs?group_by=attribute:user_id&model=gpt-4o-mini", bearer),
        ("GET /runs/latest", "/runs/latest", bearer),
        ("GET /runs/{id} (newest run)", f"/runs/{newest.run_id}", bearer),
        ("GET /runs/{id} (oldest run)", f"/runs/{oldest.run_id}", bearer),
    ]
    # Every other page of the nav, as the overview links it.
    overview_html = client.get("/", HTTP_HOST="localhost").content.decode()
    nav = overview_html.split('class="mainnav"', 1)[1].split("</nav>", 1)[0] if "mainnav" in overview_html else ""
    listed = {path.split("?", 1)[0] for _, path, _ in pages}
    for chunk in nav.split('href="')[1:]:
        href = chunk.split('"', 1)[0]
        if href.startswith("/") and not href.startswith("/admin") and href not in listed:
            pages.append((f"nav: {href}", href, {}))
            listed.add(href)
    events = Event.objects.filter(project=project).count()
    runs = Run.objects.filter(project=project).count()
    print(f"\n{connection.vendor}: {events:,} events, {runs:,} runs; {args.repeat} timed requests per page\n")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"(load average {load:.1f} on {os.cpu_count()} CPUs)\n")
    print(f"| {'page':<34} | {'median ms':>9} | {'p95 ms':>7} | {'CPU ms':>6} | {'KiB':>4} | ≤{BUDGET_MS:.0f} ms |")
    print(f"|{'-' * 36}|{'-' * 10}:|{'-' * 8}:|{'-' * 7}:|{'-' * 5}:|{'-' * 9}|")
    worst = 0.0
    for label, path, headers in pages:
        if args.only and args.only not in label:
            continue
        median, p95, cpu, size = timed(client, path, args.repeat, headers)
        worst = max(worst, median)
        ok = "yes" if median <= BUDGET_MS else "NO"
        print(f"| {label:<34} | {median:>9.1f} | {p95:>7.1f} | {cpu:>6.1f} | {size / 1024:>4.0f} | {ok:<7} |")
    print(f"\nslowest median: {worst:.1f} ms (budget {BUDGET_MS:.0f} ms)")
    return 0 if worst <= BUDGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
