"""The request/reply hop on one nng context, with one blocking wait per message.

pynng's synchronous ``Context.send`` allocates an aio per call and blocks
until nng's task thread reports the message handed to a pipe; only then can
the caller post its receive. Here each context keeps two aios for its whole
life: a send is started and not waited for, and the caller blocks once, on
the receive. ``bench/nng_bench.py`` (one REQ/REP round trip between two
processes, both ways in one run): p50 217 -> 158 µs, CPU per round trip
136 -> 106 µs on the requester and 131 -> 99 µs on the replier.

Also here: how many threads nng starts. Its defaults (12 per process here)
buy nothing for a handful of ipc pipes and cost memory in every worker.
"""

from __future__ import annotations

import contextlib

import pynng
from pynng import ffi, lib
from pynng.exceptions import check_err

# nng's own threads per process: the minimum it accepts for task threads,
# one of everything else (all our links are a few local ipc pipes).
_THREADS = (
    ("NNG_INIT_NUM_TASK_THREADS", 2),
    ("NNG_INIT_MAX_TASK_THREADS", 2),
    ("NNG_INIT_NUM_EXPIRE_THREADS", 1),
    ("NNG_INIT_MAX_EXPIRE_THREADS", 1),
    ("NNG_INIT_NUM_POLLER_THREADS", 1),
    ("NNG_INIT_MAX_POLLER_THREADS", 1),
    ("NNG_INIT_NUM_RESOLVER_THREADS", 1),
)

FOREVER = -1  # an nng duration: no timeout


def limit_threads() -> None:
    """Call before the process opens its first nng socket (later it has no effect)."""
    for name, value in _THREADS:
        lib.nng_init_set_parameter(getattr(lib, name), value)


def _new_aio() -> object:
    holder = ffi.new("nng_aio **")
    check_err(lib.nng_aio_alloc(holder, ffi.NULL, ffi.NULL))
    # Freed when the exchange is collected: close() may run on another thread
    # while the owner still waits on the aio, so it must not free it.
    return ffi.gc(holder[0], lib.nng_aio_free)


class ContextExchange:
    """Sends and receives on one context of a REQ or REP socket; one thread at a time.

    Errors are pynng's exceptions (Timeout, ConnectionReset, Closed, ...)."""

    def __init__(self, context: pynng.Context) -> None:
        self.context = context
        self._ctx = context.context
        self._send = _new_aio()
        self._recv = _new_aio()
        self._sending = False
        self._recv_timeout: int | None = None
        # Every C call through cffi releases and retakes the GIL (a thread
        # switch when other threads wait for it), so the hot path makes few:
        # a send has no timeout of its own (a receive that fails cancels
        # it), and a receive sets its timeout only when it changes.

    def send(self, data: bytes) -> None:
        """Start sending; a failure shows up at the next send or receive."""
        self._finish_send()
        holder = ffi.new("nng_msg **")
        check_err(lib.nng_msg_alloc(holder, len(data)))
        msg = holder[0]
        ffi.memmove(lib.nng_msg_body(msg), data, len(data))
        lib.nng_aio_set_msg(self._send, msg)  # the aio owns it until sent
        lib.nng_ctx_send(self._ctx, self._send)
        self._sending = True

    def receive(self, timeout_ms: int = FOREVER) -> bytes:
        """Block until a message arrives on this context."""
        if timeout_ms != self._recv_timeout:
            lib.nng_aio_set_timeout(self._recv, timeout_ms)
            self._recv_timeout = timeout_ms
        lib.nng_ctx_recv(self._ctx, self._recv)
        lib.nng_aio_wait(self._recv)
        result = lib.nng_aio_result(self._recv)
        if result != 0:
            # A request that got no answer may still sit unsent: take it back.
            if self._sending:
                lib.nng_aio_cancel(self._send)
            self._finish_send(quiet=True)
            check_err(result)
        msg = lib.nng_aio_get_msg(self._recv)
        try:
            data: bytes = ffi.buffer(lib.nng_msg_body(msg), lib.nng_msg_len(msg))[:]
        finally:
            lib.nng_msg_free(msg)
        return data

    def _finish_send(self, quiet: bool = False) -> None:
        if not self._sending:
            return
        lib.nng_aio_wait(self._send)
        self._sending = False
        result = lib.nng_aio_result(self._send)
        if result != 0:
            lib.nng_msg_free(lib.nng_aio_get_msg(self._send))  # never sent: still ours
            if not quiet:
                check_err(result)

    def close(self) -> None:
        """Close the context (before its socket: left to the garbage collector,
        a context of a closed socket prints a traceback). Safe from any
        thread: a receive under way ends with pynng.Closed."""
        with contextlib.suppress(pynng.NNGException):
            self.context.close()
