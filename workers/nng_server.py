"""The worker's end of the nng link (all pynng use of the worker lives here).

A plain synchronous REP socket: the baseline measurements show pynng's sync
API costs ~27 µs per side where its async API costs 110-180 µs, and a worker
serves one request at a time anyway. Receives block without a timeout (a
polling timeout kept nng's timer threads busy while idle); closing the
socket from another thread is what ends a blocked receive.
"""

from __future__ import annotations

import contextlib
import os

import pynng


class SocketClosedError(Exception):
    """The socket was closed (the worker is stopping)."""


class ReplySocket:
    def __init__(self, address: str) -> None:
        path = address.removeprefix("ipc://")
        if path != address:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # left behind by a killed predecessor in this slot
        self._sock = pynng.Rep0()
        self._sock.listen(address)

    def receive(self) -> bytes:
        """The next request; raises SocketClosedError once close() was called."""
        try:
            data: bytes = self._sock.recv()
        except pynng.Closed:
            raise SocketClosedError from None
        return data

    def reply(self, frame: bytes) -> None:
        try:
            self._sock.send(frame)
        except pynng.Closed:
            raise SocketClosedError from None

    def close(self) -> None:
        self._sock.close()
