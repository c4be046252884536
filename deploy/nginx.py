"""Start nginx in front of gunicorn: the `proxy` service of docker-compose.yml.

Fills deploy/nginx.conf.template's placeholders from the environment, writes
the result to NGINX_RUN_DIR/nginx.conf and replaces this process with nginx
in the foreground (so nginx is the container's PID 1 and gets its signals).

    NGINX_LISTEN    what nginx listens on           (default 8080; e.g. 127.0.0.1:8123)
    NGINX_UPSTREAM  where gunicorn listens          (default web:8000, compose's web service)
    NGINX_RUN_DIR   pid file, config, temp folders  (default /tmp/nginx)
    NGINX_BIN       the nginx program               (default: nginx on the PATH, else /usr/sbin/nginx)

`--check` tests the configuration (nginx -t) instead of starting.
docker-compose, scripts/smoke_production.sh and tests/reliability start it
the same way: `python deploy/nginx.py`.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().with_name("nginx.conf.template")
DEFAULTS = {"NGINX_LISTEN": "8080", "NGINX_UPSTREAM": "web:8000", "NGINX_RUN_DIR": "/tmp/nginx"}
# host:port, [v6]:port or a port; a unix socket as unix:/path.
_ADDRESS = re.compile(r"^(?:unix:/[^\s;{}]+|(?:[\w.-]+|\[[0-9a-fA-F:.]+\]):\d{1,5}|\d{1,5})$")


def settings(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    values = {name: environ.get(name) or default for name, default in DEFAULTS.items()}
    for name in ("NGINX_LISTEN", "NGINX_UPSTREAM"):
        if not _ADDRESS.match(values[name]):
            raise SystemExit(f"deploy/nginx.py: {name}={values[name]!r} is not host:port or a port")
    if not os.path.isabs(values["NGINX_RUN_DIR"]) or re.search(r"[\s;{}]", values["NGINX_RUN_DIR"]):
        raise SystemExit(f"deploy/nginx.py: NGINX_RUN_DIR={values['NGINX_RUN_DIR']!r} must be an absolute path")
    return values


def render(values: dict[str, str]) -> str:
    text = TEMPLATE.read_text()
    for placeholder, name in (("@LISTEN@", "NGINX_LISTEN"), ("@UPSTREAM@", "NGINX_UPSTREAM")):
        text = text.replace(placeholder, values[name])
    text = text.replace("@RUN_DIR@", values["NGINX_RUN_DIR"].rstrip("/"))
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise SystemExit(f"deploy/nginx.py: unfilled placeholders in {TEMPLATE.name}: {left}")
    return text


def nginx_binary(environ: dict[str, str] | os._Environ[str]) -> str:
    found = environ.get("NGINX_BIN") or shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(found, os.X_OK):
        raise SystemExit("deploy/nginx.py: nginx is not installed (Debian: apt-get install nginx)")
    return found


def main(argv: list[str]) -> int:
    values = settings(os.environ)
    run_dir = Path(values["NGINX_RUN_DIR"])
    run_dir.mkdir(parents=True, exist_ok=True)
    conf = run_dir / "nginx.conf"
    conf.write_text(render(values))
    args = [nginx_binary(os.environ), "-e", "stderr", "-p", str(run_dir), "-c", str(conf)]
    if "--check" in argv:
        args.append("-t")
    sys.stdout.flush()
    os.execv(args[0], args)
    return 1  # not reached


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
