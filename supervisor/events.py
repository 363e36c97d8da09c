"""What the supervisor's loop receives: one typed event per kind of news.

Signal handlers, child tasks, timers and the control socket only put these
on the loop's channel; the loop alone acts on them (``Arbiter._handle``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import trio

from layotto.boundary.control_link import Message
from layotto.supervisor import lifecycle as lc
from layotto.supervisor.launcher import ChildProcess


@dataclass(frozen=True)
class ChildStarted:
    """A child's process exists (its lifecycle hears ``Spawned``)."""

    child_id: str
    process: ChildProcess


@dataclass(frozen=True)
class ChildLifecycle:
    """A lifecycle event from outside the loop: an exit or a timer."""

    child_id: str
    event: lc.Event


@dataclass(frozen=True)
class ChildMessage:
    """A message a child sent over its control link."""

    child_id: str
    message: Message


@dataclass(frozen=True)
class SignalReceived:
    signum: int


@dataclass(frozen=True)
class Command:
    """A control command (``layotto status|stop|reload|scale``); answered on ``reply``."""

    name: str
    args: dict[str, Any]
    reply: trio.MemorySendChannel[dict[str, Any]] = field(compare=False)


@dataclass(frozen=True)
class Wake:
    """Nothing happened, but the loop should check again whether it is done."""


LoopEvent = ChildStarted | ChildLifecycle | ChildMessage | SignalReceived | Command | Wake
