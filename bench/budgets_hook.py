#!/usr/bin/env python
"""What budgets cost ingest, in-process (issue 16).

    .venv/bin/python bench/budgets_hook.py [--repeats 7] [--batches 5]

A Django set up on a SQLite database of its own (a temporary LLMOBSERVE_VAR_DIR),
one project with no budget and one with four (the whole project, a model, an
attribute user_id=u-7 and a section: every call matches one or more), fed the
same 1000-call batches of bench/ingest.py's shape.  Two figures per case,
interleaved repetitions, medians (min-max):

- the hook alone, `budget_spend_add` over a decoded batch of 1000 calls (what
  the hook adds to a batch), its warm cache in place;
- the whole `event_batch_ingest` of a 1000-call batch (fresh event ids).

The ratio column is each case against "no budgets" within the run.  For the
HTTP figures see bench/ingest.py (--compare a tree with budgets).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batches", type=int, default=5, help="1000-call batches ingested per repetition and case")
    args = parser.parse_args()
    var = tempfile.mkdtemp(prefix="bench-budgets-")
    os.environ.update(
        {"LLMOBSERVE_VAR_DIR": var, "DJANGO_SETTINGS_MODULE": "llmobserve_site.settings", "LOG_LEVEL": "WARNING"}
    )
    os.environ.pop("DATABASE_URL", None)
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    import django

    django.setup()
    import datetime as dt

    import msgspec
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    from budgets import spend
    from budgets.models import Budget
    from events.schema import EventIn
    from events.services import event_batch_ingest
    from projects.models import Project

    call_command("migrate", verbosity=0)
    plain = Project.objects.create(name="no-budgets")
    budgeted = Project.objects.create(name="four-budgets")
    past = timezone.now() - dt.timedelta(hours=1)
    scopes = [{}, {"scope_model": "gpt-4o-mini"}, {"scope_attribute_key": "user_id", "scope_attribute_value": "u-7"}]
    scopes.append({"scope_section": "tool:web_search"})
    for i, scope in enumerate(scopes):
        Budget.objects.create(
            project=budgeted, name=f"b{i}", amount_usd=100, period="day", counted_from=past, recount_from=past, **scope
        )
    tools = ("web_search", "retrieve", "summarize", "classify")
    now = timezone.now()

    def batch(tag: str) -> list[EventIn]:
        events = []
        for n in range(1000):
            tool = f"tool:{tools[n % 4]}"
            events.append(
                {
                    "event_id": f"{tag}-{n}",
                    "run_id": f"{tag}-r{n // 20}",
                    "span_id": f"{tag}-s{n}",
                    "span_type": "llm",
                    "name": "chat.completions.create",
                    "section": tool,
                    "section_path": f"agent:support/{tool}",
                    "provider": "openai",
                    "model": ("gpt-4o-mini", "gpt-4o-2024-08-06")[n % 2],
                    "input_tokens": 1200,
                    "output_tokens": 150,
                    "latency_ms": 500.0,
                    "started_at": (now - dt.timedelta(seconds=n)).isoformat(),
                    "service": "support-bot",
                    "attributes": {"user_id": f"u-{n % 50}", "tags": ["prod", "v2"], "request_id": f"req-{n:x}"},
                }
            )
        return [msgspec.json.decode(msgspec.json.encode(e), type=EventIn) for e in events]

    cases = {"no budgets": plain.id, "4 budgets": budgeted.id}
    hook: dict[str, list[float]] = {c: [] for c in cases}
    ingest: dict[str, list[float]] = {c: [] for c in cases}
    sample = batch("hook")
    for project_id in cases.values():
        spend.rules_for_project(project_id)
    for _rep in range(args.repeats + 1):  # the first repetition warms up
        for case, project_id in cases.items():
            spend.rules_cache_forget()
            spend.rules_for_project(project_id)
            calls = [(ev, 0.001) for ev in sample]
            # Inside a transaction rolled back afterwards (the table stays as it was);
            with transaction.atomic():
                with connection.cursor() as cursor:  # take SQLite's write lock before the clock starts
                    cursor.execute("UPDATE budgets_budget SET name = name WHERE id < 0")
                start = time.perf_counter()
                spend.budget_spend_add(project_id=project_id, received_at=now, calls=iter(calls))
                hook[case].append((time.perf_counter() - start) * 1000)
                transaction.set_rollback(True)
            spent = 0.0
            for _ in range(args.batches):
                events = batch(uuid.uuid4().hex[:8])
                start = time.perf_counter()
                event_batch_ingest(project_id=project_id, events=events)
                spent += time.perf_counter() - start
            ingest[case].append(spent / args.batches * 1000)
        if _rep == 0:
            for store in (hook, ingest):
                for values in store.values():
                    values.clear()

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):8.2f} ({min(values):.2f}-{max(values):.2f})"

    base_hook = statistics.median(hook["no budgets"])
    base_ingest = statistics.median(ingest["no budgets"])
    print(f"SQLite, {args.repeats} repetitions, medians (min-max), ms per 1000-call batch")
    print(f"{'case':<12} {'hook alone':<28} {'event_batch_ingest':<30} {'ingest ratio':>12}")
    for case in cases:
        print(
            f"{case:<12} {cell(hook[case]):<28} {cell(ingest[case]):<30} "
            f"{statistics.median(ingest[case]) / base_ingest:>11.3f}x"
        )
    print(f"hook with no budgets: {base_hook * 1000:.1f} µs per batch of 1000 calls")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
