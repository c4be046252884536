"""docker-compose.yml and the Dockerfile, checked against the project without Docker.

No Docker engine runs here, so each service's command is taken apart and
every name in it resolved the way the real program would: gunicorn's
module:variable is imported (and `gunicorn --check-config` loads it with
deploy/gunicorn.conf.py), celery's -A resolves through celery's own
`find_app`, nginx tests the configuration deploy/nginx.py writes (`nginx -t`),
the settings module imports, the env vars compose sets are ones the project
reads, and the Dockerfile copies every path those need.
scripts/smoke_production.sh runs the same commands against the real
PostgreSQL and Redis, and tests/reliability/ starts them under attack.
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
PYTHON_ROLES = ("web", "worker", "beat")
IMAGE_ROLES = ("proxy", *PYTHON_ROLES)
# Read by programs other than settings.py: Django/Celery's bootstrap, gunicorn, deploy/nginx.py.
OTHER_READERS = {"DJANGO_SETTINGS_MODULE", "WEB_CONCURRENCY", "NGINX_LISTEN", "NGINX_UPSTREAM"}
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def command(service: str) -> list[str]:
    cmd = SERVICES[service]["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def shell_steps(service: str) -> list[list[str]]:
    """The commands a service runs: `sh -c "a && exec b"` → [[a...], [b...]]."""
    cmd = command(service)
    if cmd[:2] == ["sh", "-c"]:
        steps = [shlex.split(step) for step in re.split(r"&&|;", cmd[2])]
        return [s[1:] if s and s[0] == "exec" else s for s in steps]
    return [cmd]


def settings_env_vars() -> set[str]:
    text = (ROOT / "llmobserve_site" / "settings.py").read_text()
    return set(re.findall(r"""(?:environ\.get|env_bool|env_int|env_list)\(\s*["']([A-Z0-9_]+)["']""", text))


def dockerfile_copies() -> set[str]:
    copied: set[str] = set()
    for line in DOCKERFILE.splitlines():
        if line.startswith("COPY "):
            copied.update(part.rstrip("/") for part in line.split()[1:-1])
    return copied


def test_the_six_services() -> None:
    assert set(SERVICES) == {"postgres", "redis", "proxy", "web", "worker", "beat"}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_service_has_a_healthcheck(service: str) -> None:
    check = SERVICES[service].get("healthcheck") or {}
    assert check.get("test"), f"{service} has no healthcheck"


def test_postgres_keeps_its_data_on_a_named_volume() -> None:
    volumes = SERVICES["postgres"]["volumes"]
    named = [v.split(":")[0] for v in volumes if v.split(":")[1] == "/var/lib/postgresql/data"]
    assert named and named[0] in COMPOSE["volumes"]


def test_roles_share_one_image_built_once_and_the_env_file() -> None:
    image = SERVICES["web"]["image"]
    assert SERVICES["web"]["build"] == "."
    for role in IMAGE_ROLES:
        service = SERVICES[role]
        assert service["image"] == image and service["env_file"] == ".env"
        if role != "web":
            assert "build" not in service and service["pull_policy"] == "never"
    for role in PYTHON_ROLES:
        service = SERVICES[role]
        assert service["environment"]["DATABASE_URL"].startswith("postgres://")
        assert service["environment"]["CELERY_BROKER_URL"].startswith("redis://redis:")
        assert "postgres" in service["environment"]["DATABASE_URL"].split("@")[1]


def gunicorn_check_config(args: list[str]) -> str:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "gunicorn"), "--check-config", "--print-config", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_web_migrates_then_serves_the_wsgi_app_with_gunicorn() -> None:
    steps = shell_steps("web")
    assert steps[0] == ["python", "manage.py", "migrate", "--noinput"]
    gunicorn = steps[-1]
    assert gunicorn[:3] == ["gunicorn", "-c", "deploy/gunicorn.conf.py"]
    module, _, attr = gunicorn[3].partition(":")
    app = getattr(importlib.import_module(module), attr)
    assert callable(app)
    assert settings.WSGI_APPLICATION == f"{module}.{attr}"
    assert "0.0.0.0:8000" in gunicorn
    # gunicorn itself loads the app and the settings file with the compose arguments.
    printed = gunicorn_check_config(gunicorn[1:])
    assert re.search(r"^worker_class\s*=\s*gthread$", printed, re.M), printed
    assert re.search(r"^threads\s*=\s*([2-9]|\d\d+)$", printed, re.M), printed
    # The Dockerfile's default CMD is the same server.
    cmd = re.search(r"^CMD (\[.*\])", DOCKERFILE, re.M)
    assert cmd and yaml.safe_load(cmd.group(1)) == gunicorn


def test_proxy_is_nginx_in_front_of_web() -> None:
    proxy = SERVICES["proxy"]
    assert command("proxy") == ["python", "deploy/nginx.py"]
    assert proxy["environment"]["NGINX_UPSTREAM"] == "web:8000" and proxy["environment"]["NGINX_LISTEN"] == "8080"
    assert [str(p).rsplit(":", 1)[-1] for p in proxy["ports"]] == ["8080"]
    assert "ports" not in SERVICES["web"]  # gunicorn is reached through nginx only
    assert "nginx" in re.findall(r"apt-get install[^\n]*\bnginx\b", DOCKERFILE)[0]
    assert proxy["stop_signal"] == "SIGQUIT"


def test_nginx_accepts_the_configuration_deploy_writes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    if not (shutil.which("nginx") or os.access("/usr/sbin/nginx", os.X_OK)):
        if IN_CI:
            pytest.fail("nginx is not installed; CI=true needs it (.ci/run installs it)")
        pytest.skip("nginx is not installed (Debian: apt-get install nginx)")
    env = {**os.environ, "NGINX_RUN_DIR": str(tmp_path / "nginx")}
    env.update({k: str(v) for k, v in SERVICES["proxy"]["environment"].items()})
    env["NGINX_UPSTREAM"] = "127.0.0.1:8000"  # `web` resolves only inside compose's network
    result = subprocess.run(
        [sys.executable, "deploy/nginx.py", "--check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and "test is successful" in result.stderr, result.stdout + result.stderr


def test_the_smoke_starts_what_compose_starts() -> None:
    smoke = (ROOT / "scripts" / "smoke_production.sh").read_text()
    gunicorn = " ".join(shell_steps("web")[-1][1:]).replace("0.0.0.0:8000", '"127.0.0.1:$WEB_PORT"')
    assert f'"$BIN/gunicorn" {gunicorn} ' in smoke
    assert '"$PY" deploy/nginx.py' in smoke
    assert '"$BIN/celery" -A llmobserve_site worker' in smoke
    beat = " ".join(command("beat")[4:]).replace("/app/beat/celerybeat-schedule", '"$WORK/beat-schedule"')
    assert " ".join(f'"$BIN/celery" -A llmobserve_site beat {beat}'.split()) in " ".join(
        smoke.replace("\\\n", " ").split()
    )


@pytest.mark.parametrize("role", ["worker", "beat"])
def test_celery_roles_resolve_the_app(role: str) -> None:
    from celery import Celery
    from celery.app.utils import find_app

    cmd = command(role)
    assert cmd[0] == "celery" and cmd[1] == "-A" and cmd[3] == role
    app = find_app(cmd[2])
    assert isinstance(app, Celery)
    assert app is importlib.import_module("llmobserve_site.celery").app
    # The periodic insight job beat schedules is a registered task.
    app.loader.import_default_modules()
    assert "insights.compute_insights_all" in app.tasks


def test_beat_keeps_its_schedule_on_a_volume() -> None:
    cmd = command("beat")
    schedule = cmd[cmd.index("--schedule") + 1]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["beat"]["volumes"]}
    assert str(Path(schedule).parent) in mounts and mounts[str(Path(schedule).parent)] in COMPOSE["volumes"]
    assert "/app/beat" in DOCKERFILE  # created (and owned by the app user) in the image


def test_the_settings_module_exists() -> None:
    name = re.search(r"DJANGO_SETTINGS_MODULE=(\S+)", DOCKERFILE)
    assert name
    module = importlib.import_module(name.group(1))
    assert module.ROOT_URLCONF and module.WSGI_APPLICATION


@pytest.mark.parametrize("role", IMAGE_ROLES)
def test_compose_sets_only_env_vars_the_project_reads(role: str) -> None:
    unknown = set(SERVICES[role]["environment"]) - settings_env_vars() - OTHER_READERS
    assert not unknown, f"{role} sets {unknown}, which nothing reads"
    nginx_py = (ROOT / "deploy" / "nginx.py").read_text()
    assert all(name in nginx_py for name in ("NGINX_LISTEN", "NGINX_UPSTREAM", "NGINX_RUN_DIR"))


def test_env_example_documents_every_variable() -> None:
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.M))
    assert settings_env_vars() <= documented, settings_env_vars() - documented
    interpolated = set(re.findall(r"\$\{([A-Z0-9_]+)", (ROOT / "docker-compose.yml").read_text()))
    assert interpolated <= documented, interpolated - documented


def test_dockerfile_copies_what_the_commands_need() -> None:
    assert re.search(r"^FROM python:3\.11-slim", DOCKERFILE, re.M)
    copied = dockerfile_copies()
    local_apps = {app for app in settings.INSTALLED_APPS if (ROOT / app).is_dir()}
    needed = {"requirements.txt", "observe_sdk", "manage.py", "deploy", "llmobserve_site", "templates", "static"}
    needed |= local_apps
    assert needed <= copied, needed - copied
    for path in copied:
        assert (ROOT / path).exists(), path
    assert "pip install -r requirements.txt" in DOCKERFILE and "pip install ./observe_sdk" in DOCKERFILE
    assert "collectstatic --noinput" in DOCKERFILE
    user = re.findall(r"^USER (\S+)", DOCKERFILE, re.M)
    assert user and user[-1] not in {"root", "0"}
    # The programs the commands start are installed by requirements.txt.
    requirements = (ROOT / "requirements.txt").read_text().lower()
    for program in ("gunicorn", "celery", "psycopg", "redis"):
        assert re.search(rf"^{program}[=\[]", requirements, re.M), program


def test_dockerignore_keeps_secrets_and_state_out_but_not_the_code() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()}
    assert {".env", ".venv", "var", ".git"} <= ignored
    assert not (dockerfile_copies() & ignored)


def test_healthchecks_point_at_real_things() -> None:
    from django.urls import resolve

    assert resolve("/health").url_name == "health"
    # web and proxy: /health, with a Host header ALLOWED_HOSTS accepts (deploy/healthcheck.py).
    for role, port in (("web", 8000), ("proxy", 8080)):
        test = SERVICES[role]["healthcheck"]["test"]
        assert test == ["CMD", "python", "deploy/healthcheck.py", f"http://127.0.0.1:{port}/health"]
    # worker and beat: they answer `inspect ping` (beat only while its scheduler ticks).
    worker: Any = SERVICES["worker"]["healthcheck"]["test"]
    assert "inspect ping --destination celery@$$HOSTNAME" in " ".join(worker)
    beat: Any = SERVICES["beat"]["healthcheck"]["test"]
    assert "inspect ping --destination celerybeat@$$HOSTNAME" in " ".join(beat)
    assert "--enable-remote-control" in command("beat")
