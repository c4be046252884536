"""The deploy and newcomer traps of issue 14, each reproduced the way a user meets it.

- `make test` flushed db 15 (and the smoke db 14) of whatever Redis listens on localhost;
- with `ALLOWED_HOSTS=observe.example.com`, compose's web healthcheck got 400, so
  worker and beat (waiting for a healthy web) never started;
- a later `make run` without PORT= served 8000 while .env pointed at the first port;
- Ctrl-C on `make run` ended with "worker exited with status 1" and make's "Error 1";
- compose built the one image three times;
- beat's healthcheck only checked that its schedule file existed (a hung or dead beat passed);
- the seed stamped all of today's runs within the minute it ran ("+1159 % vs yesterday").

Processes are started the way compose (or `make run`) starts them, on
127.0.0.1 with the test's database; Redis is touched only under a key prefix
of the test's own (tests/insights/test_worker.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pty
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.insights.test_worker import REDIS_URL, celery_command, redis_keys_of_our_own, redis_or_skip
from tests.reliability.test_slow_clients import (
    BIN,
    ROOT,
    SERVICES,
    compose_command,
    free_port,
    load_run,
    nginx_or_skip,
    server_env,
    stack,
)

PUBLIC_HOST = "observe.example.com"


def healthcheck_command(service: str, ports: dict[int, int], paths: dict[str, str] | None = None) -> list[str]:
    """The service's compose healthcheck as this machine runs it: container ports
    mapped to loopback ones, container paths to the test's, `python` this one."""
    test = list(SERVICES[service]["healthcheck"]["test"])
    kind, args = test[0], test[1:]

    def local(text: str) -> str:
        for container, here in ports.items():
            text = text.replace(f"127.0.0.1:{container}", f"127.0.0.1:{here}")
        for container_path, here_path in (paths or {}).items():
            text = text.replace(container_path, here_path)
        return text

    if kind == "CMD-SHELL":
        args = shlex.split(args[0].replace("$$HOSTNAME", socket.gethostname()))
    args = [local(arg) for arg in args]
    if args[0] == "python":
        args[0] = sys.executable
    return args


# --------------------------------------------------------------------------- Redis


def test_nothing_flushes_a_redis_database() -> None:
    """Tests and scripts delete only the Redis keys they created."""
    words = re.compile("flush" + "(db|all)", re.I)  # spelled apart: this file is searched too
    places = [ROOT / "Makefile", ROOT / ".ci" / "run", *sorted((ROOT / "scripts").glob("*"))]
    places += sorted((ROOT / "tests").rglob("*.py")) + sorted((ROOT / "observe_sdk" / "tests").rglob("*.py"))
    offenders = [str(p.relative_to(ROOT)) for p in places if p.is_file() and words.search(p.read_text())]
    assert not offenders, f"these flush a Redis database: {offenders}"


# --------------------------------------------------------------------------- healthchecks


@pytest.mark.slow
def test_compose_healthchecks_pass_with_a_public_allowed_host(tmp_path, transactional_db) -> None:  # type: ignore[no-untyped-def]
    """.env says ALLOWED_HOSTS=observe.example.com: the web (and proxy) healthchecks still pass."""
    env = server_env(tmp_path, ALLOWED_HOSTS=PUBLIC_HOST, WEB_CONCURRENCY="1")
    web_port, proxy_port = free_port(), free_port()
    with stack(tmp_path) as running:
        web = compose_command("web")
        web = [str(BIN / "gunicorn"), *web[1:]]
        web[web.index("0.0.0.0:8000")] = f"127.0.0.1:{web_port}"
        running.start("web", web, env)
        deadline = time.monotonic() + 60
        while True:  # up: any answer at all (Django says 400 to the Host 127.0.0.1)
            running.check_alive()
            try:
                socket.create_connection(("127.0.0.1", web_port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, running.logs()
                time.sleep(0.3)
        web_check = subprocess.run(
            healthcheck_command("web", {8000: web_port}), env=env, capture_output=True, text=True, timeout=30
        )
        assert web_check.returncode == 0, f"web healthcheck failed: {web_check.stderr[-2000:]}"

        nginx_or_skip()
        assert "proxy" in SERVICES, "compose publishes gunicorn itself; no proxy service"
        proxy_env = {**env, "NGINX_LISTEN": f"127.0.0.1:{proxy_port}", "NGINX_UPSTREAM": f"127.0.0.1:{web_port}"}
        proxy_env["NGINX_RUN_DIR"] = str(tmp_path / "nginx")
        running.start("proxy", [sys.executable, *compose_command("proxy")[1:]], proxy_env)
        deadline = time.monotonic() + 30
        while True:
            proxy_check = subprocess.run(
                healthcheck_command("proxy", {8080: proxy_port}), env=env, capture_output=True, text=True, timeout=30
            )
            if proxy_check.returncode == 0:
                break
            running.check_alive()
            assert time.monotonic() < deadline, f"proxy healthcheck failed: {proxy_check.stderr[-2000:]}"
            time.sleep(0.5)


def test_worker_and_beat_wait_for_the_healthy_web() -> None:
    """The chain the healthcheck gates: worker, beat and proxy start once web is healthy."""
    for service in ("worker", "beat", "proxy"):
        assert SERVICES[service]["depends_on"]["web"]["condition"] == "service_healthy"


@pytest.mark.redis
@pytest.mark.slow
def test_beat_healthcheck_fails_when_beat_is_hung_or_gone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Compose's beat healthcheck passes while beat runs and fails once beat stops ticking or dies."""
    redis_or_skip()
    cmd = compose_command("beat")
    assert cmd[:4] == ["celery", "-A", "llmobserve_site", "beat"]
    beat_dir = tmp_path / "beat"
    beat_dir.mkdir()
    args = [arg.replace("/app/beat", str(beat_dir)) for arg in cmd[3:]]
    env = server_env(tmp_path, CELERY_BROKER_URL=REDIS_URL)

    def check(prefix: str) -> subprocess.CompletedProcess[str]:
        argv = healthcheck_command("beat", {}, {"/app/beat": str(beat_dir)})
        if argv[:3] == ["celery", "-A", "llmobserve_site"]:
            argv = [a if a != "10" or argv[i - 1] != "--timeout" else "3" for i, a in enumerate(argv)]
            argv = celery_command(*argv[3:], key_prefix=prefix)
        return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    with redis_keys_of_our_own(REDIS_URL) as prefix, stack(tmp_path) as running:
        beat = running.start("beat", celery_command(*args, key_prefix=prefix), env)
        deadline = time.monotonic() + 45
        while (result := check(prefix)).returncode != 0:
            running.check_alive()
            assert time.monotonic() < deadline, f"beat never healthy: {result.stdout}{result.stderr}\n{running.logs()}"
            time.sleep(1)
        beat.send_signal(signal.SIGSTOP)  # hung: alive, schedule file in place, no tick, no answer
        try:
            hung = check(prefix)
        finally:
            beat.send_signal(signal.SIGCONT)
        beat.terminate()
        beat.wait(timeout=30)
        gone = check(prefix)
    assert list(beat_dir.glob("celerybeat-schedule*")), "beat wrote no schedule file"
    assert hung.returncode != 0, f"a stopped beat passed its healthcheck: {hung.stdout}"
    assert gone.returncode != 0, f"a dead beat passed its healthcheck: {gone.stdout}"


def test_compose_builds_the_image_once() -> None:
    builders = [name for name, service in SERVICES.items() if "build" in service]
    assert builders == ["web"], f"services that build: {builders}"
    image = SERVICES["web"]["image"]
    for name in ("proxy", "worker", "beat"):
        assert SERVICES[name]["image"] == image and "build" not in SERVICES[name]
        assert SERVICES[name].get("pull_policy") == "never", f"{name} would be pulled from a registry"


# --------------------------------------------------------------------------- make run


def make_run_line(*make_args: str) -> str:
    out = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", "run", *make_args],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k not in {"PORT", "HOST", "RUN_ARGS", "MAKEFLAGS"}},
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    lines = [line for line in out.splitlines() if "scripts/run.py" in line]
    assert len(lines) == 1, out
    return lines[0]


def test_make_run_passes_a_port_only_when_given() -> None:
    assert "--port" not in make_run_line()
    assert "--port 8123" in make_run_line("PORT=8123")


@pytest.mark.slow
def test_make_run_serves_the_port_dotenv_remembers(tmp_path, transactional_db) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"# mine\nLLMOBSERVE_API_KEY=lo_x\nCOLLECTOR_URL=http://127.0.0.1:{port}\n")
    with stack(tmp_path) as running:
        running.start(
            "run.py", [sys.executable, "scripts/run.py", "--no-worker", "--dotenv", str(dotenv)], server_env(tmp_path)
        )
        running.wait_healthy(port, timeout=60)
    assert dotenv.read_text() == f"# mine\nLLMOBSERVE_API_KEY=lo_x\nCOLLECTOR_URL=http://127.0.0.1:{port}\n"


def test_a_new_port_is_remembered_and_a_remote_collector_left_alone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    run = load_run()
    dotenv = tmp_path / ".env"

    def url(port: int) -> str:
        return f"http://127.0.0.1:{port}"

    assert run.choose_port(None, dotenv, url) == 8000  # no .env yet
    dotenv.write_text("DEBUG=1\nCOLLECTOR_URL=http://127.0.0.1:8123\n")
    assert run.choose_port(None, dotenv, url) == 8123
    assert run.choose_port(9001, dotenv, url) == 9001
    assert dotenv.read_text() == "DEBUG=1\nCOLLECTOR_URL=http://127.0.0.1:9001\n"
    assert run.choose_port(None, dotenv, url) == 9001
    dotenv.write_text("COLLECTOR_URL=https://observe.example.com\n")  # the SDK's target, not ours
    assert run.choose_port(None, dotenv, url) == 8000
    assert run.choose_port(9002, dotenv, url) == 9002
    assert dotenv.read_text() == "COLLECTOR_URL=https://observe.example.com\n"


@pytest.mark.slow
def test_ctrl_c_stops_make_run_cleanly_with_status_0(tmp_path, transactional_db) -> None:  # type: ignore[no-untyped-def]
    """In a terminal (a pty, an interactive shell with job control), Ctrl-C on
    `make run` stops the server and the worker, and make's status is 0."""
    port = free_port()
    env = server_env(tmp_path, TERM="dumb", PS1="$ ")
    env.pop("MAKEFLAGS", None)
    env.pop("MAKELEVEL", None)
    command = f"make -o .venv/.installed run PORT={port} RUN_ARGS='--dotenv {tmp_path}/.env'\n"
    pid, fd = pty.fork()
    if pid == 0:  # the child: an interactive shell in the repo, as a user's terminal
        os.chdir(ROOT)
        os.execve("/bin/bash", ["bash", "--norc", "--noprofile", "-i"], env)
    output = b""

    def read_until(pattern: bytes, timeout: float) -> bool:
        nonlocal output
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, output):
                return True
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    output += os.read(fd, 65536)
                except OSError:
                    return bool(re.search(pattern, output))
        return bool(re.search(pattern, output))

    try:
        os.write(fd, command.encode())
        assert read_until(rb"celery@\S+ ready", 90), output.decode(errors="replace")[-4000:]
        deadline = time.monotonic() + 30
        while True:  # and the web answers
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            assert time.monotonic() < deadline, output.decode(errors="replace")[-4000:]
            read_until(rb"$^", 0.5)
        time.sleep(1)
        os.write(fd, b"\x03")  # Ctrl-C, as the terminal sends it
        assert read_until(rb"run\.py: stopped|make: \*\*\*", 60), output.decode(errors="replace")[-4000:]
        os.write(fd, b"echo MAKE_STATUS=$?\n")
        assert read_until(rb"MAKE_STATUS=\d+", 60), output.decode(errors="replace")[-4000:]
    finally:
        with contextlib.suppress(OSError):
            os.write(fd, b"exit\n")
        deadline = time.monotonic() + 20
        reaped = False
        while not reaped and time.monotonic() < deadline:
            reaped = os.waitpid(pid, os.WNOHANG) != (0, 0)
            if not reaped:
                with contextlib.suppress(OSError):  # keep the pty drained
                    if select.select([fd], [], [], 0.2)[0]:
                        output += os.read(fd, 65536)
        if not reaped:  # the shell is still there: end it (and what it runs)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    text = output.decode(errors="replace")
    status = re.findall(r"MAKE_STATUS=(\d+)", text)[-1]
    assert status == "0", f"make run ended with status {status} after Ctrl-C:\n{text[-3000:]}"
    assert "exited with status" not in text and "Error" not in text, text[-3000:]
    with pytest.raises(OSError):  # nothing left listening
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


# --------------------------------------------------------------------------- seed


def test_seed_spreads_todays_runs_from_midnight_up_to_now(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Each run's offset (the seed's backdating attribute), as the seed drives its app."""
    import llmobserve

    from tests.seed.test_seed import load_seed

    seed = load_seed()
    for name in ("OPENAI_API_KEY", "PINECONE_API_KEY", "LLMOBSERVE_API_KEY", "COLLECTOR_URL"):
        monkeypatch.delenv(name, raising=False)
    shifts: list[float] = []

    @contextlib.contextmanager
    def run(**attrs: Any):  # type: ignore[no-untyped-def]
        shifts.append(float(attrs.get(seed.SHIFT_ATTR, 0.0)))

        class Current:
            run_id = f"r{len(shifts)}"

        yield Current()

    monkeypatch.setattr(llmobserve, "run", run)
    monkeypatch.setattr(llmobserve, "flush", lambda timeout=5.0: True)
    monkeypatch.setattr(seed.SupportBot, "handle", lambda self, ticket, day: "")
    args = seed.parse_args(["--days", "2", "--runs-per-day", "40", "--dotenv", str(tmp_path / ".env")])
    now = dt.datetime.now(dt.UTC)
    seed.drive(args, seed.SeedResult())
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    into_today = (now - midnight).total_seconds()
    history, today = shifts[:40], shifts[40:]
    assert len(today) == 40 and all(s > 86400 for s in history)
    # Every one of today's runs lands today (UTC), none in the future...
    assert all(0 <= s <= into_today + 60 for s in today), (min(today), max(today), into_today)
    # ...and they are spread over the day so far, not stamped all in the minute the seed ran.
    if into_today > 3600:
        assert max(today) - min(today) > 0.5 * into_today, (min(today), max(today), into_today)
        assert sum(s > 0.5 * into_today for s in today) >= 8  # some from the first half of the day
