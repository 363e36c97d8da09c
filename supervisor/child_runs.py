"""The tasks that stand for one run of a child, and for a lifecycle timer.

They act and report, never decide: each turns what happens to a process
(started, a message, exited) or a timer into an event on the arbiter's
channel, and the loop decides what it means.
"""

from __future__ import annotations

import logging

import trio

from layotto.boundary.specs import ChildSpec
from layotto.supervisor import lifecycle as lc
from layotto.supervisor.events import ChildLifecycle, ChildMessage, ChildStarted, LoopEvent
from layotto.supervisor.launcher import ChildProcess, Launcher, ZygoteLookup

log = logging.getLogger("layotto.supervisor")

Events = trio.MemorySendChannel[LoopEvent]

# How long the link of an exited child is still read for what it sent last.
_LAST_WORDS = 1.0


async def run_child(
    launcher: Launcher, events: Events, child_id: str, spec: ChildSpec, zygote: ZygoteLookup
) -> None:
    """Start one run of a child; report its start, its messages and its exit."""
    try:
        process = await launcher.spawn(child_id, spec, zygote)
    except (OSError, trio.TooSlowError) as exc:
        log.error("%s: cannot start: %s", child_id, exc)
        await events.send(ChildLifecycle(child_id, lc.Exited(127)))
        return
    await events.send(ChildStarted(child_id, process))
    status = -1
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_forward_messages, events, child_id, process)
            status = await process.wait()
            # What it said just before it exited (a "fatal" reason) still
            # counts: read on to EOF, which comes at once unless something
            # inherited its end of the link, and only so long.
            nursery.cancel_scope.deadline = trio.current_time() + _LAST_WORDS
    finally:  # whatever happened, the state machine must hear of the exit
        process.close()
        await events.send(ChildLifecycle(child_id, lc.Exited(status)))


async def _forward_messages(events: Events, child_id: str, process: ChildProcess) -> None:
    while (message := await process.receive()) is not None:
        await events.send(ChildMessage(child_id, message))


async def fire_timer(events: Events, child_id: str, delay: float, token: int) -> None:
    await trio.sleep(delay)
    await events.send(ChildLifecycle(child_id, lc.TimerFired(token)))
