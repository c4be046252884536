"""Deliveries to real receivers: an SMTP server (aiosmtpd) and a loopback HTTP
server for Slack-style and signed webhooks; a failing receiver is retried with
backoff, then logged as failed — nothing lost, nothing sent twice."""

from __future__ import annotations

import datetime as dt
import email
import socket
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller
from django.utils import timezone

from budgets.inputs import ChannelInput, budget_input_parse
from budgets.models import Channel, Delivery
from budgets.services import budget_create, budgets_evaluate, channel_create, channel_test_send, delivery_attempt
from llmobserve_site.celery import app
from tests.budgets.conftest import call, ingest
from tests.budgets.receiver import Receiver

pytestmark = pytest.mark.django_db


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802  (aiosmtpd's hook name)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp(settings) -> Iterator[Inbox]:
    inbox = Inbox()
    with socket.socket() as probe:  # a free port (aiosmtpd's ready check cannot use port 0)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.DEFAULT_FROM_EMAIL = "alerts@llmobserve.test"
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def eager(settings) -> Iterator[None]:
    """Celery runs tasks in-process (retries included), backoff 0."""
    settings.BUDGETS_DELIVERY_BACKOFF_SECONDS = 0
    settings.BUDGETS_DELIVERY_MAX_ATTEMPTS = 3
    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = False


def test_threshold_email_reaches_a_real_smtp_server(project, smtp, instant_counting):
    channel, secret = channel_create(
        project=project, data=ChannelInput(kind="email", name="ops", target="ops@example.com, cfo@example.com")
    )
    assert secret is None
    budget_create(
        project=project,
        data=budget_input_parse({"name": "acme", "amount_usd": 0.5, "period": "day", "channels": [channel.id]}),
    )
    now = timezone.now()
    ingest(project.id, [call(now - dt.timedelta(minutes=1))])  # $0.35 of $0.50: 70 %
    budgets_evaluate(at=now)
    delivery = Delivery.objects.get(kind="threshold")
    assert delivery.threshold == 50
    assert delivery_attempt(delivery_id=delivery.id).sent
    (mail_from, recipients, raw) = smtp.messages[0]
    assert mail_from == "alerts@llmobserve.test" and recipients == ["ops@example.com", "cfo@example.com"]
    message = email.message_from_bytes(raw)
    assert message["Subject"] == "[llmobserve] acme: 50 % of the day's budget reached"
    body = message.get_payload(decode=True).decode()
    assert "$0.35 of $0.50 this day (70 %)" in body
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 1, "")
    # Sent is sent: another attempt (a redelivered task) sends nothing.
    assert not delivery_attempt(delivery_id=delivery.id).sent
    assert len(smtp.messages) == 1


def test_signed_webhook_and_slack_reach_a_real_http_server(project, receiver):
    hook, secret = channel_create(project=project, data=ChannelInput(kind="webhook", name="hook", target=receiver.url))
    receiver.secret = secret or ""
    slack, _ = channel_create(project=project, data=ChannelInput(kind="slack", name="slack", target=receiver.url))
    for channel in (hook, slack):
        delivery = channel_test_send(channel=channel)
        assert delivery_attempt(delivery_id=delivery.id).sent
    signed, plain = receiver.requests
    assert signed.signed_ok is True
    assert signed.headers["X-Llmobserve-Event"] == "test"
    assert signed.json["kind"] == "test" and signed.json["dashboard_url"].endswith("/dashboard/budgets/?project=acme")
    for key in ("budget", "scope", "period", "spent_usd", "amount_usd", "percent", "forecast_usd", "threshold"):
        assert key in signed.json
    assert plain.signed_ok is None and set(plain.json) == {"text"}
    assert "channel 'slack' of project 'acme' works" in plain.json["text"]
    # A receiver holding another secret refuses the signature.
    receiver.secret = "not-the-secret"
    delivery = channel_test_send(channel=hook)
    attempt = delivery_attempt(delivery_id=delivery.id)
    assert not attempt.sent and attempt.error.startswith("HTTP 401")


def test_a_failing_receiver_is_retried_then_logged_failed(project, receiver, eager):
    receiver.fail_first = -1
    channel, secret = channel_create(
        project=project, data=ChannelInput(kind="webhook", name="down", target=receiver.url)
    )
    receiver.secret = secret or ""
    delivery = channel_test_send(channel=channel)
    from budgets.tasks import deliver

    deliver.delay(delivery.id)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 3)
    assert delivery.last_error.startswith("HTTP 500")
    assert len(receiver.requests) == 3
    # The same notification each time (one delivery id), verified each time.
    assert {r.headers["X-Llmobserve-Delivery"] for r in receiver.requests} == {str(delivery.id)}
    assert all(r.signed_ok for r in receiver.requests)
    # Failed stays failed: a late duplicate task sends nothing.
    deliver.delay(delivery.id)
    assert len(receiver.requests) == 3


def test_a_receiver_that_recovers_gets_the_alert_once(project, receiver, eager):
    receiver.fail_first = 2
    channel, secret = channel_create(
        project=project, data=ChannelInput(kind="webhook", name="flaky", target=receiver.url)
    )
    receiver.secret = secret or ""
    from budgets.tasks import deliver

    delivery = channel_test_send(channel=channel)
    deliver.delay(delivery.id)
    delivery.refresh_from_db()
    # Sent on the third attempt; the history keeps the error the first two met.
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 3, "HTTP 500: ok")
    assert [r.body for r in receiver.requests].count(receiver.requests[-1].body) == 3  # the same body, retried
    deliver.delay(delivery.id)
    assert len(receiver.requests) == 3


def test_backoff_doubles(settings):
    from budgets.services import backoff_seconds

    settings.BUDGETS_DELIVERY_BACKOFF_SECONDS = 10
    assert [backoff_seconds(n) for n in (1, 2, 3, 4)] == [10, 20, 40, 80]


def test_a_lost_task_is_swept_and_sent(project, receiver):
    channel, secret = channel_create(project=project, data=ChannelInput(kind="slack", name="s", target=receiver.url))
    delivery = channel_test_send(channel=channel)  # its task never ran (on_commit does not fire here)
    from budgets.services import deliveries_sweep

    assert deliveries_sweep(now=timezone.now()) == []  # too young to be lost
    later = timezone.now() + dt.timedelta(minutes=3)
    assert deliveries_sweep(now=later) == [delivery.id]
    assert delivery_attempt(delivery_id=delivery.id, now=later).sent
    assert len(receiver.requests) == 1
    assert Channel.objects.get().deliveries.get().status == "sent"
