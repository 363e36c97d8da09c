"""The worker's events socket: subscription calls, served by a few threads.

Kept apart from the request/reply socket so that a long poll never delays
a state or lock call. Each thread owns an nng REP context, so several polls
(one per API generation during a hot upgrade) and quick calls (open, ack,
close) are served at once.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

import pynng

THREADS = 4


class EventServer:
    def __init__(self, address: str, serve: Callable[[bytes], bytes]) -> None:
        path = address.removeprefix("ipc://")
        if path != address:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # left behind by a killed predecessor in this slot
        self._serve = serve
        self._sock = pynng.Rep0()
        self._sock.listen(address)
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
