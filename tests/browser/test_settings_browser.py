"""Self-service in a real browser: an owner creates an API key on the Settings
page, copies it (shown once), ingest accepts it; revoking it makes ingest
answer 401 and the page show it revoked.  The Swagger UI page renders from
local assets under the site's CSP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from projects.models import ApiKey, hash_key
from tests.browser.conftest import login
from tests.conftest import make_event

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def post_events(base_url: str, key: str) -> int:
    request = urllib.request.Request(
        base_url + "/events",
        data=json.dumps({"events": [make_event()]}).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_create_and_revoke_a_key(page, screenshot, owner, project, live_server):
    login(page, "olivia", "pw-olivia-123")
    page.click("nav.mainnav a:has-text('Settings')")
    page.wait_for_url("**/dashboard/settings/")
    assert page.locator("#api-keys").inner_text().count("No keys yet") == 1

    page.fill("#key-create input[name='key-name']", "support-bot prod")
    page.click("#key-create button[type=submit]")
    page.wait_for_selector("#new-key-value")
    raw = page.locator("#new-key-value").inner_text().strip()
    assert raw.startswith("lo_") and len(raw) > 40
    key = ApiKey.objects.get(project=project)
    assert key.key_hash == hash_key(raw) and key.name == "support-bot prod"
    row = page.locator(f"tr[data-key-id='{key.id}']")
    assert key.prefix in row.inner_text() and "never" in row.inner_text() and "active" in row.inner_text()
    screenshot("settings-new-key")

    assert post_events(live_server.url, raw) == 200

    # Shown once: a fresh visit lists the key by its prefix and its last use, not the key.
    page.goto("/dashboard/settings/")
    assert raw not in page.content()
    row = page.locator(f"tr[data-key-id='{key.id}']")
    assert "ago" in row.inner_text()  # last used: the batch just sent

    row.locator("button:has-text('Revoke')").click()
    page.wait_for_selector(f"tr[data-key-id='{key.id}'] .badge.error")
    assert "Revoked the key support-bot prod" in page.locator(".messages").inner_text()
    assert page.locator(f"tr[data-key-id='{key.id}'] button:has-text('Revoke')").count() == 0
    screenshot("settings-revoked")
    assert ApiKey.objects.get(id=key.id).revoked
    assert post_events(live_server.url, raw) == 401


def test_member_sees_settings_read_only(page, owner, member, project):
    ApiKey.generate(project=project, name="ingest")
    login(page, "max", "pw-max-123")
    page.goto("/dashboard/settings/")
    assert page.locator("#read-only").is_visible()
    assert page.locator("#key-create").count() == 0
    assert page.locator("button:has-text('Revoke')").count() == 0
    assert "ingest" in page.locator("#api-keys").inner_text()


def test_api_docs_render(page, live_server, db):
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.goto("/api/docs/")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "llmobserve collector API" in page.locator(".swagger-ui .info .title").inner_text()
    page.wait_for_selector(".opblock-summary-path")
    paths = page.locator(".opblock-summary-path").evaluate_all("els => els.map(e => e.textContent.trim())")
    assert "/runs/latest" in paths and "/events" in paths
    assert violations == []
