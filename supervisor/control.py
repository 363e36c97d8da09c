"""The control socket: how `layotto status|stop` reach a running supervisor.

A Unix socket in the run directory; one JSON line in, one JSON line out.
A control command and a signal are the same thing once they reach the
arbiter (``stop`` and SIGTERM run the same code).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from typing import Any

import trio

from layotto.boundary.addresses import control_socket
from layotto.supervisor.arbiter import Arbiter

log = logging.getLogger("layotto.supervisor")

# Reload and scale answer when they are done, which takes as long as the
# slowest process start plus the drain of the old generation.
COMMAND_TIMEOUTS = {"reload": 900.0, "scale": 300.0}


def socket_path(run_dir: str) -> str:
    return control_socket(run_dir)


async def serve_control(
    arbiter: Arbiter, path: str, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until cancelled; removes the socket file on the way out."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(path)
    os.chmod(path, 0o600)
    sock.listen(16)
    listener = trio.SocketListener(sock)
    task_status.started()
    try:

        async def handle(stream: trio.SocketStream) -> None:
            await _serve_one(arbiter, stream)

        await trio.serve_listeners(handle, [listener])
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


async def _serve_one(arbiter: Arbiter, stream: trio.abc.Stream) -> None:
    async with stream:
        buffer = b""
        with trio.move_on_after(5):
            while b"\n" not in buffer and len(buffer) < 65536:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                buffer += chunk
        try:
            request = json.loads(buffer.split(b"\n", 1)[0])
            name = str(request["cmd"])
            limit = COMMAND_TIMEOUTS.get(name, 10.0)
            answer = {"ok": False, "error": f"the supervisor did not finish {name} in {limit:g} s"}
            with trio.move_on_after(limit):
                answer = await arbiter.command(name, request.get("args") or {})
        except (ValueError, KeyError, TypeError) as exc:
            answer = {"ok": False, "error": f"bad control request: {exc}"}
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(json.dumps(answer).encode() + b"\n")


class NotRunningError(Exception):
    """No supervisor answers on the control socket."""


def request(
    run_dir: str, cmd: str, args: dict[str, Any] | None = None, timeout: float = 15.0
) -> dict[str, Any]:
    """Blocking client used by the CLI."""
    path = socket_path(run_dir)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout or COMMAND_TIMEOUTS.get(cmd, 10.0) + 5)
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NotRunningError(f"no layotto supervisor is listening on {path}") from exc
        sock.sendall(json.dumps({"cmd": cmd, "args": args or {}}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    answer: dict[str, Any] = json.loads(data) if data else {"ok": False, "error": "no answer"}
    return answer
