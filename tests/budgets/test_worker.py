"""Exactly once with two real Celery workers racing: both evaluate the same
budget at the same moment, several times over; each threshold reaches the
receiver once.  On Redis (required under CI=true; keys under a prefix of the
test's own, a queue of its own) and on the embedded filesystem broker.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from celery import Celery
from django.utils import timezone

from budgets.inputs import ChannelInput, budget_input_parse
from budgets.models import Delivery
from budgets.services import budget_create, channel_create
from tests.budgets.conftest import call, ingest
from tests.budgets.receiver import Receiver
from tests.insights.test_worker import (
    REDIS_URL,
    ROOT,
    database_url,
    redis_keys_of_our_own,
    redis_or_skip,
    stop,
    wait_for,
)

# `celery worker` for the project's app, on a queue of its own (argv[2]), its
# Redis keys under a prefix (argv[1], "" for none).
LAUNCH = (
    "import sys\n"
    "from llmobserve_site.celery import app\n"
    "if sys.argv[1]:\n"
    "    app.conf.broker_transport_options = {'global_keyprefix': sys.argv[1]}\n"
    "app.conf.task_default_queue = sys.argv[2]\n"
    "sys.exit(app.start(['worker', '--pool=solo', '--loglevel=INFO', '-Q', sys.argv[2], '-n', sys.argv[3]]))\n"
)


def start_worker(env: dict[str, str], prefix: str, queue: str, name: str) -> subprocess.Popen:
    import os

    full = {k: v for k, v in os.environ.items() if k not in {"CELERY_BROKER_URL", "DATABASE_URL"}}
    full.update({"DJANGO_SETTINGS_MODULE": "llmobserve_site.settings", "DATABASE_URL": database_url()})
    full.update(env)
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCH, prefix, queue, f"{name}@%h"],
        cwd=ROOT,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def over_budget(project) -> tuple[Receiver, dt.datetime]:  # type: ignore[no-untyped-def]
    receiver = Receiver().start()
    channel, secret = channel_create(
        project=project, data=ChannelInput(kind="webhook", name="hook", target=receiver.url)
    )
    receiver.secret = secret or ""
    budget_create(
        project=project,
        data=budget_input_parse(
            {
                "name": "acme",
                "amount_usd": 1,
                "period": "day",
                "scope": {"attribute": {"key": "customer", "value": "acme"}},
                "channels": [channel.id],
            }
        ),
    )
    now = timezone.now()
    when = max(now - dt.timedelta(minutes=1), now.replace(hour=0, minute=0, second=0, microsecond=0))
    ingest(project.id, [call(when, attributes={"customer": "acme"}) for _ in range(3)])  # $1.05 of $1
    return receiver, now


def race(client: Celery, queue: str, at: dt.datetime, workers: list[subprocess.Popen], receiver: Receiver) -> str:
    for _ in range(6):
        client.send_task("budgets.evaluate", args=[at.isoformat()], queue=queue)
    try:
        done = wait_for(
            lambda: Delivery.objects.filter(status="sent").count() >= 3 and len(receiver.requests) >= 3,
            workers[0],
            timeout=90,
        )
        # Let any duplicate arrive if there were one.
        wait_for(lambda: False, workers[0], timeout=4)
    finally:
        logs = "\n".join(stop(w) for w in workers)
        receiver.stop()
    assert done, f"no deliveries; worker logs:\n{logs[-6000:]}"
    return logs


def check_once(receiver: Receiver, logs: str) -> None:
    thresholds = sorted(r.json["threshold"] for r in receiver.requests)
    assert thresholds == [50, 80, 100], logs[-4000:]
    assert all(r.signed_ok for r in receiver.requests)
    assert len({r.headers["X-Llmobserve-Delivery"] for r in receiver.requests}) == 3
    assert sorted(Delivery.objects.values_list("threshold", "status", "attempts")) == [
        (50, "sent", 1),
        (80, "sent", 1),
        (100, "sent", 1),
    ]
    # Both workers took evaluations.
    assert logs.count("budgets.evaluate") >= 2


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_workers_on_redis_send_each_threshold_once(project, instant_counting):
    redis_or_skip()
    receiver, now = over_budget(project)
    queue = f"llmobserve-budgets-test-{uuid.uuid4().hex[:12]}"
    with redis_keys_of_our_own(REDIS_URL) as prefix:
        client = Celery("llmobserve_site", broker=REDIS_URL)
        client.conf.broker_transport_options = {"global_keyprefix": prefix}
        env = {"CELERY_BROKER_URL": REDIS_URL}
        workers = [start_worker(env, prefix, queue, f"w{i}") for i in (1, 2)]
        try:
            logs = race(client, queue, now, workers, receiver)
        finally:
            client.close()
    check_once(receiver, logs)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_workers_on_the_embedded_broker_send_each_threshold_once(project, instant_counting, tmp_path: Path):
    receiver, now = over_budget(project)
    var = tmp_path / "var"
    queue_dir = var / "celery" / "queue"
    queue_dir.mkdir(parents=True)
    (var / "celery" / "processed").mkdir()
    client = Celery(
        "llmobserve_site",
        broker="filesystem://",
        broker_transport_options={
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "control_folder": str(var / "celery" / "control"),
        },
    )
    queue = "budgets-test"
    env = {"LLMOBSERVE_VAR_DIR": str(var), "CELERY_BROKER_URL": ""}
    workers = [start_worker(env, "", queue, f"w{i}") for i in (1, 2)]
    logs = race(client, queue, now, workers, receiver)
    check_once(receiver, logs)
