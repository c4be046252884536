"""`make run`: serve the collector and dashboard, and run the periodic insight job.

Three parts, stopped together:
- gunicorn with the production settings (deploy/gunicorn.conf.py: gthread
  workers), here one worker of 8 threads on a loopback socket this script
  opens and hands over (static files through WhiteNoise);
- in this process, a small front on --host:--port that does for `make run`
  what nginx does in production (deploy/nginx.conf.template): it reads each
  request whole (the header within 10 s, a body of at most 5 MiB with no 10 s
  pause, 60 s in all) before gunicorn sees it, then passes gunicorn's answer
  back and closes the connection.  A client that sends slowly, or never
  finishes, costs the front a coroutine and gunicorn nothing;
- one Celery worker with an embedded beat (`-B`), which runs the insight job
  every INSIGHTS_INTERVAL_SECONDS (default 600).  With no CELERY_BROKER_URL
  the broker is kombu's filesystem transport under var/celery/, so nothing
  else needs installing; with CELERY_BROKER_URL=redis://… it uses Redis.

The port: --port; without it, the port of COLLECTOR_URL in .env when that
names this machine (the first `make run` wrote it there), else 8000.  A
--port other than .env's rewrites COLLECTOR_URL, so `make seed` and the next
`make run` follow it.

Ctrl-C (or SIGTERM) stops everything and exits 0.  Started from a terminal
(as `make run` is), the script takes the terminal's foreground for its own
process group, so Ctrl-C reaches it and its children but not make, which then
sees a clean exit.  If a part exits on its own, the others are stopped and
its exit status is returned.  --no-worker serves the web only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 8000
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0", "::"})

# The front's limits: the same as nginx's in deploy/nginx.conf.template.
HEADER_TIMEOUT = 10.0  # the request line and headers, all of them (client_header_timeout)
BODY_IDLE_TIMEOUT = 10.0  # longest pause while a body arrives (client_body_timeout)
REQUEST_TIMEOUT = 60.0  # the whole request, body included
SEND_TIMEOUT = 10.0  # longest pause while the client reads the answer (send_timeout)
UPSTREAM_TIMEOUT = 120.0  # longest pause in gunicorn's answer
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 5 * 1024 * 1024  # settings.INGEST_MAX_BYTES (client_max_body_size 5m)
MAX_CONNECTIONS = 1000
# Not passed on: hop-by-hop headers, the framing the front redoes, and the
# client addresses the front sets itself.
DROPPED_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
        b"content-length",
        b"x-real-ip",
    }
)
_TOKEN = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_REQUEST_LINE = re.compile(rb"^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) HTTP/(1\.[01])$")
REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class Reject(Exception):
    """An answer the front gives itself, then closes the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_head(head: bytes) -> tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]]]:
    """The request line and headers of `head` (CRLF-separated, ending in an empty line)."""
    lines = head.split(b"\r\n")
    match = _REQUEST_LINE.match(lines[0])
    if not match:
        raise Reject(400, "malformed request line")
    method, target, version = match.groups()
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.match(name):
            raise Reject(400, "malformed header line")
        if b"\r" in value or b"\n" in value or b"\0" in value:
            raise Reject(400, "malformed header value")
        headers.append((name, value.strip(b" \t")))
    return method, target, version, headers


def body_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """Content-Length, or None for a chunked body."""
    lengths = {value for name, value in headers if name.lower() == b"content-length"}
    codings = [value for name, value in headers if name.lower() == b"transfer-encoding"]
    if codings:
        if lengths:
            raise Reject(400, "both Content-Length and Transfer-Encoding")
        if b",".join(codings).strip().lower() != b"chunked":
            raise Reject(501, "only the chunked transfer coding is understood")
        return None
    if not lengths:
        return 0
    if len(lengths) > 1 or not next(iter(lengths)).isdigit():
        raise Reject(400, "bad Content-Length")
    length = int(next(iter(lengths)))
    if length > MAX_BODY_BYTES:
        raise Reject(413, f"body over {MAX_BODY_BYTES} bytes")
    return length


class Front:
    """The buffering front: whole requests to `upstream`, answers back, one request per connection."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.connections = 0

    async def start(self, host: str, port: int) -> asyncio.Server:
        return await asyncio.start_server(
            self.handle, host or None, port, limit=MAX_HEADER_BYTES, backlog=1024, reuse_address=True
        )

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.connections > MAX_CONNECTIONS:
                await self._answer(writer, 503, "too many connections; retry later")
                return
            await self._serve(reader, writer)
        except Reject as exc:
            await self._answer(writer, exc.status, str(exc))
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client went away or stopped reading
        finally:
            self.connections -= 1
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REQUEST_TIMEOUT
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_TIMEOUT)
        except TimeoutError:
            raise Reject(408, f"the request header did not arrive within {HEADER_TIMEOUT:g} s") from None
        except asyncio.LimitOverrunError:
            raise Reject(431, f"request header over {MAX_HEADER_BYTES} bytes") from None
        method, target, version, headers = parse_head(head)
        length = body_length(headers)
        expects = any(n.lower() == b"expect" and v.lower() == b"100-continue" for n, v in headers)
        if expects and version == b"1.1" and length != 0:
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if length is None:
            body = await self._read_chunked(reader, deadline)
        else:
            body = await self._read_exactly(reader, length, deadline)
        await self._forward(writer, method, target, version, headers, body)

    async def _read_exactly(self, reader: asyncio.StreamReader, length: int, deadline: float) -> bytes:
        loop = asyncio.get_running_loop()
        parts: list[bytes] = []
        left = length
        while left:
            wait = min(BODY_IDLE_TIMEOUT, deadline - loop.time())
            if wait <= 0:
                raise Reject(408, f"the request did not arrive within {REQUEST_TIMEOUT:g} s")
            try:
                part = await asyncio.wait_for(reader.read(min(left, 65536)), wait)
            except TimeoutError:
                raise Reject(408, "the request body stalled") from None
            if not part:
                raise asyncio.IncompleteReadError(b"".join(parts), length)
            parts.append(part)
            left -= len(part)
        return b"".join(parts)

    async def _read_line(self, reader: asyncio.StreamReader, deadline: float) -> bytes:
        wait = min(BODY_IDLE_TIMEOUT, deadline - asyncio.get_running_loop().time())
        if wait <= 0:
            raise Reject(408, f"the request did not arrive within {REQUEST_TIMEOUT:g} s")
        try:
            return await asyncio.wait_for(reader.readuntil(b"\r\n"), wait)
        except TimeoutError:
            raise Reject(408, "the request body stalled") from None
        except asyncio.LimitOverrunError:
            raise Reject(400, "malformed chunked body") from None

    async def _read_chunked(self, reader: asyncio.StreamReader, deadline: float) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size_line = (await self._read_line(reader, deadline)).split(b";", 1)[0].strip()
            if not size_line or not all(c in b"0123456789abcdefABCDEF" for c in size_line) or len(size_line) > 16:
                raise Reject(400, "malformed chunked body")
            size = int(size_line, 16)
            if size == 0:
                while (await self._read_line(reader, deadline)) != b"\r\n":
                    pass  # trailers: dropped
                return b"".join(parts)
            total += size
            if total > MAX_BODY_BYTES:
                raise Reject(413, f"body over {MAX_BODY_BYTES} bytes")
            chunk = await self._read_exactly(reader, size + 2, deadline)
            if chunk[-2:] != b"\r\n":
                raise Reject(400, "malformed chunked body")
            parts.append(chunk[:-2])

    async def _forward(
        self,
        writer: asyncio.StreamWriter,
        method: bytes,
        target: bytes,
        version: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> None:
        listed = {
            token.strip().lower()
            for name, value in headers
            if name.lower() == b"connection"
            for token in value.split(b",")
        }
        peer = writer.get_extra_info("peername")
        client = (peer[0] if isinstance(peer, tuple) else "").encode() or b"unknown"
        # The client's HTTP version: gunicorn frames its answer for the client.
        lines = [method + b" " + target + b" HTTP/" + version]
        forwarded_for = b""
        for name, value in headers:
            lowered = name.lower()
            if lowered in DROPPED_HEADERS or lowered in listed:
                continue
            if lowered == b"x-forwarded-for":
                forwarded_for += (b", " if forwarded_for else b"") + value
                continue
            lines.append(name + b": " + value)
        if body or method in (b"POST", b"PUT", b"PATCH"):
            lines.append(b"Content-Length: " + str(len(body)).encode())
        lines.append(b"X-Forwarded-For: " + (forwarded_for + b", " if forwarded_for else b"") + client)
        lines.append(b"X-Real-IP: " + client)
        lines.append(b"Connection: close")
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self.upstream), 5.0)
        except (OSError, TimeoutError):
            raise Reject(502, "the collector is not answering; retry shortly") from None
        try:
            up_writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
            await asyncio.wait_for(up_writer.drain(), UPSTREAM_TIMEOUT)
            relayed = 0
            while True:
                try:
                    data = await asyncio.wait_for(up_reader.read(65536), UPSTREAM_TIMEOUT)
                except (OSError, TimeoutError):
                    data = b""
                if not data:
                    break
                writer.write(data)
                relayed += len(data)
                await asyncio.wait_for(writer.drain(), SEND_TIMEOUT)
            if not relayed:
                raise Reject(502, "the collector closed the connection without an answer; retry shortly")
        finally:
            up_writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, status: int, message: str) -> None:
        body = json.dumps({"error": message}).encode() + b"\n"
        head = (
            f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        with contextlib.suppress(OSError, TimeoutError):
            writer.write(head + body)
            await asyncio.wait_for(writer.drain(), SEND_TIMEOUT)


# --------------------------------------------------------------------------- the port


def read_dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                name, _, value = line.partition("=")
                values[name.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


def remembered_port(dotenv: Path) -> int | None:
    """The port of .env's COLLECTOR_URL when it names this machine."""
    url = read_dotenv(dotenv).get("COLLECTOR_URL", "")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.hostname in LOCAL_HOSTS and port:
        return port
    return None


def remember_port(dotenv: Path, url: str) -> None:
    """Point .env's COLLECTOR_URL at `url`, keeping every other line."""
    lines = dotenv.read_text().splitlines()
    out = [f"COLLECTOR_URL={url}" if re.match(r"\s*(export\s+)?COLLECTOR_URL\s*=", line) else line for line in lines]
    dotenv.write_text("\n".join(out) + "\n")


def choose_port(requested: int | None, dotenv: Path, local_url: Callable[[int], str]) -> int:
    remembered = remembered_port(dotenv)
    if requested is None:
        return remembered or DEFAULT_PORT
    if remembered is not None and remembered != requested:
        remember_port(dotenv, local_url(requested))
        print(f"run.py: COLLECTOR_URL in {dotenv.name} now {local_url(requested)} (was port {remembered})")
    return requested


# --------------------------------------------------------------------------- the terminal


def take_terminal() -> Callable[[], None]:
    """Started in a terminal's foreground: move this process into a process
    group of its own and make that group the foreground one, so Ctrl-C reaches
    this script and its children, not make.  Returns what gives it back."""
    try:
        fd = sys.stdin.fileno()
        if not os.isatty(fd) or os.tcgetpgrp(fd) != os.getpgrp():
            return _nothing
        before = os.getpgrp()
        os.setpgid(0, 0)
        _set_foreground(fd, os.getpgrp())
    except (OSError, ValueError):
        return _nothing
    return lambda: _set_foreground(fd, before)


def _nothing() -> None:
    pass


def _set_foreground(fd: int, pgrp: int) -> None:
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # a background group may not, otherwise
    try:
        os.tcsetpgrp(fd, pgrp)
    except OSError:
        pass
    finally:
        signal.signal(signal.SIGTTOU, previous)


# --------------------------------------------------------------------------- the processes


def listening_socket(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(1024)
    return sock


def raise_file_limit() -> None:
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 4 * MAX_CONNECTIONS if hard == resource.RLIM_INFINITY else min(hard, 4 * MAX_CONNECTIONS)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, OSError, ValueError):
        pass


async def supervise(args: argparse.Namespace, port: int, env: dict[str, str], *, own_terminal: bool) -> int:
    loop = asyncio.get_running_loop()
    backend = listening_socket()
    upstream = backend.getsockname()[:2]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    procs["web"] = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(ROOT / "deploy" / "gunicorn.conf.py"),
            "llmobserve_site.wsgi:application",
            "--bind",
            f"fd://{backend.fileno()}",
            "--workers",
            "1",
            "--threads",
            "8",
        ],
        cwd=ROOT,
        env=env,
        pass_fds=(backend.fileno(),),
    )
    backend.close()
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
    stopping = asyncio.Event()
    interrupted = False

    def on_signal(signum: int) -> None:
        nonlocal interrupted
        # Ctrl-C in our terminal reached the children too (one process group);
        # any other signal reached this script only.
        interrupted = own_terminal and signum == signal.SIGINT
        stopping.set()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, on_signal, signum)
    status = 0
    server: asyncio.Server | None = None
    try:
        server = await Front(upstream).start(args.host, port)
        print(f"run.py: serving http://{_display(args.host)}:{port}/ (Ctrl-C stops)", flush=True)
        while not stopping.is_set():
            exited = [(name, proc.returncode) for name, proc in procs.items() if proc.poll() is not None]
            if exited:
                await asyncio.sleep(0.5)  # a Ctrl-C that stopped it is handled first
                if stopping.is_set():
                    break
                name, code = exited[0]
                print(f"run.py: {name} exited with status {code}; stopping", file=sys.stderr)
                status = code or 1
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), 0.5)
    except OSError as exc:
        print(f"run.py: cannot listen on {args.host}:{port}: {exc}", file=sys.stderr)
        status = 1
    finally:
        if server is not None:
            server.close()
        await loop.run_in_executor(None, stop_all, procs, interrupted)
    return status


def stop_all(procs: dict[str, subprocess.Popen[bytes]], interrupted: bool) -> None:
    """Stop every child: after Ctrl-C they have SIGINT already; otherwise SIGTERM
    (Celery: warm shutdown, the task in hand finishes).  Killed after 30 s."""
    if interrupted:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(p.poll() is None for p in procs.values()):
            time.sleep(0.1)
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + 30
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _display(host: str) -> str:
    local = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host
    return f"[{local}]" if ":" in local else local


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help=f"default: the port of COLLECTOR_URL in .env, else {DEFAULT_PORT}")
    parser.add_argument("--no-worker", action="store_true", help="do not start the Celery worker and beat")
    parser.add_argument("--dotenv", type=Path, default=ROOT / ".env", help="the .env file (default: the repo's)")
    args = parser.parse_args(argv)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "llmobserve_site.settings"}

    def local_url(port: int) -> str:
        return f"http://{_display(args.host)}:{port}"

    port = choose_port(args.port, args.dotenv, local_url)
    give_back = take_terminal()
    own_terminal = give_back is not _nothing
    # Children inherit "ignore": Ctrl-Z would stop this group while make waits for it.
    signal.signal(signal.SIGTSTP, signal.SIG_IGN)
    raise_file_limit()
    try:
        # First run with the embedded default: a login, a project and an API key,
        # printed once and saved to .env (a no-op afterwards and in production).
        subprocess.run(
            [
                sys.executable,
                "manage.py",
                "bootstrap",
                "--collector-url",
                local_url(port),
                "--dotenv",
                str(args.dotenv),
            ],
            cwd=ROOT,
            env=env,
            check=False,
        )
        status = asyncio.run(supervise(args, port, env, own_terminal=own_terminal))
    except KeyboardInterrupt:  # Ctrl-C during the bootstrap
        status = 0
    finally:
        give_back()
    if status == 0:
        print("run.py: stopped")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
