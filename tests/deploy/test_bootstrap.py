"""`manage.py bootstrap`: the first run's login, project and key, once, never in production."""

from __future__ import annotations

import io
import stat

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.core.management import call_command

from projects.models import ApiKey, Membership, hash_key


@pytest.fixture
def paths(tmp_path, settings, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    dotenv = tmp_path / ".env"
    dotenv.write_text("# my settings\nDEBUG=1\nCOLLECTOR_URL=http://old:1\n")
    return {"dotenv": dotenv, "first_run": settings.VAR_DIR / "first_run.txt"}


def bootstrap(paths, *args: str) -> str:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    call_command("bootstrap", "--dotenv", str(paths["dotenv"]), *args, stdout=out)
    return out.getvalue()


def read(path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and line[0] != "#")


@pytest.mark.django_db
def test_first_run_creates_login_project_and_key(paths) -> None:  # type: ignore[no-untyped-def]
    out = bootstrap(paths, "--collector-url", "http://127.0.0.1:8123/")
    user = User.objects.get()
    assert user.username == "admin" and user.is_superuser and user.is_staff
    membership = Membership.objects.get(user=user)
    assert membership.project.name == "default" and membership.role == Membership.OWNER

    env = read(paths["dotenv"])
    assert env["DEBUG"] == "1" and env["COLLECTOR_URL"] == "http://127.0.0.1:8123"
    assert ApiKey.objects.get(key_hash=hash_key(env["LLMOBSERVE_API_KEY"])).project.name == "default"
    assert "# my settings" in paths["dotenv"].read_text()

    login = read(paths["first_run"])
    assert login["username"] == "admin"
    assert authenticate(username="admin", password=login["password"]) == user
    for path in (paths["first_run"], paths["dotenv"]):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Printed once: the login and the key.
    assert login["password"] in out and env["LLMOBSERVE_API_KEY"] in out


@pytest.mark.django_db
def test_second_run_changes_nothing(paths) -> None:  # type: ignore[no-untyped-def]
    bootstrap(paths)
    before = paths["dotenv"].read_text(), paths["first_run"].read_text()
    out = bootstrap(paths)
    assert User.objects.count() == 1 and ApiKey.objects.count() == 1
    assert (paths["dotenv"].read_text(), paths["first_run"].read_text()) == before
    assert "already set up" in out and read(paths["first_run"])["password"] not in out


@pytest.mark.django_db
def test_nothing_when_a_user_exists(paths) -> None:  # type: ignore[no-untyped-def]
    User.objects.create_user("someone", password="pw-123456789")
    bootstrap(paths)
    assert ApiKey.objects.count() == 0 and not paths["first_run"].exists()
    assert "LLMOBSERVE_API_KEY" not in paths["dotenv"].read_text()


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["--production", "DATABASE_URL"])
def test_never_in_production(paths, monkeypatch, how) -> None:  # type: ignore[no-untyped-def]
    if how == "DATABASE_URL":
        monkeypatch.setenv("DATABASE_URL", "postgres://db/llmobserve")
        out = bootstrap(paths)
    else:
        out = bootstrap(paths, "--production")
    assert "production" in out
    assert not User.objects.exists() and not ApiKey.objects.exists() and not paths["first_run"].exists()
    assert "LLMOBSERVE_API_KEY" not in paths["dotenv"].read_text()
