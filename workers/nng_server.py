"""The worker's end of the nng link (all pynng use of the worker's data socket lives here).

A REP socket served by one thread through one context (``ContextExchange``:
a reply is sent without waiting for nng to hand it to the pipe, so the
thread goes straight back to receiving). Receives block without a timeout
(a polling timeout kept nng's timer threads busy while idle); closing the
socket from another thread is what ends a blocked receive.
"""

from __future__ import annotations

import contextlib
import os

import pynng

from layotto.workers.nng_exchange import ContextExchange


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
        self._exchange = ContextExchange(self._sock.new_context())

    def receive(self) -> bytes:
        """The next request; raises SocketClosedError once close() was called."""
        try:
            return self._exchange.receive()
        except pynng.Closed:
            self._exchange.close()
            raise SocketClosedError from None

    def reply(self, frame: bytes) -> None:
        try:
            self._exchange.send(frame)
        except pynng.Closed:
            self._exchange.close()
            raise SocketClosedError from None

    def close(self) -> None:
        self._sock.close()
