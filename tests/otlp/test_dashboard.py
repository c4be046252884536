"""OTLP-fed runs on the dashboard, drawn from the same tables as SDK-fed ones."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.otlp.conftest import TRACE, Otlp, chat_attrs, export_request, make_span

pytestmark = pytest.mark.django_db


def test_an_otlp_run_has_its_page_with_the_tree(otlp: Otlp, owner):
    spans = [
        make_span(1, name="agent:researcher", duration_ms=2000),
        make_span(2, parent=1, name="tool:web_search", start_ms=100, duration_ms=900),
        make_span(3, parent=2, start_ms=120, duration_ms=850, attrs=chat_attrs()),
    ]
    assert otlp.send(export_request(spans)).status_code == 200
    browser = Client()
    browser.force_login(owner)
    page = browser.get(f"/dashboard/runs/{TRACE}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "agent:researcher" in html and "tool:web_search" in html and "gpt-4o-2024-08-06" in html
    assert browser.get("/").status_code == 200
    assert browser.get("/dashboard/runs/").status_code == 200
