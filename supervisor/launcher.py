"""The seam between the supervisor's decisions and the OS: start a child, signal it, wait for it.

The arbiter decides (lifecycle, reload, scale, stop order) and touches
processes only through these two small interfaces. The real implementation
(``process_launcher``) forks from a zygote, adopts the preforked first zygote
or execs; tests use a recording fake (tests/fake_launcher.py) and drive the
supervisor without any process.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from layotto.boundary.control_link import Message
from layotto.boundary.specs import ChildSpec


class ChildProcess(Protocol):
    """A started child and the supervisor's end of its control link."""

    @property
    def pid(self) -> int: ...

    def signal(self, signum: int) -> None:
        """Send a signal; nothing happens once the child has exited."""

    async def wait(self) -> int:
        """Until the child exits: its exit code, or minus the signal number (-1: unknown)."""
        ...

    async def send(self, message: Message) -> None:
        """One message over the control link; OSError or trio.ClosedResourceError
        when the link is gone."""

    async def receive(self) -> Message | None:
        """The child's next message; None once its link reached EOF (a reset
        link is an EOF too)."""
        ...

    def close(self) -> None:
        """Release the link, once the child has exited."""


# Called by a launcher that would fork the child from its generation's zygote:
# waits while that zygote is still starting, returns it when it runs (None: exec).
ZygoteLookup = Callable[[], Awaitable[ChildProcess | None]]


class Launcher(Protocol):
    async def spawn(self, child_id: str, spec: ChildSpec, zygote: ZygoteLookup) -> ChildProcess:
        """Start the child ``spec`` describes; OSError or trio.TooSlowError when it cannot."""
        ...
