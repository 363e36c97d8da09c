"""The supervisor's reading of a child's control link survives a reset link.

Regression: a worker killed while a message to it was still unread reset the
link; the supervisor's reader raised ConnectionResetError, which took the
supervisor, and so every child, down.
"""

from __future__ import annotations

import socket

import trio

from layotto.boundary.config import parse
from layotto.supervisor.arbiter import Arbiter

CONFIG = """
listeners: {grpc: "127.0.0.1:1", http: "127.0.0.1:2"}
hellos: {helloworld: {type: helloworld}}
"""


async def test_reset_control_link_ends_the_reader_quietly() -> None:
    arbiter = Arbiter(parse(CONFIG, "test.yaml"), "/nonexistent")
    ours, theirs = socket.socketpair()
    ours.send(b'{"cmd":"stats"}\n')  # never read by the peer ...
    theirs.close()  # ... which then goes away: our next receive is a reset
    with trio.fail_after(5):
        await arbiter._read_messages("helloworld#0", trio.socket.from_stdlib_socket(ours))
    ours.close()


async def test_messages_before_eof_are_delivered() -> None:
    arbiter = Arbiter(parse(CONFIG, "test.yaml"), "/nonexistent")
    ours, theirs = socket.socketpair()
    theirs.sendall(b'{"event":"health","status":"UP"}\n{"event":"re')
    theirs.close()
    with trio.fail_after(5):
        await arbiter._read_messages("helloworld#0", trio.socket.from_stdlib_socket(ours))
    ours.close()
    kind, child_id, message = arbiter._receive.receive_nowait()
    assert (kind, child_id, message) == (
        "message",
        "helloworld#0",
        {"event": "health", "status": "UP"},
    )
