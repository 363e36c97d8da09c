"""The worker's end of the nng link (all pynng use of the worker lives here).

A plain synchronous REP socket: the baseline measurements show pynng's sync
API costs ~27 µs per side where its async API costs 110-180 µs, and a worker
serves one request at a time anyway.
"""

from __future__ import annotations

import contextlib
import os

import pynng

# How often a blocked receive wakes up to look at the stop flag: a thread
# inside nng's C code cannot run Python signal handlers.
_POLL_MS = 200


class ReplySocket:
    def __init__(self, address: str) -> None:
        path = address.removeprefix("ipc://")
        if path != address:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # left behind by a killed predecessor in this slot
        self._sock = pynng.Rep0(recv_timeout=_POLL_MS)
        self._sock.listen(address)

    def receive(self) -> bytes | None:
        """The next request, or None when nothing arrived within the poll interval."""
        try:
            data: bytes = self._sock.recv()
        except pynng.Timeout:
            return None
        return data

    def reply(self, frame: bytes) -> None:
        self._sock.send(frame)

    def close(self) -> None:
        self._sock.close()
