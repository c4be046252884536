"""Slow clients cannot take ingest down: the production stack and `make run`'s server.

The attack (issue 14): connections that send `POST /events HTTP/1.1`, a
Host line, then one more header line every 5 s, never finishing.  Against
gunicorn's sync workers published directly, `workers + 1` of them answered 0
of 2 ingest tries in 30 s.  Here SLOW_CLIENTS of them (more than the stack's
gunicorn has threads: 2 workers x 4) are held open, reopened whenever the
server drops one, while a real SDK-shaped batch is posted with a real key
every 2 s; at least 9 of 10 posts must be stored, each within 3 s.  And each
slow connection must be cut once its header is late (nginx's
client_header_timeout and the front's HEADER_TIMEOUT, 10 s), so they cannot
pile up either.

The stack is started the way docker-compose.yml starts it (and
scripts/smoke_production.sh in CI): whatever compose publishes, with what it
sits in front of, its commands taken from the compose file, on loopback
ports; the database is the test's own.  Everything is bounded and on
127.0.0.1 only.  nginx missing: a skip, but a failure under CI=true.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import re
import select
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from projects.models import ApiKey, Project
from tests.insights.test_worker import database_url

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]

SLOW_CLIENTS = 20
SLOW_LINE_EVERY = 5.0
TRIES, TRY_EVERY, TRY_TIMEOUT = 10, 2.0, 3.0
HEADER_TIMEOUT = 10.0  # nginx's client_header_timeout, run.py's HEADER_TIMEOUT


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nginx_or_skip() -> None:
    if shutil.which("nginx") or os.access("/usr/sbin/nginx", os.X_OK):
        return
    message = "nginx is not installed (Debian: apt-get install nginx)"
    if IN_CI:
        pytest.fail(f"{message}; CI=true needs it (.ci/run installs it)")
    pytest.skip(message)


def server_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """What .env and compose give the server, pointed at the test's database."""
    env = {k: v for k, v in os.environ.items() if k not in {"CELERY_BROKER_URL", "DATABASE_URL", "PORT"}}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "llmobserve_site.settings",
            "DATABASE_URL": database_url(),
            "SECRET_KEY": f"test-{uuid.uuid4().hex}{uuid.uuid4().hex}",
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LLMOBSERVE_VAR_DIR": str(tmp_path / "var"),
            "STATIC_ROOT": str(tmp_path / "static"),
            "CELERY_BROKER_URL": "",
            "WEB_CONCURRENCY": "2",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


class Stack:
    """Processes started for one test; stopped (and their logs kept) on exit."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        self.procs.append((name, proc, log))
        return proc

    def logs(self) -> str:
        return "\n".join(f"----- {name}:\n{log.read_text(errors='replace')[-3000:]}" for name, _, log in self.procs)

    def check_alive(self) -> None:
        for name, proc, _ in self.procs:
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}\n{self.logs()}")

    def stop(self) -> None:
        for _, proc, _ in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 20
        for _, proc, _ in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def wait_healthy(self, port: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"nothing healthy on port {port} after {timeout:g} s\n{self.logs()}")


@contextmanager
def stack(tmp_path: Path) -> Iterator[Stack]:
    running = Stack(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def compose_command(service: str) -> list[str]:
    """The service's server command (the last step of `sh -c "a && exec b"`)."""
    cmd = SERVICES[service]["command"]
    cmd = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    if cmd[:2] == ["sh", "-c"]:
        cmd = shlex.split(re.split(r"&&|;", cmd[2])[-1])
        cmd = cmd[1:] if cmd[0] == "exec" else cmd
    return [str(cmd_part) for cmd_part in cmd]


def published_service() -> tuple[str, int]:
    """The service compose publishes, and its container port."""
    published = [(name, s) for name, s in SERVICES.items() if s.get("ports") and name not in {"postgres", "redis"}]
    assert len(published) == 1, [name for name, _ in published]
    name, service = published[0]
    return name, int(str(service["ports"][0]).rsplit(":", 1)[-1])


def start_compose_stack(running: Stack, tmp_path: Path) -> int:
    """What compose publishes, started as compose starts it; the port it answers on here."""
    name, _ = published_service()
    web_port = free_port()
    web = compose_command("web")
    assert web[0] == "gunicorn" and "0.0.0.0:8000" in web
    web = [str(BIN / "gunicorn"), *web[1:]]
    web[web.index("0.0.0.0:8000")] = f"127.0.0.1:{web_port}"
    running.start("web", web, server_env(tmp_path))
    if name == "web":  # gunicorn published directly (before issue 14)
        return web_port
    nginx_or_skip()
    proxy = compose_command(name)
    assert proxy[:2] == ["python", "deploy/nginx.py"], proxy
    proxy_port = free_port()
    env = server_env(tmp_path, **{k: str(v) for k, v in SERVICES[name].get("environment", {}).items()})
    assert env["NGINX_UPSTREAM"] == "web:8000" and env["NGINX_LISTEN"] == "8080"
    env.update(
        NGINX_LISTEN=f"127.0.0.1:{proxy_port}",
        NGINX_UPSTREAM=f"127.0.0.1:{web_port}",
        NGINX_RUN_DIR=str(tmp_path / "nginx"),
    )
    running.start("proxy", [sys.executable, *proxy[1:]], env)
    return proxy_port


# --------------------------------------------------------------------------- the attack


class SlowClients:
    """`count` connections each sending a request header one line every `every`
    seconds and never ending it; a connection the server drops (or answers) is
    counted, with how long it lived, and opened again."""

    def __init__(self, port: int, count: int, every: float = SLOW_LINE_EVERY) -> None:
        self.port, self.count, self.every = port, count, every
        self.stop = threading.Event()
        self.lifetimes: list[float] = []
        self.opened = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]

    def __enter__(self) -> SlowClients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            except OSError:
                self.stop.wait(0.2)
                continue
            opened = time.monotonic()
            with self.lock:
                self.opened += 1
            try:
                sock.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\n")
                line = 0
                while not self.stop.is_set():
                    readable, _, _ = select.select([sock], [], [], self.every)
                    if readable:  # answered (408) or closed: the server let go of it
                        sock.recv(65536)
                        with self.lock:
                            self.lifetimes.append(time.monotonic() - opened)
                        break
                    sock.sendall(f"X-Slow-{line}: {'a' * 8}\r\n".encode())
                    line += 1
            except OSError:
                with self.lock:
                    self.lifetimes.append(time.monotonic() - opened)
            finally:
                sock.close()


def ingest_once(port: int, key: str, timeout: float = TRY_TIMEOUT) -> tuple[bool, float, str]:
    """POST one event with the key; (stored, seconds, what happened)."""
    event = {
        "event_id": f"slow-{uuid.uuid4().hex}",
        "run_id": "slow-client-attack",
        "span_id": uuid.uuid4().hex[:16],
        "parent_span_id": None,
        "span_type": "llm",
        "name": "chat.completions.create",
        "provider": "openai",
        "model": "gpt-4o",
        "endpoint": "chat.completions.create",
        "input_tokens": 10,
        "output_tokens": 1,
        "latency_ms": 12.0,
        # An hour ago: the server keeps its default 90-day retention and refuses older events.
        "started_at": (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
        "status": "ok",
        "service": "attack-probe",
    }
    started = time.monotonic()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request(
            "POST",
            "/events",
            body=json.dumps({"events": [event]}),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        body = response.read()
        conn.close()
        stored = response.status == 200 and json.loads(body).get("accepted") == 1
        return stored, time.monotonic() - started, f"{response.status}"
    except (OSError, ValueError) as exc:
        return False, time.monotonic() - started, type(exc).__name__


def attack(port: int, key: str) -> dict[str, Any]:
    """Hold SLOW_CLIENTS slow connections while ingest is tried TRIES times."""
    tries: list[tuple[bool, float, str]] = []
    with SlowClients(port, SLOW_CLIENTS) as slow:
        time.sleep(1.5)  # every slow connection is open and sending
        for _ in range(TRIES):
            began = time.monotonic()
            tries.append(ingest_once(port, key))
            time.sleep(max(0.0, TRY_EVERY - (time.monotonic() - began)))
        # Let every first-round connection reach the header timeout.
        time.sleep(max(0.0, HEADER_TIMEOUT + 3 - (TRIES * TRY_EVERY)))
    return {"tries": tries, "lifetimes": list(slow.lifetimes), "opened": slow.opened}


def check_attack(result: dict[str, Any], label: str) -> None:
    tries = result["tries"]
    stored = [t for t in tries if t[0] and t[1] < TRY_TIMEOUT]
    summary = ", ".join(f"{what} {secs:.2f}s" for _, secs, what in tries)
    print(f"\n{label}: ingest stored {len(stored)}/{len(tries)} during the attack ({summary})")
    print(f"{label}: {result['opened']} slow connections opened, {len(result['lifetimes'])} cut by the server")
    assert len(stored) >= TRIES - 1, f"{label}: ingest answered {len(stored)} of {len(tries)} tries: {summary}"
    cut = result["lifetimes"]
    assert len(cut) >= SLOW_CLIENTS, (
        f"{label}: only {len(cut)} of {SLOW_CLIENTS} slow connections were ever cut; the server holds them open"
    )
    assert max(cut) < HEADER_TIMEOUT + 3, f"{label}: a slow connection lived {max(cut):.1f} s"


def load_run() -> Any:
    """scripts/run.py as a module (scripts/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("llmobserve_run", ROOT / "scripts" / "run.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def committed_key(transactional_db) -> str:  # type: ignore[no-untyped-def]
    project = Project.objects.create(name=f"slow-{uuid.uuid4().hex[:8]}")
    return ApiKey.generate(project=project)[1]


# --------------------------------------------------------------------------- the tests


@pytest.mark.slow
def test_production_stack_keeps_ingest_up_under_slow_clients(tmp_path, committed_key) -> None:  # type: ignore[no-untyped-def]
    with stack(tmp_path) as running:
        port = start_compose_stack(running, tmp_path)
        running.wait_healthy(port)
        stored, _, what = ingest_once(port, committed_key)
        assert stored, f"ingest does not work even without an attack: {what}\n{running.logs()}"
        result = attack(port, committed_key)
        running.check_alive()
    check_attack(result, f"production ({published_service()[0]} published)")


@pytest.mark.slow
def test_make_run_server_keeps_ingest_up_under_slow_clients(tmp_path, committed_key) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    with stack(tmp_path) as running:
        running.start(
            "run.py",
            [
                sys.executable,
                "scripts/run.py",
                "--no-worker",
                "--port",
                str(port),
                "--dotenv",
                str(tmp_path / ".env"),
            ],
            server_env(tmp_path),
        )
        running.wait_healthy(port)
        result = attack(port, committed_key)
        running.check_alive()
    check_attack(result, "make run")


def test_the_limits_agree() -> None:
    """nginx, `make run`'s front and the collector cap bodies and time headers alike."""
    from django.conf import settings

    template = (ROOT / "deploy" / "nginx.conf.template").read_text()

    def directive(name: str) -> str:
        found = re.findall(rf"^\s*{name}\s+([^;]+);", template, re.M)
        assert len(found) == 1, (name, found)
        return found[0].strip()

    assert directive("client_max_body_size") == "5m" and settings.INGEST_MAX_BYTES == 5 * 1024 * 1024
    assert directive("client_body_buffer_size") == "5m"  # whole bodies in memory: no temp files
    assert directive("client_header_timeout") == f"{HEADER_TIMEOUT:g}s"
    run = load_run()
    assert run.MAX_BODY_BYTES == settings.INGEST_MAX_BYTES
    assert run.HEADER_TIMEOUT == HEADER_TIMEOUT
    assert f"{run.BODY_IDLE_TIMEOUT:g}s" == directive("client_body_timeout")
    # gunicorn is never what compose publishes; nginx is, and it reads from gunicorn's port.
    name, container_port = published_service()
    assert name == "proxy" and container_port == 8080
    assert "ports" not in SERVICES["web"]


# --------------------------------------------------------------------------- `make run`'s front, in-process


def test_the_front_passes_whole_requests_and_refuses_bad_ones() -> None:
    """Against a stub upstream that answers with the request it received."""
    import asyncio

    run = load_run()
    received: list[bytes] = []

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length: (\d+)", head)
        body = await reader.readexactly(int(length.group(1))) if length else b""
        received.append(head + body)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    async def ask(port: int, raw: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return answer

    async def scenario() -> dict[str, bytes]:
        up = await asyncio.start_server(upstream, "127.0.0.1", 0)
        front = await run.Front(up.sockets[0].getsockname()[:2]).start("127.0.0.1", 0)
        port = front.sockets[0].getsockname()[1]
        big = run.MAX_BODY_BYTES + 1
        answers = {
            "plain": await ask(
                port,
                b"POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\nConnection: keep-alive, X-Drop\r\n"
                b"X-Drop: 1\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-For: 1.2.3.4\r\nExpect: 100-continue\r\n\r\nabcd",
            ),
            "chunked": await ask(
                port,
                b"POST /events HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
            ),
            "too_large": await ask(port, b"POST /events HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % big),
            "smuggled": await ask(
                port, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            ),
            "huge_header": await ask(port, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (run.MAX_HEADER_BYTES + 10)),
            "garbage": await ask(port, b"HELLO\r\n\r\n"),
        }
        front.close()
        up.close()
        return answers

    answers = asyncio.run(scenario())
    assert answers["plain"].startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK")
    assert answers["chunked"].startswith(b"HTTP/1.1 200 OK")
    plain, chunked = received
    assert plain.endswith(b"\r\n\r\nabcd") and b"Content-Length: 4" in plain and b"Connection: close" in plain
    assert b"X-Drop" not in plain and b"keep-alive" not in plain and b"Expect" not in plain
    assert b"X-Real-IP: 127.0.0.1" in plain and b"6.6.6.6" not in plain
    assert b"X-Forwarded-For: 1.2.3.4, 127.0.0.1" in plain
    assert chunked.endswith(b"\r\n\r\nabcde") and b"Content-Length: 5" in chunked and b"chunked" not in chunked
    assert answers["too_large"].startswith(b"HTTP/1.1 413 ") and b'"error"' in answers["too_large"]
    assert answers["smuggled"].startswith(b"HTTP/1.1 400 ")
    assert answers["huge_header"].startswith(b"HTTP/1.1 431 ")
    assert answers["garbage"].startswith(b"HTTP/1.1 400 ")
    assert len(received) == 2  # nothing refused reached the upstream
