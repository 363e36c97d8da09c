"""How many HTTP connections the supervisor holds, and what happens beyond that.

A flood of idle connections (1,100 of them, under the common 1,024-descriptor
limit) used to exhaust the supervisor's descriptors: readiness and liveness
timed out, and every failed accept logged a traceback, ~18 a second. Now:

- at most ``limit`` connections are open at once, far below the descriptor
  limit (the supervisor needs descriptors for its children and links too);
- beyond it, the oldest *idle* connection is closed to make room: one whose
  request has not been read, that has sent nothing for MIN_IDLE (a slow,
  idle or abandoned client; a burst of real clients whose requests the
  supervisor has not read yet is not idle: their bytes are waiting). So a
  probe that sends its request at once is served; only when no connection is
  idle (WebSocket relays, a burst) is a newcomer refused with 503;
- a failed accept (EMFILE and its kin) and each refusal are logged at most
  once per LOG_EVERY seconds, with how many happened since.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import itertools
import logging
import resource
import termios
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator

import trio

log = logging.getLogger("layotto.actuator")

LOG_EVERY = 10.0
# A connection younger than this is never taken for idle: its client may not
# have had the time to send its request.
MIN_IDLE = 0.5
# Descriptors kept back for the supervisor's own work: children's control
# links, pidfds, the run directory, the control socket, relays' upstreams.
RESERVE = 256
_ACCEPT_CAPACITY_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_REFUSED_BODY = b'{"error": "too many HTTP connections; retry in a moment"}\n'
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_REFUSED_BODY), _REFUSED_BODY)
)


def raise_descriptor_limit() -> int:
    """Raise the soft limit on open files to the hard one (it costs nothing
    until used); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connection_limit(configured: int) -> int:
    """``configured``, lowered if the descriptor limit leaves no room for it."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, (soft - RESERVE) // 2))  # a relay holds two


class RateLimitedLog:
    """One line per ``every`` seconds at most, counting what it did not say."""

    def __init__(self, every: float = LOG_EVERY) -> None:
        self.every = every
        self._last = -float("inf")
        self._quiet = 0

    def warning(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last < self.every:
            self._quiet += 1
            return
        suffix = f" ({self._quiet} more since the last report)" if self._quiet else ""
        log.warning(message + suffix, *args)
        self._last, self._quiet = now, 0


def _unread_bytes(fd: int) -> int:
    count = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, count)
    except OSError:
        return 0
    return count[0]


class _Waiting:
    """A connection whose request has not been read yet."""

    __slots__ = ("fd", "scope", "since")

    def __init__(self, fd: int | None, scope: trio.CancelScope) -> None:
        self.fd = fd
        self.scope = scope
        self.since = time.monotonic()

    def idle(self, now: float) -> bool:
        if self.fd is None:  # not a socket: cannot tell, so never taken for idle
            return False
        return now - self.since >= MIN_IDLE and _unread_bytes(self.fd) == 0


class Connections:
    """The open connections: admission, and which idle one goes first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self._waiting: OrderedDict[int, _Waiting] = OrderedDict()  # oldest first
        self._ids = itertools.count()
        self.refusals = RateLimitedLog()

    def admit(self) -> bool:
        """Count one more connection, closing the oldest idle one if it is
        needed to make room; False when none is idle."""
        if self.open >= self.limit:
            now = time.monotonic()
            oldest = next((k for k, w in self._waiting.items() if w.idle(now)), None)
            if oldest is None:
                return False
            self._waiting.pop(oldest).scope.cancel()
        self.open += 1
        return True

    def release(self) -> None:
        self.open -= 1

    @contextlib.contextmanager
    def waiting(self, fd: int | None) -> Iterator[trio.CancelScope]:
        """While the connection on socket ``fd`` waits for its request; it may
        be cancelled to make room if it is idle. Leaving the block makes it
        busy (it is then never shed)."""
        key = next(self._ids)
        with trio.CancelScope() as scope:
            self._waiting[key] = _Waiting(fd, scope)
            try:
                yield scope
            finally:
                self._waiting.pop(key, None)


async def serve_http(
    listener: trio.SocketListener,
    connections: Connections,
    handle: Callable[[trio.SocketStream], Awaitable[None]],
) -> None:
    """Accept until cancelled; each admitted connection runs ``handle``."""
    accept_errors = RateLimitedLog()
    async with trio.open_nursery() as nursery:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_CAPACITY_ERRORS:
                    raise
                accept_errors.warning("HTTP listener cannot accept: %s; retrying", exc.strerror)
                await trio.sleep(0.1)
                continue
            if not connections.admit():
                connections.refusals.warning(
                    "HTTP connection refused: %d connections are busy "
                    "(runtime.max_http_connections)",
                    connections.open,
                )
                nursery.start_soon(_refuse, stream)
                continue
            nursery.start_soon(_run, connections, handle, stream)


async def _run(
    connections: Connections,
    handle: Callable[[trio.SocketStream], Awaitable[None]],
    stream: trio.SocketStream,
) -> None:
    try:
        await handle(stream)
    finally:
        connections.release()


async def _refuse(stream: trio.SocketStream) -> None:
    async with stream:
        with trio.move_on_after(1), contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(_REFUSAL)
