"""The supervisor's (trio) side of the control link: the same codec, async reads."""

from __future__ import annotations

from collections import deque

import trio

from layotto.boundary.control_link import LineDecoder, Message, encode


class MessageReader:
    """Whole messages from a link, one ``receive`` at a time.

    A method rather than an async generator: the reader is cancelled when
    its child exits, and an abandoned async generator is only finalised,
    with a warning, whenever the garbage collector gets to it.
    """

    def __init__(self, sock: trio.socket.SocketType, what: str) -> None:
        self._sock = sock
        self._decoder = LineDecoder(what)
        self._pending: deque[Message] = deque()

    async def receive(self) -> Message | None:
        """The next message; None at EOF. A reset link (a child killed with
        unread data) is an EOF too."""
        while not self._pending:
            try:
                chunk = await self._sock.recv(65536)
            except OSError:
                return None
            if not chunk:
                return None
            self._pending.extend(self._decoder.feed(chunk))
        return self._pending.popleft()


async def send_message(sock: trio.socket.SocketType, message: Message) -> None:
    data = encode(message)
    while data:
        sent = await sock.send(data)
        data = data[sent:]
