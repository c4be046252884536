"""Web security (issue 14): login throttling, CSP, HSTS and secure cookies behind
https, the SECRET_KEY in production, and the embedded SQLite database and var/
readable by their owner only.

Settings are read from the environment once, at import; the tests that are
about how the environment is read import `llmobserve_site.settings` in a
subprocess with exactly the variables they mean (nothing inherited from the
test run: no DATABASE_URL, SECRET_KEY, DEBUG...), and those about what the
resulting settings do apply them to real requests in-process.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from tests.browser import conftest as browser_conftest
from tests.dashboard import conftest as dashboard_conftest

# Shared fixtures (pytest finds them by these names): Chromium through
# Playwright, and the dashboard tests' data.
browser, page, seeded = browser_conftest.browser, browser_conftest.page, dashboard_conftest.seeded
login = browser_conftest.login

ROOT = Path(__file__).resolve().parents[2]
LOGIN = "/accounts/login/"
PLACEHOLDER_KEY = re.search(r"^SECRET_KEY=(.*)$", (ROOT / ".env.example").read_text(), re.M).group(1)  # type: ignore[union-attr]

# Variables the settings read that a test run may carry; each subprocess starts without them.
SETTINGS_ENV = {
    "DATABASE_URL",
    "SECRET_KEY",
    "DEBUG",
    "BEHIND_HTTPS_PROXY",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "CELERY_BROKER_URL",
    "LLMOBSERVE_VAR_DIR",
    "STATIC_ROOT",
    "DJANGO_SETTINGS_MODULE",
}


def run_settings(tmp_path: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter after importing the settings with `env` only."""
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
    clean.update(
        {
            "DJANGO_SETTINGS_MODULE": "llmobserve_site.settings",
            "LLMOBSERVE_VAR_DIR": str(tmp_path / "var"),
            "STATIC_ROOT": str(tmp_path / "static"),
        }
    )
    clean.update(env)
    script = "from llmobserve_site import settings as s\n" + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


def settings_values(tmp_path: Path, names: list[str], **env: str) -> dict[str, Any]:
    result = run_settings(
        tmp_path, f"import json; print(json.dumps({{n: getattr(s, n, None) for n in {names!r}}}))", **env
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- 1. Login throttling ------------------------------------------------------


def post_login(client: Client, username: str, password: str, path: str = LOGIN, **extra: Any):  # type: ignore[no-untyped-def]
    return client.post(path, {"username": username, "password": password}, **extra)


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.django_db
def test_thirty_wrong_passwords_then_the_right_one_is_refused(owner) -> None:
    client = Client()
    for _ in range(30):
        response = post_login(client, "olivia", "wrong-password")
        assert response.status_code in (200, 429)
        assert not logged_in(client)
    response = post_login(client, "olivia", "pw-olivia-123")
    assert response.status_code == 429
    assert not logged_in(client)
    html = response.content.decode()
    assert "Too many failed logins" in html and "15 minutes" in html


@pytest.mark.django_db
def test_lockout_starts_at_the_fifth_failure_and_is_per_username_and_address(owner, member) -> None:
    client = Client()
    for _ in range(4):
        assert post_login(client, "olivia", "wrong-password").status_code == 200
    # Four failures: still allowed, and a success wipes the count.
    assert post_login(client, "olivia", "pw-olivia-123").status_code == 302 and logged_in(client)
    client = Client()
    for _ in range(5):
        post_login(client, "olivia", "wrong-password")
    assert post_login(client, "olivia", "pw-olivia-123").status_code == 429
    # Another user from the same address, and the same user from another address, are not locked.
    assert post_login(Client(), "max", "pw-max-123").status_code == 302
    other = Client(REMOTE_ADDR="10.1.2.3")
    assert post_login(other, "olivia", "pw-olivia-123").status_code == 302 and logged_in(other)


@pytest.mark.django_db
def test_the_lockout_says_when_to_retry(owner) -> None:
    client = Client()
    for _ in range(5):
        post_login(client, "olivia", "wrong-password")
    response = post_login(client, "olivia", "pw-olivia-123")
    assert response.status_code == 429 and response["Retry-After"] == "900"
    assert "olivia" in response.content.decode()


@pytest.mark.django_db
def test_behind_the_proxy_the_lockout_counts_the_address_the_proxy_saw(owner, settings) -> None:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proxy = "172.18.0.5"  # every request comes from the proxy
    attacker = Client(REMOTE_ADDR=proxy)
    for n in range(30):
        # Whatever the client writes into X-Forwarded-For, the proxy appends the address it saw.
        post_login(attacker, "olivia", "wrong-password", HTTP_X_FORWARDED_FOR=f"10.9.9.{n}, 203.0.113.7")
    response = post_login(attacker, "olivia", "pw-olivia-123", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.7")
    assert response.status_code == 429
    # The real user, behind the same proxy but from another address, still gets in.
    user = Client(REMOTE_ADDR=proxy)
    response = post_login(user, "olivia", "pw-olivia-123", HTTP_X_FORWARDED_FOR="198.51.100.20")
    assert response.status_code == 302 and logged_in(user)


@pytest.mark.django_db
def test_the_lockout_ends_after_the_cool_off(owner) -> None:
    from axes.models import AccessAttempt

    client = Client()
    for _ in range(6):
        post_login(client, "olivia", "wrong-password")
    assert post_login(client, "olivia", "pw-olivia-123").status_code == 429
    # Retrying while locked does not extend the lock.
    AccessAttempt.objects.update(attempt_time=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=16))
    response = post_login(client, "olivia", "pw-olivia-123")
    assert response.status_code == 302 and logged_in(client)


@pytest.mark.django_db
def test_the_admin_login_is_throttled_too(db) -> None:
    User.objects.create_superuser("root", "root@example.com", "pw-root-123456")
    client = Client()
    for _ in range(10):
        post_login(client, "root", "nope", path="/admin/login/")
    response = post_login(client, "root", "pw-root-123456", path="/admin/login/")
    assert response.status_code == 429 and not logged_in(client)


@pytest.mark.django_db
def test_logins_without_a_request_still_work(owner) -> None:
    # Test helpers and management code authenticate without an HTTP request:
    # nothing to throttle by, and they must keep working.
    assert authenticate(username="olivia", password="pw-olivia-123") == owner
    assert authenticate(username="olivia", password="wrong") is None
    client = Client()
    assert client.login(username="olivia", password="pw-olivia-123")
    assert client.get("/").status_code == 200
    client = Client()
    client.force_login(owner)
    assert client.get("/").status_code == 200


# --- 2. Content-Security-Policy -----------------------------------------------


def csp_directives(header: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = words[1:]
    return directives


def assert_strict_csp(response) -> None:  # type: ignore[no-untyped-def]
    header = response.headers.get("Content-Security-Policy")
    assert header, f"no Content-Security-Policy on {response.request['PATH_INFO']}"
    policy = csp_directives(header)
    assert policy["default-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    for directive in ("script-src", "style-src"):
        sources = policy.get(directive, policy["default-src"])
        assert "'unsafe-inline'" not in sources and "'unsafe-eval'" not in sources, (directive, sources)
    assert policy["object-src"] == ["'none'"]


class InlineCode(HTMLParser):
    """Collects what a strict CSP blocks: inline <script>/<style> without a nonce,
    on* event handler attributes, style attributes and javascript: URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name.lower(): value for name, value in attrs}
        if tag in ("script", "style") and "src" not in names and "nonce" not in names:
            if (
                tag == "script"
                and (names.get("type") or "").startswith("application/")
                and "json" in (names.get("type") or "")
            ):
                return  # data, not code
            self.found.append(f"<{tag}> without a nonce at line {self.getpos()[0]}")
        for name, value in names.items():
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=...> at line {self.getpos()[0]}")
            if name == "style":
                self.found.append(f"<{tag} style=...> at line {self.getpos()[0]}")
            if name in ("href", "src", "action") and (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}=javascript:...> at line {self.getpos()[0]}")


def inline_code(html: str) -> list[str]:
    parser = InlineCode()
    parser.feed(html)
    parser.close()
    return parser.found


def test_no_inline_script_style_or_handler_in_our_templates() -> None:
    problems = {}
    for path in sorted((ROOT / "templates").rglob("*.html")):
        found = inline_code(path.read_text())
        if found:
            problems[str(path.relative_to(ROOT))] = found
    assert not problems, problems


@pytest.mark.django_db
def test_every_dashboard_page_sends_a_strict_csp_and_no_inline_code(seeded, owner, staff) -> None:
    client = Client()
    response = client.get(LOGIN)
    assert_strict_csp(response)
    assert not inline_code(response.content.decode())
    client.force_login(owner)
    pages = [
        "/",
        "/?by=model",
        "/dashboard/runs/",
        "/dashboard/runs/run-42/",
        "/dashboard/insights/",
        "/dashboard/pricing/",
    ]
    for path in pages:
        response = client.get(path)
        assert response.status_code == 200, path
        assert_strict_csp(response)
        assert not inline_code(response.content.decode()), path
    # htmx partials too.
    response = client.get("/dashboard/runs/", headers={"HX-Request": "true"})
    assert_strict_csp(response)
    assert not inline_code(response.content.decode())


@pytest.mark.django_db
def test_the_admin_and_the_api_send_the_csp_too(api_key) -> None:
    User.objects.create_superuser("root", "root@example.com", "pw-root-123456")
    client = Client()
    client.force_login(User.objects.get(username="root"))
    for path in ("/admin/", "/admin/projects/project/", "/admin/projects/project/add/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert_strict_csp(response)
    response = Client().get("/runs/latest", headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == 200
    assert_strict_csp(response)


# --- 3. HSTS and secure cookies behind an https proxy -------------------------

HTTPS_SETTINGS = [
    "SECURE_PROXY_SSL_HEADER",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "DEBUG",
]


def apply(settings, values: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    for name, value in values.items():
        if name == "DEBUG":
            continue  # the test runner forces DEBUG off
        if name == "SECURE_PROXY_SSL_HEADER" and value is not None:
            value = tuple(value)
        setattr(settings, name, value)


@pytest.mark.django_db
def test_behind_an_https_proxy_hsts_and_secure_cookies(tmp_path, settings, owner) -> None:
    values = settings_values(tmp_path, HTTPS_SETTINGS, BEHIND_HTTPS_PROXY="1", DEBUG="0", SECRET_KEY="k" * 50)
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    apply(settings, values)
    client = Client()

    response = client.get(LOGIN, headers={"X-Forwarded-Proto": "https"})
    hsts = response.headers.get("Strict-Transport-Security", "")
    assert re.fullmatch(r"max-age=(\d+)", hsts) and int(hsts.split("=")[1]) >= 365 * 24 * 3600, hsts
    assert response.cookies["csrftoken"]["secure"]
    response = post_login(client, "olivia", "pw-olivia-123", headers={"X-Forwarded-Proto": "https"})
    assert response.status_code == 302
    assert response.cookies["sessionid"]["secure"] and response.cookies["sessionid"]["httponly"]
    assert response.cookies["sessionid"]["samesite"] == "Lax"
    # The proxy's plain-http side (its healthcheck) gets no HSTS.
    assert "Strict-Transport-Security" not in Client().get("/health").headers


@pytest.mark.django_db
def test_plain_http_by_default_so_make_run_keeps_working(tmp_path, settings, owner) -> None:
    values = settings_values(tmp_path, HTTPS_SETTINGS)
    assert values["SECURE_PROXY_SSL_HEADER"] is None
    assert not values["SESSION_COOKIE_SECURE"] and not values["CSRF_COOKIE_SECURE"]
    apply(settings, values)
    client = Client()
    # A forged X-Forwarded-Proto is not trusted without BEHIND_HTTPS_PROXY=1.
    response = client.get(LOGIN, headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in response.headers
    assert not response.cookies["csrftoken"]["secure"]
    response = post_login(client, "olivia", "pw-olivia-123")
    assert response.status_code == 302 and not response.cookies["sessionid"]["secure"]


def test_no_hsts_with_debug_on(tmp_path) -> None:
    values = settings_values(tmp_path, HTTPS_SETTINGS, BEHIND_HTTPS_PROXY="1", DEBUG="1")
    assert not values["SECURE_HSTS_SECONDS"]


# --- 4. SECRET_KEY --------------------------------------------------------------

POSTGRES = "postgres://llmobserve:pw@db.example:5432/llmobserve"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"DATABASE_URL": POSTGRES}, "SECRET_KEY is not set"),
        ({"DATABASE_URL": POSTGRES, "SECRET_KEY": ""}, "SECRET_KEY is not set"),
        ({"DATABASE_URL": POSTGRES, "SECRET_KEY": PLACEHOLDER_KEY}, "placeholder"),
        ({"SECRET_KEY": PLACEHOLDER_KEY}, "placeholder"),
        ({"SECRET_KEY": PLACEHOLDER_KEY, "DATABASE_URL": POSTGRES, "DEBUG": "0"}, "placeholder"),
    ],
    ids=["postgres-unset", "postgres-empty", "postgres-placeholder", "sqlite-placeholder", "debug-off-placeholder"],
)
def test_production_refuses_a_missing_or_placeholder_secret_key(tmp_path, env, message) -> None:
    result = run_settings(tmp_path, "print('started')", **env)
    assert result.returncode != 0, "settings accepted it"
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr, result.stderr
    assert not (tmp_path / "var" / "secret_key").exists()


def test_production_accepts_a_real_secret_key(tmp_path) -> None:
    values = settings_values(tmp_path, ["SECRET_KEY"], DATABASE_URL=POSTGRES, SECRET_KEY="s3cr3t-" * 8)
    assert values["SECRET_KEY"] == "s3cr3t-" * 8


def test_the_embedded_default_generates_one_key_kept_under_var(tmp_path) -> None:
    first = settings_values(tmp_path, ["SECRET_KEY"])["SECRET_KEY"]
    second = settings_values(tmp_path, ["SECRET_KEY"])["SECRET_KEY"]
    assert first == second and len(first) >= 50
    key_file = tmp_path / "var" / "secret_key"
    assert key_file.read_text().strip() == first
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # DEBUG on with the placeholder (a developer's copied .env.example) is allowed.
    assert settings_values(tmp_path, ["SECRET_KEY"], DEBUG="1", SECRET_KEY=PLACEHOLDER_KEY)["SECRET_KEY"]


# --- 5. The SQLite file and var/ readable by the owner only -----------------------

OPEN_AND_WRITE = """
import os, stat
import django
django.setup()
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE IF NOT EXISTS probe (x integer)")
    cursor.execute("INSERT INTO probe VALUES (1)")
name = connection.settings_dict["NAME"]
modes = {p: oct(stat.S_IMODE(os.stat(p).st_mode)) for p in (name, name + "-wal", name + "-shm") if os.path.exists(p)}
var = os.environ["LLMOBSERVE_VAR_DIR"]
modes[var] = oct(stat.S_IMODE(os.stat(var).st_mode))
print(json.dumps(modes))
"""


def owner_only_modes(tmp_path: Path, **env: str) -> dict[str, str]:
    result = run_settings(tmp_path, "import json\n" + OPEN_AND_WRITE, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_a_new_sqlite_database_and_var_are_owner_only(tmp_path, umask) -> None:
    old = os.umask(umask)
    try:
        modes = owner_only_modes(tmp_path)
    finally:
        os.umask(old)
    db = str(tmp_path / "var" / "llmobserve.sqlite3")
    assert modes[db] == "0o600" and modes[db + "-wal"] == "0o600" and modes[db + "-shm"] == "0o600", modes
    assert modes[str(tmp_path / "var")] == "0o700", modes


def test_an_existing_world_readable_database_and_var_are_tightened(tmp_path) -> None:
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    var.chmod(0o755)
    db = var / "llmobserve.sqlite3"
    db.touch()
    db.chmod(0o644)
    modes = owner_only_modes(tmp_path)
    assert modes[str(db)] == "0o600" and modes[str(var)] == "0o700", modes


def test_a_sqlite_database_url_elsewhere_is_owner_only_too(tmp_path) -> None:
    other = tmp_path / "data"
    other.mkdir()
    modes = owner_only_modes(tmp_path, DATABASE_URL=f"sqlite:///{other}/x.sqlite3")
    assert modes[str(other / "x.sqlite3")] == "0o600", modes


@pytest.mark.django_db
def test_the_test_database_itself_is_owner_only() -> None:
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL keeps its files itself")
    connection.ensure_connection()
    name = connection.settings_dict["NAME"]
    assert stat.S_IMODE(os.stat(name).st_mode) == 0o600


# --- The dashboard and the admin in Chromium under the policy --------------------


def csp_errors(page) -> list[str]:  # type: ignore[no-untyped-def]
    errors: list[str] = []
    page.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text
            else None
        ),
    )
    return errors


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_dashboard_works_in_chromium_under_the_policy(page, seeded, owner, staff) -> None:
    errors = csp_errors(page)
    login(page, "stella", "pw-stella-123")
    page.locator("svg#cost-chart").wait_for()
    assert page.locator(".legend svg.swatch rect").count() >= 2
    assert page.locator("#top-sections meter.sharebar").count() >= 1
    # htmx swaps (no page load) work under script-src 'self'.
    page.evaluate("window.__stayed = true")
    page.click("#chart a[role=tab]:has-text('by model')")
    page.wait_for_selector("#chart a[aria-selected=true]:has-text('by model')")
    assert page.evaluate("window.__stayed === true")
    # The project switcher (was an inline onchange) submits on change.
    page.select_option("#project-switch", "globex")
    page.wait_for_url("**/?project=globex")
    page.goto("/dashboard/runs/run-42/?project=acme")
    tree = page.locator("#run-tree")
    tree.wait_for()
    # Collapse all / Expand all (were inline onclick handlers).
    page.click("button:has-text('Collapse all')")
    page.wait_for_function("[...document.querySelectorAll('#run-tree details')].every(d => !d.open)")
    page.click("button:has-text('Expand all')")
    page.wait_for_function("[...document.querySelectorAll('#run-tree details')].every(d => d.open)")
    for path in ("/dashboard/runs/?project=acme", "/dashboard/insights/", "/dashboard/pricing/"):
        page.goto(path)
        page.wait_for_load_state()
    page.goto("/dashboard/runs/?project=acme")
    page.wait_for_selector("tr[data-run-id='run-42']")
    assert not errors, errors


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_admin_works_in_chromium_under_the_policy(page, project) -> None:
    User.objects.create_superuser("root", "root@example.com", "pw-root-123456")
    errors = csp_errors(page)
    page.goto("/admin/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "pw-root-123456")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    for path in (
        "/admin/",
        "/admin/projects/project/",
        "/admin/projects/project/add/",
        f"/admin/projects/project/{project.pk}/change/",
        "/admin/projects/apikey/",
        "/admin/pricing/price/",
        "/admin/insights/insight/",
        "/admin/auth/user/",
        "/admin/axes/accessattempt/",
    ):
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        page.wait_for_load_state()
    # The admin's own scripts run: the sidebar filter and the select-all checkbox.
    page.goto("/admin/auth/user/")
    page.check("#action-toggle")
    assert page.locator("input.action-select:checked").count() >= 1
    assert not errors, errors


@pytest.mark.django_db
def test_behind_our_own_proxy_one_users_lockout_is_not_everyones(owner, settings) -> None:
    """compose's web (BEHIND_PROXY=1) and `make run` (its front proxy on loopback):
    every request comes from the proxy's address, the client's is the last
    X-Forwarded-For entry; without reading it, a lockout would lock out everyone."""
    from axes.models import AccessAttempt

    for proxy, behind in (("172.18.0.5", True), ("127.0.0.1", False)):
        AccessAttempt.objects.all().delete()
        settings.BEHIND_PROXY = behind
        attacker = Client(REMOTE_ADDR=proxy)
        for _ in range(6):
            post_login(attacker, "olivia", "wrong-password", HTTP_X_FORWARDED_FOR="203.0.113.7")
        locked = post_login(attacker, "olivia", "pw-olivia-123", HTTP_X_FORWARDED_FOR="203.0.113.7")
        assert locked.status_code == 429
        user = Client(REMOTE_ADDR=proxy)
        response = post_login(user, "olivia", "pw-olivia-123", HTTP_X_FORWARDED_FOR="198.51.100.20")
        assert response.status_code == 302 and logged_in(user), proxy
