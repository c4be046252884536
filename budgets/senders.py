"""Sending one notification through one channel: email, Slack, a signed webhook.

Each sender raises `SendError` with a short reason on failure; the caller
(budgets.services.delivery_attempt) records it and retries.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx
from django.conf import settings
from django.core.mail import EmailMessage, get_connection

from budgets.models import Channel

SIGNATURE_HEADER = "X-Llmobserve-Signature"
REPLAY_WINDOW_SECONDS = 300
HTTP_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class SendError(Exception):
    pass


def webhook_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed by the channel's secret>`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def webhook_verify(secret: str, header: str, body: bytes, *, now: float | None = None) -> bool:
    """The receiver's check (README has the same in a few lines): a known
    signature over this body, made within the replay window."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > REPLAY_WINDOW_SECONDS:
        return False
    expected = webhook_signature(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def _post(url: str, *, content: bytes, headers: dict[str, str]) -> None:
    try:
        response = httpx.post(url, content=content, headers=headers, timeout=HTTP_TIMEOUT, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise SendError(f"{type(exc).__name__}: {exc}"[:500]) from None
    if not 200 <= response.status_code < 300:
        raise SendError(f"HTTP {response.status_code}: {response.text[:200]}")


def send(
    channel: Channel, *, subject: str, text: str, payload: dict[str, Any], delivery_id: int, kind: str = ""
) -> None:
    if channel.kind == Channel.EMAIL:
        recipients = [a.strip() for a in channel.target.split(",") if a.strip()]
        try:
            connection = get_connection(timeout=getattr(settings, "EMAIL_TIMEOUT", None) or 10)
            EmailMessage(
                subject=subject, body=text, from_email=settings.DEFAULT_FROM_EMAIL, to=recipients, connection=connection
            ).send(fail_silently=False)
        except Exception as exc:  # smtplib, socket and ssl errors alike: recorded, then retried
            raise SendError(f"{type(exc).__name__}: {exc}"[:500]) from None
    elif channel.kind == Channel.SLACK:
        _post(channel.target, content=json.dumps({"text": text}).encode(), headers={"Content-Type": "application/json"})
    elif channel.kind == Channel.WEBHOOK:
        body = webhook_body(payload)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: webhook_signature(channel.signing_secret, int(time.time()), body),
            # The same id on every retry of one notification: a receiver may dedupe on it.
            "X-Llmobserve-Delivery": str(delivery_id),
            "X-Llmobserve-Event": kind,
        }
        _post(channel.target, content=body, headers=headers)
    else:
        raise SendError(f"unknown channel kind {channel.kind!r}")
