"""What every child process of the supervisor shares: its control link and fate.

The supervisor hands each child one end of a socketpair (fd number in
``LAYOTTO_CONTROL_FD``) and sends its spec as the first line on it (never in
the environment, which anyone who may read /proc/<pid>/environ can read).
Children report ``ready`` and ``health`` over the link; when the link reaches
EOF the supervisor is gone and the child exits, so no orphan outlives it.
(PR_SET_PDEATHSIG cannot do this job: it fires when the *thread* that forked
the child exits, and trio spawns from short-lived worker threads.)
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from layotto.boundary.control_link import CONTROL_FD_ENV, ControlLink, read_first_message
from layotto.boundary.specs import spec_from_json

log = logging.getLogger("layotto.child")


def control_socket_from_env() -> socket.socket:
    return socket.socket(fileno=int(os.environ[CONTROL_FD_ENV]))


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


def exit_when_supervisor_gone() -> None:
    log.error("the supervisor is gone; exiting")
    os._exit(1)


def run_exec(run: Callable[[Any, ControlLink], int]) -> NoReturn:
    """The ``main`` of an exec'd API process or worker: read the spec and the
    link from the environment, run the role, exit with its status."""
    sock = control_socket_from_env()
    spec = spec_from_json(read_first_message(sock))
    setup_logging(spec.label, spec.log_level)
    ignore_terminal_signals()
    sys.exit(run(spec, ControlLink(sock)))
