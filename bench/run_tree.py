"""GET /runs/{run_id} and the run page for one wide run (issue 14, "the run tree is quadratic").

    .venv/bin/python bench/run_tree.py                         # 2k / 10k / 35k calls, SQLite under var/bench/
    .venv/bin/python bench/run_tree.py --sizes 2000,10000 --repeats 5
    .venv/bin/python bench/run_tree.py --src /tmp/snap         # another tree (e.g. `git archive` of a commit)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llmobserve_bench_tree SECRET_KEY=… \
        .venv/bin/python bench/run_tree.py

The run of the issue's reproduction: n calls, each with a distinct
`parent_span_id` that never arrives and `section_path: "root/sN"` (so each
call gets a stand-in section whose parent path `root` matches nothing), stored
through the real ingest service.  Then the median server time, through Django's
test Client, of GET /runs/{run_id} (API key, JSON rendered) and of the
dashboard's run page (after one untimed request each), and how many calls the
tree holds.  A request still
running after --timeout seconds is stopped and shown as "> N s".

The database is made afresh: SQLite at var/bench/run-tree.sqlite3 (removed
first), or the PostgreSQL database DATABASE_URL names (its tables are
flushed: point it at a database of its own).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class Slow(Exception):
    pass


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2000,10000,35000", help="calls in the run, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="timed requests per size and page (default 3)")
    parser.add_argument("--timeout", type=float, default=60.0, help="stop a request after this many seconds")
    parser.add_argument("--src", type=Path, default=ROOT, help="the source tree to measure (default: this one)")
    parser.add_argument("--no-page", action="store_true", help="time GET /runs/{id} only, not the run page")
    return parser.parse_args()


def setup_django(src: Path) -> None:
    sys.path.insert(0, str(src.resolve()))
    os.chdir(src)
    if not os.environ.get("DATABASE_URL"):
        path = ROOT / "var" / "bench" / "run-tree.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        for leftover in path.parent.glob(path.name + "*"):
            leftover.unlink()
        os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmobserve_site.settings")
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0, interactive=False)
    call_command("flush", verbosity=0, interactive=False)


def store_run(project_id: int, run_id: str, n: int) -> None:
    from events.schema import EventIn
    from events.services import event_batch_ingest

    base = dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.UTC)
    batch: list[Any] = []
    for i in range(n):
        batch.append(
            EventIn(
                event_id=f"{run_id}-{i}",
                run_id=run_id,
                span_id=f"c{i}",
                parent_span_id=f"gone-{i}",
                span_type="llm",
                name="chat.completions.create",
                section=f"s{i}",
                section_path=f"root/s{i}",
                provider="openai",
                model="gpt-4o",
                endpoint="chat.completions.create",
                input_tokens=100 + i % 7,
                output_tokens=10 + i % 3,
                latency_ms=120.0,
                started_at=base + dt.timedelta(milliseconds=i),
                service="bench",
            )
        )
        if len(batch) == 1000 or i == n - 1:
            event_batch_ingest(project_id=project_id, events=batch)
            batch = []


def timed(get: Any, path: str, repeats: int, timeout: float) -> tuple[str, Any]:
    def stop(signum: int, frame: Any) -> None:
        raise Slow

    previous = signal.signal(signal.SIGALRM, stop)
    times: list[float] = []
    response = None
    try:
        for attempt in range(repeats + 1):  # the first one warms up, untimed
            signal.setitimer(signal.ITIMER_REAL, timeout)
            started = time.perf_counter()
            try:
                response = get(path)
            except Slow:
                return f"> {timeout:.0f} s", None
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            if attempt:
                times.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                return f"HTTP {response.status_code}", response
    finally:
        signal.signal(signal.SIGALRM, previous)
    return f"{statistics.median(times):,.0f}", response


def main() -> None:
    args = parse_args()
    setup_django(args.src)
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    from projects.models import ApiKey, Membership, Project

    project = Project.objects.create(name="bench-tree")
    key = ApiKey.generate(project=project)[1]
    user = User.objects.create_user("bench-tree", password="bench-tree-pw")
    Membership.objects.create(project=project, user=user)
    api = Client(headers={"Authorization": f"Bearer {key}"})
    browser = Client()
    browser.force_login(user)

    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"source: {args.src.resolve()}  database: {connection.vendor}  repeats: {args.repeats}\n")
    head = "| calls in the run | GET /runs/{id} median ms | calls in the tree | truncated |"
    rule = "|---:|---:|---:|---|"
    if not args.no_page:
        head += " run page median ms |"
        rule += "---:|"
    print(head)
    print(rule)
    for n in sizes:
        run_id = f"wide-{n}"
        started = time.perf_counter()
        store_run(project.id, run_id, n)
        print(f"  stored {n:,} calls in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        api_ms, response = timed(api.get, f"/runs/{run_id}", args.repeats, args.timeout)
        shown: Any = "—"
        truncated: Any = "—"
        if response is not None and response.status_code == 200:
            body = response.json()
            shown = body.get("tree_calls")
            if shown is None:  # a tree from before the cap: count its calls
                stack, shown = list(body["tree"]), 0
                while stack:
                    node = stack.pop()
                    shown += node["span_type"] != "section"
                    stack.extend(node["children"])
            truncated = body.get("truncated", "(no field)")
        row = (
            f"| {n:,} | {api_ms} | {shown:,} | {truncated} |"
            if isinstance(shown, int)
            else f"| {n:,} | {api_ms} | — | — |"
        )
        if not args.no_page:
            page_ms, _ = timed(browser.get, f"/dashboard/runs/{run_id}/", args.repeats, args.timeout)
            row += f" {page_ms} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
