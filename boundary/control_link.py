"""The control link between the supervisor and each child: JSON lines on a socketpair.

One codec (``encode``, ``LineDecoder``) for every reader and writer of the
link: the child's blocking ``ControlLink`` below, the zygote (which also
receives file descriptors with its lines), and the supervisor's trio reader
(``control_link_trio``). A line that is not JSON is reported, never fatal.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger("layotto.control")

Message = dict[str, Any]

# Environment of an exec'd child: the fd of its end of the link (its spec is
# the first line on the link: see ``read_first_message``).
CONTROL_FD_ENV = "LAYOTTO_CONTROL_FD"


def encode(message: Message) -> bytes:
    return (json.dumps(message, separators=(",", ":")) + "\n").encode()


class LineDecoder:
    """Bytes in, whole messages out; keeps a partial line for the next chunk."""

    def __init__(self, what: str = "control link") -> None:
        self._buffer = b""
        self._what = what

    def feed(self, chunk: bytes) -> Iterator[Message]:
        self._buffer += chunk
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            try:
                message = json.loads(line)
            except ValueError:
                log.warning("bad line on the %s: %r", self._what, line[:200])
                continue
            if isinstance(message, dict):
                yield message
            else:
                log.warning("bad line on the %s: %r", self._what, line[:200])


def read_first_message(sock: socket.socket) -> Message:
    """The first line on the link, read without taking any byte after it
    (those belong to the link's reader): peek, then take up to the newline."""
    line = b""
    while True:
        chunk = sock.recv(65536, socket.MSG_PEEK)
        if not chunk:
            raise EOFError("the control link closed before the spec arrived")
        end = chunk.find(b"\n")
        if end >= 0:
            line += sock.recv(end + 1)
            break
        line += sock.recv(len(chunk))
    message = json.loads(line)
    if not isinstance(message, dict):
        raise TypeError(f"the first line on the control link is not a spec: {line[:200]!r}")
    return message


class ControlLink:
    """A child's end of the link; ``send`` is safe from several threads."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = threading.Lock()

    def send(self, message: Message) -> None:
        data = encode(message)
        with self._lock:
            try:
                self._sock.sendall(data)
            except OSError:
                log.warning("control link to the supervisor is closed")

    def start_reader(
        self, on_message: Callable[[Message], None], on_eof: Callable[[], None]
    ) -> threading.Thread:
        """Read in a daemon thread until EOF (the supervisor is gone), then ``on_eof``."""
        thread = threading.Thread(
            target=self._read, args=(on_message, on_eof), name="control", daemon=True
        )
        thread.start()
        return thread

    def _read(self, on_message: Callable[[Message], None], on_eof: Callable[[], None]) -> None:
        decoder = LineDecoder()
        while True:
            try:
                chunk = self._sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                on_eof()
                return
            for message in decoder.feed(chunk):
                try:
                    on_message(message)
                except Exception:
                    log.exception("control message %r failed", message)
