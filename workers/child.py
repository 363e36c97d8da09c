"""What every child process of the supervisor shares: its control link and fate.

The supervisor hands each child one end of a socketpair (fd number in
``LAYOTTO_CONTROL_FD``) and its spec as JSON (``LAYOTTO_CHILD_SPEC``).
Children report ``ready`` and ``health`` as JSON lines; when the link reaches
EOF the supervisor is gone and the child exits, so no orphan outlives it.
(PR_SET_PDEATHSIG cannot do this job: it fires when the *thread* that forked
the child exits, and trio spawns from short-lived worker threads.)
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

CONTROL_FD_ENV = "LAYOTTO_CONTROL_FD"
SPEC_ENV = "LAYOTTO_CHILD_SPEC"

log = logging.getLogger("layotto.child")


def load_spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(os.environ[SPEC_ENV])
    return spec


def setup_logging(role: str, level: str, force: bool = False) -> None:
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format=f"%(asctime)s %(levelname)s [{role} pid %(process)d] %(name)s: %(message)s",
        force=force,  # a worker forked by the zygote replaces the zygote's setup
    )


def ignore_terminal_signals() -> None:
    """Ctrl-C reaches the whole foreground process group; only the supervisor
    may act on it, so it can stop children in order."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ControlLink:
    """JSON lines over the inherited socket, safe to use from several threads."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> ControlLink:
        fd = int(os.environ[CONTROL_FD_ENV])
        return cls(socket.socket(fileno=fd))

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        with self._lock:
            try:
                self._sock.sendall(data)
            except OSError:
                log.warning("control link to the supervisor is closed")

    def start_reader(
        self, on_message: Callable[[dict[str, Any]], None], on_eof: Callable[[], None]
    ) -> threading.Thread:
        thread = threading.Thread(
            target=self._read, args=(on_message, on_eof), name="control", daemon=True
        )
        thread.start()
        return thread

    def _read(
        self, on_message: Callable[[dict[str, Any]], None], on_eof: Callable[[], None]
    ) -> None:
        buffer = b""
        while True:
            try:
                chunk = self._sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                on_eof()
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                try:
                    on_message(json.loads(line))
                except Exception:
                    log.exception("bad control message %r", line[:200])


def exit_when_supervisor_gone() -> None:
    log.error("the supervisor is gone; exiting")
    os._exit(1)
