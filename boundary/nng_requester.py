"""The API process's end of the nng links: a REQ socket dialled to one worker socket.

nng REQ re-sends a request when its pipe closes; that would run a lock or
sequencer request twice after a worker crash, so re-sending is disabled
(``resend_time = -1``) and a worker that dies holding a request surfaces as
``PeerGoneError``: the caller decides whether the request may be repeated.
The socket keeps re-dialling until a worker listens, and reports its pipes
coming and going, which is how the API knows which replicas are up.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pynng

from layotto.boundary.nng_exchange import ContextExchange


class PeerGoneError(Exception):
    """The worker's pipe closed while it held the request, or the socket was closed."""


class ReplyTimeoutError(Exception):
    """No reply before the timeout."""


class Requester:
    """One context of a RequestSocket: one exchange at a time, one thread at a time."""

    def __init__(self, context: pynng.Context) -> None:
        self._exchange = ContextExchange(context)

    def request(self, frame: bytes, timeout_ms: int) -> bytes:
        """Send ``frame`` and wait for its reply; the timeout covers both."""
        try:
            self._exchange.send(frame)
            return self._exchange.receive(timeout_ms)
        except pynng.Timeout:
            raise ReplyTimeoutError from None
        except (pynng.ConnectionReset, pynng.Closed):
            raise PeerGoneError from None

    def close(self) -> None:
        """Safe from any thread: a request under way ends with PeerGoneError."""
        self._exchange.close()


class RequestSocket:
    def __init__(
        self,
        address: str,
        on_pipe_added: Callable[[], None] | None = None,
        on_pipe_removed: Callable[[], None] | None = None,
    ) -> None:
        self.address = address
        self._socket = pynng.Req0(resend_time=-1)
        if on_pipe_added is not None:
            self._socket.add_post_pipe_connect_cb(lambda _pipe: on_pipe_added())
        if on_pipe_removed is not None:
            self._socket.add_post_pipe_remove_cb(lambda _pipe: on_pipe_removed())
        self._socket.dial(address, block=False)  # nng re-dials until a worker listens

    def requester(self) -> Requester:
        """A new context: requesters of one socket run their exchanges concurrently."""
        return Requester(self._socket.new_context())

    def close(self) -> None:
        """Close the requesters first (see ContextExchange.close), then this."""
        with contextlib.suppress(pynng.NNGException):
            self._socket.close()
