"""API-key authentication shared by the ingest view and the DRF read API."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from rest_framework import authentication, exceptions

from projects.models import ApiKey, hash_key


@dataclass(frozen=True)
class KeyPrincipal:
    """What a valid key grants: one project, and pricing writes for admin keys."""

    key_id: int
    project_id: int
    is_admin: bool

    # DRF's IsAuthenticated asks the user object this.
    is_authenticated = True
    is_staff = False


_CACHE: dict[str, tuple[float, KeyPrincipal | None]] = {}
_CACHE_TTL = 30.0


def principal_for_key(raw: str) -> KeyPrincipal | None:
    """Resolve a raw key, caching the answer for a short while.

    Ingest checks the key on every batch; the cache turns that into no query
    for a busy client but the once-a-minute `last_used_at` write.  A revoked
    key stops working within the TTL (at once in the process that revoked it).
    """
    digest = hash_key(raw)
    now = time.monotonic()
    hit = _CACHE.get(digest)
    if hit is not None and hit[0] > now:
        if hit[1] is not None:
            last_used_touch(key_id=hit[1].key_id, now=now)
        return hit[1]
    row = ApiKey.objects.filter(key_hash=digest, revoked=False).values_list("id", "project_id", "is_admin").first()
    principal = KeyPrincipal(*row) if row else None
    if len(_CACHE) > 10_000:
        _CACHE.clear()
    _CACHE[digest] = (now + _CACHE_TTL, principal)
    if principal is not None:
        last_used_touch(key_id=principal.key_id, now=now)
    return principal


# ApiKey.last_used_at is written at most once a minute per key: this process
# skips even the query until its own minute is up, and the UPDATE is
# conditional, so several processes sharing a key still write the row at most
# once a minute (the others' UPDATE matches nothing and writes nothing).
LAST_USED_EVERY = dt.timedelta(minutes=1)
_LAST_USED_NEXT: dict[int, float] = {}


def last_used_touch(*, key_id: int, now: float) -> None:
    if _LAST_USED_NEXT.get(key_id, 0.0) > now:
        return
    if len(_LAST_USED_NEXT) > 10_000:
        _LAST_USED_NEXT.clear()
    _LAST_USED_NEXT[key_id] = now + LAST_USED_EVERY.total_seconds()
    moment = timezone.now()
    ApiKey.objects.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lte=moment - LAST_USED_EVERY), id=key_id
    ).update(last_used_at=moment)


def key_cache_forget(*, key_hash: str) -> None:
    """Drop one key from this process's cache (a revoked key stops at once
    here; other processes stop within the cache's TTL)."""
    _CACHE.pop(key_hash, None)


def clear_key_cache() -> None:
    _CACHE.clear()
    _LAST_USED_NEXT.clear()


def bearer_token(request: HttpRequest) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):  # type: ignore[no-untyped-def]
        token = bearer_token(request._request)
        if token is None:
            return None
        principal = principal_for_key(token)
        if principal is None:
            raise exceptions.AuthenticationFailed("Invalid API key.")
        return (principal, principal)

    def authenticate_header(self, request):  # type: ignore[no-untyped-def]
        return 'Bearer realm="llmobserve"'
