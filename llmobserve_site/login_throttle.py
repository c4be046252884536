"""Login throttling with django-axes (see AXES_* in settings.py).

After AXES_FAILURE_LIMIT failed logins for one username from one address,
that username is refused from that address, right password or not, until
AXES_COOLOFF_TIME has passed since the last failure.  The dashboard's login
and the admin's both pass through it.
"""

from __future__ import annotations

import math
from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_client_username, get_cool_off
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


class LoginThrottleBackend(AxesStandaloneBackend):
    """axes' lockout check for every login that comes with an HTTP request.

    Django's login view and the admin's pass the request.  A call without one
    (the test client's `login()`, a management command, a shell) has no client
    address to throttle by: axes would raise, so it is left to ModelBackend."""

    def authenticate(  # type: ignore[override]
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def client_ip(request: HttpRequest) -> str | None:
    """The address the lockout counts by.

    REMOTE_ADDR, unless the request came through our own proxy — behind one
    (BEHIND_PROXY=1, compose's nginx; or BEHIND_HTTPS_PROXY=1), or from
    loopback, where only `make run`'s own front proxy connects from — then the
    last X-Forwarded-For entry, the address the proxy itself saw (what a client
    writes into the header comes before it).  Without this every client behind
    the proxy would share one address, and one username's lockout would lock
    everyone out."""
    remote = request.META.get("REMOTE_ADDR") or ""
    proxied = getattr(settings, "BEHIND_PROXY", False) or getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxied or remote in ("127.0.0.1", "::1"):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        last = forwarded.split(",")[-1].strip()
        if last:
            return last
    return request.META.get("REMOTE_ADDR")


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict[str, Any] | None = None
) -> HttpResponse:
    """429, with the login page saying why and for how long."""
    cool_off = get_cool_off(request)
    seconds = int(cool_off.total_seconds()) if cool_off else 0
    context = {
        "username": get_client_username(request, credentials) or "",
        "minutes": math.ceil(seconds / 60),
        "failure_limit": settings.AXES_FAILURE_LIMIT,
    }
    response = render(request, "registration/locked_out.html", context, status=429)
    if seconds:
        response["Retry-After"] = str(seconds)
    return response
