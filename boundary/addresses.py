"""Where each process finds the others: every name inside the run directory.

The supervisor creates the run directory; the files in it are named here
once, for whoever creates them and whoever connects to them.
"""

from __future__ import annotations

import os

CONTROL_SOCKET = "control.sock"  # the supervisor's: `layotto status|stop|reload|scale`
PID_FILE = "supervisor.pid"


def control_socket(run_dir: str) -> str:
    return os.path.join(run_dir, CONTROL_SOCKET)


def pid_file(run_dir: str) -> str:
    return os.path.join(run_dir, PID_FILE)


def worker_address(run_dir: str, component: str, slot: int) -> str:
    """Where worker ``slot`` of ``component`` listens (the API process dials it)."""
    return f"ipc://{os.path.join(run_dir, f'w-{component}-{slot}.ipc')}"


def events_address(address: str) -> str:
    """The worker's second socket, for subscriptions: long polls there never
    hold up the request/reply path."""
    head, _, tail = address.rpartition("/w-")
    return f"{head}/e-{tail}"


STATE_PREFIX = "state-"


def state_file(run_dir: str, component: str) -> str:
    """What a component keeps past its worker's death (the in-memory
    sequencer's id marks); removed when the sidecar stops."""
    return os.path.join(run_dir, f"{STATE_PREFIX}{component}")


def websocket_socket(run_dir: str, generation: int, index: int) -> str:
    """API process ``index`` of ``generation`` serves WebSocket subscriptions
    here; the supervisor relays ``/ws`` on its HTTP listener to a live one."""
    return os.path.join(run_dir, f"ws-{generation}-{index}.sock")
