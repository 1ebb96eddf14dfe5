"""Find a Redis to use, or start a private one: for the demo and the tests, never production.

Order: the URL we were given if it answers; else a private ``redis-server`` from PATH on a free
port (no persistence, stopped with us); else a clear error saying how to get Redis.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from urllib.parse import urlparse


class RedisUnavailable(RuntimeError):
    pass


HOW_TO_GET_REDIS = (
    "No Redis is reachable and no redis-server is on PATH. Install one "
    "(Debian/Ubuntu: `apt-get install redis-server`; macOS: `brew install redis`) or point "
    "REDIS_URL / CELERY_BROKER_URL at a running server."
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(url: str, timeout: float = 0.5) -> bool:
    """Whether a Redis at ``url`` answers PING (raw socket: no client library needed)."""
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=timeout
        ) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


@dataclass
class PrivateRedis:
    """A redis-server child process on a free port, keeping nothing on disk."""

    port: int
    process: subprocess.Popen[bytes]
    workdir: tempfile.TemporaryDirectory[str]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.workdir.cleanup()

    def restart(self) -> None:
        """Stop and start again on the same port: everything in it is lost (no persistence)."""
        self.stop()
        fresh = start_private_redis(self.port)
        self.process, self.workdir = fresh.process, fresh.workdir


def start_private_redis(port: int | None = None) -> PrivateRedis:
    binary = shutil.which("redis-server") or shutil.which("valkey-server")
    if binary is None:
        raise RedisUnavailable(HOW_TO_GET_REDIS)
    port = port or free_port()
    workdir = tempfile.TemporaryDirectory(prefix="runs-redis-")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir.name,
            "--logfile",
            "",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if answers(url):
            return PrivateRedis(port, process, workdir)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    workdir.cleanup()
    raise RedisUnavailable(f"redis-server did not start on port {port}")


def ensure_redis(url: str) -> tuple[str, PrivateRedis | None]:
    """The URL to use and the private server we started (None when ``url`` already answers)."""
    if answers(url):
        return url, None
    private = start_private_redis()
    return private.url, private
