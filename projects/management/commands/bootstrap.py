"""First run with the embedded default: a login, a project and an API key, shown once.

`make run` (scripts/run.py) calls this before it starts the server.  It acts
only when nothing is configured for production (no DATABASE_URL, no
--production) and no user exists yet; otherwise it does nothing, so calling it
on every start is safe.  It writes:

- `.env`: LLMOBSERVE_API_KEY and COLLECTOR_URL (other lines kept), where
  `make seed` and the README's SDK snippet find them;
- `var/first_run.txt` (mode 0600): the admin login, which `make seed` prints.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand
from django.db import transaction

from projects.models import Membership, Project
from projects.services import api_key_create

USERNAME = "admin"
PROJECT = "default"


def set_dotenv(path: Path, values: dict[str, str]) -> None:
    """Set KEY=VALUE lines in a .env file, keeping every other line as it was."""
    lines = path.read_text().splitlines() if path.exists() else []
    pending = dict(values)
    for i, line in enumerate(lines):
        key = line.split("=", 1)[0].strip().removeprefix("export ").strip()
        if "=" in line and not line.lstrip().startswith("#") and key in pending:
            lines[i] = f"{key}={pending.pop(key)}"
    lines += [f"{key}={value}" for key, value in pending.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)  # it holds an API key


def write_private(path: Path, text: str) -> None:
    # Created 0600 from the start: the password is never world-readable, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)


class Command(BaseCommand):
    help = (
        "First run with the embedded default: create the admin login, the project 'default' and an API key, "
        "print them once and write LLMOBSERVE_API_KEY / COLLECTOR_URL to .env. Does nothing when a user exists, "
        "when DATABASE_URL is set, or with --production."
    )

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--collector-url", default="http://127.0.0.1:8000", help="written to .env as COLLECTOR_URL")
        parser.add_argument("--production", action="store_true", help="never create anything (production start-up)")
        parser.add_argument("--dotenv", default=str(Path(settings.BASE_DIR) / ".env"), help="the .env file to update")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        if options["production"] or os.environ.get("DATABASE_URL"):
            self.stdout.write("bootstrap: production settings; no default login or key is created.")
            return
        first_run = Path(settings.VAR_DIR) / "first_run.txt"
        if User.objects.exists():
            if first_run.exists():
                self.stdout.write(f"bootstrap: already set up; the first-run login is in {first_run}")
            return
        password = secrets.token_urlsafe(12)
        with transaction.atomic():
            user = User.objects.create_superuser(USERNAME, "", password)
            project, _ = Project.objects.get_or_create(name=PROJECT)
            Membership.objects.get_or_create(project=project, user=user, defaults={"role": Membership.OWNER})
            _, raw_key = api_key_create(project_name=PROJECT, name="first run")
        url = options["collector_url"].rstrip("/")
        dotenv = Path(options["dotenv"])
        set_dotenv(dotenv, {"LLMOBSERVE_API_KEY": raw_key, "COLLECTOR_URL": url})
        write_private(first_run, f"url={url}/\nusername={USERNAME}\npassword={password}\n")
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "=" * 72,
                    "  llmobserve first run: shown once",
                    f"  Dashboard:  {url}/",
                    f"  Login:      {USERNAME} / {password}   (also in {first_run})",
                    f"  Project:    {PROJECT}",
                    f"  API key:    {raw_key}",
                    f"  Saved LLMOBSERVE_API_KEY and COLLECTOR_URL in {dotenv}",
                    "  Next: `make seed` in another terminal fills the dashboard with a week of data.",
                    "=" * 72,
                    "",
                ]
            )
        )
