"""Starting child processes: the supervisor's one way to touch fork/exec.

Children are started by fork+exec of a fresh interpreter (never a bare fork:
the supervisor's trio runtime is not fork-safe for grpc/nng children, and
exec picks up upgraded code). Each child gets one end of a socketpair as its
control link, passed by fd number.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from dataclasses import dataclass
from typing import Any

import trio

from layotto.workers.child import CONTROL_FD_ENV, SPEC_ENV


@dataclass
class Launched:
    process: trio.Process
    control: trio.socket.SocketType

    @property
    def pid(self) -> int:
        return int(self.process.pid)


async def launch(module: str, spec: dict[str, Any]) -> Launched:
    """Exec ``python -m module`` with ``spec`` in its environment."""
    ours, theirs = socket.socketpair()
    try:
        env = dict(os.environ)
        env[CONTROL_FD_ENV] = str(theirs.fileno())
        env[SPEC_ENV] = json.dumps(spec)
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", module], pass_fds=(theirs.fileno(),), env=env
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return Launched(process, trio.socket.from_stdlib_socket(ours))


def exit_status(process: trio.Process) -> int:
    """Exit code, or minus the signal number, as subprocess reports it."""
    code = process.returncode
    return -1 if code is None else int(code)
