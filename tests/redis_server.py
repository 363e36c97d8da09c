"""Start a private redis-server for tests (never the machine's shared one)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# How the redis-server process is started: subprocess.Popen, or anything that
# takes Popen's arguments and returns a Popen (the bench's `spawn` starts it in
# its own session with a parent-death signal).
Launch = Callable[..., subprocess.Popen[bytes]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    directory: str
    launch: Launch = subprocess.Popen

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def start_again(self) -> None:
        """Restart on the same port (for tests of Redis going away)."""
        self.stop()
        self.process = _spawn(self.port, self.directory, self.launch)


def _spawn(port: int, directory: str, launch: Launch = subprocess.Popen) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (.ci/run installs Debian's package)")
    proc = launch(
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
            directory,
            "--daemonize",
            "no",
            "--loglevel",
            "notice",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 15
    # Wait for the server's own "ready" line instead of sleeping.
    for line in proc.stdout:
        if b"Ready to accept connections" in line:
            break
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("redis-server did not become ready within 15 s")
    else:
        raise RuntimeError(f"redis-server exited with {proc.wait()}")
    # Keep draining its output so the pipe never fills up and blocks it.

    threading.Thread(target=lambda: [None for _ in proc.stdout or []], daemon=True).start()
    return proc


@contextmanager
def running_redis(launch: Launch = subprocess.Popen) -> Iterator[RedisServer]:
    with running_redis_on(free_port(), launch) as server:
        yield server


@contextmanager
def running_redis_on(port: int, launch: Launch = subprocess.Popen) -> Iterator[RedisServer]:
    """A private redis-server on ``port`` (also for tests of a Redis that comes late)."""
    directory = tempfile.mkdtemp(prefix="layotto-redis-")
    server = RedisServer("127.0.0.1", port, _spawn(port, directory, launch), directory, launch)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
