"""`layotto start`: claim the run directory and the listeners, then supervise.

Order matters: the config is validated, the pid file locked and every
listener checked before any child starts, so a second sidecar on the same
config or ports fails at once with a message instead of half-starting.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket

import trio

from layotto.boundary.addresses import control_socket, worker_address
from layotto.boundary.config import Address, Config
from layotto.supervisor.actuator import serve_actuator
from layotto.supervisor.arbiter import Arbiter
from layotto.supervisor.child_specs import zygote_spec
from layotto.supervisor.control import serve_control
from layotto.supervisor.http_connections import raise_descriptor_limit
from layotto.supervisor.process_launcher import ProcessLauncher, preforking
from layotto.supervisor.processes import Preforked, become_subreaper, prefork_zygote
from layotto.supervisor.run_directory import StartupError, claim_run_dirs

log = logging.getLogger("layotto.supervisor")

_MAX_SOCKET_PATH = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux


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
    with claim_run_dirs(config) as run_dir:
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
            await nursery.start(serve_control, arbiter, control_socket(run_dir))
            nursery.start_soon(_serve_http_until_stop, arbiter, http)
            await arbiter.run()
            nursery.cancel_scope.cancel()


async def _serve_http_until_stop(arbiter: Arbiter, http: trio.SocketListener) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_actuator, arbiter, http)
        await arbiter.stop_begun.wait()  # stop accepting as soon as a stop begins
        nursery.cancel_scope.cancel()
    await http.aclose()


def run(config: Config) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    raise_descriptor_limit()  # before any child: they inherit it
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
