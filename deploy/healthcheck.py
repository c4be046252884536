"""Docker healthcheck: GET /health with a Host header the server accepts.

    python deploy/healthcheck.py [URL]     (default http://127.0.0.1:8000/health)

Django answers 400 to a Host that is not in ALLOWED_HOSTS, so a check that
sends `Host: 127.0.0.1` fails on a server configured for
`ALLOWED_HOSTS=observe.example.com` (and docker-compose then never starts
the worker and beat, which wait for a healthy web).  This check sends the
first host ALLOWED_HOSTS names (read the way settings.py reads it), and
`X-Forwarded-Proto: https`, which Django trusts only with
BEHIND_HTTPS_PROXY=1, so an https redirect cannot fail it either.  Redirects
are not followed.  Exit 0 when the answer is 200 with `"status": "ok"`, else 1
with the reason on stderr.  Standard library only: it runs in the image.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8000/health"
DEFAULT_ALLOWED_HOSTS = "127.0.0.1,localhost,[::1]"


def host_header(allowed_hosts: str | None) -> str:
    """A Host value Django's ALLOWED_HOSTS check lets through."""
    hosts = [h.strip() for h in (allowed_hosts or DEFAULT_ALLOWED_HOSTS).split(",") if h.strip()]
    for host in hosts:
        if host == "*":
            continue
        return host.lstrip(".") or "localhost"  # ".example.com" matches example.com itself
    return "localhost"  # only "*": anything goes


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def check(url: str, host: str, timeout: float = 5.0) -> str | None:
    """None when healthy, else why not."""
    request = urllib.request.Request(url, headers={"Host": host, "X-Forwarded-Proto": "https"})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        return f"{url} (Host: {host}) answered {exc.code}: {exc.read()[:200]!r}"
    except (OSError, ValueError) as exc:
        return f"{url} (Host: {host}): {exc}"
    try:
        payload = json.loads(body)
    except ValueError:
        return f"{url} (Host: {host}) answered {status} with no JSON: {body[:200]!r}"
    if status != 200 or not isinstance(payload, dict) or payload.get("status") != "ok":
        return f"{url} (Host: {host}) answered {status}: {payload}"
    return None


def main(argv: list[str]) -> int:
    url = argv[0] if argv else DEFAULT_URL
    problem = check(url, host_header(os.environ.get("ALLOWED_HOSTS")))
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
