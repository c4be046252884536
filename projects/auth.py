"""API-key authentication shared by the ingest view and the DRF read API."""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.http import HttpRequest
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
    at all for a busy client.  A revoked key stops working within the TTL.
    """
    digest = hash_key(raw)
    now = time.monotonic()
    hit = _CACHE.get(digest)
    if hit is not None and hit[0] > now:
        return hit[1]
    row = ApiKey.objects.filter(key_hash=digest, revoked=False).values_list("id", "project_id", "is_admin").first()
    principal = KeyPrincipal(*row) if row else None
    if len(_CACHE) > 10_000:
        _CACHE.clear()
    _CACHE[digest] = (now + _CACHE_TTL, principal)
    return principal


def clear_key_cache() -> None:
    _CACHE.clear()


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
