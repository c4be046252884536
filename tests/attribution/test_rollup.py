"""The attribute rollup and Run.attributes as ingest keeps them: bounds, the
"(other)" bucket, and a rebuild from events landing on the same rows."""

from __future__ import annotations

import datetime as dt
import io

import pytest

import events.services
from events.models import AttributeKey, AttributeRollup, Run
from events.services import aggregates_rebuild, events_reprice
from tests.attribution.conftest import GPT_4O, call, usd
from tests.conftest import Api

DAY = "2026-11-24"
DAY_AT = f"{DAY}T10:00:00Z"


def user_rows(project_id: int) -> dict[str, int]:
    return dict(AttributeRollup.objects.filter(project_id=project_id, key="user_id").values_list("value", "calls"))


def test_value_cap_sends_new_values_to_other(api: Api, project, monkeypatch):
    monkeypatch.setattr(events.services, "ATTRIBUTE_VALUES_MAX", 3)
    first = [call(attributes={"user_id": u}, started_at=DAY_AT) for u in ("u-a", "u-b")]
    assert api.post_events(first).status_code == 200
    # one free place left: u-c (first in sort order) takes it, u-d and u-e go to "(other)"
    later = [call(run_id=f"r-{u}", attributes={"user_id": u}, started_at=DAY_AT) for u in ("u-e", "u-d", "u-c")]
    assert api.post_events(later).status_code == 200
    # a value already there keeps adding to its own row
    again = [
        call(attributes={"user_id": "u-a"}, started_at=DAY_AT),
        call(attributes={"user_id": "u-f"}, started_at=DAY_AT),
    ]
    assert api.post_events(again).status_code == 200
    assert user_rows(project.id) == {"u-a": 2, "u-b": 1, "u-c": 1, "(other)": 3}
    # the cap is per day: the next day starts empty
    assert api.post_events([call(attributes={"user_id": "u-z"}, started_at="2026-11-25T10:00:00Z")]).status_code == 200
    assert AttributeRollup.objects.get(project_id=project.id, key="user_id", day=dt.date(2026, 11, 25)).value == "u-z"
    body = api.get("/costs", group_by="attribute:user_id", **{"from": DAY, "to": DAY}).json()
    rows = {r["key"]: r["calls"] for r in body["rows"]}
    assert rows == {"u-a": 2, "u-b": 1, "u-c": 1, "(other)": 3}
    assert body["totals"]["calls"] == 7 and body["none"]["calls"] == 0
    # the runs keep their own values whatever the rollup's cap
    assert Run.objects.filter(project_id=project.id, attributes__user_id="u-e").count() == 1


def test_key_cap_rolls_up_the_first_keys_only(api: Api, project, monkeypatch):
    monkeypatch.setattr(events.services, "ATTRIBUTE_KEYS_MAX", 2)
    assert (
        api.post_events(
            [call(attributes={"plan": "pro", "customer": "acme", "zone": "eu"}, started_at=DAY_AT)]
        ).status_code
        == 200
    )
    assert sorted(AttributeKey.objects.filter(project_id=project.id).values_list("key", flat=True)) == [
        "customer",
        "plan",
    ]
    assert set(AttributeRollup.objects.filter(project_id=project.id).values_list("key", flat=True)) == {
        "customer",
        "plan",
    }
    response = api.get("/costs", group_by="attribute:zone", **{"from": DAY, "to": DAY})
    assert response.status_code == 400 and "not rolled up" in response.json()["error"]


def test_run_attributes_merge_first_seen_wins(api: Api, project):
    batch = [
        call(run_id="r-m", attributes={"user_id": "u-7", "plan": "pro", "stream": True}, started_at=DAY_AT),
        call(
            run_id="r-m",
            attributes={"user_id": "u-7", "plan": "pro", "seats": 12, "meta": {"a": [1]}},
            started_at=DAY_AT,
        ),
    ]
    assert api.post_events(batch).status_code == 200
    # a later batch can add a key but not change one
    assert (
        api.post_events(
            [call(run_id="r-m", attributes={"plan": "free", "region": "eu"}, started_at=DAY_AT)]
        ).status_code
        == 200
    )
    run = Run.objects.get(project_id=project.id, run_id="r-m")
    assert run.attributes == {"user_id": "u-7", "plan": "pro", "seats": "12", "meta": '{"a":[1]}', "region": "eu"}


def test_run_attributes_are_bounded(api: Api, project):
    many = {f"k{i:02d}": "v" * 300 for i in range(40)}
    assert api.post_events([call(run_id="r-b", attributes=many, started_at=DAY_AT)]).status_code == 200
    run = Run.objects.get(project_id=project.id, run_id="r-b")
    assert len(run.attributes) == 32
    assert all(len(v) == 200 for v in run.attributes.values())
    # a run at its bound keeps its keys when a batch brings more
    assert api.post_events([call(run_id="r-b", attributes={"late": "x"}, started_at=DAY_AT)]).status_code == 200
    assert "late" not in Run.objects.get(project_id=project.id, run_id="r-b").attributes


def test_resent_batch_adds_nothing(api: Api, project):
    batch = [call(attributes={"user_id": "u-1"}, started_at=DAY_AT, input_tokens=1000, output_tokens=100)]
    assert api.post_events(batch).status_code == 200
    assert api.post_events(batch).json()["duplicates"] == 1
    row = AttributeRollup.objects.get(project_id=project.id, key="user_id")
    assert (row.calls, row.input_tokens) == (1, 1000)
    assert row.cost_usd == pytest.approx(usd(GPT_4O, 1000, 100), abs=1e-12)


def test_rebuild_lands_on_the_rows_ingest_kept(seeded: Api, project):
    fields = ("key", "day", "value", "service", "provider", "model", "calls", "errors", "input_tokens", "output_tokens")

    def snapshot():  # type: ignore[no-untyped-def]
        return sorted(
            (*r[:-1], round(r[-1], 12))
            for r in AttributeRollup.objects.filter(project_id=project.id).values_list(*fields, "cost_usd")
        )

    def runs():  # type: ignore[no-untyped-def]
        return sorted(Run.objects.filter(project_id=project.id).values_list("run_id", "attributes", "calls"))

    before, before_runs = snapshot(), runs()
    assert len(before) > 0
    aggregates_rebuild(
        runs=[(project.id, r[0]) for r in before_runs],
        days=[(project.id, dt.date(2026, 11, 24)), (project.id, dt.date(2026, 11, 25))],
    )
    assert snapshot() == before
    assert runs() == before_runs
    # reprice with unchanged prices rebuilds nothing it did not change, and keeps the rows
    events_reprice(since=dt.datetime(2026, 11, 24, tzinfo=dt.UTC), project_id=project.id)
    assert snapshot() == before


def test_rebuild_command_backfills_history(seeded: Api, project):
    from django.core.management import call_command

    def state():  # type: ignore[no-untyped-def]
        return (
            sorted(AttributeRollup.objects.filter(project_id=project.id).values_list("key", "day", "value", "calls")),
            sorted(Run.objects.filter(project_id=project.id).values_list("run_id", "attributes")),
        )

    before = state()
    # history from before the rollup: no attribute rows, runs without attributes
    AttributeRollup.objects.filter(project_id=project.id).delete()
    Run.objects.filter(project_id=project.id).update(attributes={})
    assert state() != before
    call_command("attribution_rebuild", "--since", "2026-11-24", stdout=io.StringIO())
    assert state() == before
