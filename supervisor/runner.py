"""`layotto start`: claim the run directory and the listeners, then supervise.

Order matters: the config is validated, the pid file locked and every
listener checked before any child starts, so a second sidecar on the same
config or ports fails at once with a message instead of half-starting.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import signal
import socket
from typing import IO

import trio

from layotto.boundary.addresses import PID_FILE, worker_address
from layotto.boundary.config import Address, Config
from layotto.supervisor.actuator import serve_actuator
from layotto.supervisor.arbiter import Arbiter
from layotto.supervisor.child_specs import zygote_spec
from layotto.supervisor.control import serve_control, socket_path
from layotto.supervisor.process_launcher import ProcessLauncher, preforking
from layotto.supervisor.processes import Preforked, become_subreaper, prefork_zygote

log = logging.getLogger("layotto.supervisor")

_MAX_SOCKET_PATH = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux


class StartupError(Exception):
    """The sidecar cannot start; the message says why and what to do."""


def pid_path(run_dir: str) -> str:
    return os.path.join(run_dir, PID_FILE)


def read_pid(run_dir: str) -> int | None:
    try:
        with open(pid_path(run_dir)) as f:
            return int(f.read().strip() or 0) or None
    except (FileNotFoundError, ValueError):
        return None


def holds_pid_file(run_dir: str) -> bool:
    """True while a supervisor holds the pid file's lock (a zombie does not)."""
    try:
        handle = open(pid_path(run_dir))  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def claim_pid_file(run_dir: str) -> IO[str]:
    """Hold an exclusive lock on the pid file for the supervisor's lifetime."""
    os.makedirs(run_dir, mode=0o700, exist_ok=True)
    handle = open(pid_path(run_dir), "a+")  # noqa: SIM115 - held open until exit
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StartupError(
            f"layotto is already running for this config (pid {read_pid(run_dir)}, "
            f"run directory {run_dir}); use `layotto stop` first"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _family(address: Address) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address.host else socket.AF_INET


def check_port_free(address: Address, what: str) -> None:
    """The API binds gRPC with SO_REUSEPORT, which would silently share a port
    with another server; a plain bind first turns that into a clear error."""
    with socket.socket(_family(address), socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address.host, address.port))
        except OSError as exc:
            raise StartupError(f"cannot use {what} address {address}: {exc.strerror}") from None


async def bind_http(address: Address) -> trio.SocketListener:
    sock = trio.socket.socket(_family(address), trio.socket.SOCK_STREAM)
    sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
    try:
        await sock.bind((address.host, address.port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot bind HTTP address {address}: {exc.strerror}") from None
    sock.listen(128)
    return trio.SocketListener(sock)


def check_socket_paths(config: Config) -> None:
    """Unix socket paths are limited to 107 bytes; say so before anything starts."""
    longest = max(
        (
            worker_address(config.run_dir(), c.name, 9999).removeprefix("ipc://")
            for c in config.components
        ),
        key=len,
    )
    if len(longest.encode()) > _MAX_SOCKET_PATH:
        raise StartupError(
            f"socket path {longest!r} is longer than {_MAX_SOCKET_PATH} bytes: set "
            "runtime.run_dir to a shorter directory or use shorter component names"
        )


async def supervise(config: Config, preforked: Preforked | None = None) -> None:
    become_subreaper()
    check_socket_paths(config)
    run_dir = config.run_dir()
    pid_file = claim_pid_file(run_dir)
    try:
        check_port_free(config.listeners.grpc, "gRPC")
        http = await bind_http(config.listeners.http)
        arbiter = Arbiter(config, run_dir, ProcessLauncher(preforked))
        log.info(
            "layotto starting: config %s, gRPC %s, HTTP %s, run dir %s",
            config.source,
            config.listeners.grpc,
            config.listeners.http,
            run_dir,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_control, arbiter, socket_path(run_dir))
            nursery.start_soon(_serve_http_until_stop, arbiter, http)
            await arbiter.run()
            nursery.cancel_scope.cancel()
    finally:
        try:
            os.unlink(pid_path(run_dir))
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
        pid_file.close()
        if config.runtime.run_dir is None:
            # our own derived directory: leave no empty one behind per port
            with contextlib.suppress(OSError):
                os.rmdir(run_dir)


async def _serve_http_until_stop(arbiter: Arbiter, http: trio.SocketListener) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_actuator, arbiter, http)
        await arbiter.stop_begun.wait()  # stop accepting as soon as a stop begins
        nursery.cancel_scope.cancel()
    await http.aclose()


def run(config: Config) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    preforked = prefork_zygote(zygote_spec(config, 1)) if preforking() else None
    try:
        trio.run(supervise, config, preforked)
    except StartupError as exc:
        log.error("%s", exc)
        return 1
    finally:
        if preforked is not None and preforked.alive:  # never adopted: startup failed
            preforked.signal(signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(preforked.pid, 0)
    return 0
