"""The block a worker serves, and its health: a backend that is away is waited for.

A component that needs its backend to start (a Redis sequencer raising its
``biggerThan`` floors) used to exit as if its config were wrong, and the
supervisor then gave up on it for good: a Redis blip during a worker restart,
or a sidecar started before Redis, never became ready. An unreachable backend
is not a config error. The worker serves at once: until the component opens,
every call fails fast with UNAVAILABLE naming the backend, health says DOWN
with the reason, and opening is retried with back-off; a component whose
config cannot work (a bad metadata value) still exits with EXIT_CONFIG.

Health is pinged every HEALTH_INTERVAL while UP and every RETRY_INTERVAL
while DOWN, so a backend's return is seen within about a second.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from layotto.boundary.addresses import events_address
from layotto.boundary.control_link import ControlLink
from layotto.boundary.nng_replier import EventServer
from layotto.boundary.specs import WorkerSpec
from layotto.boundary.status import CallError, Code
from layotto.components.errors import BackendUnavailableError
from layotto.workers.block import Block
from layotto.workers.block_table import open_block

log = logging.getLogger("layotto.worker")

HEALTH_INTERVAL = 1.0
RETRY_INTERVAL = 0.5


class WaitingBlock(Block):
    """Stands in for a block whose backend could not be reached at start."""

    def __init__(self, spec: WorkerSpec, reason: str) -> None:
        self.methods = {}  # of no kind: every call is answered by handle() below
        self.name = spec.name
        self.reason = reason

    def handle(self, method: str, payload: bytes) -> bytes:
        raise CallError(
            Code.UNAVAILABLE,
            f"component {self.name!r} cannot reach its backend yet ({self.reason}); "
            "it keeps trying",
        )

    def ping(self) -> None:
        raise BackendUnavailableError(self.reason)

    def close(self) -> None:
        pass


class Serving:
    """What the worker's threads share: the current block (a WaitingBlock
    until the component opens) and, for subscription blocks, the events socket."""

    def __init__(self, spec: WorkerSpec, serve_frame: Callable[[Block, bytes], bytes]) -> None:
        self.spec = spec
        self._serve_frame = serve_frame
        self.events: EventServer | None = None
        try:
            self.block: Block = open_block(spec)
        except BackendUnavailableError as exc:  # other component errors propagate
            log.warning("component %s cannot reach its backend: %s", spec.name, exc)
            self.block = WaitingBlock(spec, str(exc))

    @property
    def waiting(self) -> bool:
        return isinstance(self.block, WaitingBlock)

    def serve(self, frame: bytes) -> bytes:
        return self._serve_frame(self.block, frame)

    def try_open(self) -> None:
        """Open the component if it waits; raises BackendUnavailableError while
        the backend is away, another ComponentError if its config cannot work."""
        if self.waiting:
            self.block = open_block(self.spec)
            log.info("component %s reached its backend and opened", self.spec.name)

    def start_events(self, stop: threading.Event) -> None:
        """Serve subscriptions, for blocks that have them (once opened)."""
        subscriptions = getattr(self.block, "subscriptions", None)
        if subscriptions is None or self.events is not None:
            return
        block = self.block
        self.events = EventServer(
            events_address(self.spec.address), lambda f: self._serve_frame(block, f)
        )
        threading.Thread(
            target=subscriptions.expire_leases_forever, args=(stop,), name="leases", daemon=True
        ).start()

    def close(self) -> None:
        if self.events is not None:
            self.events.close()
        self.block.close()


def watch_health(
    serving: Serving, link: ControlLink, stop: threading.Event, broken: Callable[[str], None]
) -> None:
    """Report health changes; open a waiting component once its backend answers.
    ``broken`` is called (and the loop ends) if it turns out it can never open."""
    last: tuple[str, str] | None = None
    while not stop.is_set():
        try:
            serving.try_open()
            serving.start_events(stop)
            serving.block.ping()
            current = ("UP", "")
        except BackendUnavailableError as exc:
            current = ("DOWN", str(exc) or type(exc).__name__)
        except Exception as exc:
            if serving.waiting:  # it reached its backend, and its config is wrong
                broken(str(exc))
                return
            current = ("DOWN", str(exc) or type(exc).__name__)
        if current != last:
            link.send({"event": "health", "status": current[0], "reason": current[1]})
            last = current
        stop.wait(HEALTH_INTERVAL if current[0] == "UP" else RETRY_INTERVAL)
