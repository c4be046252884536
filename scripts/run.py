"""`make run`: serve the collector and dashboard, and run the periodic insight job.

Starts two processes and stops both together:
- Django's server (static files through WhiteNoise) on --host:--port;
- one Celery worker with an embedded beat (`-B`), which runs the insight job
  every INSIGHTS_INTERVAL_SECONDS (default 600).  With no CELERY_BROKER_URL
  the broker is kombu's filesystem transport under var/celery/ and beat's
  schedule file is var/celerybeat-schedule, so nothing else needs
  installing; with CELERY_BROKER_URL=redis://… the same worker uses Redis.

Ctrl-C (or SIGTERM) stops both; if either exits on its own, the other is
stopped too and its exit status is returned.  --no-worker serves the web
only (e.g. when workers run elsewhere).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default="8000")
    parser.add_argument("--no-worker", action="store_true", help="do not start the Celery worker and beat")
    args = parser.parse_args()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "llmobserve_site.settings"}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop_all(*_: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()  # Celery: warm shutdown (finishes the task in hand)

    signal.signal(signal.SIGTERM, stop_all)
    # First run with the embedded default: a login, a project and an API key,
    # printed once and saved to .env (a no-op afterwards and in production).
    local_host = "127.0.0.1" if args.host in {"0.0.0.0", "::", ""} else args.host
    subprocess.run(
        [sys.executable, "manage.py", "bootstrap", "--collector-url", f"http://{local_host}:{args.port}"],
        cwd=ROOT,
        env=env,
        check=False,
    )
    procs["web"] = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"{args.host}:{args.port}", "--noreload"], cwd=ROOT, env=env
    )
    if not args.no_worker:
        procs["worker"] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "llmobserve_site",
                "worker",
                "-B",
                "--loglevel=INFO",
                "--concurrency=1",
            ],
            cwd=ROOT,
            env=env,
        )
    status = 0
    try:
        while not stopping:
            for name, proc in procs.items():
                code = proc.poll()
                if code is not None:
                    print(f"run.py: {name} exited with status {code}; stopping", file=sys.stderr)
                    status = code or 1
                    stop_all()
                    break
            time.sleep(0.5)
    except KeyboardInterrupt:
        # The terminal sent SIGINT to the whole process group; make sure both go.
        stop_all()
    deadline = time.monotonic() + 30
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return status


if __name__ == "__main__":
    raise SystemExit(main())
