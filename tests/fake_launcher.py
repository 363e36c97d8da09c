"""A recording fake of the supervisor's Launcher: children without processes.

Every spawn, signal, message sent, readiness report and exit is appended to
``FakeLauncher.actions`` as a tuple (``("spawn", "api@2#0")``, ``("signal",
"cache#0", "SIGTERM")``, ``("send", "api@1#0", "drain")``, ``("report",
"zygote@2", "ready")``, ``("exit", "api@1#0", 0)``), so a test asserts the order of what
the supervisor did. By default a child reports ready as soon as it is
spawned, exits on SIGTERM (and SIGKILL) and, as an API process, exits once
told to drain; a ``Script`` per child id changes that, and a test can make
any running child report a message or exit with a status.
"""

from __future__ import annotations

import itertools
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from layotto.boundary.control_link import Message
from layotto.boundary.specs import ChildSpec
from layotto.supervisor.launcher import ChildProcess, ZygoteLookup

Action = tuple[Any, ...]


@dataclass
class Script:
    """How a fake child behaves, each time it is spawned."""

    ready: bool = True  # report ready at once (and, as a worker, its backend UP)
    backend_down: str = ""  # as a worker: report its backend DOWN with this reason instead
    exit_status: int | None = None  # instead: exit at once with this status
    exits_on_term: bool = True  # SIGTERM makes it exit 0 (SIGKILL always kills it)
    exits_on_drain: bool = True  # an API process told to drain exits 0 (as it would)
    requests: dict[str, dict[str, int]] | None = None  # as an API: its answer to "stats"


class FakeProcess:
    def __init__(
        self, launcher: FakeLauncher, child_id: str, spec: ChildSpec, pid: int, script: Script
    ) -> None:
        self.child_id = child_id
        self.spec = spec
        self.pid = pid
        self.script = script
        self.forked_from: str | None = None  # the fake zygote it was "forked" by
        self.status: int | None = None
        self._launcher = launcher
        self._exited = trio.Event()
        self._inbox, self._outbox = trio.open_memory_channel[Message](100)

    # -- what the supervisor sees -----------------------------------------------

    def signal(self, signum: int) -> None:
        self._launcher.record("signal", self.child_id, signal.Signals(signum).name)
        if self.status is not None:
            return
        if signum == signal.SIGKILL:
            self.exit(-signum)
        elif signum == signal.SIGTERM and self.script.exits_on_term:
            self.exit(0)

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.status is not None
        return self.status

    async def send(self, message: Message) -> None:
        if self.status is not None:
            raise trio.ClosedResourceError("the fake child has exited")
        await trio.lowlevel.checkpoint()
        command = message.get("cmd")
        self._launcher.record("send", self.child_id, command)
        self._launcher.sent.append((self.child_id, message))
        if command == "stats":
            self.report({"event": "stats", "requests": self.script.requests or {}})
        elif command == "drain" and self.script.exits_on_drain:
            self.exit(0)

    async def receive(self) -> Message | None:
        try:
            return await self._outbox.receive()
        except trio.EndOfChannel:  # it exited: its link reached EOF
            return None

    def close(self) -> None:
        pass

    # -- what a test makes the child do -----------------------------------------

    def report(self, message: Message) -> None:
        """Send ``message`` to the supervisor, as the child would."""
        self._launcher.record("report", self.child_id, message.get("event"))
        self._inbox.send_nowait(message)

    def exit(self, status: int) -> None:
        if self.status is not None:
            return
        self.status = status
        self._launcher.record("exit", self.child_id, status)
        self._inbox.close()  # its link reaches EOF
        self._exited.set()


class FakeLauncher:
    def __init__(self) -> None:
        self.actions: list[Action] = []
        self.sent: list[tuple[str, Message]] = []
        self.scripts: dict[str, Script] = {}  # by child id; the default Script otherwise
        self.processes: dict[str, FakeProcess] = {}  # the latest process of each child id
        self._pids = itertools.count(1000)
        self._changed = trio.Event()

    async def spawn(self, child_id: str, spec: ChildSpec, zygote: ZygoteLookup) -> ChildProcess:
        forked_from = None
        if spec.role != "zygote":
            parent = await zygote()  # as the real one: a running zygote forks it
            forked_from = parent.child_id if isinstance(parent, FakeProcess) else None
        script = self.scripts.get(child_id, Script())
        process = FakeProcess(self, child_id, spec, next(self._pids), script)
        process.forked_from = forked_from
        self.processes[child_id] = process
        self.record("spawn", child_id)
        if script.exit_status is not None:
            process.exit(script.exit_status)
        elif script.ready:
            process.report({"event": "ready"})
            if spec.role == "worker" and script.backend_down:
                process.report({"event": "health", "status": "DOWN", "reason": script.backend_down})
            elif spec.role == "worker":  # as a real worker, once its backend answered
                process.report({"event": "health", "status": "UP"})
        return process

    def record(self, *action: Any) -> None:
        self.actions.append(action)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Until ``condition`` holds; re-checked after every recorded action.
        Callers bound it with a cancel scope."""
        while not condition():
            await self._changed.wait()

    # -- reading the record -------------------------------------------------------

    def index(self, *action: Any) -> int:
        """Where ``action`` was first recorded; ValueError when it was not."""
        return self.actions.index(action)

    def did(self, *action: Any) -> bool:
        return action in self.actions

    def spawned(self) -> list[str]:
        return [a[1] for a in self.actions if a[0] == "spawn"]

    def signalled(self, child_id: str) -> list[str]:
        return [a[2] for a in self.actions if a[0] == "signal" and a[1] == child_id]
