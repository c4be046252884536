"""`scripts/seed.py --fake-openai-admin PORT`: the seeded traffic billed with known gaps, then reconciled."""

from __future__ import annotations

import random
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from django.core.management import call_command

from projects.models import ApiKey, Project
from reconciliation.fake_admin import FAKE_KEY, SEED_UNOBSERVED_SHARE
from reconciliation.selectors import reconciliation_report
from tests.seed.test_seed import RANDOM_STATE, load_seed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers (401 without the key): it is up
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"nothing answered at {url}")


def test_seed_serves_a_bill_with_the_known_gaps(live_server, transactional_db, tmp_path, monkeypatch, capsys):
    for name in ("OPENAI_API_KEY", "PINECONE_API_KEY", "LLMOBSERVE_DISABLED", "LLMOBSERVE_API_KEY", "COLLECTOR_URL"):
        monkeypatch.delenv(name, raising=False)
    project = Project.objects.create(name="default")
    _, key = ApiKey.generate(project=project)
    random.seed(RANDOM_STATE)
    port = free_port()
    argv = ["--days", "2", "--runs-per-day", "3", "--collector-url", live_server.url, "--api-key", key]
    argv += ["--dotenv", str(tmp_path / ".env"), "--skip-insights", "--fake-openai-admin", str(port)]
    # The seed serves until Ctrl-C: on a daemon thread of its own here.
    threading.Thread(target=load_seed().main, args=(argv,), daemon=True).start()
    base_url = f"http://127.0.0.1:{port}/v1"
    wait_for(base_url + "/organization/costs?start_time=0")
    out = capsys.readouterr().out
    assert f"OPENAI_ADMIN_BASE_URL={base_url}" in out

    monkeypatch.setenv("OPENAI_ADMIN_KEY", FAKE_KEY)
    monkeypatch.setenv("OPENAI_ADMIN_BASE_URL", base_url)
    call_command("reconcile", "--project", "default")
    printed = capsys.readouterr().out
    report = reconciliation_report(project_id=project.id, start=report_start(project), end=report_end())
    rows = {f.model: f for f in report.by_model}
    # gpt-4o-mini: 10 % of its calls never observed; gpt-4.1: billed on flex; the rest agree.
    mini, flex = rows["gpt-4o-mini"], rows["gpt-4.1"]
    assert mini.coverage == pytest.approx(1 - SEED_UNOBSERVED_SHARE, abs=0.002)
    assert mini.price_agreement == pytest.approx(1.0, abs=0.001)
    assert flex.coverage == pytest.approx(1.0, abs=0.001)
    assert flex.price_agreement == pytest.approx(2.0, abs=0.002)
    agreeing = [f for m, f in rows.items() if m not in ("gpt-4o-mini", "gpt-4.1")]
    assert agreeing and all(f.coverage == pytest.approx(1.0, abs=0.001) for f in agreeing)
    assert all(f.price_agreement == pytest.approx(1.0, abs=0.001) for f in agreeing)
    assert "10 % of gpt-4o-mini tokens were never observed — uninstrumented calls?" in printed
    assert "gpt-4.1: tokens match but cost is 2.0× the bill" in printed
    assert "billed on flex: gpt-4.1" in out
    assert FAKE_KEY not in printed


def report_start(project):  # the seeded days: the rollups' first day
    from events.models import DailyRollup

    return DailyRollup.objects.filter(project=project).order_by("day").values_list("day", flat=True).first()


def report_end():
    import datetime as dt

    from django.utils import timezone

    return timezone.now().astimezone(dt.UTC).date()
