"""The per-value rollup (AttributeValueRollup) and the per-key-day rollup
(AttributeKeyDay) kept beside the wide attribute rollup: their sums against
hand sums and against the wide rows, the value cap, the per-process key
cache, which table a breakdown reads, and the set-based rebuild/backfill.

Prices (OpenAI's pricing page): gpt-4o $2.50 in / $10.00 out per 1M tokens,
gpt-4o-mini $0.15 / $0.60.
"""

from __future__ import annotations

import datetime as dt
import importlib
import io
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext

import events.services
from attribution.selectors import CostQuery, cost_breakdown
from events.models import AttributeKey, AttributeKeyDay, AttributeRollup, AttributeValueRollup
from events.schema import decode_batch
from events.services import attribute_keys_forget, attribute_narrow_rebuild, event_batch_ingest
from tests.attribution.conftest import GPT_4O, GPT_4O_MINI, call, usd
from tests.conftest import Api

DAY = dt.date(2026, 11, 24)
AT = "2026-11-24T10:00:00Z"
SUMS = ("calls", "errors", "unpriced_calls", "usage_unknown_calls", "input_tokens", "output_tokens")

# u-1 on the 24th: gpt-4o (1000 in / 100 out) and gpt-4o-mini (2000 in / 500 out) in the
# first batch, gpt-4o (3000 in / 0 out, failed) in the second; u-2: one gpt-4o-mini call.
U1_COST = usd(GPT_4O, 1000, 100) + usd(GPT_4O_MINI, 2000, 500) + usd(GPT_4O, 3000, 0)  # 0.0115 + 0.0006
U2_COST = usd(GPT_4O_MINI, 4000, 1000)  # 0.0012


def ingest(project_id: int, **attributes: str) -> None:
    """One call through the ingest service (no HTTP), outside the test's transaction when the test runs in none."""
    decoded, _, _ = decode_batch(msgspec.json.encode({"events": [call(attributes=attributes, started_at=AT)]}))
    event_batch_ingest(project_id=project_id, events=[e for e in decoded if e is not None])


def key_reads(project_id: int, **attributes: str) -> int:
    """How many times ingesting one call read AttributeKey."""
    with CaptureQueriesContext(connection) as queries:
        ingest(project_id, **attributes)
    return sum(1 for q in queries.captured_queries if "FROM events_attributekey " in q["sql"])


def two_batches(api: Api) -> None:
    u1 = {"user_id": "u-1", "plan": "pro"}
    u2 = {"user_id": "u-2", "plan": "pro"}
    first = [
        call(run_id="r-1", model="gpt-4o", input_tokens=1000, output_tokens=100, started_at=AT, attributes=u1),
        call(run_id="r-1", model="gpt-4o-mini", input_tokens=2000, output_tokens=500, started_at=AT, attributes=u1),
        call(run_id="r-2", model="gpt-4o-mini", input_tokens=4000, output_tokens=1000, started_at=AT, attributes=u2),
    ]
    second = [
        call(
            run_id="r-3",
            model="gpt-4o",
            input_tokens=3000,
            output_tokens=0,
            started_at="2026-11-24T18:00:00Z",
            attributes=u1,
            status="error",
            error_type="APIError",
        ),
        call(run_id="r-4", model="gpt-4o", input_tokens=500, output_tokens=0, started_at=AT),  # no attributes
    ]
    assert api.post_events(first).status_code == 200
    assert api.post_events(second).status_code == 200


def value_rows(project_id: int) -> dict[tuple[str, str], tuple[Any, ...]]:
    return {
        (r[0], r[1]): (*r[2:-1], round(r[-1], 12))
        for r in AttributeValueRollup.objects.filter(project_id=project_id).values_list(
            "key", "value", *SUMS, "cost_usd"
        )
    }


def wide_summed(project_id: int) -> dict[tuple[str, str], tuple[Any, ...]]:
    """AttributeRollup summed per (key, value) in Python: over service, provider, model and day."""
    out: dict[tuple[str, str], list[Any]] = {}
    for r in AttributeRollup.objects.filter(project_id=project_id).values_list("key", "value", *SUMS, "cost_usd"):
        acc = out.setdefault((r[0], r[1]), [0] * len(SUMS) + [0.0])
        for i, v in enumerate(r[2:]):
            acc[i] += v
    return {k: (*v[:-1], round(v[-1], 12)) for k, v in out.items()}


def state(project_id: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    fields = ("key", "day", *SUMS)
    values = sorted(
        (*r[:-1], round(r[-1], 12))
        for r in AttributeValueRollup.objects.filter(project_id=project_id).values_list(
            *fields[:2], "value", *SUMS, "cost_usd"
        )
    )
    days = sorted(
        (*r[:-1], round(r[-1], 12))
        for r in AttributeKeyDay.objects.filter(project_id=project_id).values_list(*fields, "value_count", "cost_usd")
    )
    return values, days


def test_value_rows_equal_hand_sums_and_the_wide_rows(api: Api, project):
    two_batches(api)
    rows = value_rows(project.id)
    # u-1: three calls over two models and two batches in one row; the failed call counts as an error
    assert rows[("user_id", "u-1")] == (3, 1, 0, 0, 6000, 600, round(U1_COST, 12))
    assert rows[("user_id", "u-2")] == (1, 0, 0, 0, 4000, 1000, round(U2_COST, 12))
    assert rows[("plan", "pro")] == (4, 1, 0, 0, 10_000, 1600, round(U1_COST + U2_COST, 12))
    assert set(rows) == {("user_id", "u-1"), ("user_id", "u-2"), ("plan", "pro")}
    # u-1 is three wide rows (gpt-4o, gpt-4o-mini; the second batch added to the gpt-4o one)...
    assert AttributeRollup.objects.filter(project_id=project.id, key="user_id", value="u-1").count() == 2
    # ...and the value rows are exactly the wide rows summed over service, provider and model
    assert rows == wide_summed(project.id)
    day = AttributeKeyDay.objects.get(project_id=project.id, key="user_id", day=DAY)
    assert (day.value_count, day.calls, day.errors, day.input_tokens, day.output_tokens) == (2, 4, 1, 10_000, 1600)
    assert day.cost_usd == pytest.approx(U1_COST + U2_COST, abs=1e-12)
    # value_count is the number of value rows, whatever the batches
    assert AttributeKeyDay.objects.get(project_id=project.id, key="plan", day=DAY).value_count == 1


def test_value_cap_and_other_in_the_value_rows(api: Api, project, monkeypatch):
    monkeypatch.setattr(events.services, "ATTRIBUTE_VALUES_MAX", 3)
    assert api.post_events([call(attributes={"user_id": u}, started_at=AT) for u in ("u-a", "u-b")]).status_code == 200
    later = [call(run_id=f"r-{u}", attributes={"user_id": u}, started_at=AT) for u in ("u-e", "u-d", "u-c")]
    assert api.post_events(later).status_code == 200
    again = [call(attributes={"user_id": "u-a"}, started_at=AT), call(attributes={"user_id": "u-f"}, started_at=AT)]
    assert api.post_events(again).status_code == 200
    calls = {k[1]: r[0] for k, r in value_rows(project.id).items()}
    # as the wide rollup (test_rollup.py): u-c took the last place, u-d, u-e and u-f went to "(other)"
    assert calls == {"u-a": 2, "u-b": 1, "u-c": 1, "(other)": 3}
    assert value_rows(project.id) == wide_summed(project.id)
    day = AttributeKeyDay.objects.get(project_id=project.id, key="user_id", day=DAY)
    assert (day.value_count, day.calls) == (4, 7)


def test_value_count_on_a_full_day_stays_with_the_rows(api: Api, project, monkeypatch):
    """A day at its cap keeps adding to known values and to "(other)" without counting them again."""
    monkeypatch.setattr(events.services, "ATTRIBUTE_VALUES_MAX", 2)
    for users in (("u-1", "u-2", "u-3"), ("u-1", "u-4"), ("u-2", "u-5", "u-6")):
        batch = [call(run_id=f"r-{u}-{len(users)}", attributes={"user_id": u}, started_at=AT) for u in users]
        assert api.post_events(batch).status_code == 200
    counts = dict(
        AttributeValueRollup.objects.filter(project_id=project.id, key="user_id").values_list("value", "calls")
    )
    assert counts == {"u-1": 2, "u-2": 2, "(other)": 4}
    day = AttributeKeyDay.objects.get(project_id=project.id, key="user_id", day=DAY)
    assert (day.value_count, day.calls) == (3, 8)


@pytest.mark.django_db(transaction=True)
def test_key_cache_picks_up_a_key_another_writer_added(project):
    attribute_keys_forget()
    assert key_reads(project.id, plan="pro") == 1  # first batch: read, "plan" added, remembered after the commit
    assert key_reads(project.id, plan="free") == 0  # known keys: no read
    # another process adds "region" (and rolls it up); this process has not seen it
    AttributeKey.objects.create(project=project, key="region", first_seen_at=dt.datetime.now(dt.UTC))
    assert key_reads(project.id, plan="pro", region="eu") == 1  # a miss re-reads
    assert AttributeKey.objects.filter(project=project).count() == 2  # found, not added twice
    assert AttributeValueRollup.objects.get(project=project, key="region").calls == 1
    assert key_reads(project.id, region="us") == 0
    attribute_keys_forget()


@pytest.mark.django_db(transaction=True)
def test_key_cache_at_the_cap_refuses_new_keys_without_a_read(project, monkeypatch):
    monkeypatch.setattr(events.services, "ATTRIBUTE_KEYS_MAX", 1)
    attribute_keys_forget()
    AttributeKey.objects.create(project=project, key="plan", first_seen_at=dt.datetime.now(dt.UTC))
    assert key_reads(project.id, plan="pro", zone="eu") == 1  # read: the cap was reached before this process added
    assert key_reads(project.id, plan="pro", other="x") == 0  # complete: a new key is refused without a read
    assert set(AttributeValueRollup.objects.filter(project=project).values_list("key", flat=True)) == {"plan"}
    attribute_keys_forget()


def test_a_rolled_back_batch_is_not_remembered(project):
    """The `db` fixture's test runs in a transaction that is rolled back: nothing may be cached from it
    (a later test's project can get the same id back on SQLite)."""
    attribute_keys_forget()
    ingest(project.id, plan="pro")
    assert project.id not in events.services._KEYS_CACHE
    assert key_reads(project.id, plan="pro") == 1


def test_unfiltered_reads_the_value_rollup_filtered_the_wide_one_same_totals(api: Api, project):
    two_batches(api)
    base = CostQuery(group_by="attribute", key="user_id", start=DAY, end=DAY)

    def run(query: CostQuery) -> tuple[Any, str]:
        with CaptureQueriesContext(connection) as queries:
            result = cost_breakdown(project_id=project.id, query=query)
        return result, " ".join(q["sql"] for q in queries.captured_queries)

    whole, sql = run(base)
    assert "events_attributevaluerollup" in sql and "events_attributekeyday" in sql
    assert "events_attributerollup " not in sql
    by_model = {}
    for model in ("gpt-4o", "gpt-4o-mini"):
        part, sql = run(CostQuery(group_by="attribute", key="user_id", start=DAY, end=DAY, model=model))
        assert "events_attributerollup " in sql and "events_attributevaluerollup" not in sql
        by_model[model] = part
    # u-1: gpt-4o 1000/100 + 3000/0 (failed), gpt-4o-mini 2000/500
    assert {r.key: r.sums.calls for r in by_model["gpt-4o"].rows} == {"u-1": 2}
    assert {r.key: r.sums.calls for r in by_model["gpt-4o-mini"].rows} == {"u-2": 1, "u-1": 1}
    rows = {r.key: r.sums for r in whole.rows}
    assert [r.key for r in whole.rows] == ["u-1", "u-2"]  # by cost
    assert rows["u-1"].cost_usd == pytest.approx(U1_COST, abs=1e-12)
    assert rows["u-2"].cost_usd == pytest.approx(U2_COST, abs=1e-12)
    for name in ("calls", "errors", "input_tokens", "output_tokens"):
        split = sum(getattr(r.sums, name) for b in by_model.values() for r in b.rows)
        assert getattr(rows["u-1"], name) + getattr(rows["u-2"], name) == split
    # totals: every call of the day (the one without attributes too) = the rows + none
    assert whole.totals.sums.calls == 5 and whole.none is not None and whole.none.sums.calls == 1
    assert whole.totals.sums.cost_usd == pytest.approx(U1_COST + U2_COST + usd(GPT_4O, 500, 0), abs=1e-12)
    assert whole.other_keys == 0 and whole.other.sums.calls == 0
    # the daily series from the value rows
    assert whole.daily[0].by_key["u-1"] == pytest.approx(U1_COST, abs=1e-12)
    # a limit of one: the rest folded into "other", its count and sums exact
    top1 = cost_breakdown(project_id=project.id, query=CostQuery(**{**_fields(base), "limit": 1}))
    assert [r.key for r in top1.rows] == ["u-1"] and top1.other_keys == 1
    assert top1.other.sums.calls == 1 and top1.other.sums.cost_usd == pytest.approx(U2_COST, abs=1e-12)
    # filtered to one value of the group-by key: read from the value rollup too
    one, sql = run(CostQuery(**{**_fields(base), "attribute": ("user_id", "u-2")}))
    assert "events_attributevaluerollup" in sql and [r.key for r in one.rows] == ["u-2"]
    assert one.totals.sums.calls == 1


def _fields(q: CostQuery) -> dict[str, Any]:
    return {name: getattr(q, name) for name in CostQuery.__dataclass_fields__}


def test_rebuild_and_backfill_land_on_the_rows_ingest_kept(api: Api, project):
    two_batches(api)
    before = state(project.id)
    assert before[0] and before[1]
    # set-based, from the wide rows
    AttributeValueRollup.objects.all().delete()
    AttributeKeyDay.objects.all().delete()
    assert attribute_narrow_rebuild(project_id=project.id) == 3
    assert state(project.id) == before
    # the migration's backfill (the same statements, written into 0007)
    AttributeValueRollup.objects.all().delete()
    AttributeKeyDay.objects.all().delete()
    migration = importlib.import_module("events.migrations.0007_attribute_value_rollup")
    migration.backfill(None, SimpleNamespace(connection=connection))
    assert state(project.id) == before
    # the command, both ways: from the wide rows, and from the events day by day
    AttributeValueRollup.objects.all().delete()
    call_command("attribution_rebuild", "--since", "2026-11-24", "--narrow-only", stdout=io.StringIO())
    assert state(project.id) == before
    AttributeValueRollup.objects.all().delete()
    AttributeKeyDay.objects.all().delete()
    call_command("attribution_rebuild", "--since", "2026-11-24", stdout=io.StringIO())
    assert state(project.id) == before
    # value_count equals the value rows per (key, day)
    counted = {
        (r["key"], r["day"]): r["n"]
        for r in AttributeValueRollup.objects.filter(project_id=project.id).values("key", "day").annotate(n=Count("id"))
    }
    kept = defaultdict(int)
    for key, day, n in AttributeKeyDay.objects.filter(project_id=project.id).values_list("key", "day", "value_count"):
        kept[(key, day)] = n
    assert counted == dict(kept)
