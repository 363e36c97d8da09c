"""Steering new gRPC connections between API processes, and counting ours.

grpcio binds its own listener and cannot adopt one, so every API process
binds the port with SO_REUSEPORT: a generation runs ``runtime.api_processes``
of them (default 2), and a hot upgrade adds the next generation's. The
listeners form one kernel reuseport group, and a classic-BPF program on the
group ("ret <index>") picks the listener of every new connection by its
index in the group. Works unprivileged.

The kernel's rules (net/core/sock_reuseport.c, ``reuseport_add_sock``,
``__reuseport_detach_sock``, ``run_bpf_filter``, ``reuseport_select_sock``):
a listener joins at the end of the group's array; one that closes (or whose
process dies) is replaced in its slot by the last one, and the array
shrinks; an index past the end falls back to the hash over every member
(kernels before 5.14: to the plain lookup, which picks any member too); the
program belongs to the group, and the last one attached replaces it.

- Steady state, "ret 0": member 0 serves, the others stand by. When member
  0 dies, the kernel moves the last member into slot 0 at once: new
  connections go to a live process, never refused; the restarted one joins
  at the end, a standby again.
- Hot upgrade: the m old members joined first, so each old one is at an
  index < m, and a member only ever moves down (into a slot the last one
  fills), so old ones stay below m. The new ones (k of them) start with
  "ret 0" (the old member 0 keeps serving); the switch attaches "ret m":
  slot m holds a new member whenever it exists, and it exists while any
  old member is left as long as k >= m (r old left: r + k > m). Past the
  end only new members are left, and the hash picks among them. So a reload
  never lowers the count (``supervisor/plan.py``), and a new member that
  restarts during the drain attaches "ret m" too (``ApiSpec.steer_to``).
  tests/test_reuseport_steering.py checks every order of departures.

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
    """Make every new connection on ``port`` go to group member ``index``
    (past the group's end: any member, by the kernel's hash).

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
