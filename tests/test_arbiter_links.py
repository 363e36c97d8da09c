"""The supervisor's reading of a child's control link survives a reset link.

Regression: a worker killed while a message to it was still unread reset the
link; the supervisor's reader raised ConnectionResetError, which took the
supervisor, and so every child, down. The reading lives in the real
launcher's process handle (``LinkedProcess.receive``).
"""

from __future__ import annotations

import socket

import trio

from layotto.boundary.control_link import Message
from layotto.supervisor.process_launcher import LinkedProcess
from layotto.supervisor.processes import Zygote


class _Exited:
    """A handle whose process is gone; only its control link matters here."""

    def __init__(self, control: trio.socket.SocketType) -> None:
        self.pid = 4242
        self.control = control
        self.alive = False

    def signal(self, signum: int) -> None:
        pass

    async def wait(self) -> int:
        return 0


async def read_all(process: LinkedProcess) -> list[Message]:
    messages = []
    with trio.fail_after(5):
        while (message := await process.receive()) is not None:
            messages.append(message)
    return messages


async def test_reset_control_link_ends_the_reader_quietly() -> None:
    ours, theirs = socket.socketpair()
    ours.send(b'{"cmd":"stats"}\n')  # never read by the peer ...
    theirs.close()  # ... which then goes away: our next receive is a reset
    process = LinkedProcess(_Exited(trio.socket.from_stdlib_socket(ours)), "helloworld#0")
    assert await read_all(process) == []
    process.close()


async def test_messages_before_eof_are_delivered() -> None:
    ours, theirs = socket.socketpair()
    theirs.sendall(b'{"event":"health","status":"UP"}\n{"event":"re')
    theirs.close()
    process = LinkedProcess(_Exited(trio.socket.from_stdlib_socket(ours)), "helloworld#0")
    assert await read_all(process) == [{"event": "health", "status": "UP"}]
    process.close()


async def test_a_zygotes_fork_reports_stay_on_its_link() -> None:
    ours, theirs = socket.socketpair()
    theirs.sendall(b'{"event":"exited","pid":7,"status":3}\n{"event":"ready"}\n')
    theirs.close()
    control = trio.socket.from_stdlib_socket(ours)
    forks = Zygote(control)
    process = LinkedProcess(_Exited(control), "zygote@1", forks)
    assert await read_all(process) == [{"event": "ready"}]
    assert await forks.exit_status(7) == 3
    process.close()
