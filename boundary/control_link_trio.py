"""The supervisor's (trio) side of the control link: the same codec, async reads."""

from __future__ import annotations

from collections.abc import AsyncIterator

import trio

from layotto.boundary.control_link import LineDecoder, Message, encode


async def receive_messages(sock: trio.socket.SocketType, what: str) -> AsyncIterator[Message]:
    """Each message until EOF; a reset link (a child killed with unread data)
    is an EOF too."""
    decoder = LineDecoder(what)
    while True:
        try:
            chunk = await sock.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        for message in decoder.feed(chunk):
            yield message


async def send_message(sock: trio.socket.SocketType, message: Message) -> None:
    data = encode(message)
    while data:
        sent = await sock.send(data)
        data = data[sent:]
