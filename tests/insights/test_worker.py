"""A real Celery worker in a subprocess: against the real Redis, and with the embedded broker.

The worker must see the test's database, so these tests commit their data
(transaction=True) and hand the test database to the worker through
DATABASE_URL: the file-based SQLite test database, or PostgreSQL's test_*.

Redis may be anyone's (whatever listens on localhost): the test touches only
keys it creates.  Every key the worker and the test's client write carries a
prefix unique to the test (kombu's `global_keyprefix`), and afterwards exactly
the keys with that prefix are deleted; nothing is flushed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from celery import Celery
from django.db import connection
from django.utils import timezone

from insights.models import Insight, InsightComputation
from tests.insights.conftest import AT, History
from tests.insights.test_storage_api import EXPECTED, all_four, keys

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("INSIGHTS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "postgresql":
        auth = quote(s["USER"] or "", safe="")
        if s.get("PASSWORD"):
            auth += ":" + quote(s["PASSWORD"], safe="")
        return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
    assert s["NAME"] and not str(s["NAME"]).startswith(("file:", ":memory:")), "needs a file-based SQLite test DB"
    return f"sqlite:///{s['NAME']}"


# `celery ARGS` for the project's app, every Redis key under the prefix in argv[1].
WITH_KEY_PREFIX = (
    "import sys\n"
    "from llmobserve_site.celery import app\n"
    "app.conf.broker_transport_options = {'global_keyprefix': sys.argv[1]}\n"
    "sys.exit(app.start(sys.argv[2:]))\n"
)


def celery_command(*args: str, key_prefix: str | None = None) -> list[str]:
    """The command line for `celery -A llmobserve_site ARGS`, under a Redis key prefix when given."""
    if key_prefix is None:
        return [sys.executable, "-m", "celery", "-A", "llmobserve_site", *args]
    return [sys.executable, "-c", WITH_KEY_PREFIX, key_prefix, *args]


@contextlib.contextmanager
def redis_keys_of_our_own(url: str) -> Iterator[str]:
    """A key prefix no one else uses; on exit, the keys under it (and only those) are deleted,
    and a key of someone else's, set beforehand, is checked to be untouched."""
    import redis

    client = redis.Redis.from_url(url)
    prefix = f"llmobserve-test-{uuid.uuid4().hex}:"
    neighbour = f"llmobserve-test-neighbour-{uuid.uuid4().hex}"
    client.set(neighbour, b"not yours", ex=600)
    try:
        yield prefix
    finally:
        ours = list(client.scan_iter(match=prefix + "*", count=1000))
        if ours:
            client.delete(*ours)
        untouched = client.get(neighbour) == b"not yours"
        client.delete(neighbour)
        client.close()
    assert untouched, "the test changed a Redis key it did not create"


def start_worker(env_overrides: dict[str, str], *extra: str, key_prefix: str | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in {"CELERY_BROKER_URL", "DATABASE_URL"}}
    env.update({"DJANGO_SETTINGS_MODULE": "llmobserve_site.settings", "DATABASE_URL": database_url()})
    env.update(env_overrides)
    cmd = celery_command("worker", "--pool=solo", "--loglevel=INFO", *extra, key_prefix=key_prefix)
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(worker: subprocess.Popen) -> str:
    worker.terminate()
    try:
        out, _ = worker.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        worker.kill()
        out, _ = worker.communicate()
    return out or ""


def wait_for(predicate, worker: subprocess.Popen, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if worker.poll() is not None:
            return False
        time.sleep(0.5)
    return False


def redis_or_skip() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.exceptions.RedisError as exc:
        message = f"Redis at {REDIS_URL} is not reachable: {exc}"
        if IN_CI:
            pytest.fail(f"{message} (CI=true: Redis is required)")
        pytest.skip(message)


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_worker_with_redis_computes_insights(project):
    redis_or_skip()
    all_four(History(project.id))
    with redis_keys_of_our_own(REDIS_URL) as prefix:
        client = Celery("llmobserve_site", broker=REDIS_URL)
        client.conf.broker_transport_options = {"global_keyprefix": prefix}
        client.send_task("insights.compute_insights_all", args=[AT.isoformat()])

        worker = start_worker({"CELERY_BROKER_URL": REDIS_URL}, key_prefix=prefix)
        try:
            done = wait_for(lambda: Insight.objects.filter(project=project).count() >= 4, worker)
        finally:
            log = stop(worker)
            client.close()
    assert done, f"no insights from the worker; its log:\n{log[-4000:]}"
    assert keys(Insight.objects.all()) == EXPECTED
    assert InsightComputation.objects.get().window_end == AT
    assert "insights.compute_insights_for_project" in log


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_worker_with_embedded_broker_and_beat(project, tmp_path):
    """No Redis at all: kombu's filesystem transport under a var/ of its own, beat inside the worker (-B)."""
    start = timezone.now().replace(microsecond=0)
    all_four(History(project.id), at=start)
    var = tmp_path / "var"
    queue = var / "celery" / "queue"
    queue.mkdir(parents=True)
    (var / "celery" / "processed").mkdir()
    # Send the job by hand into the folder the worker reads…
    client = Celery(
        "llmobserve_site",
        broker="filesystem://",
        broker_transport_options={
            "data_folder_in": str(queue),
            "data_folder_out": str(queue),
            "control_folder": str(var / "celery" / "control"),  # else kombu writes ./control
        },
    )
    client.send_task("insights.compute_insights_all", args=[start.isoformat()])
    # …and let beat send it again every 10 s.
    worker = start_worker(
        {"LLMOBSERVE_VAR_DIR": str(var), "INSIGHTS_INTERVAL_SECONDS": "10", "CELERY_BROKER_URL": ""}, "-B"
    )
    try:
        sent = wait_for(lambda: InsightComputation.objects.filter(window_end__gte=start).exists(), worker)
        by_beat = wait_for(
            lambda: InsightComputation.objects.filter(window_end__gt=start + dt.timedelta(seconds=5)).exists(), worker
        )
    finally:
        log = stop(worker)
    assert sent and by_beat, f"worker log:\n{log[-4000:]}"
    assert "filesystem" in log.lower()
    assert (var / "celerybeat-schedule").exists() or list(var.glob("celerybeat-schedule*"))
    latest = InsightComputation.objects.order_by("-window_end").first()
    assert keys(latest.insights.all()) == EXPECTED
