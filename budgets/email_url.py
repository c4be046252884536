"""EMAIL_URL → Django's EMAIL_* settings, strictly (settings.py stops on a bad value).

Parsed by dj-email-url, with the checks it leaves out: a known scheme, a
host for SMTP, a port and timeout that are numbers, no unknown options.
Unset: the console backend (alerts are printed by whichever process sends).
Examples: smtp://user:pass@mail.example.com:587?tls=1, smtp://127.0.0.1:1025,
submission://user:pass@host (STARTTLS on 587), smtp://host:465?ssl=1, console://.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import dj_email_url
from django.core.exceptions import ImproperlyConfigured

CONSOLE = "django.core.mail.backends.console.EmailBackend"
OPTIONS = {"tls", "ssl", "timeout", "_server_email", "_default_from_email"}
BOOLEANS = {"1", "0", "true", "false", "yes", "no", "on", "off", "y", "n", "t", "f"}


def email_settings(raw: str) -> dict[str, Any]:
    if not raw.strip():
        return {"EMAIL_BACKEND": CONSOLE}
    raw = raw.strip()
    problem = f"EMAIL_URL={_redacted(raw)!r}"
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise ImproperlyConfigured(f"{problem} is not a URL: {exc}") from None
    if parts.scheme not in dj_email_url.SCHEMES:
        raise ImproperlyConfigured(f"{problem}: the scheme must be one of {', '.join(sorted(dj_email_url.SCHEMES))}")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - OPTIONS)
    if unknown:
        raise ImproperlyConfigured(f"{problem}: unknown options {', '.join(unknown)} (known: tls, ssl, timeout)")
    for flag in ("tls", "ssl"):
        if flag in query and query[flag][0].lower() not in BOOLEANS:
            raise ImproperlyConfigured(f"{problem}: {flag}= takes 1 or 0")
    truthy = [f for f in ("tls", "ssl") if f in query and query[f][0].lower() in {"1", "true", "yes", "on", "y", "t"}]
    if len(truthy) == 2:
        raise ImproperlyConfigured(f"{problem}: tls (STARTTLS) and ssl (implicit TLS) exclude each other")
    if "timeout" in query and not query["timeout"][0].isdigit():
        raise ImproperlyConfigured(f"{problem}: timeout= takes whole seconds")
    smtp = parts.scheme in {"smtp", "smtps", "submission", "submit"}
    if smtp and not parts.hostname:
        raise ImproperlyConfigured(
            f"{problem}: an SMTP URL needs a host, e.g. smtp://user:pass@mail.example.com:587?tls=1"
        )
    if port is not None and not 0 < port < 65536:
        raise ImproperlyConfigured(f"{problem}: the port must be 1-65535")
    conf = dj_email_url.parse(raw)
    if smtp and conf.get("EMAIL_TIMEOUT") is None:
        conf["EMAIL_TIMEOUT"] = 10  # a hung SMTP server must not hold a worker
    return {k: v for k, v in conf.items() if v is not None and not (k == "EMAIL_FILE_PATH" and not v)}


def _redacted(raw: str) -> str:
    """The URL without its password, for error messages."""
    try:
        parts = urlsplit(raw)
        if parts.password:
            return raw.replace(":" + parts.password + "@", ":***@", 1)
    except ValueError:
        pass
    return raw
