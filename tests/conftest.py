"""Shared cast and helpers.

The cast, as in healthchecks' tests: `owner` and `member` belong to
`project`; `outsider` belongs to `other_project` only; `staff` sees all.
Keys: `api_key` (project), `other_key` (other_project), `admin_key`
(project, may PUT /pricing).
"""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import json
import os
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from projects.auth import clear_key_cache
from projects.models import ApiKey, Membership, Project

_counter = itertools.count()


@pytest.fixture(autouse=True)
def _fresh_caches():
    import pricing.services

    clear_key_cache()
    pricing.services._table = None
    yield
    clear_key_cache()
    pricing.services._table = None


@pytest.fixture(autouse=True)
def _events_kept_forever(settings):
    # Many tests post events from past years (historical prices); retention
    # (default 90 days) would refuse them.  Tests of retention set it themselves
    # (tests/retention); the per-process caches of retention and partitions start empty.
    from events.partitions import partitions_forget
    from events.retention import retention_cache_clear

    settings.EVENT_RETENTION_DAYS = 0
    retention_cache_clear()
    partitions_forget()
    yield
    retention_cache_clear()
    partitions_forget()


@pytest.fixture(scope="session", autouse=True)
def _ci_requires_configured_database(django_db_setup, django_db_blocker):
    # Under CI a pass that was asked for PostgreSQL must really run on it:
    # fail loudly rather than quietly fall back or skip.
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        with django_db_blocker.unblock():
            assert connection.vendor == "postgresql"
    yield


@pytest.fixture
def project(db) -> Project:
    return Project.objects.create(name="acme")


@pytest.fixture
def other_project(db) -> Project:
    return Project.objects.create(name="globex")


@pytest.fixture
def owner(project) -> User:
    user = User.objects.create_user("olivia", "olivia@example.com", "pw-olivia-123")
    Membership.objects.create(project=project, user=user, role=Membership.OWNER)
    return user


@pytest.fixture
def member(project) -> User:
    user = User.objects.create_user("max", "max@example.com", "pw-max-123")
    Membership.objects.create(project=project, user=user, role=Membership.MEMBER)
    return user


@pytest.fixture
def outsider(other_project) -> User:
    user = User.objects.create_user("oscar", "oscar@example.com", "pw-oscar-123")
    Membership.objects.create(project=other_project, user=user, role=Membership.OWNER)
    return user


@pytest.fixture
def staff(db) -> User:
    return User.objects.create_user("stella", "stella@example.com", "pw-stella-123", is_staff=True)


@pytest.fixture
def price_editor(db) -> User:
    """Staff with the Django permissions to add and change prices (global prices)."""
    from django.contrib.auth.models import Permission

    user = User.objects.create_user("priya", "priya@example.com", "pw-priya-123", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="pricing", codename__in=("add_price", "change_price"))
    )
    return user


@pytest.fixture
def api_key(project) -> str:
    return ApiKey.generate(project=project)[1]


@pytest.fixture
def admin_key(project) -> str:
    return ApiKey.generate(project=project, is_admin=True)[1]


@pytest.fixture
def other_key(other_project) -> str:
    return ApiKey.generate(project=other_project)[1]


def make_event(**overrides: Any) -> dict[str, Any]:
    """A valid call event; override any field."""
    n = next(_counter)
    event: dict[str, Any] = {
        "event_id": f"ev-{n}",
        "run_id": "run-1",
        "span_id": f"span-{n}",
        "parent_span_id": None,
        "span_type": "llm",
        "name": "chat.completions.create",
        "section": None,
        "section_path": None,
        "provider": "openai",
        "model": "gpt-4o",
        "endpoint": "chat.completions.create",
        "input_tokens": 100,
        "output_tokens": 10,
        "latency_ms": 120.0,
        "started_at": "2026-11-26T09:00:00Z",
        "status": "ok",
        "service": "svc",
    }
    event.update(overrides)
    return event


def at(day_offset: float = 0, base: str = "2026-11-26T09:00:00+00:00") -> str:
    moment = dt.datetime.fromisoformat(base) + dt.timedelta(days=day_offset)
    return moment.isoformat().replace("+00:00", "Z")


class Api:
    """A test client speaking the collector's wire format with a key."""

    def __init__(self, key: str | None) -> None:
        self.client = Client()
        self.key = key

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def post_events(self, payload: Any, *, gzip_body: bool = False, raw: bytes | None = None):  # type: ignore[no-untyped-def]
        body = raw if raw is not None else json.dumps(payload).encode()
        headers = self._headers()
        if gzip_body:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        return self.client.post("/events", data=body, content_type="application/json", headers=headers)

    def get(self, path: str, **params: Any):  # type: ignore[no-untyped-def]
        return self.client.get(path, params, headers=self._headers())

    def put(self, path: str, payload: Any):  # type: ignore[no-untyped-def]
        return self.client.put(path, data=json.dumps(payload), content_type="application/json", headers=self._headers())


@pytest.fixture
def api(api_key) -> Api:
    return Api(api_key)


@pytest.fixture
def other_api(other_key) -> Api:
    return Api(other_key)


# SPEC §2's example, plus a direct gpt-4o-mini call in the agent section that failed.
SPEC_EXAMPLE_TREE: list[dict[str, Any]] = [
    {
        "event_id": "6f1c-01",
        "run_id": "run-42",
        "span_id": "s-agent",
        "parent_span_id": None,
        "span_type": "section",
        "name": "agent:researcher",
        "section": "agent:researcher",
        "section_path": "agent:researcher",
        "latency_ms": 1840.0,
        "started_at": "2026-11-26T09:00:00Z",
        "status": "ok",
        "service": "support-bot",
    },
    {
        "event_id": "6f1c-02",
        "run_id": "run-42",
        "span_id": "s-tool",
        "parent_span_id": "s-agent",
        "span_type": "section",
        "name": "tool:web_search",
        "section": "tool:web_search",
        "section_path": "agent:researcher/tool:web_search",
        "latency_ms": 900.0,
        "started_at": "2026-11-26T09:00:00.100Z",
        "status": "ok",
        "service": "support-bot",
    },
    {
        "event_id": "6f1c-03",
        "run_id": "run-42",
        "span_id": "c-1",
        "parent_span_id": "s-tool",
        "span_type": "llm",
        "name": "chat.completions.create",
        "section": "tool:web_search",
        "section_path": "agent:researcher/tool:web_search",
        "provider": "openai",
        "model": "gpt-4o-2024-08-06",
        "endpoint": "chat.completions.create",
        "input_tokens": 1200,
        "cached_input_tokens": 1024,
        "output_tokens": 150,
        "latency_ms": 850.0,
        "started_at": "2026-11-26T09:00:00.120Z",
        "status": "ok",
        "service": "support-bot",
        "attributes": {"user_id": "u-7"},
    },
    {
        "event_id": "6f1c-04",
        "run_id": "run-42",
        "span_id": "c-2",
        "parent_span_id": "s-agent",
        "span_type": "llm",
        "name": "chat.completions.create",
        "section": "agent:researcher",
        "section_path": "agent:researcher",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "endpoint": "chat.completions.create",
        "input_tokens": 300,
        "output_tokens": 20,
        "latency_ms": 400.0,
        "started_at": "2026-11-26T09:00:01.200Z",
        "status": "error",
        "error_type": "RateLimitError",
        "service": "support-bot",
    },
]
