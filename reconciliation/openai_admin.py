"""A small client of OpenAI's organization Costs and Usage APIs (read with an admin key).

The key comes from the environment (`OPENAI_ADMIN_KEY`) at call time and
lives only in the Authorization header of the requests made here: it is
never stored, logged or put in an error message (an upstream body that
echoes it is redacted).  `OPENAI_ADMIN_BASE_URL` (default the public API)
lets tests, the seed's fake and proxies point elsewhere.

Pagination follows the documented shape: each response is a page
`{"object": "page", "data": [buckets], "has_more", "next_page"}` and the next
page is asked for with `page=<next_page>`.  429 and 5xx are retried with
exponential backoff, honouring Retry-After.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
COSTS_PATH = "/organization/costs"
USAGE_PATHS = {"completions": "/organization/usage/completions", "embeddings": "/organization/usage/embeddings"}
# Buckets per page: the usage endpoints take at most 31 daily buckets, the costs endpoint 180.
PAGE_LIMIT = 31
MAX_ATTEMPTS = 6
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 60.0
MAX_PAGES = 200  # a runaway cursor stops here instead of looping forever
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class AdminApiError(RuntimeError):
    """The admin API could not be read; the message never holds the key."""


class AdminKeyMissing(AdminApiError):
    pass


@dataclass(frozen=True, slots=True)
class AdminConfig:
    key: str
    base_url: str

    def __repr__(self) -> str:  # never print the key, even in a traceback's locals
        return f"AdminConfig(key='[redacted]', base_url={self.base_url!r})"


def admin_config_from_env() -> AdminConfig | None:
    key = os.environ.get("OPENAI_ADMIN_KEY", "").strip()
    if not key:
        return None
    base = os.environ.get("OPENAI_ADMIN_BASE_URL", "").strip() or DEFAULT_BASE_URL
    return AdminConfig(key=key, base_url=base.rstrip("/"))


def _redact(text: str, key: str) -> str:
    return text.replace(key, "[redacted]") if key else text


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


class AdminClient:
    """GETs pages of buckets; `sleep` is injectable so a test can record the waits."""

    def __init__(
        self,
        config: AdminConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = config
        self.sleep = sleep
        self.requests = 0
        self._http = httpx.Client(
            base_url=config.base_url,
            timeout=TIMEOUT,
            transport=transport,
            headers={"Authorization": f"Bearer {config.key}", "Accept": "application/json"},
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        key = self.config.key
        for attempt in range(1, MAX_ATTEMPTS + 1):
            self.requests += 1
            try:
                response = self._http.get(path, params=httpx.QueryParams(tuple(params)))
            except httpx.HTTPError as exc:
                # Connection refused, timeouts: retried like a 5xx.
                problem = f"{type(exc).__name__} on {path}"
                wait = None
            else:
                if response.status_code == 200:
                    try:
                        body = response.json()
                    except ValueError:
                        raise AdminApiError(f"OpenAI admin API: {path} answered 200 without JSON") from None
                    if not isinstance(body, dict):
                        raise AdminApiError(f"OpenAI admin API: {path} answered 200 with JSON that is not an object")
                    return body
                if response.status_code != 429 and response.status_code < 500:
                    detail = _redact(response.text[:300], key)
                    raise AdminApiError(f"OpenAI admin API: {path} answered {response.status_code}: {detail}")
                problem = f"{response.status_code} on {path}"
                wait = _retry_after(response)
            if attempt == MAX_ATTEMPTS:
                raise AdminApiError(f"OpenAI admin API: gave up after {attempt} attempts ({problem})")
            if wait is None:
                wait = BACKOFF_BASE_S * 2 ** (attempt - 1)
            wait = min(wait, BACKOFF_MAX_S)
            log.warning("OpenAI admin API: %s; retrying in %.1f s (attempt %d)", problem, wait, attempt)
            self.sleep(wait)
        raise AssertionError("unreachable")

    def buckets(self, path: str, params: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
        """Every bucket of every page, following next_page."""
        page: str | None = None
        for _ in range(MAX_PAGES):
            body = self._get(path, params + ([("page", page)] if page else []))
            data = body.get("data")
            if not isinstance(data, list):
                raise AdminApiError(f"OpenAI admin API: {path} answered a page without a data list")
            for bucket in data:
                if isinstance(bucket, dict):
                    yield bucket
            page = body.get("next_page") if body.get("has_more") else None
            if not page:
                return
        raise AdminApiError(f"OpenAI admin API: {path} still had more pages after {MAX_PAGES}")

    def costs(self, *, start: dt.datetime, end: dt.datetime) -> Iterator[dict[str, Any]]:
        return self.buckets(
            COSTS_PATH,
            [
                ("start_time", str(int(start.timestamp()))),
                ("end_time", str(int(end.timestamp()))),
                ("bucket_width", "1d"),
                ("group_by", "line_item"),
                ("group_by", "project_id"),
                ("limit", str(PAGE_LIMIT)),
            ],
        )

    def usage(self, endpoint: str, *, start: dt.datetime, end: dt.datetime) -> Iterator[dict[str, Any]]:
        return self.buckets(
            USAGE_PATHS[endpoint],
            [
                ("start_time", str(int(start.timestamp()))),
                ("end_time", str(int(end.timestamp()))),
                ("bucket_width", "1d"),
                ("group_by", "model"),
                ("group_by", "project_id"),
                ("limit", str(PAGE_LIMIT)),
            ],
        )
