"""The worker's end of the nng links: its data socket and its events socket.

``ReplySocket``, the data socket: a REP socket served by one thread through
one context (``ContextExchange``: a reply is sent without waiting for nng to
hand it to the pipe, so the thread goes straight back to receiving).
Receives block without a timeout (a polling timeout kept nng's timer threads
busy while idle); closing the socket from another thread is what ends a
blocked receive.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

import pynng

from layotto.boundary.nng_exchange import ContextExchange


def _listen(address: str) -> pynng.Rep0:
    path = address.removeprefix("ipc://")
    if path != address:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left behind by a killed predecessor in this slot
    sock = pynng.Rep0()
    sock.listen(address)
    return sock


class SocketClosedError(Exception):
    """The socket was closed (the worker is stopping)."""


class ReplySocket:
    def __init__(self, address: str) -> None:
        self._sock = _listen(address)
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


# Threads serving the events socket.
THREADS = 4


class EventServer:
    """The events socket: subscription calls, served by a few threads.

    Kept apart from the data socket so that a long poll never delays a state
    or lock call. Each thread owns an nng REP context, so several polls (one
    per API generation during a hot upgrade) and quick calls (open, ack,
    close) are served at once."""

    def __init__(self, address: str, serve: Callable[[bytes], bytes]) -> None:
        self._serve = serve
        self._sock = _listen(address)
        self._threads = [
            threading.Thread(target=self._loop, name=f"events-{n}", daemon=True)
            for n in range(THREADS)
        ]
        for thread in self._threads:
            thread.start()

    def _loop(self) -> None:
        ctx = self._sock.new_context()
        try:
            while True:
                frame = ctx.recv()
                ctx.send(self._serve(frame))
        except pynng.Closed:
            return
        finally:
            # Closed now, quietly: left to the garbage collector, a context
            # of a closed socket prints a traceback from its __del__.
            with contextlib.suppress(pynng.NNGException):
                ctx.close()

    def close(self) -> None:
        self._sock.close()
        for thread in self._threads:
            thread.join(timeout=5)
