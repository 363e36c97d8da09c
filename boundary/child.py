"""What every child process of the supervisor shares: its control link and fate.

The supervisor hands each child one end of a socketpair (fd number in
``LAYOTTO_CONTROL_FD``) and its spec as JSON (``LAYOTTO_CHILD_SPEC``).
Children report ``ready`` and ``health`` over the link; when the link reaches
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
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from layotto.boundary.control_link import CONTROL_FD_ENV, SPEC_ENV, ControlLink
from layotto.boundary.specs import spec_from_json

log = logging.getLogger("layotto.child")


def load_spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(os.environ[SPEC_ENV])
    return spec


def link_from_env() -> ControlLink:
    return ControlLink(control_socket_from_env())


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
    spec = spec_from_json(load_spec())
    setup_logging(spec.label, spec.log_level)
    ignore_terminal_signals()
    sys.exit(run(spec, link_from_env()))
