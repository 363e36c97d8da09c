"""Steering new gRPC connections between API generations, and counting ours.

grpcio binds its own listener and cannot adopt one, so a hot upgrade runs
two API processes on the port with SO_REUSEPORT. A classic-BPF program on
the reuseport group picks the listener for every new connection by its
index in the group (join order): "ret 0" keeps them on the oldest member,
"ret 1" sends them to the newer one. A prototype of this arrangement saw
no failed call in 56 hot-upgrade trials (docs/design.md); it works
unprivileged.

grpcio's sockets are found by scanning /proc/self/fd and asking each socket
(through a dup, closed at once) what it is.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import struct
from collections.abc import Iterator

SO_ATTACH_REUSEPORT_CBPF = 51
_BPF_RET_K = 0x06  # BPF_RET | BPF_K: return the constant k


def _our_tcp_sockets(port: int) -> Iterator[tuple[int, bool]]:
    """(fd, is_listener) for every TCP socket of this process on ``port``."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            probe = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        with probe:
            try:
                if probe.type != socket.SOCK_STREAM or probe.family not in (
                    socket.AF_INET,
                    socket.AF_INET6,
                ):
                    continue
                if probe.getsockname()[1] != port:
                    continue
                listening = bool(probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
            except OSError:
                continue
            yield fd, listening


def connection_count(port: int) -> int:
    """Established (or closing) gRPC connections this process still holds."""
    return sum(1 for _, listening in _our_tcp_sockets(port) if not listening)


def steer_new_connections(port: int, index: int) -> int:
    """Make every new connection on ``port`` go to group member ``index``.

    Returns how many of our listeners the program was attached to (0 means
    none was found, e.g. the server is not bound yet)."""
    instruction = (ctypes.c_ubyte * 8).from_buffer_copy(
        struct.pack("=HBBI", _BPF_RET_K, 0, 0, index)
    )
    program = struct.pack("HxxxxxxQ", 1, ctypes.addressof(instruction))
    attached = 0
    for fd, listening in list(_our_tcp_sockets(port)):
        if not listening:
            continue
        with contextlib.closing(socket.socket(fileno=os.dup(fd))) as listener:
            listener.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, program)
            attached += 1
    return attached
