"""Site chrome: the readable API docs, the favicon, the branded admin."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from projects.models import ApiKey

pytestmark = pytest.mark.django_db


def test_api_docs_render_with_local_assets_only(db):
    # Public, like /api/schema/ (see projects.views.ApiDocsView).
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<div id="swagger-ui">' in html
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in urls
    assert all(url.startswith("/") and not url.startswith("//") for url in urls), urls
    assert "http://" not in html and "https://" not in html
    # No inline script or style: the page lives under the site's strict CSP.
    assert "<style" not in html
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "img-src 'self' data:" in csp  # Swagger UI's icons, on this page only


def test_api_docs_start_up_script_points_at_the_schema(db):
    response = Client().get("/api/docs/", {"script": ""})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    assert '"/api/schema/"' in response.content.decode()


def test_schema_is_what_the_docs_read(db):
    response = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert b"/runs/latest" in response.content


def test_other_pages_keep_the_strict_img_src(owner, project):
    client = Client()
    client.force_login(owner)
    csp = client.get("/dashboard/settings/").headers["Content-Security-Policy"]
    assert "img-src 'self';" in csp or csp.endswith("img-src 'self'")
    assert "data:" not in csp


def test_favicon_served(db):
    response = Client().get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/x-icon"
    body = response.content
    # An ICO directory of one 32x32 image holding a PNG.
    assert body[:6] == b"\x00\x00\x01\x00\x01\x00"
    assert body[6] == 32 and body[7] == 32
    assert body[22:30] == b"\x89PNG\r\n\x1a\n"
    assert "max-age=86400" in response["Cache-Control"]


def test_favicon_linked_from_pages(db):
    html = Client().get("/accounts/login/").content.decode()
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in html
    svg = Client().get("/static/favicon.svg")
    assert svg.status_code == 200
    assert b"<svg" in b"".join(svg.streaming_content)  # type: ignore[attr-defined]


def test_admin_branded(db):
    root = User.objects.create_superuser("root", "root@example.com", "pw-root-123")
    client = Client()
    client.force_login(root)
    html = client.get("/admin/").content.decode()
    assert "<title>Projects, keys, prices and users | llmobserve admin</title>" in html
    assert '<a href="/admin/">llmobserve</a>' in html


def test_admin_add_api_key_goes_to_settings_page(project):
    root = User.objects.create_superuser("root", "root@example.com", "pw-root-123")
    client = Client()
    client.force_login(root)
    listing = client.get("/admin/projects/apikey/").content.decode()
    assert 'href="/admin/projects/apikey/add/"' in listing
    response = client.get("/admin/projects/apikey/add/")
    assert response.status_code == 302
    assert response["Location"] == "/dashboard/settings/"
    filtered = client.get(
        "/admin/projects/apikey/add/", {"_changelist_filters": f"project__id__exact={project.id}"}, follow=True
    )
    assert filtered.redirect_chain == [("/dashboard/settings/?project=acme", 302)]
    assert "API keys are created on a project&#x27;s Settings page" in filtered.content.decode()
    assert filtered.status_code == 200
    assert not ApiKey.objects.exists()


def test_admin_project_page_links_to_settings(project):
    root = User.objects.create_superuser("root", "root@example.com", "pw-root-123")
    client = Client()
    client.force_login(root)
    html = client.get(f"/admin/projects/project/{project.id}/change/").content.decode()
    assert 'href="/dashboard/settings/?project=acme"' in html
