"""GET/POST /budgets, GET/PUT/DELETE /budgets/<id>, GET /budgets/status: shape, permissions, bad input."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.test import Client
from django.utils import timezone

from budgets.models import Budget, Channel
from tests.budgets.conftest import call, ingest
from tests.conftest import Api

pytestmark = pytest.mark.django_db

ACME = {
    "name": "acme daily",
    "amount_usd": 5,
    "period": "day",
    "scope": {"attribute": {"key": "customer", "value": "acme"}},
}


class KeyApi(Api):
    def post(self, path: str, payload):  # type: ignore[no-untyped-def]
        body = payload if isinstance(payload, str) else json.dumps(payload)
        return self.client.post(path, data=body, content_type="application/json", headers=self._headers())

    def delete(self, path: str):  # type: ignore[no-untyped-def]
        return self.client.delete(path, headers=self._headers())


@pytest.fixture
def admin(admin_key) -> KeyApi:
    return KeyApi(admin_key)


@pytest.fixture
def reader(api_key) -> KeyApi:
    return KeyApi(api_key)


def test_crud_with_an_admin_key(admin, project):
    r = admin.post("/budgets", ACME)
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["name"] == "acme daily" and body["amount_usd"] == 5.0 and body["period"] == "day"
    assert body["scope"] == {
        "section": None,
        "model": None,
        "service": None,
        "attribute": {"key": "customer", "value": "acme"},
    }
    assert body["thresholds"] == [50, 80, 100] and body["mode"] == "soft" and body["hard"] is False
    budget_id = body["id"]
    assert admin.get("/budgets").json()["budgets"][0]["id"] == budget_id
    r = admin.put(f"/budgets/{budget_id}", {"amount_usd": 7.5, "mode": "hard", "thresholds": [90, 100, 25]})
    assert r.status_code == 200, r.content
    assert r.json()["amount_usd"] == 7.5 and r.json()["mode"] == "hard" and r.json()["thresholds"] == [25, 90, 100]
    assert r.json()["scope"]["attribute"] == {"key": "customer", "value": "acme"}  # kept
    assert admin.get(f"/budgets/{budget_id}").json()["amount_usd"] == 7.5
    assert admin.delete(f"/budgets/{budget_id}").status_code == 204
    assert admin.get(f"/budgets/{budget_id}").status_code == 404
    assert not Budget.objects.exists()


def test_status_shape_and_figures(admin, project, settings):
    settings.BUDGETS_CACHE_SECONDS = 0
    settings.BUDGETS_CLOCK_SKEW_SECONDS = 0
    project.timezone = "UTC"
    project.save()
    budget_id = admin.post("/budgets", {**ACME, "mode": "hard"}).json()["id"]
    now = timezone.now()
    # Two acme calls of $0.35 (gpt-4o, 100k in / 10k out) today, one of another customer.
    when = max(now - dt.timedelta(minutes=5), now.replace(hour=0, minute=0, second=0, microsecond=0))
    ingest(
        project.id,
        [
            call(when, attributes={"customer": "acme"}),
            call(when, attributes={"customer": "acme"}),
            call(when, attributes={"customer": "globex"}),
        ],
    )
    r = admin.get("/budgets/status")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"budgets", "generated_at"}
    (entry,) = body["budgets"]
    assert set(entry) == {
        "id", "name", "mode", "hard", "period", "period_start", "period_end", "scope",
        "amount_usd", "spent_usd", "percent", "forecast_usd", "state",
    }  # fmt: skip
    start = now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert entry["id"] == budget_id and entry["mode"] == "hard" and entry["hard"] is True
    assert entry["period_start"] == start.isoformat().replace("+00:00", "Z")
    assert entry["period_end"] == (start + dt.timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert entry["spent_usd"] == pytest.approx(0.70)
    assert entry["percent"] == pytest.approx(14.0)
    # forecast = 0.70 + 0.70 / 24 h × (the hours left today)
    generated = dt.datetime.fromisoformat(body["generated_at"].replace("Z", "+00:00"))
    left_h = (start + dt.timedelta(days=1) - generated).total_seconds() / 3600
    assert entry["forecast_usd"] == pytest.approx(0.70 + 0.70 / 24 * left_h, abs=1e-4)
    assert entry["state"] == ("warning" if entry["forecast_usd"] > 5 else "ok")
    assert isinstance(entry["amount_usd"], float) and isinstance(entry["percent"], float)


def test_readers_read_and_only_admins_and_owners_write(reader, admin, project, owner, member, outsider, other_key):
    budget_id = admin.post("/budgets", ACME).json()["id"]
    assert reader.get("/budgets").status_code == 200
    assert reader.get("/budgets/status").json()["budgets"][0]["id"] == budget_id
    assert reader.post("/budgets", {**ACME, "name": "x"}).status_code == 403
    assert reader.put(f"/budgets/{budget_id}", {"amount_usd": 1}).status_code == 403
    assert reader.delete(f"/budgets/{budget_id}").status_code == 403
    # Another project's key sees nothing of this project.
    other = KeyApi(other_key)
    assert other.get("/budgets").json() == {"budgets": []}
    assert other.get("/budgets/status").json()["budgets"] == []
    assert other.get(f"/budgets/{budget_id}").status_code == 404
    assert other.delete(f"/budgets/{budget_id}").status_code == 404
    # Sessions: an owner writes, a member reads, an outsider sees none of it.
    for user, can_write in ((owner, True), (member, False)):
        client = Client(enforce_csrf_checks=False)
        client.force_login(user)
        assert client.get("/budgets/status").json()["budgets"][0]["id"] == budget_id
        r = client.put(f"/budgets/{budget_id}", data=json.dumps({"amount_usd": 9}), content_type="application/json")
        assert r.status_code == (200 if can_write else 403)
    client = Client()
    client.force_login(outsider)
    assert client.get("/budgets").json() == {"budgets": []}
    assert client.get(f"/budgets/{budget_id}").status_code == 404
    assert Client().get("/budgets/status").status_code in (401, 403)
    assert Budget.objects.get().amount_usd == 9


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({**ACME, "amount_usd": -1}, "amount_usd"),
        ({**ACME, "amount_usd": "NaN"}, "amount_usd"),
        ({**ACME, "amount_usd": True}, "amount_usd"),
        ({**ACME, "period": "year"}, "period"),
        ({**ACME, "mode": "strict"}, "mode"),
        ({**ACME, "thresholds": [50, "x"]}, "thresholds"),
        ({**ACME, "thresholds": [0]}, "thresholds"),
        ({**ACME, "thresholds": list(range(1, 20))}, "thresholds"),
        ({**ACME, "scope": {"attribute": "customer"}}, "scope.attribute"),
        ({**ACME, "scope": {"attribute": {"key": "customer", "value": 7}}}, "scope.attribute.value"),
        ({**ACME, "scope": {"section": "x" * 300}}, "scope.section"),
        ({**ACME, "scope": {"model": "a\x00b"}}, "scope.model"),
        ({**ACME, "scope": {"colour": "red"}}, "scope"),
        ({**ACME, "scope": "acme"}, "scope"),
        ({**ACME, "channels": [999]}, "channels"),
        ({**ACME, "extra": 1}, "non_field_errors"),
        ({"amount_usd": 5, "period": "day"}, "name"),
        ([1, 2], "non_field_errors"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(admin, payload, field):
    r = admin.post("/budgets", payload)
    assert r.status_code == 400, r.content
    assert field in r.json(), r.json()
    assert not Budget.objects.exists()


def test_bad_json_duplicates_and_foreign_channels(admin, project, other_project):
    assert admin.post("/budgets", "{not json").status_code == 400
    assert admin.post("/budgets", ACME).status_code == 201
    r = admin.post("/budgets", ACME)
    assert r.status_code == 400 and "name" in r.json()
    foreign = Channel.objects.create(project=other_project, kind="email", name="x", target="a@b.c", target_hint="")
    r = admin.post("/budgets", {**ACME, "name": "other", "channels": [foreign.id]})
    assert r.status_code == 400 and "channels" in r.json()
    budget_id = Budget.objects.get().id
    assert admin.put(f"/budgets/{budget_id}", {"period": "fortnight"}).status_code == 400
    assert admin.get("/budgets/99999999").status_code == 404
    assert Budget.objects.get().period == "day"
