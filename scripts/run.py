"""`make run`: serve the collector and dashboard on one port.

Runs Django's server (static files through WhiteNoise).  The insight worker
joins it here once the Celery app lands (issue 4).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default="8000")
    args = parser.parse_args()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "llmobserve_site.settings"}
    web = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"{args.host}:{args.port}", "--noreload"], cwd=ROOT, env=env
    )
    try:
        return web.wait()
    except KeyboardInterrupt:
        web.terminate()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
