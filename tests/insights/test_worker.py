"""A real Celery worker in a subprocess: against the real Redis, and with the embedded broker.

The worker must see the test's database, so these tests commit their data
(transaction=True) and hand the test database to the worker through
DATABASE_URL: the file-based SQLite test database, or PostgreSQL's test_*.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
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


def start_worker(env_overrides: dict[str, str], *extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in {"CELERY_BROKER_URL", "DATABASE_URL"}}
    env.update({"DJANGO_SETTINGS_MODULE": "llmobserve_site.settings", "DATABASE_URL": database_url()})
    env.update(env_overrides)
    cmd = [sys.executable, "-m", "celery", "-A", "llmobserve_site", "worker", "--pool=solo", "--loglevel=INFO", *extra]
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
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()  # a database of its own (/15): nothing else lives there
    all_four(History(project.id))
    client = Celery("llmobserve_site", broker=REDIS_URL)
    client.send_task("insights.compute_insights_all", args=[AT.isoformat()])

    worker = start_worker({"CELERY_BROKER_URL": REDIS_URL})
    try:
        done = wait_for(lambda: Insight.objects.filter(project=project).count() >= 4, worker)
    finally:
        log = stop(worker)
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
